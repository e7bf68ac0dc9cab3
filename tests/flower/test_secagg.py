"""Secure aggregation through Flower's SecAgg+ in one process: Flower's own ``SecAggPlusWorkflow`` and
``secaggplus_mod`` over an in-process grid whose every message is serialized. The real processes (a
SuperLink, SuperNodes, a node killed mid-round) are in ``test_secagg_deployment.py``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Context, RecordDict

from fedmodel import SGD, ModelWeights, backend_for
from fedmodel import server_optimizers as so
from fedmodel.aggregation import WeightedMean
from fedmodel.algorithms import FederatedAlgorithm, fedavg
from fedmodel.client import local_sgd
from fedmodel.data import federated_digits
from fedmodel.integrations.flower import SecAggPlus, SecAggPlusStrategy, client_app, partition_id
from fedmodel.privacy import AdaptiveClipping, DPMean, SeededNoise
from fedmodel.reference import SoftmaxRegression
from fedmodel.robust import CoordinateMedian
from fedmodel.server import client_seed
from fedmodel.validation import ReplyLimits

pytestmark = pytest.mark.usefixtures("task_identity")

NODES, SEED = 4, 5
DATA = federated_digits(NODES, alpha=None, seed=0)
SECAGG = SecAggPlus(num_shares=NODES, reconstruction_threshold=3, timeout=5.0)


def model() -> SoftmaxRegression:
    return SoftmaxRegression(64, 10, seed=0)


@pytest.fixture
def secagg_grid(grid_class: Any) -> Any:
    class SecAggGrid(grid_class):  # type: ignore[misc, valid-type]
        """The in-process grid with the run a legacy workflow asks for."""

        @property
        def run(self) -> Any:
            return SimpleNamespace(run_id=7)

    return SecAggGrid


def _run(
    algorithm: FederatedAlgorithm, grid_class: Any, rounds: int, **grid: Any
) -> tuple[SecAggPlusStrategy, list[ModelWeights]]:
    crashing = set(grid.pop("crash", ()))

    def load(context: Any) -> Any:
        pid = partition_id(context)
        if pid in crashing:
            raise RuntimeError("the machine died while training")
        return DATA.clients[pid]

    app = client_app(lambda ctx: model(), load, lambda ctx: algorithm.client_update, secure_aggregation=True)
    history: list[ModelWeights] = []
    strategy = SecAggPlusStrategy(
        model, algorithm, SECAGG, min_available_nodes=NODES, seed=SEED, test_data=DATA.test,
        on_round=lambda report, weights: history.append(weights),
    )  # fmt: skip
    strategy.run(grid_class(app, NODES, **grid), Context(7, 0, {}, RecordDict(), {}), rounds)
    return strategy, history


def _updates(
    algorithm: FederatedAlgorithm, weights: ModelWeights, round_index: int, clients: list[int]
) -> list[ModelWeights]:
    """The clients' trained weights from ``weights``, computed here as each node computes them."""
    local = model()
    return [
        algorithm.client_update(
            local, backend_for(local), weights, DATA.clients[c], client_seed(SEED, round_index, c)
        ).weights
        for c in clients
    ]


def _within_bound(got: ModelWeights, want: ModelWeights, bound: float) -> float:
    """The largest difference, asserted below the bound plus one float32 rounding of the weights."""
    worst = 0.0
    for g, w in zip(got.arrays, want.arrays, strict=True):
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        assert np.all(diff <= bound + np.spacing(np.abs(w).astype(np.float32)).astype(np.float64)), diff.max()
        worst = max(worst, float(diff.max()))
    return worst


def test_a_secure_round_is_plain_unweighted_fedavg_within_secaggs_quantization_bound(secagg_grid: Any) -> None:
    algorithm = fedavg(client_lr=0.5, batch_size=32)
    strategy, history = _run(algorithm, secagg_grid, rounds=2)
    assert [[a["partition"] for a in r.aggregated] for r in strategy.rounds] == [[0, 1, 2, 3]] * 2
    assert strategy.state.round == 2 and not any(r.failures for r in strategy.rounds)
    for r, (before, after) in enumerate(zip([_initial(), *history[:-1]], history, strict=True)):
        plain = WeightedMean().aggregate([(u, 1.0) for u in _updates(algorithm, before, r, [0, 1, 2, 3])])
        worst = _within_bound(after, plain, SECAGG.bound())
        assert worst > 0  # the sum went through SecAgg+'s stochastic quantization, not around it
    assert strategy.rounds[-1].test["accuracy"] > 0.8


