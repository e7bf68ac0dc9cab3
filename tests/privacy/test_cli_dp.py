"""``fedmodel train --dp-...``: epsilon in metrics.csv and curves.png, the budget, the calibration, and resuming."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.image
import pytest

from fedmodel import train_cli
from fedmodel.privacy import FixedSizeSampling, PoissonSampling, epsilon, noise_multiplier_for

RUN = ["--clients", "6", "--local-epochs", "1", "--no-progress", "--lr", "0.5"]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_dp_run_writes_epsilon_per_round_and_draws_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*RUN, "--rounds", "3", "--sampling-rate", "0.5", "--dp-clip", "1", "--dp-noise-multiplier", "1.5"]
    assert train_cli.main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "DP-FedAvg: noise multiplier 1.5, clip norm 1, seeded noise (no protection), Poisson sampling q=0.5" in out
    assert "epsilon at delta 0.1" in out  # the largest power of ten below 1/6
    got = [float(r["epsilon"]) for r in _rows(tmp_path)]
    assert got == [epsilon(1.5, r, 0.1, PoissonSampling(0.5)) for r in (1, 2, 3)]
    assert matplotlib.image.imread(tmp_path / "curves.png").shape[1] == 1500  # loss, accuracy and epsilon panels


def test_without_dp_the_epsilon_column_is_empty_and_curves_has_two_panels(tmp_path: Path) -> None:
    assert train_cli.main([*RUN, "--rounds", "1", "--out", str(tmp_path)]) == 0
    assert [r["epsilon"] for r in _rows(tmp_path)] == [""]
    assert matplotlib.image.imread(tmp_path / "curves.png").shape[1] == 1000


def test_a_target_epsilon_with_a_noise_multiplier_stops_the_run_before_it_is_exceeded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*RUN, "--rounds", "30", "--dp-clip", "1", "--dp-noise-multiplier", "2", "--dp-target-epsilon", "2"]
    assert train_cli.main([*argv, "--out", str(tmp_path)]) == 0
    sampling = FixedSizeSampling(6, 6)
    fits = max(r for r in range(1, 31) if epsilon(2.0, r, 0.1, sampling) <= 2.0)
    assert len(_rows(tmp_path)) == fits < 30
    assert (
        f"stopped after round {fits}: privacy budget: round {fits + 1} would spend epsilon" in capsys.readouterr().out
    )


def test_a_target_epsilon_alone_calibrates_the_noise_for_all_rounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*RUN, "--rounds", "4", "--dp-clip", "1", "--dp-target-epsilon", "3", "--dp-delta", "0.05"]
    assert train_cli.main([*argv, "--out", str(tmp_path)]) == 0
    z = noise_multiplier_for(3.0, 4, 0.05, FixedSizeSampling(6, 6))
    assert f"noise multiplier {z:.6g}" in capsys.readouterr().out
    spent = [float(r["epsilon"]) for r in _rows(tmp_path)]
    assert len(spent) == 4 and spent[-1] <= 3.0 and spent[-1] > 2.99


def test_resume_reads_a_metrics_csv_written_before_the_epsilon_column(tmp_path: Path) -> None:
    argv = [*RUN, "--out", str(tmp_path), "--checkpoint"]
    assert train_cli.main([*argv, "--rounds", "1"]) == 0
    metrics = tmp_path / "metrics.csv"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")  # drop the column
    assert train_cli.main([*argv, "--rounds", "2", "--resume"]) == 0
    assert [(r["round"], r["epsilon"]) for r in _rows(tmp_path)] == [("1", ""), ("2", "")]
