"""Federated algorithms composed from three pieces, in the optax style.

A :class:`FederatedAlgorithm` is a client update (:mod:`fedmodel.client`), a weights aggregator
(:mod:`fedmodel.aggregation`) and a server optimizer (:mod:`fedmodel.server_optimizers`) applied to the
aggregated delta. The factories below are the published algorithms; recombine the pieces for others
(e.g. FedProx clients with a FedAdam server).

>>> from fedmodel import backend_for, get_weights
>>> from fedmodel.reference import SoftmaxRegression
>>> from fedmodel.data import ClientData
>>> model = SoftmaxRegression(2, 2)
>>> algo = fedavg(epochs=1, batch_size=2, client_lr=0.5)
>>> state = algo.init(get_weights(model))
>>> data = ClientData(np.eye(2, dtype=np.float32), np.array([0, 1]))
>>> result = algo.client_update(model, backend_for(model), state.weights, data, 0)
>>> from fedmodel.server import ServerRound
>>> server_round = ServerRound(algo, state)
>>> server_round.add(0, result) is None   # accepted
True
>>> state = server_round.finish().state
>>> state.round, bool(np.allclose(state.weights.trainable[0], result.weights.trainable[0]))
(1, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from fedmodel import server_optimizers as so
from fedmodel._weights import ModelWeights
from fedmodel.aggregation import WeightedMean, WeightsAggregator
from fedmodel.client import ClientUpdate, full_batch_step, local_sgd
from fedmodel.optimizers import SGD, OptimizerSpec
from fedmodel.validation import is_float

__all__ = [
    "FederatedAlgorithm",
    "ServerState",
    "delta",
    "fedadagrad",
    "fedadam",
    "fedavg",
    "fedavgm",
    "fedprox",
    "fedsgd",
    "fedyogi",
]


class ServerState(NamedTuple):
    """The server's state between rounds: global weights, server-optimizer state, rounds completed, and the
    aggregator's carry between rounds (``None`` for aggregators without one)."""

    weights: ModelWeights
    optimizer_state: Any
    round: int
    aggregator_state: Any = None


def delta(params: ModelWeights, aggregated: ModelWeights) -> ModelWeights:
    """``aggregated - params``: float64 for float variables, the variable's own dtype for integers.

    Integer differences are modular (two's complement), so ``params + delta`` gives back ``aggregated``
    exactly even where the difference itself does not fit the dtype.
    """
    out = []
    for p, a in zip(params.arrays, aggregated.arrays, strict=True):
        if is_float(p):
            out.append(np.asarray(a, np.float64) - np.asarray(p, np.float64))
        else:
            with np.errstate(over="ignore"):
                out.append(np.asarray(np.subtract(a, p, dtype=p.dtype)))
    return params.with_arrays(out)


def _read_only(weights: ModelWeights) -> ModelWeights:
    arrays = [np.array(a, copy=True) for a in weights.arrays]
    for a in arrays:
        a.flags.writeable = False
    return weights.with_arrays(arrays)


@dataclass(frozen=True)
class FederatedAlgorithm:
    """Client update + aggregator + server optimizer.

    One round (:class:`fedmodel.server.ServerRound`): each client runs ``client_update`` from
    ``state.weights``; the round validates every result and folds the valid ones into ``aggregator``,
    weighted by their number of examples; :meth:`apply` moves the server along ``aggregated - weights``
    with the server optimizer.
    """

    name: str
    client_update: ClientUpdate
    server_optimizer: so.ServerOptimizer
    aggregator: WeightsAggregator = field(default_factory=WeightedMean)

    def init(self, weights: ModelWeights) -> ServerState:
        """Round 0: read-only copies of ``weights`` (a client can never write into the server's arrays), the
        server optimizer's initial state, and the aggregator's initial carry if it has one."""
        weights = _read_only(weights)
        initial_carry = getattr(self.aggregator, "initial_carry", None)
        carry = initial_carry(weights) if initial_carry is not None else None
        return ServerState(weights, self.server_optimizer.init(weights), 0, carry)

    def apply(self, state: ServerState, aggregated: ModelWeights) -> ServerState:
        """The server step: ``server_optimizer.update(aggregated - weights, ...)``; the round count + 1.

        Every round goes through :class:`fedmodel.server.ServerRound`, which validates the clients' replies,
        aggregates them and calls this.
        """
        new, opt_state = self.server_optimizer.update(
            delta(state.weights, aggregated), state.optimizer_state, state.weights
        )
        return ServerState(_read_only(new), opt_state, state.round + 1, state.aggregator_state)


