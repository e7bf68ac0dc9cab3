"""Broken failures: models and a backend whose calls raise after changing state (no "compute, then commit")."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedmodel import BatchOutput, DataError, check_batch, classification_spec, split_batch
from fedmodel.reference import NumpyBackend, NumpyOptimizer, SoftmaxRegression
from fedmodel_conformance.broken._reports import RunningMean

__all__ = [
    "AcceptsOutOfRangeLabels",
    "CountsBeforeCheckingLabels",
    "CountsThenRejectsNonFinite",
    "RejectsNonFinite",
    "StatisticsMoveBeforeRaising",
    "StepCountedBeforeGradients",
]


class CountsBeforeCheckingLabels(SoftmaxRegression):
    """Counts the batch in ``count``, then checks the labels' range: a refused label leaves the count raised.

    Shapes and dtypes are checked first, so every batch the other checks refuse changes nothing (as
    TensorFlow's ``forward_pass`` once updated its metrics and then failed on a bad label).
    """

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self._unbounded = classification_spec(num_features)

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Shapes and dtypes, ``count += n``, then the reference forward pass (labels' range, and a second count)."""
        _, y = check_batch(self._unbounded, batch_input)
        count = self._local[2]
        count.value = count.value + len(y)
        out = super().forward_pass(batch_input, training)
        count.value = count.value - len(y)
        return out


class StatisticsMoveBeforeRaising(RunningMean):
    """A training call moves ``running_mean`` before the labels' range is checked (batch norm before the loss)."""

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self._unbounded = classification_spec(num_features)

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Shapes and dtypes; in training the statistic moves; then the reference forward pass (labels' range)."""
        x, _ = check_batch(self._unbounded, batch_input)
        if training:
            stat = self._non_trainable[1]  # type: ignore[misc]
            stat.value = (0.9 * stat.value + 0.1 * np.asarray(x).mean(axis=0)).astype(np.float32)
        return SoftmaxRegression.forward_pass(self, batch_input, training)


class AcceptsOutOfRangeLabels(SoftmaxRegression):
    """Declares labels in ``[0, classes - 1]`` but checks only shapes and dtypes: -1 reads as the last class."""

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self._unbounded = classification_spec(num_features)
        self._bounded = self._spec

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass, validated against the spec without its bounds."""
        self._spec = self._unbounded
        try:
            return super().forward_pass(batch_input, training)
        finally:
            self._spec = self._bounded


class StepCountedBeforeGradients(NumpyBackend):
    """``train_step`` counts the optimizer's step before the gradients: a failed step still advances Adam's count."""

    def train_step(self, model: Any, batch: Any, optimizer: NumpyOptimizer) -> BatchOutput[Any]:
        """``step += 1``, the gradients (which may raise), ``step -= 1``, then the reference update."""
        optimizer.step += 1
        out, grads = model.value_and_grad(batch)
        optimizer.step -= 1  # apply() counts it again
        params = [v.value for v in model.trainable_variables]
        for var, new in zip(model.trainable_variables, optimizer.apply(params, grads), strict=True):
            var.value = new
        return out  # type: ignore[no-any-return]


def _check_finite(batch_input: Any) -> None:
    x, _ = split_batch(batch_input)
    if not np.isfinite(np.asarray(x)).all():
        raise DataError("x holds a NaN or an infinity")


class RejectsNonFinite(SoftmaxRegression):
    """Correct: a batch whose ``x`` is not finite raises ``DataError`` before anything is computed."""

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """``DataError`` for a non-finite ``x``, else the reference forward pass."""
        check_batch(self._spec, batch_input)
        _check_finite(batch_input)
        return super().forward_pass(batch_input, training)


class CountsThenRejectsNonFinite(SoftmaxRegression):
    """Adds the batch to the metrics, then raises ``DataError`` for a non-finite ``x`` (check after commit)."""

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass, then ``DataError`` for a non-finite ``x``."""
        out = super().forward_pass(batch_input, training)
        _check_finite(batch_input)
        return out


def nan_batch(size: int, rng: np.random.Generator, num_features: int, num_classes: int) -> tuple[Any, Any]:
    """A batch matching the reference spec whose first feature of the last example is NaN."""
    x = rng.standard_normal((size, num_features)).astype(np.float32)
    x[-1, 0] = np.nan
    return x, rng.integers(0, num_classes, size).astype(np.int64)
