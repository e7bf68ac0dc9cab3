"""Broken models: each subclasses the numpy reference and breaks exactly one clause of the contract."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from fedmodel import BatchOutput, SpecError, check_batch, check_spec, split_batch
from fedmodel.metrics import standard_output_computation
from fedmodel.reference import SoftmaxRegression, Variable

__all__ = [
    "CountIsAlsoWeight",
    "DoubledGradient",
    "DropoutInEval",
    "EvalUpdatesStatistics",
    "KernelAlsoNonTrainable",
    "LazyBatchCounter",
    "MetricsKeepLastBatch",
    "NaiveSoftmaxLoss",
    "NewHandlesPerRead",
    "NudgingForward",
    "NumExamplesIsLenOfBatch",
    "PairOnly",
    "PlainFunctionAggregator",
    "PredictCachesWeights",
    "PredictCountsMetrics",
    "ReportResets",
    "ReportsLiveArrays",
    "ResetAlsoZeroesBias",
    "ResetForgetsCorrect",
    "ResetForgetsCount",
    "ResetReordersMetrics",
    "ScaleListedTwice",
    "SharedScale",
    "SkewedGradient",
    "SpecNotEnforced",
    "SqueezedPredictions",
]


class PlainFunctionAggregator(SoftmaxRegression):
    """``federated_output_computation`` is a plain function, not a streaming ``fedmodel.Aggregator``."""

    @property
    def federated_output_computation(self) -> Any:
        """A function of all reports at once (a server cannot stream clients into it)."""
        agg = standard_output_computation()
        fn: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]] = lambda reports: agg(reports)  # noqa: E731
        return fn


class KernelAlsoNonTrainable(SoftmaxRegression):
    """Lists the trainable ``kernel`` among the non-trainable variables too."""

    @property
    def non_trainable_variables(self) -> Sequence[Variable]:
        """``input_scale`` and, wrongly, ``kernel``."""
        return (*self._non_trainable, self._trainable[0])


class ScaleListedTwice(SoftmaxRegression):
    """Lists ``input_scale`` twice in the non-trainable group."""

    @property
    def non_trainable_variables(self) -> Sequence[Variable]:
        """``input_scale``, ``input_scale``."""
        return (self._non_trainable[0], self._non_trainable[0])


class ResetReordersMetrics(SoftmaxRegression):
    """``local_variables`` comes back in reverse order after every ``reset_metrics()``."""

    _resets = 0

    @property
    def local_variables(self) -> Sequence[Variable]:
        """The accumulators, reversed after an odd number of resets."""
        return self._local[::-1] if self._resets % 2 else self._local

    def reset_metrics(self) -> None:
        """Zero the accumulators (and flip the order they are listed in)."""
        super().reset_metrics()
        self._resets += 1


class LazyBatchCounter(SoftmaxRegression):
    """Creates a local ``batches`` counter on the first ``forward_pass`` instead of in ``__init__``."""

    _batches: Variable | None = None

    @property
    def local_variables(self) -> Sequence[Variable]:
        """The accumulators, plus ``batches`` once it exists."""
        return self._local + ((self._batches,) if self._batches is not None else ())

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass, counting batches in a variable created on first use."""
        out = super().forward_pass(batch_input, training)
        if self._batches is None:
            self._batches = Variable("batches", np.zeros((), np.int64))
        self._batches.value = self._batches.value + 1
        return out

    def reset_metrics(self) -> None:
        """Zero every accumulator."""
        super().reset_metrics()
        if self._batches is not None:
            self._batches.value = np.zeros((), np.int64)


