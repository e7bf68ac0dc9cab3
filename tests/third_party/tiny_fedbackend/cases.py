"""The conformance case of the tiny backend: ``fedmodel conformance tiny_fedbackend.cases:make_case``."""

from __future__ import annotations

import numpy as np
from fedmodel_conformance import Case

from tiny_fedbackend import models

__all__ = ["make_case"]


def make_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal features, labels in 0..4."""
    return rng.standard_normal((size, 16)).astype(np.float32), rng.integers(0, 5, size).astype(np.int64)


def make_case() -> Case:
    """A fresh tiny MLP per call, 16 features, 5 classes."""
    return Case(name="tiny-mlp", make_model=lambda: models.mlp(16, 8, 5, seed=0), make_batch=make_batch)
