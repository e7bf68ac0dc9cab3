"""The simulation runner: failures dropped and reported, seeds, resuming, checkpoints, timeouts."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedmodel import SGD, CheckpointError, ModelWeights, get_weights
from fedmodel.algorithms import FederatedAlgorithm, fedadam, fedavg
from fedmodel.client import ClientResult
from fedmodel.data import ClientData, split_dirichlet
from fedmodel.reference import NUMPY_BACKEND, SoftmaxRegression
from fedmodel.server import ServerRound, client_seed, sample_clients
from fedmodel.simulation import SimulationConfig, run_simulation


def _clients(rng: np.random.Generator, count: int = 6, n: int = 10) -> list[ClientData]:
    return [
        ClientData(rng.random((n, 4), dtype=np.float32), rng.integers(0, 3, n).astype(np.int64)) for _ in range(count)
    ]


def _factory() -> SoftmaxRegression:
    return SoftmaxRegression(4, 3, seed=0)


def _config(**kwargs: Any) -> SimulationConfig:
    return SimulationConfig(progress=False, **kwargs)


def _sabotage(
    algo: FederatedAlgorithm, bad: dict[int, str], release: threading.Event | None = None
) -> FederatedAlgorithm:
    """The algorithm with clients marked by :func:`_mark` misbehaving as ``bad[id]`` says."""
    inner = algo.client_update

    def update(model: Any, backend: Any, weights: ModelWeights, data: ClientData, seed: int) -> ClientResult:
        kind = bad.get(int(-data.x[0, 0]) - 1) if data.x[0, 0] < 0 else None
        if kind == "raise":
            raise RuntimeError("disk full")
        if kind == "hang" and release is not None:
            release.wait(10)
        if kind == "write_server":
            weights.trainable[0][...] = 99.0
        result = inner(model, backend, weights, data, seed)
        if kind == "nan":
            arrays = [a.copy() for a in result.weights.arrays]
            arrays[0][0, 0] = np.nan
            return replace(result, weights=result.weights.with_arrays(arrays))
        if kind == "bad_metrics":  # loss is fine, accuracy cannot be summed with the others'
            metrics = {**result.metrics, "accuracy": (np.zeros(3), np.int64(1))}
            return replace(result, metrics=metrics)
        if kind == "shape":
            return replace(result, weights=ModelWeights((np.zeros(3, np.float32),)))
        return result

    return replace(algo, client_update=update)


def _mark(clients: list[ClientData], cid: int) -> None:
    """Mark client ``cid`` (its features are otherwise in [0, 1))."""
    clients[cid].x[0, 0] = -(cid + 1)


def test_a_raising_client_is_dropped_reported_and_the_others_are_aggregated(rng: np.random.Generator) -> None:
    clients = _clients(rng, 3)
    _mark(clients, 1)
    algo = fedavg(epochs=1, batch_size=4, client_lr=0.5)
    out = run_simulation(_factory, clients, _sabotage(algo, {1: "raise"}), _config(rounds=1, seed=3))
    (failure,) = out.rounds[0].failures
    assert failure.client_id == 1 and "RuntimeError: disk full" in failure.reason
    assert out.rounds[0].num_ok == 2
    # expected: the same client updates for clients 0 and 2, aggregated by hand
    model = _factory()
    start = algo.init(get_weights(model))
    server_round = ServerRound(algo, start)
    for c in (0, 2):
        server_round.add(c, algo.client_update(model, NUMPY_BACKEND, start.weights, clients[c], client_seed(3, 0, c)))
    want = server_round.finish().state
    for a, b in zip(out.weights.arrays, want.weights.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    assert out.rounds[0].train["num_examples"] == 20


@pytest.mark.parametrize(
    ("kind", "reason"), [("nan", "non-finite"), ("shape", "arrays"), ("write_server", "read-only")]
)
def test_an_invalid_update_is_rejected_with_its_reason(rng: np.random.Generator, kind: str, reason: str) -> None:
    clients = _clients(rng, 3)
    _mark(clients, 2)
    out = run_simulation(_factory, clients, _sabotage(fedavg(), {2: kind}), _config(rounds=2))
    for r in out.rounds:
        assert [f.client_id for f in r.failures] == [2]
        assert reason in r.failures[0].reason
    assert all(np.isfinite(a).all() for a in out.weights.arrays)


def test_when_every_client_fails_the_server_weights_do_not_move(rng: np.random.Generator) -> None:
    clients = _clients(rng, 2)
    _mark(clients, 0)
    _mark(clients, 1)
    bad = {0: "raise", 1: "raise"}
    out = run_simulation(_factory, clients, _sabotage(fedadam(), bad), _config(rounds=2))
    start = get_weights(_factory())
    for a, b in zip(out.weights.arrays, start.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    assert out.state.round == 2 and out.rounds[1].train == {}
    assert [len(r.failures) for r in out.rounds] == [2, 2]


def test_a_client_over_its_deadline_is_abandoned_and_a_fresh_model_is_made(rng: np.random.Generator) -> None:
    clients = _clients(rng, 3)
    _mark(clients, 0)
    made = []

    def factory() -> SoftmaxRegression:
        made.append(1)
        return _factory()

    release = threading.Event()
    try:
        out = run_simulation(
            factory, clients, _sabotage(fedavg(), {0: "hang"}, release), _config(rounds=1, client_timeout=0.3)
        )
    finally:
        release.set()
    (failure,) = out.rounds[0].failures
    assert failure.client_id == 0 and "client_timeout=0.3" in failure.reason
    assert out.rounds[0].num_ok == 2 and len(made) == 2


def test_clients_under_the_deadline_give_the_same_result_as_without_one(rng: np.random.Generator) -> None:
    clients = _clients(rng, 3)
    a = run_simulation(_factory, clients, fedavg(), _config(rounds=2))
    b = run_simulation(_factory, clients, fedavg(), _config(rounds=2, client_timeout=30))
    for x, y in zip(a.weights.arrays, b.weights.arrays, strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_same_seed_reproduces_the_run_and_another_seed_does_not(rng: np.random.Generator) -> None:
    clients = _clients(rng, 8)
    algo = fedavg(batch_size=3)
    runs = [run_simulation(_factory, clients, algo, _config(rounds=3, clients_per_round=3, seed=s)) for s in (1, 1, 2)]
    assert [r.clients for r in runs[0].rounds] == [r.clients for r in runs[1].rounds]
    assert [r.train for r in runs[0].rounds] == [r.train for r in runs[1].rounds]
    np.testing.assert_array_equal(runs[0].weights.trainable[0], runs[1].weights.trainable[0])
    assert not np.array_equal(runs[0].weights.trainable[0], runs[2].weights.trainable[0])


def test_sampling_depends_only_on_seed_and_round() -> None:
    assert sample_clients(10, 4, 0, 5) == sample_clients(10, 4, 0, 5)
    assert len(set(sample_clients(10, 4, 0, 5))) == 4
    assert sample_clients(10, None, 0, 5) == list(range(10))
    assert client_seed(0, 1, 2) != client_seed(0, 2, 1)


def test_resuming_from_a_round_r_state_continues_exactly(rng: np.random.Generator) -> None:
    clients = _clients(rng, 6)
    algo = fedadam(server_lr=0.05, batch_size=4)
    whole = run_simulation(_factory, clients, algo, _config(rounds=4, clients_per_round=3, seed=9))
    half = run_simulation(_factory, clients, algo, _config(rounds=2, clients_per_round=3, seed=9))
    rest = run_simulation(
        _factory, clients, algo, _config(rounds=4, clients_per_round=3, seed=9), initial_state=half.state
    )
    assert [r.round for r in rest.rounds] == [3, 4]
    assert [r.clients for r in rest.rounds] == [r.clients for r in whole.rounds[2:]]
    np.testing.assert_array_equal(rest.weights.trainable[0], whole.weights.trainable[0])


def test_a_checkpointed_run_resumes_from_disk_exactly(rng: np.random.Generator, tmp_path: Path) -> None:
    clients = _clients(rng, 6)
    algo = fedadam(server_lr=0.05, batch_size=4)
    path = tmp_path / "server.safetensors"
    whole = run_simulation(_factory, clients, algo, _config(rounds=4, clients_per_round=3))
    run_simulation(_factory, clients, algo, _config(rounds=2, clients_per_round=3, checkpoint_path=path))
    rest = run_simulation(
        _factory, clients, algo, _config(rounds=4, clients_per_round=3, checkpoint_path=path, resume=True)
    )
    assert [r.round for r in rest.rounds] == [3, 4]
    for a, b in zip(rest.weights.arrays, whole.weights.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(rest.state.optimizer_state.v, whole.state.optimizer_state.v, strict=True):
        np.testing.assert_array_equal(a, b)


def test_one_model_instance_serves_every_client(rng: np.random.Generator) -> None:
    made = []

    def factory() -> SoftmaxRegression:
        made.append(1)
        return _factory()

    run_simulation(factory, _clients(rng, 5), fedavg(optimizer=SGD(0.1, momentum=0.9)), _config(rounds=2))
    assert len(made) == 1


def test_per_round_metrics_aggregate_train_and_test(rng: np.random.Generator) -> None:
    clients = _clients(rng, 4, n=9)
    data = ClientData(np.concatenate([c.x for c in clients]), np.concatenate([c.y for c in clients]))
    seen = []
    out = run_simulation(
        _factory,
        split_dirichlet(data, 4, alpha=1.0),
        fedavg(epochs=2),
        _config(rounds=2),
        test_data=clients[0],
        on_round=seen.append,
    )
    assert seen == out.rounds
    assert out.rounds[0].train["num_examples"] == 2 * 36
    assert out.rounds[0].test["num_examples"] == 9
    assert 0.0 <= out.rounds[0].test["accuracy"] <= 1.0


def test_an_invalid_metric_report_drops_the_client_from_the_metrics_but_not_from_the_weights(
    rng: np.random.Generator,
) -> None:
    clients = _clients(rng, 3)
    _mark(clients, 2)
    bad = run_simulation(_factory, clients, _sabotage(fedavg(), {2: "bad_metrics"}), _config(rounds=1))
    clean = run_simulation(_factory, clients, fedavg(), _config(rounds=1))
    assert bad.rounds[0].failures == ()
    (failure,) = bad.rounds[0].metrics_failures
    assert failure.client_id == 2 and "report 'accuracy/0': expected shape ()" in failure.reason
    assert bad.rounds[0].train["num_examples"] == 20  # clients 0 and 1 only
    assert clean.rounds[0].train["num_examples"] == 30
    for a, b in zip(bad.weights.arrays, clean.weights.arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_resuming_with_another_algorithm_is_refused(rng: np.random.Generator, tmp_path: Path) -> None:
    clients = _clients(rng, 3)
    path = tmp_path / "run.safetensors"
    run_simulation(_factory, clients, fedadam(), _config(rounds=1, checkpoint_path=path))
    with pytest.raises(CheckpointError, match="saved by 'fedadam', resumed with 'fedavg'"):
        run_simulation(_factory, clients, fedavg(), _config(rounds=2, checkpoint_path=path, resume=True))


def test_the_progress_bar_counts_rounds_on_stderr(rng: np.random.Generator, capsys: pytest.CaptureFixture[str]) -> None:
    run_simulation(_factory, _clients(rng, 2), fedavg(), SimulationConfig(rounds=2, progress=True))
    err = capsys.readouterr().err
    assert "fedavg" in err and "2/2" in err
    run_simulation(_factory, _clients(rng, 2), fedavg(), SimulationConfig(rounds=2, progress=False))
    assert capsys.readouterr().err == ""
