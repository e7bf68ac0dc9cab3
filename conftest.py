"""Top-level pytest configuration shared by every test package.

torch must be imported before TensorFlow in one process: the reverse order can crash at import
(Keras notes the same in its own root conftest). Importing it here, first, fixes the order for the
whole session; a missing torch is fine (its tests skip with a reason).
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

try:  # the order matters: torch first, then TensorFlow
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - CI installs every framework
    pass


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same seeds for Python's and numpy's global generators."""
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - legacy global seed for third-party code that uses it


@pytest.fixture
def rng() -> np.random.Generator:
    """The one seeded generator tests draw their data from."""
    return np.random.default_rng(0)
