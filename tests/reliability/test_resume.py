"""Resuming a simulation checks the checkpoint's round and the run's configuration before the first round."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedmodel import CheckpointError, get_weights
from fedmodel._resume import load_state as _load
from fedmodel._resume import save_state as _save
from fedmodel.algorithms import fedavg, fedavgm
from fedmodel.checkpoint import load_checkpoint, save_checkpoint
from fedmodel.data import ClientData
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, run_simulation


def _clients(count: int = 4) -> list[ClientData]:
    rng = np.random.default_rng(0)
    return [ClientData(rng.random((8, 4), dtype=np.float32), rng.integers(0, 3, 8)) for _ in range(count)]


def _factory() -> SoftmaxRegression:
    return SoftmaxRegression(4, 3, seed=0)


def _config(path: Path, **kwargs: Any) -> SimulationConfig:
    return SimulationConfig(**{"rounds": 2, "progress": False, "checkpoint_path": path, "resume": True, **kwargs})


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A checkpoint after round 2 of fedavgm (whose server state is a momentum array per variable)."""
    path = tmp_path / "run.safetensors"
    run_simulation(_factory, _clients(), fedavgm(batch_size=4), _config(path, resume=False, run_options={"lr": 0.1}))
    return path


def _resave(path: Path, **metadata: Any) -> None:
    ckpt = load_checkpoint(path)
    save_checkpoint(path, ckpt.weights, extra=ckpt.extra, metadata={**ckpt.metadata, **metadata})


def test_a_matching_configuration_resumes_where_the_checkpoint_ends(saved: Path) -> None:
    rest = run_simulation(
        _factory, _clients(), fedavgm(batch_size=4), _config(saved, rounds=3, run_options={"lr": 0.1})
    )
    assert [r.round for r in rest.rounds] == [3]


def test_a_finished_run_resumed_to_its_own_round_runs_nothing(saved: Path) -> None:
    rest = run_simulation(_factory, _clients(), fedavgm(batch_size=4), _config(saved, run_options={"lr": 0.1}))
    assert rest.rounds == [] and rest.state.round == 2
    saved_arrays = load_checkpoint(saved).weights.arrays
    assert all(a.tobytes() == b.tobytes() for a, b in zip(rest.weights.arrays, saved_arrays, strict=True))


@pytest.mark.parametrize("value", ["x", -5, 1.5, 1e30, 2.0], ids=repr)
def test_a_round_that_is_not_a_count_of_rounds_is_a_checkpoint_error(saved: Path, value: Any) -> None:
    _resave(saved, round=value)
    with pytest.raises(CheckpointError, match=re.escape(f"'round' must be an integer >= 0, got {value!r}")):
        run_simulation(_factory, _clients(), fedavgm(batch_size=4), _config(saved, rounds=9, run_options={"lr": 0.1}))


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_round_of_nan_or_infinity_is_a_checkpoint_error(
    saved: Path, edit_checkpoint: Callable[[Path, bytes, bytes], None], value: bytes
) -> None:
    edit_checkpoint(saved, b'\\"round\\":2', b'\\"round\\":' + value)
    with pytest.raises(CheckpointError, match="is not a number a checkpoint holds"):
        run_simulation(_factory, _clients(), fedavgm(batch_size=4), _config(saved, rounds=9, run_options={"lr": 0.1}))


@pytest.mark.parametrize("rounds", [0, 1])
def test_fewer_rounds_than_the_checkpoint_holds_is_a_checkpoint_error(saved: Path, rounds: int) -> None:
    with pytest.raises(CheckpointError, match=rf"at round 2, beyond rounds={rounds}"):
        run_simulation(
            _factory, _clients(), fedavgm(batch_size=4), _config(saved, rounds=rounds, run_options={"lr": 0.1})
        )


def test_a_round_far_beyond_the_run_is_a_checkpoint_error(saved: Path) -> None:
    _resave(saved, round=10**18)
    with pytest.raises(CheckpointError, match="beyond rounds=9"):
        run_simulation(_factory, _clients(), fedavgm(batch_size=4), _config(saved, rounds=9, run_options={"lr": 0.1}))


def test_a_checkpoint_without_a_round_is_not_a_simulation_checkpoint(saved: Path) -> None:
    ckpt = load_checkpoint(saved)
    save_checkpoint(saved, ckpt.weights, extra=ckpt.extra, metadata={})
    with pytest.raises(CheckpointError, match="'round' must be an integer >= 0, got None"):
        run_simulation(_factory, _clients(), fedavgm(batch_size=4), _config(saved, run_options={"lr": 0.1}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 1}, r"seed 1 \(the checkpoint's: 0\)"),
        ({"clients_per_round": 2}, r"clients_per_round 2 \(the checkpoint's: 'all'\)"),
        ({"run_options": {"lr": 0.2}}, r"lr 0.2 \(the checkpoint's: 0.1\)"),
        ({"run_options": {"lr": 0.1, "alpha": 0.5}}, r"alpha 0.5 \(not in the checkpoint\)"),
        ({"run_options": None}, r"lr missing \(the checkpoint's: 0.1\)"),
    ],
    ids=["seed", "clients_per_round", "option", "new-option", "option-gone"],
)
def test_another_configuration_is_refused_naming_what_differs(
    saved: Path, change: dict[str, Any], message: str
) -> None:
    before = saved.read_bytes()
    config = _config(saved, rounds=3, **{"run_options": {"lr": 0.1}, **change})
    with pytest.raises(CheckpointError, match=message):
        run_simulation(_factory, _clients(), fedavgm(batch_size=4), config)
    assert saved.read_bytes() == before


def test_every_difference_is_named_at_once(saved: Path) -> None:
    config = _config(saved, rounds=3, seed=4, run_options={"lr": 0.3})
    with pytest.raises(CheckpointError) as caught:
        run_simulation(_factory, _clients(), fedavg(batch_size=4), config)
    assert all(part in str(caught.value) for part in ("saved by 'fedavgm', resumed with 'fedavg'", "seed 4", "lr 0.3"))


def test_another_number_of_clients_is_refused(tmp_path: Path) -> None:
    algorithm = fedavg()
    config = _config(tmp_path / "c.safetensors")
    fresh = algorithm.init(get_weights(_factory()))
    _save(config, algorithm, fresh._replace(round=1), num_clients=4)
    assert _load(config, algorithm, fresh, num_clients=4).round == 1
    with pytest.raises(CheckpointError, match=r"clients 5 \(the checkpoint's: 4\)"):
        _load(config, algorithm, fresh, num_clients=5)


def test_a_momentum_array_edited_to_int64_is_refused_not_resumed_with_huge_weights(
    saved: Path, edit_checkpoint: Callable[[Path, bytes, bytes], None]
) -> None:
    header = saved.read_bytes()[:4096]
    start = header.index(b'"extra/momentum/0":{"dtype":"F64"')
    old = header[start : start + len(b'"extra/momentum/0":{"dtype":"F64"')]
    edit_checkpoint(saved, old, old.replace(b"F64", b"I64"))
    with pytest.raises(CheckpointError, match=r"extra 'momentum/0' has dtype int64, expected float64"):
        run_simulation(_factory, _clients(), fedavgm(batch_size=4), _config(saved, rounds=3, run_options={"lr": 0.1}))


def test_resume_without_a_checkpoint_starts_from_round_zero(tmp_path: Path) -> None:
    out = run_simulation(_factory, _clients(), fedavg(), _config(tmp_path / "none.safetensors", rounds=1))
    assert [r.round for r in out.rounds] == [1]
    assert (tmp_path / "none.safetensors").exists()
