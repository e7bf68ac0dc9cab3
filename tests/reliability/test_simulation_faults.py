"""The simulation runner under faults: bad clients are dropped and reported, checkpoints resume exactly."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedmodel import CheckpointError
from fedmodel.algorithms import FederatedAlgorithm, fedadam, fedavg
from fedmodel.client import ClientResult
from fedmodel.data import FederatedData, federated_digits
from fedmodel.reference import SoftmaxRegression
from fedmodel.robust import CoordinateMedian, NormClipping, TrimmedMean
from fedmodel.simulation import SimulationConfig, SimulationResult, run_simulation

NUM_CLIENTS = 8


@pytest.fixture(scope="module")
def digits() -> FederatedData:
    return federated_digits(num_clients=NUM_CLIENTS, alpha=None, seed=0)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of a test so that every 'hanging' client thread finishes."""
    event = threading.Event()
    yield event
    event.set()


def _model() -> SoftmaxRegression:
    return SoftmaxRegression(64, 10, seed=0)


def _with_faults(
    algorithm: FederatedAlgorithm, data: FederatedData, faults: dict[int, str], release: threading.Event
) -> FederatedAlgorithm:
    """The same algorithm whose client ``i`` misbehaves as ``faults[i]`` says."""
    index = {id(c): i for i, c in enumerate(data.clients)}
    inner = algorithm.client_update

    def update(model: Any, backend: Any, server_weights: Any, client_data: Any, seed: int) -> ClientResult:
        fault = faults.get(index[id(client_data)])
        if fault == "raise":
            raise RuntimeError("the client's process crashed")
        if fault == "hang":
            release.wait(30)
            raise RuntimeError("woke up after the test")
        result = inner(model, backend, server_weights, client_data, seed)
        w = result.weights
        if fault == "nan":
            return dataclasses.replace(result, weights=w.with_arrays([np.full_like(a, np.nan) for a in w.arrays]))
        if fault == "shape":
            return dataclasses.replace(result, weights=w.with_arrays([a.reshape(-1) for a in w.arrays]))
        if fault == "not-weights":
            return dataclasses.replace(result, weights="rm -rf /")  # type: ignore[arg-type]
        if fault == "zero-examples":
            return dataclasses.replace(result, num_examples=0)
        if fault == "scaled":
            scaled = [s + 100 * (a - s) for s, a in zip(server_weights.arrays, w.arrays, strict=True)]
            return dataclasses.replace(result, weights=w.with_arrays([a.astype(np.float32) for a in scaled]))
        return result

    return dataclasses.replace(algorithm, client_update=update)


def _run(algorithm: FederatedAlgorithm, data: FederatedData, **config: Any) -> SimulationResult:
    return run_simulation(
        _model, data.clients, algorithm, SimulationConfig(progress=False, **config), test_data=data.test
    )


def _bits(result: SimulationResult) -> list[bytes]:
    return [a.tobytes() for a in result.weights.arrays]


FAULTS = {1: "raise", 2: "hang", 3: "nan", 4: "shape", 5: "not-weights", 6: "zero-examples"}
REASONS = {
    "raise": "the client's process crashed",
    "hang": "client_timeout",
    "nan": "non-finite",
    "shape": "shape",
    "not-weights": "str",
    "zero-examples": "0 examples",
}


def test_faulty_clients_are_dropped_and_reported_and_never_reach_the_server(
    digits: FederatedData, release: threading.Event
) -> None:
    algorithm = fedavg(client_lr=0.5, batch_size=32)
    faulty = _run(_with_faults(algorithm, digits, FAULTS, release), digits, rounds=2, client_timeout=0.5)
    # the same run where every faulty client simply crashes: garbage must have had exactly that effect
    crashed = _run(_with_faults(algorithm, digits, dict.fromkeys(FAULTS, "raise"), release), digits, rounds=2)

    assert [r.round for r in faulty.rounds] == [1, 2]
    for round_result in faulty.rounds:
        assert {f.client_id for f in round_result.failures} == set(FAULTS)
        assert round_result.num_ok == NUM_CLIENTS - len(FAULTS)
        for failure in round_result.failures:
            assert REASONS[FAULTS[failure.client_id]] in failure.reason, failure
    assert _bits(faulty) == _bits(crashed)
    assert all(np.isfinite(a).all() for a in faulty.weights.arrays)
    assert faulty.rounds[-1].test["accuracy"] > 0.7


