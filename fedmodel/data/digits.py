"""scikit-learn's digits: a small real data set (1797 8x8 images, 10 classes) that needs no download."""

from __future__ import annotations

import numpy as np

from fedmodel.data._core import ClientData, DataError, FederatedData
from fedmodel.data.partition import split_dirichlet, split_iid

__all__ = ["federated_digits", "load_digits"]


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> tuple[ClientData, ClientData]:
    """scikit-learn's bundled digits as ``(train, test)``: x float32 in [0, 1] of shape (n, 64), y int64.

    The test split is a seeded random ``test_fraction`` of the 1797 examples.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (np.asarray(bunch.data, np.float32) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, np.int64)
    order = np.random.default_rng([seed, 1]).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    data = ClientData(x, y)
    return data.subset(order[n_test:]), data.subset(order[:n_test])


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
