"""The README's "Privacy" example runs as written and prints what the README shows."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "Privacy"


def test_the_readme_example_runs_and_prints_what_it_shows(
    readme_blocks: Callable[[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = readme_blocks(SECTION)
    assert len(blocks) == 2  # the mechanisms (run here) and a SecAgg+ app's fragment (tests/flower/secagg_app)
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # our own documentation, not foreign data
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(f"\n## {SECTION}\n") :]
    shown = re.search(r"```python\n.*?```\n\n```\n(.*?)```", section, flags=re.DOTALL)
    assert shown is not None
    assert capsys.readouterr().out == shown.group(1)
    new = namespace["new_weights"].trainable[0]  # type: ignore[attr-defined]
    assert new.dtype == np.float32 and np.isfinite(new).all()
    carry = namespace["carry"]
    # a clip of 0.1 moves by a factor within exp(+-0.2 * 0.5), whatever the secure noise on the count
    assert carry.round == 1 and 0.1 * np.exp(-0.1) <= carry.clip_norm <= 0.1 * np.exp(0.1)  # type: ignore[attr-defined]
