"""`fedmodel train` on the numpy backend: the table, metrics.csv, curves.png, the final weights and resuming."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedmodel import _executors, cli, get_weights, train_cli
from fedmodel.checkpoint import load_checkpoint
from fedmodel.reference import SoftmaxRegression


def test_numpy_run_writes_csv_png_and_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--backend", "numpy", "--rounds", "3", "--clients", "5", "--out", str(tmp_path), "--no-progress"]
    assert train_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "train loss" in printed and "test acc" in printed
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["round"] for r in rows] == ["1", "2", "3"]
    assert {r["run"] for r in rows} == {"numpy/fedavg"}
    assert all(r["clients_ok"] == "5" and r["clients_failed"] == "0" for r in rows)
    assert float(rows[-1]["test_loss"]) < float(rows[0]["test_loss"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpt = load_checkpoint(tmp_path / "weights-numpy-fedavg.safetensors", like=get_weights(SoftmaxRegression(64, 10)))
    assert ckpt.weights.trainable[0].shape == (64, 10)
    assert np.isfinite(ckpt.weights.trainable[0]).all()


@pytest.mark.parametrize("algorithm", train_cli.ALGORITHMS)
def test_every_algorithm_runs_through_the_dispatcher(tmp_path: Path, algorithm: str) -> None:
    argv = ["train", "--algorithm", algorithm, "--rounds", "1", "--clients", "4", "--alpha", "0"]
    assert cli.main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    with open(tmp_path / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["run"] == f"numpy/{algorithm}" and 0 <= float(row["test_accuracy"]) <= 1


def test_the_numpy_backend_imports_no_ml_framework(tmp_path: Path) -> None:
    code = (
        "import json, sys\nfrom fedmodel import train_cli\n"
        f"train_cli.main(['--rounds', '1', '--clients', '3', '--out', {str(tmp_path)!r}, '--no-progress'])\n"
        "print(json.dumps([m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_importing_the_algorithm_modules_loads_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "import fedmodel.algorithms, fedmodel.client, fedmodel.data, fedmodel.evaluation, fedmodel.plotting\n"
        "import fedmodel.server_optimizers, fedmodel.simulation, fedmodel.train_cli\n"
        "heavy = ('torch', 'tensorflow', 'jax', 'keras', 'sklearn', 'matplotlib', 'tqdm', 'safetensors')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_a_resumed_cli_run_continues_the_csv_and_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    common = ["--clients", "4", "--clients-per-round", "2", "--algorithm", "fedadam", "--no-progress"]
    assert train_cli.main([*common, "--rounds", "3", "--out", str(tmp_path / "whole")]) == 0
    assert train_cli.main([*common, "--rounds", "2", "--checkpoint", "--out", str(tmp_path / "part")]) == 0
    assert train_cli.main([*common, "--rounds", "3", "--resume", "--out", str(tmp_path / "part")]) == 0
    with open(tmp_path / "part" / "metrics.csv") as f:
        assert [r["round"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    like = get_weights(SoftmaxRegression(64, 10))
    whole = load_checkpoint(tmp_path / "whole" / "weights-numpy-fedadam.safetensors", like=like).weights
    part = load_checkpoint(tmp_path / "part" / "weights-numpy-fedadam.safetensors", like=like).weights
    for a, b in zip(whole.arrays, part.arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_workers_give_the_in_process_runs_metrics_and_weights_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[Any, ...]] = []
    open_pool = _executors.open_pool
    monkeypatch.setattr(_executors, "open_pool", lambda *a, **k: opened.append(a[:2]) or open_pool(*a, **k))
    common = ["--clients", "6", "--rounds", "2", "--local-epochs", "1", "--no-progress"]
    assert train_cli.main([*common, "--out", str(tmp_path / "serial")]) == 0
    assert opened == []
    assert train_cli.main([*common, "--workers", "2", "--out", str(tmp_path / "workers")]) == 0
    assert opened == [(2, "processes")]  # the run really went through two worker processes
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in _rows(tmp_path / "serial")]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in _rows(tmp_path / "workers")] == strip
    like = get_weights(SoftmaxRegression(64, 10))
    serial = load_checkpoint(tmp_path / "serial" / "weights-numpy-fedavg.safetensors", like=like).weights
    workers = load_checkpoint(tmp_path / "workers" / "weights-numpy-fedavg.safetensors", like=like).weights
    assert [a.tobytes() for a in workers.arrays] == [a.tobytes() for a in serial.arrays]


def test_executor_ray_without_ray_installed_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = train_cli.importlib.util.find_spec
    monkeypatch.setattr(train_cli.importlib.util, "find_spec", lambda name: None if name == "ray" else find_spec(name))
    out = tmp_path / "out"
    assert train_cli.main(["--workers", "2", "--executor", "ray", "--out", str(out), "--no-progress"]) == 2
    assert "--executor ray needs Ray: pip install 'fedmodel[ray]'" in capsys.readouterr().err
    assert not out.exists()


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


TINY = ["--clients", "4", "--local-epochs", "1", "--no-progress"]


def test_resume_with_fewer_rounds_than_the_checkpoint_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_cli.main([*TINY, "--rounds", "4", "--checkpoint", "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    assert train_cli.main([*TINY, "--rounds", "2", "--resume", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at round 4, beyond rounds=2" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # metrics.csv still says rounds 1-4


def test_resume_with_other_options_is_refused_naming_each_of_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_cli.main([*TINY, "--rounds", "1", "--checkpoint", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "metrics.csv").read_bytes()
    capsys.readouterr()
    argv = ["--clients", "5", "--lr", "0.1", "--alpha", "0.3", "--seed", "2", "--local-epochs", "1"]
    assert train_cli.main([*argv, "--no-progress", "--rounds", "3", "--resume", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for part in (
        "seed 2 (the checkpoint's: 0)",
        "--clients 5 (the checkpoint's: 4)",
        "--lr 0.1 (the checkpoint's: 0.2)",
    ):
        assert part in err
    assert "--alpha 0.3 (the checkpoint's: 0.5)" in err
    assert (tmp_path / "metrics.csv").read_bytes() == before


def test_an_option_the_algorithm_does_not_read_may_change_on_resume(tmp_path: Path) -> None:
    assert train_cli.main([*TINY, "--rounds", "1", "--checkpoint", "--out", str(tmp_path)]) == 0
    assert train_cli.main([*TINY, "--rounds", "2", "--resume", "--mu", "0.5", "--out", str(tmp_path)]) == 0  # fedavg
    assert [r["round"] for r in _rows(tmp_path)] == ["1", "2"]


def test_resume_without_a_checkpoint_says_it_starts_fresh_and_drops_that_runs_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_cli.main([*TINY, "--rounds", "2", "--out", str(tmp_path)]) == 0  # no --checkpoint
    capsys.readouterr()
    assert train_cli.main([*TINY, "--rounds", "1", "--resume", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "checkpoint-numpy-fedavg.safetensors"
    assert f"numpy/fedavg: no checkpoint at {path}; --resume starts this run from round 0" in out
    assert [r["round"] for r in _rows(tmp_path)] == ["1"]


def test_resume_keeps_the_rows_of_other_runs_and_drops_a_row_cut_short(tmp_path: Path) -> None:
    assert train_cli.main([*TINY, "--rounds", "2", "--checkpoint", "--out", str(tmp_path)]) == 0
    metrics = tmp_path / "metrics.csv"
    other = "torch/fedavg,1,2.0,0.5,2.0,0.5,4,0,0.1\n"
    metrics.write_text(metrics.read_text() + other + "numpy/fedavg,3,1.2,0.9,1.1,0.8")  # a kill mid-row
    assert train_cli.main([*TINY, "--rounds", "3", "--resume", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    assert [(r["run"], r["round"]) for r in rows] == [
        ("numpy/fedavg", "1"),
        ("numpy/fedavg", "2"),
        ("torch/fedavg", "1"),
        ("numpy/fedavg", "3"),
    ]
    assert rows[-1]["test_loss"] != "1.1"  # round 3 is the resumed run's, not the cut row


def test_a_failure_in_a_late_round_keeps_every_finished_round_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*TINY, "--algorithm", "fedadam", "--clients-per-round", "2", "--rounds", "4"]
    assert train_cli.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    real_replace, saves = os.replace, []

    def disk_full_at_round_3(src: Any, dst: Any) -> None:
        if str(dst).endswith("checkpoint-numpy-fedadam.safetensors"):
            saves.append(dst)
            if len(saves) == 3:
                raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full_at_round_3)
    capsys.readouterr()
    assert train_cli.main([*argv, "--checkpoint", "--out", str(tmp_path / "part")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    monkeypatch.undo()
    # round 3 finished (its row is written before its checkpoint); resuming from round 2 replaces the row
    assert [r["round"] for r in _rows(tmp_path / "part")] == ["1", "2", "3"]
    assert train_cli.main([*argv, "--resume", "--out", str(tmp_path / "part")]) == 0
    whole, part = _rows(tmp_path / "whole"), _rows(tmp_path / "part")
    assert [r["round"] for r in part] == ["1", "2", "3", "4"]
    assert [r["test_loss"] for r in part] == [r["test_loss"] for r in whole]
    like = get_weights(SoftmaxRegression(64, 10))
    a = load_checkpoint(tmp_path / "whole" / "weights-numpy-fedadam.safetensors", like=like).weights
    b = load_checkpoint(tmp_path / "part" / "weights-numpy-fedadam.safetensors", like=like).weights
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.arrays, b.arrays, strict=True))


def test_ctrl_c_exits_130_and_says_how_to_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import fedmodel.simulation

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fedmodel.simulation, "run_simulation", interrupted)
    assert train_cli.main([*TINY, "--rounds", "2", "--checkpoint", "--out", str(tmp_path)]) == 130
    assert "interrupted; metrics.csv has every finished round (rerun the same command with --resume" in (
        capsys.readouterr().err
    )


def test_a_run_in_which_every_client_is_dropped_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cli.main([*TINY, "--rounds", "1", "--lr", "1e300", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "dropped" in captured.out
    assert captured.err == "fedmodel train: error: no client update was accepted in numpy/fedavg (see why above)\n"


HYPERPARAMETERS = {
    "local_epochs": 3,
    "batch_size": 5,
    "lr": 0.05,
    "server_lr": 0.5,
    "mu": 0.7,
    "server_momentum": 0.3,
    "tau": 0.2,
}


@pytest.mark.parametrize("algorithm", train_cli.ALGORITHMS)
def test_resume_compares_exactly_the_options_the_algorithm_reads(algorithm: str) -> None:
    """An option in _OPTIONS changes the algorithm's round; one outside it does not (so resume may ignore it)."""
    from fedmodel import backend_for
    from fedmodel.data import ClientData
    from fedmodel.server import ServerRound

    base = train_cli._parser().parse_args(["--algorithm", algorithm])
    rng = np.random.default_rng(0)
    data = ClientData(rng.random((12, 64), dtype=np.float32), rng.integers(0, 10, 12))

    def one_round(args: Any) -> bytes:
        model = SoftmaxRegression(64, 10, seed=0)
        algo = train_cli.build_algorithm(args)
        state = algo.init(get_weights(model))
        for _ in range(2):  # a second round: server momentum and adaptivity show only then
            server_round = ServerRound(algo, state)
            server_round.add(0, algo.client_update(model, backend_for(model), state.weights, data, 0))
            state = server_round.finish().state
        return b"".join(a.tobytes() for a in state.weights.arrays)

    reference = one_round(base)
    for name, value in HYPERPARAMETERS.items():
        changed = one_round(argparse.Namespace(**{**vars(base), name: value}))
        assert (changed != reference) == (name in train_cli._OPTIONS[algorithm]), name