def _client_spec(client_lr: float, mu: float = 0.0, optimizer: OptimizerSpec | None = None) -> OptimizerSpec:
    return optimizer if optimizer is not None else SGD(client_lr, proximal_mu=mu)


def fedavg(
    *,
    epochs: int = 1,
    batch_size: int = 32,
    client_lr: float = 0.1,
    server_lr: float = 1.0,
    optimizer: OptimizerSpec | None = None,
) -> FederatedAlgorithm:
    """FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
    Data", AISTATS 2017): local SGD, example-weighted mean, the mean becomes the new model (server_lr 1)."""
    client = local_sgd(epochs=epochs, batch_size=batch_size, optimizer=_client_spec(client_lr, 0.0, optimizer))
    return FederatedAlgorithm("fedavg", client, so.sgd(server_lr))


def fedsgd(*, client_lr: float = 0.1, server_lr: float = 1.0) -> FederatedAlgorithm:
    """FedSGD (McMahan et al. 2017): one full-batch gradient step per client, example-weighted mean."""
    return FederatedAlgorithm("fedsgd", full_batch_step(learning_rate=client_lr), so.sgd(server_lr))


def fedprox(
    *, mu: float = 0.01, epochs: int = 1, batch_size: int = 32, client_lr: float = 0.1, server_lr: float = 1.0
) -> FederatedAlgorithm:
    """FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020): FedAvg whose
    clients minimize ``loss + mu/2 ||w - w_server||^2`` (the optimizer spec's ``proximal_mu``)."""
    if not mu > 0:
        raise ValueError(f"FedProx needs mu > 0, got {mu}")
    client = local_sgd(epochs=epochs, batch_size=batch_size, optimizer=SGD(client_lr, proximal_mu=mu))
    return FederatedAlgorithm("fedprox", client, so.sgd(server_lr))


def fedavgm(
    *, momentum: float = 0.9, epochs: int = 1, batch_size: int = 32, client_lr: float = 0.1, server_lr: float = 1.0
) -> FederatedAlgorithm:
    """FedAvgM (Hsu et al., "Measuring the Effects of Non-Identical Data Distribution for Federated
    Visual Classification", 2019): FedAvg with server momentum on the averaged delta."""
    client = local_sgd(epochs=epochs, batch_size=batch_size, optimizer=SGD(client_lr))
    return FederatedAlgorithm("fedavgm", client, so.sgd(server_lr, momentum=momentum))


def _fedopt(
    name: str, server: so.ServerOptimizer, epochs: int, batch_size: int, client_lr: float
) -> FederatedAlgorithm:
    client = local_sgd(epochs=epochs, batch_size=batch_size, optimizer=SGD(client_lr))
    return FederatedAlgorithm(name, client, server)


def fedadam(
    *, server_lr: float = 0.01, tau: float = 1e-3, epochs: int = 1, batch_size: int = 32, client_lr: float = 0.1
) -> FederatedAlgorithm:
    """FedAdam (Reddi et al., "Adaptive Federated Optimization", ICLR 2021): client SGD, server Adam."""
    return _fedopt("fedadam", so.adam(server_lr, tau=tau), epochs, batch_size, client_lr)


def fedyogi(
    *, server_lr: float = 0.01, tau: float = 1e-3, epochs: int = 1, batch_size: int = 32, client_lr: float = 0.1
) -> FederatedAlgorithm:
    """FedYogi (Reddi et al. 2021): client SGD, server Yogi."""
    return _fedopt("fedyogi", so.yogi(server_lr, tau=tau), epochs, batch_size, client_lr)


def fedadagrad(
    *, server_lr: float = 0.1, tau: float = 1e-3, epochs: int = 1, batch_size: int = 32, client_lr: float = 0.1
) -> FederatedAlgorithm:
    """FedAdagrad (Reddi et al. 2021): client SGD, server Adagrad."""
    return _fedopt("fedadagrad", so.adagrad(server_lr, tau=tau), epochs, batch_size, client_lr)
