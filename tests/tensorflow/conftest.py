"""Shared fixtures of the TensorFlow backend's tests (skipped as a whole when TensorFlow is absent)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")


def digits_like_batch(
    size: int, rng: np.random.Generator, num_features: int = 64, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """A numpy batch for the built-in models: float32 features in [0, 1) and int64 labels."""
    x = rng.random((size, num_features), dtype=np.float32)
    y = rng.integers(0, num_classes, size=size).astype(np.int64)
    return x, y


@pytest.fixture
def make_batch() -> object:
    """``make_batch(size, rng)``: a numpy batch for the default built-in models."""
    return digits_like_batch


@pytest.fixture
def batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Six examples for the default built-in models."""
    return digits_like_batch(6, rng)
