"""The full conformance suite on the three built-in torch models named in issue 4."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedmodel_conformance import Case, run_checks  # noqa: E402
from fedmodel_torch import models  # noqa: E402

import fedmodel  # noqa: E402


def digits_like(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A batch shaped like scikit-learn's digits: 64 pixel features, labels 0..9."""
    return rng.standard_normal((size, 64)).astype(np.float32), rng.integers(0, 10, size).astype(np.int64)


CASES: dict[str, Callable[[], Case]] = {
    "torch-mlp": lambda: Case(
        name="torch-mlp",
        make_model=lambda: models.mlp(),
        make_batch=digits_like,
        optimizer=fedmodel.SGD(learning_rate=0.1),
    ),
    "torch-cnn-bn-dropout": lambda: Case(
        name="torch-cnn-bn-dropout",
        make_model=lambda: models.cnn_bn(),
        make_batch=digits_like,
        optimizer=fedmodel.SGD(learning_rate=0.1, momentum=0.9),
        training_changes_non_trainable=True,
        stochastic_training=True,
    ),
    "torch-frozen-mlp": lambda: Case(
        name="torch-frozen-mlp",
        make_model=lambda: models.frozen_mlp(),
        make_batch=digits_like,
        optimizer=fedmodel.Adam(learning_rate=0.01),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_built_in_model_passes_every_conformance_check(name: str) -> None:
    torch.manual_seed(0)  # dropout draws from torch's global generator
    report = run_checks(CASES[name]())
    assert report.ok, report.format()
