"""The README's 'Data sets' example runs as written."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def test_the_data_sets_example_runs_and_prints_the_task_and_the_test_metrics(
    readme_blocks: Callable[[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    (block,) = readme_blocks("Data sets")
    exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})  # our own documentation
    out = capsys.readouterr().out
    assert out.startswith("30 (TensorSpec(shape=(None, 60), dtype='float32', name='x')")
    assert "10 mlp" in out and "'accuracy'" in out
