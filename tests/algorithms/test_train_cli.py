"""`fedmodel train` on the numpy backend: the table, metrics.csv, curves.png and the final weights."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedmodel import cli, get_weights, train_cli
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


def test_an_unknown_backend_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--backend", "mxnet"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_weights_fall_back_to_npz_without_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fedmodel.checkpoint", None)  # makes the import fail
    weights = get_weights(SoftmaxRegression(4, 3, seed=1))
    path = train_cli.save_weights(weights, tmp_path / "w")
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["bias", "input_scale", "kernel"]
        np.testing.assert_array_equal(saved["kernel"], weights.trainable[0])


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
