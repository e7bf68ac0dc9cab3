"""The full conformance suite on the three built-in Keras models (dense, CNN with BN + dropout, frozen layer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fedmodel

fmtf = pytest.importorskip("fedmodel_tensorflow")
conformance = pytest.importorskip("fedmodel_conformance")


def features_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Digits-like numpy batch: 64 float32 features, int64 labels in 0..9."""
    return rng.random((size, 64), dtype=np.float32), rng.integers(0, 10, size).astype(np.int64)


CASES: dict[str, Callable[[], Any]] = {
    "tensorflow-mlp": lambda: conformance.Case(
        name="tensorflow-mlp", make_model=lambda: fmtf.models.mlp(hidden=(16,)), make_batch=features_batch
    ),
    "tensorflow-cnn-bn": lambda: conformance.Case(
        name="tensorflow-cnn-bn",
        make_model=lambda: fmtf.models.cnn_bn(channels=(4, 4)),
        make_batch=features_batch,
        training_changes_non_trainable=True,
        stochastic_training=True,
    ),
    "tensorflow-frozen-mlp": lambda: conformance.Case(
        name="tensorflow-frozen-mlp",
        make_model=lambda: fmtf.models.frozen_mlp(hidden=(16,)),
        make_batch=features_batch,
        optimizer=fedmodel.SGD(learning_rate=0.1, momentum=0.9),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_builtin_model_passes_the_whole_conformance_suite(name: str) -> None:
    report = conformance.run_checks(CASES[name]())
    assert report.ok, report.format()


def test_the_eager_model_passes_the_whole_conformance_suite() -> None:
    case = conformance.Case(
        name="tensorflow-mlp-eager",
        make_model=lambda: fmtf.models.mlp(hidden=(8,), run_eagerly=True),
        make_batch=features_batch,
    )
    report = conformance.run_checks(case)
    assert report.ok, report.format()
