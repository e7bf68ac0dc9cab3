"""A reduced FedProx reproduction (synthetic(1,1), 90 % stragglers): FedProx mu=1 converges, FedAvg does not.

The full run is ``scripts/fedprox_synthetic.py`` (the paper's 200 rounds, E = 20); this one keeps the
paper's data, model, sampling, batch size and learning rate and cuts the rounds to 10 and E to 5.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fedprox_synthetic.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fedprox_synthetic", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_with_90_percent_stragglers_fedprox_converges_where_fedavg_oscillates_and_stalls(script: ModuleType) -> None:
    settings = script.Settings(rounds=10, epochs=5, stragglers=(0.9,), seed=0)
    fedavg = script.run("FedAvg", settings, 0.9)
    fedprox = script.run("FedProx (mu=1)", settings, 0.9)
    avg = np.array([r["train_loss"] for r in fedavg])
    prox = np.array([r["train_loss"] for r in fedprox])
    assert avg[0] == prox[0]  # the same initial model
    assert prox[-1] < prox[0] - 0.5 and prox[-1] < avg[-1] - 0.3
    assert np.clip(np.diff(prox), 0, None).sum() < 0.1  # steady descent
    assert np.clip(np.diff(avg), 0, None).sum() > 0.3  # FedAvg's loss goes up again and again
    assert any(r["clients_ok"] == 0 for r in fedavg[1:])  # rounds where every sampled client straggled
    assert all(r["clients_ok"] == 10 for r in fedprox[1:])  # FedProx keeps every client's partial work


def test_the_script_writes_one_csv_row_per_run_and_round_and_the_plot(script: ModuleType, tmp_path: Path) -> None:
    assert (
        script.main(
            [
                "--rounds",
                "2",
                "--epochs",
                "2",
                "--clients-per-round",
                "3",
                "--stragglers",
                "0",
                "0.5",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    with open(tmp_path / "fedprox_synthetic_1_1.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 * 3  # 2 straggler levels x 3 methods x (round 0 + 2 rounds)
    runs = {(r["stragglers"], r["method"]) for r in rows}
    assert runs == {(s, m) for s in ("0.0", "0.5") for m in script.METHODS}
    no_stragglers = {
        m: [r["train_loss"] for r in rows if r["stragglers"] == "0.0" and r["method"] == m] for m in script.METHODS
    }
    assert no_stragglers["FedAvg"] == no_stragglers["FedProx (mu=0)"]  # identical without stragglers
    assert (tmp_path / "fedprox_synthetic_1_1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