def _initial() -> ModelWeights:
    from fedmodel import get_weights

    return get_weights(model())


def test_a_client_that_fails_while_training_leaves_the_aggregate_of_the_others(secagg_grid: Any) -> None:
    algorithm = fedavg(client_lr=0.5, batch_size=32)
    strategy, history = _run(algorithm, secagg_grid, rounds=1, crash=[2])
    [report] = strategy.rounds
    assert [a["partition"] for a in report.aggregated] == [0, 1, 3]
    [failure] = report.failures
    assert "not in the secure sum" in failure.reason and failure.node_id in report.sampled
    plain = WeightedMean().aggregate([(u, 1.0) for u in _updates(algorithm, _initial(), 0, [0, 1, 3])])
    _within_bound(history[0], plain, SECAGG.bound())


def test_more_dropouts_than_the_threshold_allows_halt_the_round_and_leave_the_weights(secagg_grid: Any) -> None:
    strategy, history = _run(fedavg(client_lr=0.5, batch_size=32), secagg_grid, rounds=1, crash=[2, 3])
    assert history == [] and strategy.state.round == 1  # 2 of 4 left: fewer than the threshold of 3
    [report] = strategy.rounds
    assert report.problem is not None and "halted" in report.problem and report.aggregated == []
    for got, want in zip(strategy.weights.arrays, _initial().arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_dp_fedavg_under_secure_aggregation_is_dpmean_of_the_client_clipped_changes(secagg_grid: Any) -> None:
    def dp_fedavg() -> FederatedAlgorithm:
        dp = DPMean(
            clip=AdaptiveClipping(initial_norm=2.43, count_stddev=1.0),  # round 1: 2 of the 4 changes are clipped
            noise_multiplier=0.5,
            expected_clients=NODES,
            noise=SeededNoise(1),
        )
        return FederatedAlgorithm("dp-fedavg", local_sgd(epochs=1, batch_size=32, optimizer=SGD(0.5)), so.sgd(1.0), dp)

    algorithm = dp_fedavg()
    strategy, history = _run(algorithm, secagg_grid, rounds=2)
    state = algorithm.init(_initial())
    for r, after in enumerate(history):
        updates = _updates(algorithm, state.weights, r, [0, 1, 2, 3])
        new, carry = algorithm.aggregator.aggregate(state.weights, updates, state.aggregator_state)  # type: ignore[attr-defined]
        _within_bound(after, new, SECAGG.bound())  # the same seeded noise, the same clipped changes up to 2c/Q
        state = state._replace(weights=after, aggregator_state=carry)
    assert strategy.state.aggregator_state == state.aggregator_state  # the same count of unclipped clients
    assert strategy.state.aggregator_state.clip_norm != 2.43


@pytest.mark.parametrize(
    ("algorithm", "limits", "message"),
    [
        (
            FederatedAlgorithm("median", fedavg().client_update, so.sgd(1.0), CoordinateMedian()),
            None,
            "the aggregator CoordinateMedian needs each client's update, which secure aggregation hides",
        ),
        (fedavg(), ReplyLimits(max_delta_norm=1.0), "ReplyLimits.max_delta_norm bounds each client's update"),
        (
            FederatedAlgorithm(
                "dp",
                fedavg().client_update,
                so.sgd(1.0),
                DPMean(clip=9.0, noise_multiplier=1, expected_clients=4, noise=SeededNoise(0)),
            ),
            None,
            "a clip norm of 9.0 exceeds SecAgg\\+'s clipping_range 8.0",
        ),
    ],
    ids=["robust aggregator", "server-side norm bound", "clip beyond the clipping range"],
)
def test_what_needs_each_update_is_refused_before_any_round(
    algorithm: FederatedAlgorithm, limits: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SecAggPlusStrategy(model, algorithm, SECAGG, limits=limits)


def test_a_sample_cannot_outgrow_the_modulus() -> None:
    small = SecAggPlus(num_shares=3, reconstruction_threshold=2, quantization_range=2**30)
    assert small.max_clients == 3
    with pytest.raises(ValueError, match="clients_per_round 5 exceeds SecAgg\\+'s 3"):
        SecAggPlusStrategy(model, fedavg(), small, clients_per_round=5)
