"""Metrics of PyTorch models: the standard report and a small interface for user metrics.

Every metric is a tuple of *sums* kept in tensors (the model's local variables), so that clients'
reports can be summed by the server and finalized once (:class:`fedmodel.metrics.SumThenFinalize`).

>>> import torch
>>> mae = mean_metric("mae", lambda y, p: (p.squeeze(-1) - y).abs())
>>> state = mae.update(mae.init(), torch.tensor([1.0, 2.0]), torch.tensor([[1.5], [2.0]]))
>>> [float(s) for s in state]
[0.5, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fedmodel.metrics import STANDARD_METRICS, SumThenFinalize, identity, ratio

__all__ = ["Metric", "MetricState", "mean_metric", "output_computation", "sum_metric"]

MetricState = tuple[torch.Tensor, ...]
"""The state of one metric: a tuple of tensors of fixed shapes and dtypes, each a sum over examples."""


@dataclass(frozen=True)
class Metric:
    """A user metric: a named state of sums, updated per batch, finalized after aggregation.

    Args:
        name: the key of the metric in ``report_local_outputs()`` and in the final metrics; must not be
            one of :data:`fedmodel.metrics.STANDARD_METRICS`.
        init: a zero-argument function returning the initial state (a tuple of CPU tensors).
        update: ``update(state, y, predictions) -> new_state`` for one batch, a pure function of
            tensors; the new state has the same shapes and dtypes. It runs under ``torch.no_grad()``.
        finalize: the final value from the state summed over clients (numpy arrays, in a tuple),
            e.g. :func:`fedmodel.metrics.ratio` for a ``(total, count)`` pair.
    """

    name: str
    init: Callable[[], MetricState]
    update: Callable[[MetricState, Any, torch.Tensor], MetricState]
    finalize: Callable[[Any], Any] = identity

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a metric needs a non-empty string name, got {self.name!r}")
        if self.name in STANDARD_METRICS:
            raise ValueError(f"metric name {self.name!r} is taken by the standard metrics {STANDARD_METRICS}")
        for attr in ("init", "update", "finalize"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"metric {self.name!r}: {attr} must be callable")


def mean_metric(name: str, per_example: Callable[[Any, torch.Tensor], torch.Tensor]) -> Metric:
    """A metric averaged over examples: state ``(Σ values, number of examples)``, finalized as their ratio.

    Args:
        name: the metric's name.
        per_example: ``per_example(y, predictions)`` → one value per example, shape ``(batch,)``.
    """

    def init() -> MetricState:
        return torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)

    def update(state: MetricState, y: Any, predictions: torch.Tensor) -> MetricState:
        values = per_example(y, predictions)
        total, count = state
        return total + values.sum().to(total.device, torch.float64), count + values.shape[0]

    return Metric(name, init, update, ratio)


def sum_metric(
    name: str, per_batch: Callable[[Any, torch.Tensor], torch.Tensor], *, shape: Sequence[int] = ()
) -> Metric:
    """A metric summed over batches and clients (a count, a confusion matrix): state ``(Σ values,)``.

    Args:
        name: the metric's name.
        per_batch: ``per_batch(y, predictions)`` → the batch's contribution, of shape ``shape``.
        shape: the shape of the sum.
    """

    def init() -> MetricState:
        return (torch.zeros(tuple(shape), dtype=torch.float64),)

    def update(state: MetricState, y: Any, predictions: torch.Tensor) -> MetricState:
        (total,) = state
        return (total + per_batch(y, predictions).to(total.device, torch.float64),)

    return Metric(name, init, update, lambda summed: identity(summed[0]))


def output_computation(metrics: Sequence[Metric]) -> SumThenFinalize:
    """Sum every report over clients, then finalize: ``loss`` and ``accuracy`` as ratios, user metrics by theirs."""
    finalizers: dict[str, Callable[[Any], Any]] = {"loss": ratio, "accuracy": ratio}
    finalizers.update({m.name: m.finalize for m in metrics})
    return SumThenFinalize(finalizers)
