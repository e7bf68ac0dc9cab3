"""The client side of a round: local training through a :class:`fedmodel.Backend`.

:func:`train_client` is the one primitive (assign the server weights, seed the backend's training
randomness, reset metrics, a fresh optimizer, seeded shuffled mini-batches, one ``backend.train_step`` per
batch); :func:`local_sgd` and :func:`full_batch_step` are :data:`ClientUpdate` factories built on it: FedAvg
and FedProx use the first (FedProx with ``optimizer.proximal_mu > 0``), FedSGD the second.

>>> from fedmodel.reference import SoftmaxRegression
>>> from fedmodel.data import ClientData
>>> from fedmodel.optimizers import SGD
>>> model = SoftmaxRegression(4, 3)
>>> server = get_weights(model)
>>> data = ClientData(np.ones((5, 4), np.float32), np.array([0, 1, 2, 0, 0]))
>>> update = local_sgd(epochs=2, batch_size=2, optimizer=SGD(0.1))
>>> result = update(model, backend_for(model), server, data, 0)
>>> result.num_examples, result.num_steps, int(result.metrics["num_examples"])
(5, 6, 10)
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fedmodel._backend import Backend, backend_for
from fedmodel._weights import ModelWeights, assign_weights, get_weights
from fedmodel.data import ClientData
from fedmodel.metrics import to_numpy_report
from fedmodel.optimizers import SGD, OptimizerSpec

__all__ = [
    "ClientResult",
    "ClientUpdate",
    "batches",
    "check_local_settings",
    "full_batch_step",
    "local_sgd",
    "train_client",
]


@dataclass(frozen=True)
class ClientResult:
    """What a client sends back: its new weights, its number of examples and its unfinalized metrics.

    ``metrics`` is the model's ``report_local_outputs()`` after local training, as numpy, ready for
    ``model.federated_output_computation``.
    """

    weights: ModelWeights
    num_examples: int
    metrics: dict[str, Any]
    num_steps: int = 0


class ClientUpdate(Protocol):
    """The client piece of an algorithm: ``(model, backend, server_weights, data, seed) -> ClientResult``."""

    def __call__(
        self, model: Any, backend: Backend, server_weights: ModelWeights, data: ClientData, seed: int
    ) -> ClientResult:
        """Train ``model`` from ``server_weights`` on ``data``; ``seed`` fixes the example order (and dropout)."""
        ...


def batches(data: ClientData, batch_size: int, rng: np.random.Generator | None) -> Iterator[tuple[Any, Any]]:
    """``(x, y)`` mini-batches in a shuffled order (``rng``) or in order (``None``); the last may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(data)
    order = rng.permutation(n) if rng is not None else None
    for start in range(0, n, batch_size):
        if order is None:
            yield data.x[start : start + batch_size], data.y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield data.x[idx], data.y[idx]


def check_local_settings(epochs: object, batch_size: object, optimizer: object) -> None:
    """Check a client update's settings when it is built, not in every client of every round.

    Raises:
        ValueError: for ``epochs`` or ``batch_size`` that is not an integer >= 1 (numpy's too; bools refused).
        TypeError: for an ``optimizer`` that is not an :class:`~fedmodel.optimizers.OptimizerSpec`.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not isinstance(optimizer, OptimizerSpec):
        raise TypeError(
            f"optimizer must be a fedmodel OptimizerSpec (fedmodel.SGD(...), fedmodel.Adam(...)), got {optimizer!r:.80}"
        )


def train_client(
    model: Any,
    server_weights: ModelWeights,
    data: ClientData,
    *,
    epochs: int,
    batch_size: int,
    optimizer: OptimizerSpec,
    seed: int,
    backend: Backend | None = None,
    shuffle: bool = True,
) -> ClientResult:
    """Local training of one client, from the server's weights.

    Assigns ``server_weights``, calls the backend's optional ``seed_training(model, seed)`` (so dropout is a
    function of ``seed``: the update is the same in any process, whatever the model trained before), resets
    the metrics, creates a fresh optimizer with ``backend.make_optimizer`` (so a FedProx anchor is the
    server's weights), then for each epoch takes one ``backend.train_step`` per mini-batch, in an order
    shuffled by ``np.random.default_rng(seed)``.

    Raises:
        ValueError: for an empty client or ``epochs < 1``.
    """
    if len(data) == 0 or epochs < 1:
        raise ValueError(f"a client needs examples and epochs >= 1 (got {len(data)} examples, {epochs} epochs)")
    backend = backend or backend_for(model)
    assign_weights(model, server_weights, backend=backend)
    seed_training = getattr(backend, "seed_training", None)  # optional: a backend without randomness has none
    if seed_training is not None:
        seed_training(model, seed)
    model.reset_metrics()
    native_optimizer = backend.make_optimizer(model, optimizer)
    rng = np.random.default_rng(seed) if shuffle else None
    steps = 0
    for _ in range(epochs):
        for batch in batches(data, batch_size, rng):
            backend.train_step(model, backend.to_native(model, batch), native_optimizer)
            steps += 1
    report = to_numpy_report(model.report_local_outputs())
    return ClientResult(get_weights(model, backend=backend), len(data), report, steps)


def local_sgd(*, epochs: int = 1, batch_size: int = 32, optimizer: OptimizerSpec | None = None) -> ClientUpdate:
    """FedAvg's client update: ``epochs`` passes of mini-batch steps of ``optimizer`` (default SGD(0.1)).

    McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
    AISTATS 2017 (``E`` = epochs, ``B`` = batch_size). With ``optimizer.proximal_mu > 0`` this is
    FedProx's client (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020).
    """
    spec = SGD(0.1) if optimizer is None else optimizer
    check_local_settings(epochs, batch_size, spec)

    def update(model: Any, backend: Backend, server_weights: ModelWeights, data: ClientData, seed: int) -> ClientResult:
        return train_client(
            model,
            server_weights,
            data,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=spec,
            seed=seed,
            backend=backend,
        )

    return update


def full_batch_step(*, learning_rate: float = 0.1) -> ClientUpdate:
    """FedSGD's client update: one plain gradient step on the client's whole data set.

    McMahan et al. 2017: each client computes ``g_k`` on all its data; the server's example-weighted mean
    of ``w - lr g_k`` equals one step of SGD on the union of the selected clients' data.
    """
    spec = SGD(learning_rate)

    def update(model: Any, backend: Backend, server_weights: ModelWeights, data: ClientData, seed: int) -> ClientResult:
        return train_client(
            model, server_weights, data, epochs=1, batch_size=len(data), optimizer=spec, seed=seed, backend=backend
        )

    return update
