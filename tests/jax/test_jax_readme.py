"""The "Bring your JAX function" example of the README runs as written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "Bring your JAX function"


def test_the_readme_example_runs_and_trains(
    readme_blocks: Callable[[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = readme_blocks(SECTION)
    assert len(blocks) == 1
    assert len([line for line in blocks[0].splitlines() if line.strip()]) <= 15  # "the ~10-line example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # our own documentation, not foreign data
    update = namespace["update"]
    assert update.names == ("params/b", "params/w")  # type: ignore[attr-defined]
    assert [a.shape for a in update.trainable] == [(10,), (64, 10)]  # type: ignore[attr-defined]
    printed = capsys.readouterr().out
    assert "'num_examples': 32" in printed and "'accuracy'" in printed
    assert np.isfinite(float(re.search(r"'loss': ([0-9.]+)", printed).group(1)))  # type: ignore[union-attr]
