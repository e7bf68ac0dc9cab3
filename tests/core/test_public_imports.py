"""Backends and the conformance suite use fedmodel's public API only (issue 17): no ``fedmodel._*`` module.

Every ``.py`` file under ``backends/`` and ``conformance/`` is parsed with :mod:`ast`; these forms are
private uses: ``import fedmodel._x``, ``from fedmodel._x import y``, ``from fedmodel import _x`` and an
attribute ``fedmodel._x`` read from the name ``fedmodel``. Strings given to ``importlib`` are out of scope.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _private(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "fedmodel" and len(parts) > 1 and parts[1].startswith("_")


def private_uses(source: str, filename: str = "<source>") -> list[str]:
    """``"line: what"`` for each use of a ``fedmodel._*`` module in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            out += [f"{node.lineno}: import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _private(node.module):
                out.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "fedmodel":
                out += [f"{node.lineno}: from fedmodel import {a.name}" for a in node.names if a.name.startswith("_")]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "fedmodel"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            out.append(f"{node.lineno}: fedmodel.{node.attr}")
    return out


def test_the_parser_finds_every_form_and_nothing_else() -> None:
    source = "\n".join(
        [
            "import fedmodel._batch",
            "import fedmodel._specs as s",
            "from fedmodel._contract import Model",
            "from fedmodel import _buffers, tree",
            "from fedmodel import backend_kit",
            "import fedmodel",
            "fedmodel._errors.SpecError",
            "fedmodel.__version__",
            "from fedmodel.metrics import _private_helper",
            "from . import _local",
            "import fedmodel_torch._util",
        ]
    )
    assert private_uses(source) == [
        "1: import fedmodel._batch",
        "2: import fedmodel._specs",
        "3: from fedmodel._contract import ...",
        "4: from fedmodel import _buffers",
        "7: fedmodel._errors",
    ]


@pytest.mark.parametrize("root", ["conformance", "backends"])
def test_no_module_imports_a_private_fedmodel_module(root: str) -> None:
    files = sorted((REPO / root).rglob("*.py"))
    assert files
    found = [
        f"{path.relative_to(REPO)}:{use}"
        for path in files
        for use in private_uses(path.read_text(encoding="utf-8"), str(path))
    ]
    assert not found, "private fedmodel modules used (import the public fedmodel.backend_kit instead):\n" + "\n".join(
        found
    )
