"""examples/swap_backends.py runs the same loop on every installed backend."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "swap_backends.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("swap_backends", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("backend", ["numpy", "torch", "tensorflow", "jax"])
def test_the_example_trains_with_each_backend(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    if backend != "numpy":
        pytest.importorskip(backend)
    accuracy = _example().main(backend, rounds=3)
    assert 0.3 < accuracy <= 1.0
    assert capsys.readouterr().out.count(f"{backend} round") == 3
