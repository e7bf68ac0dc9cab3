"""Client data: the :class:`ClientData` container, scikit-learn's digits, and IID / Dirichlet splits.

Bring your own data as a list of :class:`ClientData` (numpy ``x`` and ``y`` per client); the digits
loader is a ready-made real data set (1797 8x8 images, 10 classes) that needs no download.

>>> x = np.arange(12, dtype=np.float32).reshape(6, 2)
>>> y = np.array([0, 0, 1, 1, 2, 2])
>>> clients = split_iid(ClientData(x, y), num_clients=3, seed=0)
>>> [len(c) for c in clients]
[2, 2, 2]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ClientData", "FederatedData", "federated_digits", "load_digits", "split_dirichlet", "split_iid"]


@dataclass(frozen=True)
class ClientData:
    """One client's examples: ``x`` with a leading example axis and labels ``y`` of the same length.

    >>> ClientData(np.zeros((3, 2), np.float32), np.zeros(3, np.int64)).num_examples
    3
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise ValueError(f"x and y need the same leading length, got shapes {x.shape} and {y.shape}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_examples(self) -> int:
        """Number of examples."""
        return len(self.y)

    def subset(self, indices: Any) -> ClientData:
        """The examples at ``indices`` (copies)."""
        return ClientData(self.x[indices], self.y[indices])


@dataclass(frozen=True)
class FederatedData:
    """Training data split across clients, plus a held-out test set (the server's evaluation data)."""

    clients: list[ClientData]
    test: ClientData


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> tuple[ClientData, ClientData]:
    """scikit-learn's bundled digits as ``(train, test)``: x float32 in [0, 1] of shape (n, 64), y int64.

    The test split is a seeded random ``test_fraction`` of the 1797 examples.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (np.asarray(bunch.data, np.float32) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, np.int64)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng([seed, 1]).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    data = ClientData(x, y)
    return data.subset(order[n_test:]), data.subset(order[:n_test])


def split_iid(data: ClientData, num_clients: int, *, seed: int = 0) -> list[ClientData]:
    """A seeded shuffle cut into ``num_clients`` parts whose sizes differ by at most one."""
    _check_clients(data, num_clients)
    order = np.random.default_rng(seed).permutation(len(data))
    return [data.subset(part) for part in np.array_split(order, num_clients)]


def split_dirichlet(data: ClientData, num_clients: int, *, alpha: float, seed: int = 0) -> list[ClientData]:
    """Label skew: each class's examples are divided among clients in proportions drawn from Dir(alpha).

    Small ``alpha`` (0.1) gives clients few classes; large ``alpha`` (100) is close to IID (Hsu et al.
    2019). Every client gets at least one example: an empty client takes one from the largest client.
    """
    _check_clients(data, num_clients)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for label in np.unique(data.y):
        members = rng.permutation(np.flatnonzero(data.y == label))
        shares = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for client, chunk in enumerate(np.split(members, cuts)):
            parts[client].extend(int(i) for i in chunk)
    for client in range(num_clients):
        if not parts[client]:
            donor = max(range(num_clients), key=lambda c: len(parts[c]))
            parts[client].append(parts[donor].pop())
    return [data.subset(np.sort(np.asarray(p, np.int64))) for p in parts]


def federated_digits(
    num_clients: int = 20, *, alpha: float | None = 0.5, test_fraction: float = 0.2, seed: int = 0
) -> FederatedData:
    """Digits split across ``num_clients``: Dirichlet label skew with ``alpha``, or IID when ``alpha`` is None."""
    train, test = load_digits(test_fraction=test_fraction, seed=seed)
    if alpha is None:
        clients = split_iid(train, num_clients, seed=seed)
    else:
        clients = split_dirichlet(train, num_clients, alpha=alpha, seed=seed)
    return FederatedData(clients, test)


def _check_clients(data: ClientData, num_clients: int) -> None:
    if not 1 <= num_clients <= len(data):
        raise ValueError(f"num_clients must be between 1 and the {len(data)} examples, got {num_clients}")
