"""Top-level pytest configuration shared by every test package.

torch must be imported before TensorFlow in one process: the reverse order can crash at import
(Keras notes the same in its own root conftest). Importing it here, first, fixes the order for the
whole session; a missing torch is fine (its tests skip with a reason).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

with contextlib.suppress(ImportError):  # the order matters: torch first, then TensorFlow
    import torch  # noqa: F401


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same seeds for Python's and numpy's global generators."""
    random.seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small models train fastest on one intra-op thread; two oversubscribe a shared 2-core CI runner."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


README = Path(__file__).resolve().parent / "README.md"


def readme_python_blocks(heading: str) -> list[str]:
    """The ```python blocks of the README section whose ``## `` heading is ``heading`` (examples run as written)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def readme_blocks() -> Callable[[str], list[str]]:
    """:func:`readme_python_blocks`, for tests that execute the README's examples."""
    return readme_python_blocks


@pytest.fixture
def rng() -> np.random.Generator:
    """The one seeded generator tests draw their data from."""
    return np.random.default_rng(0)
