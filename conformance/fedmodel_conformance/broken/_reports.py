"""Models for the checks of losses, reports, evaluation and statistics: correct variants and broken ones.

The correct variants (:class:`ColumnLabels`, :class:`ClipsInTraining`, :class:`RunningMean`) pass every
check; each broken model below changes one thing of one of them, or of the reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from fedmodel import BatchOutput, TensorSpec, check_batch, split_batch
from fedmodel.metrics import SumThenFinalize, ratio, standard_output_computation
from fedmodel.reference import NUMPY_BACKEND, SoftmaxRegression, Variable

__all__ = [
    "AccumulatingAggregatorModel",
    "AccuracyCountsExamples",
    "BroadcastAccuracy",
    "ClipsInTraining",
    "ColumnLabels",
    "LinearRegressionWithAccuracy",
    "ModeStuckAfterTraining",
    "MutatingAggregatorModel",
    "PredictsProbabilities",
    "RunningMean",
    "StatisticsFrozenInTraining",
    "SumLoss",
]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


def _gradients(model: SoftmaxRegression, out: BatchOutput[Any], batch: Any) -> list[np.ndarray]:
    """The reference model's gradients (``kernel``, ``bias``) of the mean cross-entropy at ``out.predictions``."""
    x, y = split_batch(batch)
    y = np.asarray(y).reshape(-1)
    dlogits = np.exp(_log_softmax(np.asarray(out.predictions, np.float64)))
    dlogits[np.arange(len(y)), y] -= 1.0
    dlogits /= len(y)
    xs = (x * model.non_trainable_variables[0].value).astype(np.float64)
    return [(xs.T @ dlogits).astype(np.float32), dlogits.sum(axis=0).astype(np.float32)]


class SumLoss(SoftmaxRegression):
    """The loss is the batch's sum of per-example losses, with gradients and metric sums consistent with it."""

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """``loss = Σ nll``; the metrics add that sum (so the finalized loss is still a mean)."""
        x, y = check_batch(self._spec, batch_input)
        logits = self._logits(x)
        loss = float(-_log_softmax(logits.astype(np.float64))[np.arange(len(y)), y].sum())
        loss_sum, correct, count = self._local
        loss_sum.value = loss_sum.value + loss
        correct.value = correct.value + np.count_nonzero(logits.argmax(axis=1) == y)
        count.value = count.value + len(y)
        return BatchOutput(np.float32(loss), logits, len(y))

    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The gradients of the sum: the reference's (of the mean) times the batch size."""
        out, grads = super().value_and_grad(batch)
        return out, [g * out.num_examples for g in grads]


class PredictsProbabilities(SoftmaxRegression):
    """``predict_on_batch`` returns probabilities where ``forward_pass`` returns logits."""

    def predict_on_batch(self, x: Any, training: bool = False) -> np.ndarray:
        """Softmax of the logits."""
        return np.exp(_log_softmax(super().predict_on_batch(x, training)))


class ClipsInTraining(SoftmaxRegression):
    """Correct: in training mode the inputs are clipped to [-0.5, 0.5] first (a deterministic augmentation)."""

    def _training_mode(self, training: bool) -> bool:
        return training

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass, on clipped inputs in training mode."""
        x, y = check_batch(self._spec, batch_input)
        if self._training_mode(training):
            x = np.clip(x, -0.5, 0.5)
        return super().forward_pass((x, y), training)

    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The reference gradients at the clipped inputs."""
        x, y = check_batch(self._spec, batch)
        return super().value_and_grad((np.clip(x, -0.5, 0.5), y))


class ModeStuckAfterTraining(ClipsInTraining):
    """After its first training call, evaluation clips too (a mode captured when a step was first traced)."""

    _trained = False

    def _training_mode(self, training: bool) -> bool:
        self._trained = self._trained or training
        return self._trained


class ColumnLabels(SoftmaxRegression):
    """Correct: the reference model with labels shaped ``(n, 1)``, TFF's usual label shape."""

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self._spec = (self._spec[0], TensorSpec((None, 1), "int64"))

    def _hits(self, logits: np.ndarray, y: np.ndarray) -> int:
        return int(np.count_nonzero(logits.argmax(axis=1) == y.reshape(-1)))

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass, on labels flattened to ``(n,)``."""
        x, y = check_batch(self._spec, batch_input)
        logits = self._logits(x)
        loss = self._loss(logits, y.reshape(-1))
        loss_sum, correct, count = self._local
        loss_sum.value = loss_sum.value + loss * len(y)
        correct.value = correct.value + self._hits(logits, y)
        count.value = count.value + len(y)
        return BatchOutput(np.float32(loss), logits, len(y))

    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The reference gradients (labels flattened)."""
        out = self.forward_pass(batch, training=True)
        return out, _gradients(self, out, batch)


class BroadcastAccuracy(ColumnLabels):
    """Counts ``argmax == y`` with ``(n,)`` predictions against ``(n, 1)`` labels: an ``(n, n)`` comparison.

    Not additive over batches, so it breaks the aggregation checks too (the tests show the standard
    metrics check catches it, among others).
    """

    def _hits(self, logits: np.ndarray, y: np.ndarray) -> int:
        return int(np.count_nonzero(logits.argmax(axis=1) == y))


class AccuracyCountsExamples(ColumnLabels):
    """Adds the batch size to the correct predictions (a copy of the count's line): accuracy is always 1."""

    def _hits(self, logits: np.ndarray, y: np.ndarray) -> int:
        return len(y)