def test_a_round_where_every_client_fails_keeps_the_server_weights(
    digits: FederatedData, release: threading.Event
) -> None:
    algorithm = _with_faults(fedavg(client_lr=0.5), digits, dict.fromkeys(range(NUM_CLIENTS), "nan"), release)
    result = _run(algorithm, digits, rounds=1)
    start = [a.tobytes() for a in algorithm.init(_model_weights()).weights.arrays]
    assert len(result.rounds[0].failures) == NUM_CLIENTS
    assert _bits(result) == start


def _model_weights() -> Any:
    from fedmodel import get_weights

    return get_weights(_model())


def test_a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(
    digits: FederatedData, tmp_path: Path
) -> None:
    algorithm = fedadam(server_lr=0.05, client_lr=0.3, batch_size=32)  # server state: Adam's moments
    config = {"clients_per_round": 5, "seed": 7}
    whole = _run(algorithm, digits, rounds=4, checkpoint_path=tmp_path / "whole.safetensors", **config)
    path = tmp_path / "part.safetensors"
    _run(algorithm, digits, rounds=2, checkpoint_path=path, **config)
    resumed = _run(algorithm, digits, rounds=4, checkpoint_path=path, resume=True, **config)
    assert [r.round for r in resumed.rounds] == [3, 4]
    assert _bits(resumed) == _bits(whole)
    assert [a.tobytes() for a in resumed.state.optimizer_state.m] == [
        a.tobytes() for a in whole.state.optimizer_state.m
    ]


def test_a_crash_while_saving_keeps_the_last_good_checkpoint_to_resume_from(
    digits: FederatedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    algorithm = fedavg(client_lr=0.5)
    whole = _run(algorithm, digits, rounds=3, seed=3)
    path = tmp_path / "run.safetensors"
    real_replace, calls = os.replace, []

    def replace_failing_on_round_2(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_failing_on_round_2)
    with pytest.raises(CheckpointError, match="No space left"):
        _run(algorithm, digits, rounds=3, seed=3, checkpoint_path=path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["run.safetensors"]
    resumed = _run(algorithm, digits, rounds=3, seed=3, checkpoint_path=path, resume=True)
    assert [r.round for r in resumed.rounds] == [2, 3]
    assert _bits(resumed) == _bits(whole)


@pytest.mark.parametrize(
    "aggregator",
    [CoordinateMedian(), TrimmedMean(beta=0.25), NormClipping(max_norm=1.0)],
    ids=lambda a: type(a).__name__,
)
def test_scaled_attackers_derail_fedavg_in_a_run_but_not_a_robust_aggregator(
    digits: FederatedData, release: threading.Event, aggregator: Any
) -> None:
    attackers = {0: "scaled", 5: "scaled"}
    algorithm = fedavg(client_lr=0.5, batch_size=32)
    honest = _run(algorithm, digits, rounds=3).rounds[-1].test["accuracy"]
    attacked = _run(_with_faults(algorithm, digits, attackers, release), digits, rounds=3).rounds[-1].test["accuracy"]
    robust_algorithm = _with_faults(dataclasses.replace(algorithm, aggregator=aggregator), digits, attackers, release)
    robust = _run(robust_algorithm, digits, rounds=3).rounds[-1].test["accuracy"]
    assert honest > 0.8
    assert attacked < honest - 0.1
    assert robust > honest - 0.05
