"""``SimulationConfig`` is checked before anything runs: a bad field is a ``ValueError`` or ``TypeError`` naming it.

Found by probing from outside: ``rounds=1.5`` ran two rounds, ``rounds=-1`` none, ``limits=None`` dropped every
client of every round, ``client_timeout=inf`` dropped every client in process and none on workers, a timeout of
25 days crashed the worker pool's ``select``, ``eval_batch_size=0`` failed only after a round had trained, and a
numpy seed with a checkpoint failed only after the first round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedmodel import SpecError
from fedmodel.algorithms import fedavg
from fedmodel.data import ClientData, federated_digits
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import MAX_CLIENT_TIMEOUT, SimulationConfig, run_simulation

DATA = federated_digits(num_clients=3, alpha=None, seed=0)


def _run(**options: Any) -> Any:
    calls: list[int] = []

    def factory() -> SoftmaxRegression:
        calls.append(1)
        return SoftmaxRegression(64, 10, seed=0)

    try:
        return run_simulation(factory, DATA.clients, fedavg(client_lr=0.5), SimulationConfig(progress=False, **options))
    finally:
        _run.built = len(calls)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"rounds": 1.5}, TypeError, r"SimulationConfig.rounds must be an int >= 0, got 1.5"),
        ({"rounds": -1}, ValueError, r"SimulationConfig.rounds must be an int >= 0, got -1"),
        ({"rounds": True}, TypeError, r"SimulationConfig.rounds must be an int >= 0, got True"),
        ({"rounds": "2"}, TypeError, r"SimulationConfig.rounds must be an int >= 0, got '2'"),
        ({"clients_per_round": 2.5}, TypeError, r"SimulationConfig.clients_per_round must be an int >= 1 or None"),
        ({"clients_per_round": 0}, ValueError, r"SimulationConfig.clients_per_round must be an int >= 1 or None"),
        ({"seed": None}, TypeError, r"SimulationConfig.seed must be an int in \[0, 2\*\*63\), got None"),
        ({"seed": -1}, ValueError, r"SimulationConfig.seed must be an int in \[0, 2\*\*63\), got -1"),
        ({"seed": 2**64}, ValueError, r"SimulationConfig.seed must be an int in \[0, 2\*\*63\)"),
        ({"client_timeout": float("inf")}, ValueError, r"client_timeout must be None .* or a number in \(0, "),
        ({"client_timeout": float("nan")}, ValueError, r"client_timeout must be None"),
        ({"client_timeout": 0}, ValueError, r"client_timeout must be None"),
        ({"client_timeout": -1.0}, ValueError, r"client_timeout must be None"),
        ({"client_timeout": MAX_CLIENT_TIMEOUT * 2}, ValueError, r"client_timeout must be None"),
        ({"client_timeout": "5"}, TypeError, r"client_timeout must be None"),
        ({"eval_batch_size": 0}, ValueError, r"SimulationConfig.eval_batch_size must be an int >= 1, got 0"),
        ({"limits": None}, TypeError, r"SimulationConfig.limits must be a fedmodel.validation.ReplyLimits, got None"),
        ({"limits": {"max_examples": 10}}, TypeError, r"SimulationConfig.limits must be a .*ReplyLimits, got dict"),
        ({"resume": True}, ValueError, r"SimulationConfig.resume=True needs a checkpoint_path"),
    ],
)
def test_a_bad_field_is_refused_before_anything_is_built(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        _run(**options)
    assert _run.built == 0  # type: ignore[attr-defined]  # no model, no worker, no round


def test_numpy_numbers_are_taken_as_the_python_numbers_they_equal(tmp_path: Path) -> None:
    """A seed from ``np.arange`` and a rate from a float32 grid: the run and its checkpoint are the plain ones'."""
    plain = _run(rounds=2, seed=3, sampling_rate=0.5, checkpoint_path=tmp_path / "a.safetensors")
    numpy = _run(
        rounds=np.int64(2), seed=np.int64(3), sampling_rate=np.float32(0.5), checkpoint_path=tmp_path / "b.safetensors"
    )
    assert [a.tobytes() for a in numpy.weights.arrays] == [a.tobytes() for a in plain.weights.arrays]
    resumed = _run(
        rounds=3, seed=np.int64(3), sampling_rate=0.5, checkpoint_path=tmp_path / "b.safetensors", resume=True
    )
    assert resumed.rounds[0].round == 3


def test_a_timeout_at_the_cap_runs() -> None:
    result = _run(rounds=1, client_timeout=float(MAX_CLIENT_TIMEOUT))
    assert result.rounds[0].failures == ()


def test_test_data_that_does_not_fit_the_model_is_refused_before_a_round_trains() -> None:
    """Before, it failed after round 1 had trained, naming a batch at 'x' and not test_data."""
    narrow = ClientData(DATA.test.x[:, :32], DATA.test.y)
    with pytest.raises(SpecError, match=r"test_data does not fit the model: .*x"):
        run_simulation(_factory, DATA.clients, fedavg(), SimulationConfig(progress=False), test_data=narrow)
    with pytest.raises(TypeError, match=r"test_data must be a fedmodel.data.ClientData, got tuple"):
        run_simulation(
            _factory, DATA.clients, fedavg(), SimulationConfig(progress=False), test_data=(DATA.test.x, DATA.test.y)
        )  # type: ignore[arg-type]


def _factory() -> SoftmaxRegression:
    return SoftmaxRegression(64, 10, seed=0)


def test_an_initial_state_past_the_last_round_is_refused() -> None:
    """Before, it ran nothing and returned as if the run were done."""
    done = _run(rounds=2)
    with pytest.raises(ValueError, match=r"initial_state is at round 2, past SimulationConfig.rounds=1"):
        config = SimulationConfig(rounds=1, progress=False)
        run_simulation(_factory, DATA.clients, fedavg(), config, initial_state=done.state)
