"""fedmodel's algorithms as a Flower strategy, over an in-process grid whose every message is serialized."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ConfigRecord, RecordDict

from fedmodel import FedModelError, algorithms, get_weights
from fedmodel.data import ClientData
from fedmodel.evaluation import evaluate
from fedmodel.integrations.flower import FedModelStrategy, client_app, encode_weights, partition_id
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, run_simulation

pytestmark = pytest.mark.usefixtures("task_identity")


def federated() -> tuple[list[ClientData], ClientData]:
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(10, 64)).astype(np.float32)

    def draw(n: int) -> ClientData:
        y = rng.integers(0, 10, n).astype(np.int64)
        return ClientData((centers[y] + rng.normal(size=(n, 64)).astype(np.float32) * 1.5).astype(np.float32), y)

    return [draw(40 + 7 * i) for i in range(3)], draw(60)


def model() -> SoftmaxRegression:
    return SoftmaxRegression(64, 10, seed=0)


def setup(algorithm: algorithms.FederatedAlgorithm, grid_class: Any, **grid_kwargs: Any) -> tuple[Any, Any, Any]:
    clients, test = federated()

    calls = {i: 0 for i in range(len(clients))}

    def load(ctx: Any) -> ClientData:
        pid = partition_id(ctx)
        calls[pid] += 1
        if calls[pid] > ctx.node_config.get("crash-after", 1_000):
            raise RuntimeError("disk full")
        return clients[pid]

    app = client_app(lambda ctx: model(), load, lambda ctx: algorithm.client_update)
    grid = grid_class(app, len(clients), **grid_kwargs)
    strategy = FedModelStrategy(model, algorithm, test_data=test, min_available_nodes=len(clients), seed=4)
    return strategy, grid, (clients, test)


ALGORITHMS = {
    "fedavg": lambda: algorithms.fedavg(client_lr=0.3, batch_size=16),
    "fedavgm": lambda: algorithms.fedavgm(client_lr=0.3, batch_size=16, momentum=0.9),
    "fedadam": lambda: algorithms.fedadam(client_lr=0.3, batch_size=16, server_lr=0.05),
    "fedyogi": lambda: algorithms.fedyogi(client_lr=0.3, batch_size=16, server_lr=0.05),
}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_flower_strategy_reproduces_the_in_process_simulation_bit_for_bit(name: str, grid_class: Any) -> None:
    strategy, grid, (clients, test) = setup(ALGORITHMS[name](), grid_class)
    result = strategy.run(grid, 3, round_timeout=5.0)
    sim = run_simulation(
        model, clients, ALGORITHMS[name](), SimulationConfig(rounds=3, seed=4, progress=False), test_data=test
    )
    for (name_f, got), (name_s, want) in zip(strategy.weights.items(), sim.weights.items(), strict=True):
        assert name_f == name_s
        np.testing.assert_array_equal(got, want)
    assert [r.test for r in strategy.rounds] == [r.test for r in sim.rounds]
    assert [r.train for r in strategy.rounds] == [r.train for r in sim.rounds]
    assert [a["partition"] for a in strategy.rounds[0].aggregated] == [0, 1, 2]
    assert result.arrays is not None and list(result.arrays) == ["kernel", "bias", "input_scale"]
    assert set(result.evaluate_metrics_serverapp) == {0, 1, 2, 3}
    assert result.evaluate_metrics_serverapp[3]["accuracy"] == sim.rounds[-1].test["accuracy"]


def test_initial_arrays_given_to_start_become_the_global_weights(grid_class: Any) -> None:
    algorithm = ALGORITHMS["fedadam"]()
    strategy, grid, (clients, test) = setup(algorithm, grid_class)
    start = get_weights(SoftmaxRegression(64, 10, seed=5))
    strategy.start(grid, encode_weights(start)[0], num_rounds=2, timeout=5.0, evaluate_fn=strategy.evaluate_global)
    sim = run_simulation(
        model,
        clients,
        algorithm,
        SimulationConfig(rounds=2, seed=4, progress=False),
        test_data=test,
        initial_state=algorithm.init(start),
    )
    for got, want in zip(strategy.weights.arrays, sim.weights.arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    assert strategy.initial_test == evaluate(model(), [test], weights=start)


def test_initial_arrays_that_do_not_fit_the_model_are_refused(grid_class: Any) -> None:
    strategy, grid, _ = setup(ALGORITHMS["fedavg"](), grid_class)
    wrong = encode_weights(get_weights(SoftmaxRegression(64, 9)))[0]
    with pytest.raises(FedModelError, match=r"arrays given to the strategy: 'kernel' has shape \(64, 9\), expected"):
        strategy.start(grid, wrong, num_rounds=1, timeout=5.0)
    assert not grid.sent


def test_a_silent_node_is_dropped_reported_and_not_asked_again(grid_class: Any, tmp_path: Path) -> None:
    algorithm = ALGORITHMS["fedavg"]()
    strategy, grid, (clients, _) = setup(algorithm, grid_class)
    silent = sorted(grid.node_ids)[2]  # the node of partition 2
    grid.silent = {silent}
    strategy.run(grid, 3, round_timeout=5.0)
    first = strategy.rounds[0]
    assert [(f.node_id, f.reason) for f in first.failures] == [
        (silent, "train: no reply within the round timeout; node excluded from later rounds")
    ]
    assert [a["partition"] for a in first.aggregated] == [0, 1]
    assert all(silent not in r.sampled and not r.failures for r in strategy.rounds[1:])
    assert sum(m.metadata.dst_node_id == silent for m in grid.sent) == 1
    # the survivors' run is the simulation of clients 0 and 1
    sim = run_simulation(model, clients[:2], algorithm, SimulationConfig(rounds=3, seed=4, progress=False))
    for got, want in zip(strategy.weights.arrays, sim.weights.arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    strategy.write_report(tmp_path / "results.json", extra={"note": "silent node"})
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["rounds_completed"] == 3 and report["note"] == "silent node"
    assert report["failures"] == [
        {"node_id": silent, "reason": first.failures[0].reason, "partition_id": None, "round": 1}
    ]


@pytest.mark.parametrize(
    ("bad_bias", "match"),
    [
        (np.full(10, 1e6, np.float64), "'bias' has dtype float64, expected float32"),
        (np.full(10, np.nan, np.float32), "'bias' has 10 non-finite value(s)"),
    ],
    ids=["dtype", "nan"],
)
def test_an_invalid_reply_is_dropped_and_never_reaches_the_global_weights(
    grid_class: Any, bad_bias: np.ndarray, match: str
) -> None:
    def tamper(node: int, content: RecordDict) -> RecordDict:
        if node == sorted(grid.node_ids)[0]:
            content["arrays"]["bias"] = Array(bad_bias)
        return content

    algorithm = ALGORITHMS["fedavg"]()
    strategy, grid, _ = setup(algorithm, grid_class, tamper=tamper)
    strategy.run(grid, 2, round_timeout=5.0)
    for r in strategy.rounds:
        assert [a["partition"] for a in r.aggregated] == [1, 2]
        assert len(r.failures) == 1 and r.failures[0].reason.startswith(f"node {sorted(grid.node_ids)[0]}: ")
        assert match in r.failures[0].reason
    assert np.isfinite(strategy.weights.trainable[1]).all() and np.abs(strategy.weights.trainable[1]).max() < 10


def test_a_client_that_raises_is_reported_with_its_partition_and_stays_eligible(grid_class: Any) -> None:
    strategy, grid, _ = setup(ALGORITHMS["fedavg"](), grid_class)
    crashing = sorted(grid.node_ids)[1]
    grid.contexts[crashing].node_config["crash-after"] = 1  # trains in round 1, raises from round 2 on
    strategy.run(grid, 3, round_timeout=5.0)
    assert not strategy.rounds[0].failures
    for r in strategy.rounds[1:]:
        assert crashing in r.sampled and [a["partition"] for a in r.aggregated] == [0, 2]
        [failure] = r.failures
        assert (failure.node_id, failure.partition_id) == (crashing, 1)
        assert failure.reason == "train: error reply (code 2): RuntimeError: disk full"
    assert crashing not in strategy.excluded


def test_federated_evaluation_finalizes_the_nodes_reports_with_the_model_aggregator(grid_class: Any) -> None:
    strategy, grid, (clients, _) = setup(ALGORITHMS["fedavg"](), grid_class)
    strategy.evaluate_clients = True
    strategy.run(grid, 1, round_timeout=5.0)
    expected = evaluate(model(), clients, weights=strategy.weights)
    assert strategy.rounds[0].evaluate == pytest.approx(expected, rel=1e-12)


def test_sampling_picks_the_configured_number_of_nodes_reproducibly(grid_class: Any) -> None:
    picks = []
    for _ in range(2):
        strategy, grid, _ = setup(ALGORITHMS["fedavg"](), grid_class)
        strategy.clients_per_round = 2
        strategy.run(grid, 3, round_timeout=5.0)
        picks.append([r.sampled for r in strategy.rounds])
    assert picks[0] == picks[1] and all(len(s) == 2 for s in picks[0])


def test_torch_batchnorm_counters_cross_the_wire_as_int64_and_aggregate_by_rule(grid_class: Any) -> None:
    """``num_batches_tracked`` arrives as int64 and is the rounded example-weighted mean, never zeroed."""
    models = pytest.importorskip("fedmodel_torch.models")
    clients, test = federated()  # 40, 47 and 54 examples: 3, 3 and 4 batches of 16 in one epoch
    algorithm = algorithms.fedavg(client_lr=0.05, batch_size=16)
    app = client_app(
        lambda ctx: models.cnn_bn(seed=0), lambda ctx: clients[partition_id(ctx)], lambda ctx: algorithm.client_update
    )
    strategy = FedModelStrategy(lambda: models.cnn_bn(seed=0), algorithm, test_data=test, min_available_nodes=3)
    strategy.run(grid_class(app, 3), 1, round_timeout=5.0)
    weights = dict(strategy.weights.items())
    for name in ("bn1.num_batches_tracked", "bn2.num_batches_tracked"):
        assert weights[name].dtype == np.int64
        assert int(weights[name]) == round((40 * 3 + 47 * 3 + 54 * 4) / 141) == 3
    assert [a["partition"] for a in strategy.rounds[0].aggregated] == [0, 1, 2]
    assert 0 <= strategy.rounds[0].test["accuracy"] <= 1


def test_a_second_or_unsolicited_reply_is_dropped(grid_class: Any) -> None:
    strategy, grid, _ = setup(ALGORITHMS["fedavg"](), grid_class)
    messages = list(strategy.configure_train(1, strategy.arrays(), ConfigRecord(), grid))
    replies = grid.send_and_receive(messages[:2])  # the third node was asked but stays silent
    strategy.aggregate_train(1, [*replies, replies[0]])
    reasons = sorted(f.reason for f in strategy.rounds[0].failures)
    assert reasons == [
        "train: no reply within the round timeout; node excluded from later rounds",
        "train: unexpected reply (not asked, or a second one)",
    ]
    assert len(strategy.rounds[0].aggregated) == 2


def test_a_canonical_model_sends_framework_neutral_names_and_axes(grid_class: Any) -> None:
    """With ``canonical(model)`` on both sides, torch weights travel as ``dense_i/kernel`` (in, out)."""
    models = pytest.importorskip("fedmodel_torch.models")
    canonical_layout = pytest.importorskip("fedmodel_torch.layout").canonical_layout
    from fedmodel.layout import canonical as canonical_model

    clients, test = federated()
    algorithm = algorithms.fedavg(client_lr=0.1, batch_size=16)
    factories: dict[str, Callable[[], Any]] = {
        "native": lambda: models.mlp(seed=0),
        "canonical": lambda: canonical_model(models.mlp(seed=0)),
    }
    runs = {}
    for name, factory in factories.items():
        app = client_app(
            lambda ctx, factory=factory: factory(),
            lambda ctx: clients[partition_id(ctx)],
            lambda ctx: algorithm.client_update,
        )
        grid = grid_class(app, 3)
        strategy = FedModelStrategy(factory, algorithm, test_data=test)
        strategy.run(grid, 2, round_timeout=5.0)
        runs[name] = (strategy, grid)
    canonical, grid = runs["canonical"]
    sent = grid.sent[-1].content.array_records["arrays"]
    assert list(sent) == ["dense_0/bias", "dense_0/kernel", "dense_1/bias", "dense_1/kernel"]  # canonical order
    assert tuple(sent["dense_0/kernel"].shape) == (64, 32)
    expected = canonical_layout(models.mlp(seed=0)).to_canonical(runs["native"][0].weights)
    for (n1, got), (n2, want) in zip(canonical.weights.items(), expected.items(), strict=True):
        assert n1 == n2
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert canonical.rounds[-1].test["accuracy"] == pytest.approx(runs["native"][0].rounds[-1].test["accuracy"])
