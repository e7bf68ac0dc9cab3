"""The three thin ways in: the ``fedmodel conformance`` CLI, the pytest plugin, the base test class."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fedmodel_conformance import Case, ConformanceTests, all_checks
from fedmodel_conformance.broken import BROKEN, reference_case
from fedmodel_conformance.cli import main

REPO = Path(__file__).resolve().parents[2]
FEDMODEL = Path(sys.executable).parent / "fedmodel"
N = len(all_checks())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def _third_party_module(tmp_path: Path, broken: str | None = None, module: str = "my_models") -> str:
    """A factory module in a fresh directory, as a third party would write it; returns its name."""
    body = (
        f"from fedmodel_conformance.broken import BROKEN\nmake_case = BROKEN[{broken!r}]\n"
        if broken
        else "from fedmodel_conformance.broken import reference_case as make_case\n"
    )
    (tmp_path / f"{module}.py").write_text(body)
    return f"{module}:make_case"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(FEDMODEL)] if FEDMODEL.exists() else [sys.executable, "-m", "fedmodel.cli"]
    return subprocess.run([*cmd, "conformance", *args], cwd=tmp_path, capture_output=True, text=True, env=_env())


def test_cli_on_the_reference_case_exits_0_with_a_table(tmp_path: Path) -> None:
    run = _cli(tmp_path, "fedmodel_conformance.broken:reference_case")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"OK: {N} pass" in run.stdout
    assert "PASS   weights_round_trip" in run.stdout


def test_cli_on_a_broken_third_party_factory_exits_1_and_explains(tmp_path: Path) -> None:
    run = _cli(tmp_path, _third_party_module(tmp_path, "predict_changes_nothing"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL   predict_changes_nothing" in run.stdout
    assert "clause: predict_on_batch(training=False) changes no variable at all" in run.stdout
    assert "local 'count' during predict_on_batch(x, training=False)" in run.stdout


def test_cli_expected_failure_turns_the_failure_into_xfail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    module = _third_party_module(tmp_path, "report_is_pure", module="third_party_xfail_models")
    assert main([module, "-q"]) == 1
    assert main([module, "--expected-failure", "report_is_pure=clears on read", "-q"]) == 0


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no_such_module_xyz:make_case"]) == 2
    assert main(["fedmodel_conformance.broken:reference_case", "--check", "nope"]) == 2
    assert main(["fedmodel_conformance.broken:NUM_FEATURES"]) == 2
    assert main([]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err


def test_cli_list_prints_every_check_with_its_clause(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name, clause in all_checks():
        assert f"{name}\n    {clause}" in out


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # a third party's session: no conftest of this repository, no unrelated plugin (both slow to import)
    flags = ["-q", "--noconftest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "fedmodel_conformance", *flags, *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=_env())


def test_plugin_runs_one_test_per_check(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "--fedmodel-factory", _third_party_module(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{N} passed" in run.stdout


def test_plugin_reports_the_failing_check_by_name(tmp_path: Path) -> None:
    run = _pytest(tmp_path, "--fedmodel-factory", _third_party_module(tmp_path, "report_is_pure"))
    assert run.returncode == 1
    assert f"1 failed, {N - 1} passed" in run.stdout
    assert "test_conformance[report_is_pure]" in run.stdout


def test_plugin_without_the_option_only_skips(tmp_path: Path) -> None:
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout


def test_loading_the_plugin_imports_neither_the_suite_nor_numpy_nor_a_framework() -> None:
    code = textwrap.dedent(
        """
        import sys
        import fedmodel_conformance.pytest_plugin
        heavy = {"numpy", "fedmodel", "torch", "tensorflow", "jax", "fedmodel_conformance._core"}
        print(sorted(heavy & set(sys.modules)))
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert run.stdout.strip() == "[]"


class TestReferenceModelThroughTheBaseClass(ConformanceTests):
    """The base test class as a third party uses it: every check is a test of this class."""

    def make_case(self) -> Case:
        return reference_case()


class TestBrokenModelWithADeclaredExpectedFailure(ConformanceTests):
    """A declared expected failure is an xfail of pytest (and every other check still passes)."""

    def make_case(self) -> Case:
        case = BROKEN["metrics_count_every_batch"]()
        return Case(**{**case.__dict__, "expected_failures": {"metrics_count_every_batch": "known: keeps last batch"}})


def test_the_base_class_defines_one_test_per_check() -> None:
    tests = sorted(n for n in dir(ConformanceTests) if n.startswith("test_"))
    assert tests == sorted(f"test_{name}" for name, _ in all_checks())