class LinearRegressionWithAccuracy:
    """A linear regression (squared error) that also reports an "accuracy" of rounded predictions."""

    __fedmodel_backend__ = NUMPY_BACKEND

    def __init__(self, num_features: int) -> None:
        self.trainable_variables = (
            Variable("w", np.zeros(num_features, np.float32)),
            Variable("b", np.zeros((), np.float32)),
        )
        self.non_trainable_variables: tuple[Variable, ...] = ()
        self.local_variables = (
            Variable("squared_error", np.zeros((), np.float64)),
            Variable("correct", np.zeros((), np.int64)),
            Variable("count", np.zeros((), np.int64)),
        )
        self.input_spec = (TensorSpec((None, num_features), "float32"), TensorSpec((None,), "float32"))
        self.federated_output_computation = SumThenFinalize({"loss": ratio, "accuracy": ratio})

    def predict_on_batch(self, x: Any, training: bool = False) -> np.ndarray:
        """``x @ w + b``."""
        check_batch(self.input_spec, (x, np.zeros(len(x), np.float32)))
        w, b = self.trainable_variables
        return (x @ w.value + b.value).astype(np.float32)  # type: ignore[no-any-return]

    def forward_pass(self, batch: Any, training: bool = True) -> BatchOutput[Any]:
        """Mean squared error; counts rounded predictions equal to rounded labels as "correct"."""
        x, y = check_batch(self.input_spec, batch)
        predictions = self.predict_on_batch(x)
        squared_error, correct, count = self.local_variables
        squared_error.value = squared_error.value + float(np.sum((predictions - y) ** 2, dtype=np.float64))
        correct.value = correct.value + int(np.count_nonzero(np.round(predictions) == np.round(y)))
        count.value = count.value + len(y)
        return BatchOutput(np.float32(np.mean((predictions - y) ** 2)), predictions, len(y))

    def report_local_outputs(self) -> dict[str, Any]:
        """``loss``, ``accuracy`` and ``num_examples``."""
        squared_error, correct, count = (v.value.copy() for v in self.local_variables)
        return {"loss": (squared_error, count), "accuracy": (correct, count.copy()), "num_examples": count.copy()}

    def reset_metrics(self) -> None:
        """Zero the accumulators."""
        for v in self.local_variables:
            v.value = np.zeros_like(v.value)

    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The output and ``d loss / d (w, b)``."""
        out = self.forward_pass(batch)
        x, y = split_batch(batch)
        residual = 2.0 * (np.asarray(out.predictions, np.float64) - y) / len(y)
        return out, [(x.T @ residual).astype(np.float32), np.float32(residual.sum())]


class RunningMean(SoftmaxRegression):
    """Correct, and declares it: training updates a ``running_mean`` statistic of the inputs (non-trainable)."""

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self._non_trainable = (*self._non_trainable, Variable("running_mean", np.zeros(num_features, np.float32)))  # type: ignore[assignment]

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass; with ``training=True`` the statistic moves toward the batch's mean."""
        out = super().forward_pass(batch_input, training)
        if training:
            x, _ = split_batch(batch_input)
            stat = self._non_trainable[1]  # type: ignore[misc]
            stat.value = (0.9 * stat.value + 0.1 * np.asarray(x).mean(axis=0)).astype(np.float32)
        return out


class StatisticsFrozenInTraining(RunningMean):
    """``value_and_grad`` (so ``train_step``) runs the forward pass in evaluation mode: statistics never move."""

    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The reference gradients, from an evaluation-mode forward pass."""
        out = self.forward_pass(batch, training=False)
        return out, _gradients(self, out, batch)


class _SharedStateAggregator:
    """Sum then finalize, whose ``init`` hands out the same state every time."""

    def __init__(self) -> None:
        self._inner = standard_output_computation()
        self._state = self._inner.init()

    def init(self) -> dict[str, Any]:
        """The one state (a bug: it should be fresh)."""
        return self._state

    def accumulate(self, state: dict[str, Any], report: Mapping[str, Any]) -> dict[str, Any]:
        """Add the report (in place)."""
        return self._inner.accumulate(state, report)

    def finalize(self, state: dict[str, Any]) -> dict[str, Any]:
        """``loss`` and ``accuracy`` as ratios."""
        return self._inner.finalize(state)

    def __call__(self, reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Finalize the reports accumulated onto the state."""
        state = self.init()
        for report in reports:
            state = self.accumulate(state, report)
        return self.finalize(state)


class AccumulatingAggregatorModel(SoftmaxRegression):
    """Its aggregator keeps its sums from one call to the next: a second aggregation counts the first again."""

    @property
    def federated_output_computation(self) -> Any:
        """One aggregator per model, whose state outlives a call."""
        if "_aggregator" not in self.__dict__:
            self._aggregator = _SharedStateAggregator()
        return self._aggregator


class _PoppingAggregator(_SharedStateAggregator):
    def init(self) -> dict[str, Any]:
        return self._inner.init()

    def accumulate(self, state: dict[str, Any], report: Mapping[str, Any]) -> dict[str, Any]:
        count = report.pop("num_examples")  # type: ignore[attr-defined]
        return self._inner.accumulate(state, {**report, "num_examples": count})


class MutatingAggregatorModel(SoftmaxRegression):
    """Its aggregator takes ``num_examples`` out of the clients' reports it is given."""

    @property
    def federated_output_computation(self) -> Any:
        """An aggregator that changes its input."""
        return _PoppingAggregator()
