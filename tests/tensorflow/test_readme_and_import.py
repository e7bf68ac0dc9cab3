"""The README example runs as written; importing the backend with Keras on another backend fails clearly."""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest

fmtf = pytest.importorskip("fedmodel_tensorflow")

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "Bring your Keras model"


def test_the_readme_example_runs_and_prints_the_aggregated_metrics(readme_blocks: Callable[[str], list[str]]) -> None:
    blocks = readme_blocks(SECTION)
    assert len(blocks) == 1
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme_example"})
    printed = out.getvalue()
    assert "'num_examples': 16" in printed
    assert "'sparse_categorical_accuracy'" in printed


def test_importing_with_keras_on_another_backend_fails_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    compat = importlib.import_module("fedmodel_tensorflow._compat")
    monkeypatch.setattr(compat.keras.backend, "backend", lambda: "jax")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(
        ImportError, match=r"needs Keras 3 on the TensorFlow backend, but keras is configured for 'jax'"
    ):
        importlib.reload(compat)
