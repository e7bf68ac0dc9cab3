"""``fedmodel conformance`` accepts only a factory that returns a Case: every other target is a usage error.

The table below is the contract: exit status 2 and one line on stderr, never a traceback and never an
exit 0 that would read as a pass (``builtins:exit`` once did exactly that).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fedmodel_conformance.cli import main

MODULES = {
    "raises_at_import": "raise RuntimeError('boom at import')\n",
    "exits_at_import": "import sys\nsys.exit(0)\n",
    "factories": (
        "import sys\n"
        "from fedmodel_conformance.broken import reference_case\n"
        "def raises():\n    raise ValueError('bad\\nfactory')\n"
        "def exits():\n    sys.exit(0)\n"
        "def returns_none():\n    return None\n"
        "def needs_an_argument(x):\n    return reference_case()\n"
        "def with_a_typo_in_expected_failures():\n"
        "    import dataclasses\n"
        "    return dataclasses.replace(reference_case(), expected_failures={'no_such_check': 'typo'})\n"
        "a_case = reference_case()\n"
        "class Holder:\n    make_case = staticmethod(reference_case)\n"
    ),
}

USAGE_ERRORS = {
    "builtins:exit": "builtins:exit() raised SystemExit",
    "..:f": "expected PKG.MODULE:FACTORY",
    ":make_case": "expected PKG.MODULE:FACTORY",
    "factories:": "expected PKG.MODULE:FACTORY",
    "factories": "expected PKG.MODULE:FACTORY",
    "factories:a-b": "expected PKG.MODULE:FACTORY",
    "no_such_module_xyz:make_case": "cannot import 'no_such_module_xyz'",
    "raises_at_import:make_case": "importing 'raises_at_import' raised RuntimeError: boom at import",
    "exits_at_import:make_case": "importing 'exits_at_import' raised SystemExit(0)",
    "factories:nope": "'factories' has no attribute 'nope'",
    "factories:Holder.nope": "'factories.Holder' has no attribute 'nope'",
    "os:sep": "os:sep is str, not a factory",
    "factories:a_case": "factories:a_case is a Case, not a factory",
    "factories:raises": "factories:raises() raised ValueError: bad factory",
    "factories:exits": "factories:exits() raised SystemExit(0)",
    "factories:returns_none": "factories:returns_none() returned NoneType, not a fedmodel_conformance.Case",
    "factories:needs_an_argument": "factories:needs_an_argument() raised TypeError",
    "factories:with_a_typo_in_expected_failures": "expected_failures names unknown checks ['no_such_check']",
}


@pytest.fixture
def in_module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, body in MODULES.items():
        (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return tmp_path


@pytest.mark.parametrize(("target", "message"), sorted(USAGE_ERRORS.items()))
def test_a_target_that_is_not_a_factory_of_a_case_is_a_one_line_usage_error(
    in_module_dir: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    assert main([target]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fedmodel conformance: ") and message in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["factories:Holder.make_case", "-q"], 0),
        (["fedmodel_conformance.broken:reference_case", "--check", "protocol"], 0),
        (["fedmodel_conformance.broken:reference_case", "--check", "nope"], 2),
        (["fedmodel_conformance.broken:reference_case", "--expected-failure", "nope=typo"], 2),
        (["fedmodel_conformance.broken:reference_case", "--expected-failure", "protocol"], 2),
        (["fedmodel_conformance.broken:reference_case", "--expected-failure", "protocol=wrong", "-q"], 1),
        ([], 2),
        (["--list"], 0),
    ],
)
def test_exit_statuses(in_module_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], status: int) -> None:
    assert main(args) == status
    assert "Traceback" not in capsys.readouterr().err


def test_a_typo_in_a_check_name_never_runs_the_factory(in_module_dir: Path) -> None:
    assert main(["factories:exits", "--check", "nope"]) == 2  # exits() would be a different error


def test_builtins_exit_through_the_console_script_exits_2_with_one_line(tmp_path: Path) -> None:
    fedmodel = Path(sys.executable).parent / "fedmodel"
    cmd = [str(fedmodel)] if fedmodel.exists() else [sys.executable, "-m", "fedmodel.cli"]
    run = subprocess.run([*cmd, "conformance", "builtins:exit"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["fedmodel conformance: builtins:exit() raised SystemExit"]
    assert run.stdout == ""


def test_the_pytest_plugin_turns_a_bad_factory_into_pytests_usage_error(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "fedmodel_conformance", "-q", "-p", "no:cacheprovider"]
    run = subprocess.run([*cmd, "--fedmodel-factory", "builtins:exit"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 4  # pytest's usage error
    assert "--fedmodel-factory builtins:exit: builtins:exit() raised SystemExit" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr
