"""DP-FedAvg through FedModelStrategy (the DPMean carry kept between rounds, Poisson sampling as in the
simulation), local DP on Flower clients, and Flower's own DP wrappers refused with the reason, over an
in-process grid."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
)

from fedmodel import SGD
from fedmodel import server_optimizers as so
from fedmodel.algorithms import FederatedAlgorithm, fedavg
from fedmodel.client import local_sgd
from fedmodel.data import federated_digits
from fedmodel.integrations.flower import FedModelStrategy, client_app, partition_id
from fedmodel.privacy import AdaptiveClipping, DPMean, SeededNoise, local_dp
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, run_simulation

pytestmark = pytest.mark.usefixtures("task_identity")

NODES = 8
DATA = federated_digits(NODES, alpha=None, seed=0)


def model() -> SoftmaxRegression:
    return SoftmaxRegression(64, 10, seed=0)


def dp_fedavg() -> FederatedAlgorithm:
    dp = DPMean(
        clip=AdaptiveClipping(initial_norm=0.5, count_stddev=1.0),
        noise_multiplier=0.8,
        expected_clients=4.0,
        noise=SeededNoise(3),
    )
    return FederatedAlgorithm("dp-fedavg", local_sgd(epochs=1, batch_size=32, optimizer=SGD(0.5)), so.sgd(1.0), dp)


def _strategy(algorithm: FederatedAlgorithm, grid_class: Any, **kwargs: Any) -> tuple[FedModelStrategy, Any]:
    app = client_app(
        lambda ctx: model(), lambda ctx: DATA.clients[partition_id(ctx)], lambda ctx: algorithm.client_update
    )
    strategy = FedModelStrategy(model, algorithm, min_available_nodes=NODES, seed=2, test_data=DATA.test, **kwargs)
    return strategy, grid_class(app, NODES)


def test_dp_fedavg_with_poisson_sampling_on_flower_is_the_simulation_bit_for_bit(grid_class: Any) -> None:
    strategy, grid = _strategy(dp_fedavg(), grid_class, sampling_rate=0.5)
    strategy.run(grid, 3, round_timeout=5.0)
    sim = run_simulation(
        model, DATA.clients, dp_fedavg(), SimulationConfig(rounds=3, seed=2, sampling_rate=0.5, progress=False)
    )
    assert [len(r.sampled) for r in strategy.rounds] == [len(r.clients) for r in sim.rounds]
    assert len({len(r.sampled) for r in strategy.rounds}) > 1  # Poisson: the number per round varies
    assert strategy.state.aggregator_state == sim.state.aggregator_state  # the carry: round 3, the adapted clip
    assert strategy.state.aggregator_state.round == 3
    for got, want in zip(strategy.weights.arrays, sim.weights.arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_secret_sampling_on_flower_still_takes_nodes_at_the_rate(grid_class: Any) -> None:
    strategy, grid = _strategy(fedavg(client_lr=0.5), grid_class, sampling_rate=0.5, secret_sampling=True)
    strategy.run(grid, 4, round_timeout=5.0)
    sampled = [r.sampled for r in strategy.rounds]
    assert all(set(s) <= set(grid.node_ids) for s in sampled) and 4 <= sum(map(len, sampled)) <= 28


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: DifferentialPrivacyServerSideFixedClipping(
            s, noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=NODES
        ),
        lambda s: DifferentialPrivacyClientSideFixedClipping(
            s, noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=NODES
        ),
        lambda s: DifferentialPrivacyServerSideAdaptiveClipping(s, noise_multiplier=0.5, num_sampled_clients=NODES),
    ],
    ids=["server-side fixed", "client-side fixed", "server-side adaptive"],
)
def test_flowers_dp_wrappers_around_fedmodel_strategy_are_refused_with_the_reason(wrap: Any, grid_class: Any) -> None:
    algorithm = fedavg(client_lr=0.5)
    strategy, grid = _strategy(algorithm, grid_class)
    with pytest.raises(ValueError, match=r"after round 1 the strategy was given weights other than its own.*DPMean"):
        wrap(strategy).start(grid, strategy.arrays(), num_rounds=2, timeout=5.0, evaluate_fn=strategy.evaluate_global)
    assert strategy.state.round == 1  # the first round ran (the wrappers have no hook before it), no other


def test_local_dp_runs_as_the_client_update_of_a_flower_client(grid_class: Any) -> None:
    algorithm = fedavg(client_lr=0.5)
    private = local_dp(algorithm.client_update, clip=0.5, noise_multiplier=1.0, noise=SeededNoise(9))
    app = client_app(lambda ctx: model(), lambda ctx: DATA.clients[partition_id(ctx)], lambda ctx: private)
    strategy = FedModelStrategy(model, algorithm, min_available_nodes=NODES, seed=2)
    strategy.run(grid_class(app, NODES), 1, round_timeout=5.0)
    sim = run_simulation(
        model,
        DATA.clients,
        dataclasses.replace(algorithm, client_update=private),
        SimulationConfig(rounds=1, seed=2, progress=False),
    )
    for got, want in zip(strategy.weights.arrays, sim.weights.arrays, strict=True):
        np.testing.assert_array_equal(got, want)  # the same noised, clipped, equally weighted updates
    assert strategy.rounds[0].train == {}  # the wrapper withholds the metrics
