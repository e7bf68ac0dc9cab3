"""Nothing another party sends is ever executed: no pickle, no ``eval``/``exec``, no ``allow_pickle=True``.

The scan reads every Python file of the core, the backends and the conformance suite as a syntax tree
(so a docstring that says "never pickle" is not a finding, and ``module.eval()``, torch's switch to
inference mode, is not the builtin ``eval``). A finding can only be allowed with a written justification
in :data:`ALLOWED`; an entry that no longer matches anything fails too, so the list cannot go stale.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("fedmodel", "backends", "conformance")

# modules whose loaders unpickle (or unmarshal) their input
PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "joblib", "copyreg"}

ALLOWED: dict[tuple[str, str], str] = {
    # (path relative to the repository, finding) -> why it is safe; keep empty unless truly needed
    ("fedmodel/_worker.py", "import cloudpickle"): (
        "the simulation runner sends its own setup (model factory, algorithm, clients) to the worker processes "
        "it started itself (SimulationConfig(workers=N)); nothing another party sent is unpickled"
    ),
    ("fedmodel/_worker.py", "import pickle"): (
        "the runner unpickles the answers of the worker processes and Ray actors it started itself "
        "(SimulationConfig(workers=N), executor='ray'), one reply at a time (unpack_replies); Ray and "
        "multiprocessing pickle every call's arguments and answers anyway"
    ),
}


def _is_false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def findings(source: str) -> list[str]:
    """Every risky construct in ``source``, as ``"line N: what"``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"line {line}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLING_MODULES:
            found.append(f"line {line}: from {node.module} import")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            if name in {"eval", "exec", "builtins.eval", "builtins.exec", "__import__"}:
                found.append(f"line {line}: {name}()")
            if "allow_pickle" in keywords and not _is_false(keywords["allow_pickle"]):
                found.append(f"line {line}: {name}(allow_pickle=...) not False")
            if name.endswith("torch.load") and not _is_true(keywords.get("weights_only", ast.Constant(None))):
                found.append(f"line {line}: torch.load without weights_only=True")
            if "safe_mode" in keywords and not _is_true(keywords["safe_mode"]):
                found.append(f"line {line}: {name}(safe_mode=...) not True")
            if name in {"yaml.load", "yaml.unsafe_load", "yaml.full_load"}:
                found.append(f"line {line}: {name}()")
    return found


def _files() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)


def test_the_scanner_finds_every_forbidden_pattern() -> None:
    bad = (
        "import pickle\nfrom cloudpickle import loads\nimport numpy as np\n"
        "np.load(f, allow_pickle=True)\neval(text)\nexec(code)\nimport torch\ntorch.load(path)\n"
        "keras.models.load_model(p, safe_mode=False)\nyaml.load(s)\n"
    )
    assert len(findings(bad)) == 8
    good = (
        '"""Never pickle; we do not eval( anything."""\nmodule.eval()\nnp.load(f, allow_pickle=False)\n'
        "torch.load(path, weights_only=True)\nevaluate(model)\n"
    )
    assert findings(good) == []


def test_there_are_files_to_scan() -> None:
    names = {p.name for p in _files()}
    assert {"checkpoint.py", "aggregation.py", "_weights.py"} <= names


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pickle_eval_or_allow_pickle_on_any_path(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    found = [f for f in findings(path.read_text(encoding="utf-8")) if (rel, f.split(": ", 1)[1]) not in ALLOWED]
    assert found == [], f"{rel}: {found} (never unpickle or evaluate data from another party)"


def test_every_allowed_finding_still_exists() -> None:
    for (rel, what), reason in ALLOWED.items():
        assert reason, f"{rel}: {what} is allowed without a justification"
        assert any(f.endswith(what) for f in findings((ROOT / rel).read_text(encoding="utf-8"))), f"stale: {rel}"
