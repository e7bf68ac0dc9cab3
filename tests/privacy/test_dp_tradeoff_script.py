"""scripts/dp_tradeoff.py, reduced (two noise multipliers, one seed, three rounds, 200 clients): it writes the
CSV and the plot the README shows, with the epsilons of the accountant for the sampling it runs."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import matplotlib.image

from fedmodel.privacy import PoissonSampling, epsilon

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dp_tradeoff.py"


def test_the_tradeoff_script_writes_accuracy_and_epsilon_per_noise_multiplier(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("dp_tradeoff", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--quick", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "dp_tradeoff.csv", newline="") as f:
        rows = {r["noise_multiplier"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["0.0", "0.5", "1.0", "none"]
    for z in (0.5, 1.0):
        assert float(rows[str(z)]["epsilon"]) == epsilon(z, 3, 1e-3, PoissonSampling(0.15))
    assert math.isinf(float(rows["0.0"]["epsilon"])) and rows["none"]["epsilon"] == ""
    assert all(0 < float(r["test_accuracy"]) <= 1 for r in rows.values())
    assert matplotlib.image.imread(tmp_path / "dp_tradeoff.png").shape[:2] == (420, 650)