class PairOnly(SoftmaxRegression):
    """Rejects batches given as a mapping ``{"x", "y"}`` although the contract allows both conventions."""

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Only ``(x, y)`` pairs."""
        if isinstance(batch_input, Mapping):
            raise SpecError("this model takes (x, y) pairs only")
        return super().forward_pass(batch_input, training)


class SpecNotEnforced(SoftmaxRegression):
    """Casts whatever arrives to the spec's dtypes instead of rejecting it."""

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Silently converts ``x`` to float32 and ``y`` to int64."""
        x, y = split_batch(batch_input)
        return super().forward_pass((np.asarray(x, np.float32), np.asarray(y, np.int64)), training)


class NudgingForward(SoftmaxRegression):
    """``forward_pass(training=True)`` moves the bias (the optimizer's own step is correct)."""

    _nudge = True

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass, then ``bias += 1e-3`` in training mode."""
        out = super().forward_pass(batch_input, training)
        if training and self._nudge:
            self._trainable[1].value = self._trainable[1].value + np.float32(1e-3)
        return out

    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The reference gradients, without the nudge."""
        self._nudge = False
        try:
            return super().value_and_grad(batch)
        finally:
            self._nudge = True


class EvalUpdatesStatistics(SoftmaxRegression):
    """Tracks a ``running_mean`` statistic of the inputs, with the training flag inverted."""

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self._non_trainable = (*self._non_trainable, Variable("running_mean", np.zeros(num_features, np.float32)))  # type: ignore[assignment]

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass; updates ``running_mean`` when *not* training."""
        out = super().forward_pass(batch_input, training)
        if not training:
            x, _ = split_batch(batch_input)
            stat = self._non_trainable[1]  # type: ignore[misc]
            stat.value = (0.9 * stat.value + 0.1 * np.asarray(x).mean(axis=0)).astype(np.float32)
        return out


class NaiveSoftmaxLoss(SoftmaxRegression):
    """Computes the loss as ``-log(exp(l_y) / sum exp(l))`` in float32: overflows for large logits."""

    def _loss(self, logits: np.ndarray, y: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            e = np.exp(logits.astype(np.float32)).astype(np.float64)
            nll = -np.log(e[np.arange(len(y)), y] / e.sum(axis=1)).mean()
        return float(nll)


class NumExamplesIsLenOfBatch(SoftmaxRegression):
    """Reports ``num_examples = len(batch)``, which is 2 for any ``(x, y)`` pair or ``{"x", "y"}`` mapping."""

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass with the wrong count."""
        out = super().forward_pass(batch_input, training)
        return BatchOutput(out.loss, out.predictions, len(batch_input))


class SqueezedPredictions(SoftmaxRegression):
    """Squeezes the predictions, so a batch of one loses its batch dimension."""

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass with ``np.squeeze`` on the logits."""
        out = super().forward_pass(batch_input, training)
        return BatchOutput(out.loss, np.squeeze(out.predictions), out.num_examples)

    def predict_on_batch(self, x: Any, training: bool = False) -> np.ndarray:
        """Squeezed logits."""
        return np.squeeze(super().predict_on_batch(x, training))


class DropoutInEval(SoftmaxRegression):
    """Applies random noise to the returned predictions in evaluation mode (dropout left on)."""

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self._noise = np.random.default_rng(0)

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass; noisy predictions when ``training=False``."""
        out = super().forward_pass(batch_input, training)
        if training:
            return out
        preds = np.asarray(out.predictions)
        return BatchOutput(out.loss, preds + self._noise.standard_normal(preds.shape), out.num_examples)


class PredictCountsMetrics(SoftmaxRegression):
    """``predict_on_batch`` adds its examples to the ``count`` metric."""

    def predict_on_batch(self, x: Any, training: bool = False) -> np.ndarray:
        """Logits, and ``count += len(x)``."""
        out = super().predict_on_batch(x, training)
        self._local[2].value = self._local[2].value + len(out)
        return out


class MetricsKeepLastBatch(SoftmaxRegression):
    """Metrics describe the last batch only (accumulators overwritten instead of summed)."""

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Validate, forget earlier batches, then the reference forward pass."""
        check_batch(self._spec, batch_input)
        self.reset_metrics()
        return super().forward_pass(batch_input, training)


class ReportResets(SoftmaxRegression):
    """``report_local_outputs`` resets the metrics after reading them ("report and clear")."""

    def report_local_outputs(self) -> dict[str, Any]:
        """The report, then ``reset_metrics()``."""
        out = super().report_local_outputs()
        self.reset_metrics()
        return out


class ResetForgetsCount(SoftmaxRegression):
    """``reset_metrics`` zeroes ``loss_sum`` and ``correct`` but forgets ``count``."""

    def reset_metrics(self) -> None:
        """Zero two of the three accumulators."""
        for v in self._local[:2]:
            v.value = np.zeros_like(v.value)


class CountIsAlsoWeight(SoftmaxRegression):
    """Lists the ``count`` metric among the non-trainable variables, so it would be transmitted."""

    @property
    def non_trainable_variables(self) -> Sequence[Variable]:
        """``input_scale`` and, wrongly, ``count``."""
        return (*self._non_trainable, self._local[2])


class PredictCachesWeights(SoftmaxRegression):
    """``predict_on_batch`` captures the weights on its first call, like a compiled function with constants."""

    _frozen: tuple[np.ndarray, ...] | None = None

    def predict_on_batch(self, x: Any, training: bool = False) -> np.ndarray:
        """Logits from the weights as they were at the first call."""
        check_spec(self._spec[0], x, what="x")
        if self._frozen is None:
            self._frozen = tuple(v.value.copy() for v in (*self._trainable, *self._non_trainable))
        kernel, bias, scale = self._frozen
        return (x * scale) @ kernel + bias  # type: ignore[no-any-return]


class SharedScale(SoftmaxRegression):
    """All instances share one ``input_scale`` variable, created once at class level."""

    _shared: ClassVar[dict[int, Variable]] = {}

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        scale = self._shared.setdefault(num_features, Variable("input_scale", np.ones(num_features, np.float32)))
        self._non_trainable = (scale,)


class DoubledGradient(SoftmaxRegression):
    """Returns twice the true gradient to the optimizer (a factor 2 lost in a hand-written derivative)."""

    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The reference output with doubled gradients."""
        out, grads = super().value_and_grad(batch)
        return out, [2 * g for g in grads]


class _Handle:
    """A new object per read that reads and writes a box it points to (as some C libraries' wrappers do)."""

    __slots__ = ("_box",)

    def __init__(self, box: Variable) -> None:
        self._box = box

    @property
    def name(self) -> str:
        """The box's name."""
        return self._box.name

    @property
    def value(self) -> np.ndarray:
        """The box's value."""
        return self._box.value  # type: ignore[no-any-return]

    @value.setter
    def value(self, value: np.ndarray) -> None:
        self._box.value = value


class NewHandlesPerRead(SoftmaxRegression):
    """Every read of a variable group returns new handle objects (so no two reads list the same objects)."""

    @property
    def trainable_variables(self) -> Sequence[Any]:
        """New handles on ``kernel``, ``bias``."""
        return tuple(_Handle(v) for v in self._trainable)

    @property
    def non_trainable_variables(self) -> Sequence[Any]:
        """A new handle on ``input_scale``."""
        return tuple(_Handle(v) for v in self._non_trainable)

    @property
    def local_variables(self) -> Sequence[Any]:
        """New handles on the accumulators."""
        return tuple(_Handle(v) for v in self._local)


class ResetForgetsCorrect(SoftmaxRegression):
    """``reset_metrics`` zeroes ``loss_sum`` and ``count`` but forgets ``correct``."""

    def reset_metrics(self) -> None:
        """Zero two of the three accumulators."""
        for v in (self._local[0], self._local[2]):
            v.value = np.zeros_like(v.value)


class ResetAlsoZeroesBias(SoftmaxRegression):
    """``reset_metrics`` zeroes the accumulators and, wrongly, the ``bias`` too."""

    def reset_metrics(self) -> None:
        """Zero the accumulators and the bias."""
        super().reset_metrics()
        self._trainable[1].value = np.zeros_like(self._trainable[1].value)


class ReportsLiveArrays(SoftmaxRegression):
    """Keeps its sums in arrays updated in place and reports those arrays, not copies: a report follows the metrics."""

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self._live = [np.zeros((), np.float64), np.zeros((), np.int64), np.zeros((), np.int64)]

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """The reference forward pass, then the sums copied into the live arrays, in place."""
        out = super().forward_pass(batch_input, training)
        for live, v in zip(self._live, self._local, strict=True):
            live[...] = v.value
        return out

    def reset_metrics(self) -> None:
        """Zero the accumulators and the live arrays."""
        super().reset_metrics()
        for live in self._live:
            live[...] = 0

    def report_local_outputs(self) -> dict[str, Any]:
        """The live arrays themselves."""
        loss_sum, correct, count = self._live
        return {"loss": (loss_sum, count), "accuracy": (correct, count), "num_examples": count}


class SkewedGradient(SoftmaxRegression):
    """The kernel's gradient carries an error orthogonal to it, three tenths of its size (a wrong cross term).

    Along the gradient's own direction the error vanishes, so a check that probes only directions close
    to the gradient misses it; a random direction sees it.
    """

    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The reference gradients, the kernel's plus ``0.3 * rms(g)`` times a fixed direction orthogonal to it."""
        out, grads = super().value_and_grad(batch)
        g = grads[0].astype(np.float64)
        q = np.random.default_rng(3).standard_normal(g.shape)
        q -= (q.ravel() @ g.ravel()) / max(g.ravel() @ g.ravel(), 1e-300) * g
        q /= np.sqrt(np.mean(q * q))
        rms = float(np.sqrt(np.mean(g * g)))
        return out, [(g + 0.3 * rms * q).astype(grads[0].dtype), *grads[1:]]
