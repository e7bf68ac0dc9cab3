"""A backend written outside fedmodel, installed through the ``fedmodel.backends`` entry point, is first-class.

``tests/third_party/tiny_fedbackend`` is installed the way pip lays a package out: the package next to a
``tiny_fedbackend-0.1.dist-info`` whose ``entry_points.txt`` registers it as ``tiny``. Then, in fresh
processes run from that directory (no conftest of this repository), ``fedmodel train --backend tiny``
trains it, and the suite passes on it through the CLI and through ``pytest --pyargs fedmodel_conformance``.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from fedmodel_conformance import all_checks

import fedmodel
from fedmodel import _backend

REPO = Path(__file__).resolve().parents[2]
FEDMODEL = Path(sys.executable).parent / "fedmodel"
N = len(all_checks())


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory laid out as pip installs ``tiny_fedbackend``: the package and its dist-info."""
    shutil.copytree(REPO / "tests" / "third_party" / "tiny_fedbackend", tmp_path / "tiny_fedbackend")
    info = tmp_path / "tiny_fedbackend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny_fedbackend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fedmodel.backends]\ntiny = tiny_fedbackend\n")
    return tmp_path


def _env(site: Path) -> dict[str, str]:
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def _fedmodel(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(FEDMODEL)] if FEDMODEL.exists() else [sys.executable, "-m", "fedmodel.cli"]
    return subprocess.run([*cmd, *args], cwd=site, capture_output=True, text=True, env=_env(site), timeout=600)


def test_fedmodel_train_finds_the_backend_by_its_entry_point_and_trains_it(site: Path) -> None:
    out = site / "run"
    common = ["--clients", "4", "--rounds", "3", "--alpha", "0", "--no-progress", "--out", str(out)]
    run = _fedmodel(site, "train", "--backend", "tiny", *common)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(out / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["run"] == "tiny/fedavg"]
    assert [r["round"] for r in rows] == ["1", "2", "3"]
    assert float(rows[-1]["test_accuracy"]) > float(rows[0]["test_accuracy"]) > 0.3  # it learns digits
    assert (out / "weights-tiny-fedavg.safetensors").exists()


def test_fedmodel_train_lists_it_among_the_backends(site: Path) -> None:
    run = _fedmodel(site, "train", "--help")
    assert "tiny" in run.stdout and "torch" in run.stdout


def test_the_suite_passes_through_the_cli(site: Path) -> None:
    run = _fedmodel(site, "conformance", "tiny_fedbackend.cases:make_case")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"OK: {N} pass" in run.stdout


def test_the_suite_passes_through_the_pytest_plugin_without_this_repositorys_conftest(site: Path) -> None:
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "fedmodel_conformance", "-q", "-p", "no:cacheprovider"]
    cmd += ["--fedmodel-factory", "tiny_fedbackend.cases:make_case"]
    run = subprocess.run(cmd, cwd=site, capture_output=True, text=True, env=_env(site), timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{N} passed" in run.stdout
    assert "conftest" not in run.stdout


def test_a_model_names_its_backend_and_backend_for_loads_it_through_the_entry_point(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    import tiny_fedbackend

    model = tiny_fedbackend.models.mlp(16, 8, 5, seed=0)
    assert fedmodel.backend_for(model) is tiny_fedbackend.BACKEND
    assert _backend.load_backend("tiny") is tiny_fedbackend.BACKEND
    assert {"tiny", "torch", "tensorflow", "jax"} <= set(_backend.backend_names())
    weights = fedmodel.get_weights(model)
    assert weights.names == ("w1", "b1", "w2", "b2")
    fedmodel.assign_weights(model, weights.with_arrays([a + 1 for a in weights.arrays]))
    np.testing.assert_array_equal(fedmodel.get_weights(model).arrays[1], np.ones(8, np.float32))


def test_an_unknown_backend_name_is_a_backend_error_listing_the_installed_ones() -> None:
    with pytest.raises(fedmodel.BackendError, match=r"no fedmodel backend named 'nope'; installed: \[.*'torch'"):
        _backend.load_backend("nope")


def test_the_projects_own_backends_register_through_the_same_group() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    group = project["entry-points"][_backend.ENTRY_POINT_GROUP]
    assert group == {"torch": "fedmodel_torch", "tensorflow": "fedmodel_tensorflow", "jax": "fedmodel_jax"}
    assert group == _backend._OWN  # the names a source checkout knows without installing
