"""The "Bring your PyTorch model" example of the README runs as written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

DOC = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "Bring your PyTorch model"


def test_the_readme_example_runs_and_trains(
    readme_blocks: Callable[[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = readme_blocks(SECTION)
    assert len(blocks) == 1
    assert len(blocks[0].strip().splitlines()) <= 14
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # our own documentation, not foreign data
    update = namespace["update"]
    assert update.names == ("0.weight", "0.bias", "2.weight", "2.bias")  # type: ignore[attr-defined]
    printed = capsys.readouterr().out
    assert "'num_examples': 32" in printed and "'accuracy'" in printed
    assert np.isfinite(float(re.search(r"'loss': ([0-9.]+)", printed).group(1)))  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["__init__", "metrics", "model", "models", "optimizers"])
def test_the_docstring_examples_of_every_module_run(name: str) -> None:
    import doctest
    import importlib

    module = importlib.import_module("fedmodel_torch" if name == "__init__" else f"fedmodel_torch.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
