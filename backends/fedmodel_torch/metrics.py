"""User metrics of PyTorch models: :class:`fedmodel.backend_kit.Metric` built over torch tensors.

Every metric is a tuple of *sums* kept in tensors (the model's local variables), so that clients'
reports can be summed by the server and finalized once. ``update`` has Keras's signature,
``update(state, y_true, y_pred, sample_weight=None)``, and runs under ``torch.no_grad()``.

>>> import torch
>>> mae = mean_metric("mae", lambda y_true, y_pred: (y_pred.squeeze(-1) - y_true).abs())
>>> state = mae.update(mae.init(), torch.tensor([1.0, 2.0]), torch.tensor([[1.5], [2.0]]))
>>> [float(s) for s in state]
[0.5, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from fedmodel.backend_kit import Metric as Metric
from fedmodel.metrics import identity, ratio

__all__ = ["Metric", "MetricState", "mean_metric", "sum_metric"]

MetricState = tuple[torch.Tensor, ...]
"""The state of one metric: a tuple of tensors of fixed shapes and dtypes, each a sum over examples."""


def mean_metric(name: str, per_example: Callable[[Any, torch.Tensor], torch.Tensor]) -> Metric:
    """A metric averaged over examples: state ``(Σ w·value, Σ w)`` in float64, finalized as their ratio.

    Args:
        name: the metric's name.
        per_example: ``per_example(y_true, y_pred)`` → one value per example, shape ``(batch,)``.

    ``sample_weight`` (one weight per example) weights the values and the count; ``None`` weighs 1 each.
    """

    def init() -> MetricState:
        return torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)

    def update(state: MetricState, y_true: Any, y_pred: torch.Tensor, sample_weight: Any = None) -> MetricState:
        total, count = state
        values = per_example(y_true, y_pred).to(total.device, torch.float64)
        if sample_weight is None:
            return total + values.sum(), count + values.shape[0]
        weight = torch.as_tensor(sample_weight, device=total.device, dtype=torch.float64)
        return total + (values * weight).sum(), count + weight.expand_as(values).sum()

    return Metric(name, init, update, ratio)


def sum_metric(
    name: str, per_batch: Callable[[Any, torch.Tensor], torch.Tensor], *, shape: Sequence[int] = ()
) -> Metric:
    """A metric summed over batches and clients (a count, a confusion matrix): state ``(Σ values,)`` in float64.

    Args:
        name: the metric's name.
        per_batch: ``per_batch(y_true, y_pred)`` → the batch's contribution, of shape ``shape``.
        shape: the shape of the sum.

    ``sample_weight`` is not defined for a per-batch value: passing one raises ``ValueError``.
    """

    def init() -> MetricState:
        return (torch.zeros(tuple(shape), dtype=torch.float64),)

    def update(state: MetricState, y_true: Any, y_pred: torch.Tensor, sample_weight: Any = None) -> MetricState:
        if sample_weight is not None:
            raise ValueError(f"sum metric {name!r}: a per-batch sum takes no sample_weight")
        (total,) = state
        return (total + per_batch(y_true, y_pred).to(total.device, torch.float64),)

    return Metric(name, init, update, lambda summed: identity(summed[0]))
