"""Keras metrics as unfinalized reports, finalized only after aggregation (as TFF did).

A client reports each Keras metric's *state variables* (for ``Mean``-style metrics, ``(total, count)``);
the server sums them over clients and finalizes once, so the federated accuracy is exactly the accuracy
over the union of the clients' data, not a mean of means.

Finalizers: ``Mean`` and its subclasses (every ``MeanMetricWrapper``: accuracies, MSE, ...) finalize as
``total / count`` and ``Sum`` as ``total``, in numpy. Any other metric is finalized by a fresh Keras
metric of the same config whose variables are set to the summed state, then ``result()``: correct for
every metric whose state adds up across clients (confusion counts of ``AUC``, ``Precision``, ...), not
for order statistics such as a running maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from fedmodel.metrics import STANDARD_METRICS, SumThenFinalize, identity, ratio
from fedmodel_tensorflow._compat import keras

__all__ = [
    "KerasMetricFinalizer",
    "check_metric_names",
    "check_metrics_fit",
    "finalizer_for",
    "make_metrics",
    "output_computation",
]

MetricLike: TypeAlias = "keras.metrics.Metric | Callable[[], keras.metrics.Metric]"


def make_metrics(metrics: Sequence[MetricLike] | None) -> list[keras.metrics.Metric]:
    """Keras metric instances from instances or zero-argument constructors (prefer constructors: a
    metric instance passed to two models would be shared by both)."""
    out = []
    for i, item in enumerate(metrics or ()):
        metric = item if isinstance(item, keras.metrics.Metric) else item() if callable(item) else item
        if not isinstance(metric, keras.metrics.Metric):
            raise TypeError(
                f"metrics[{i}] is {type(item).__name__}: expected a keras.metrics.Metric or a zero-argument "
                "callable returning one (e.g. keras.metrics.SparseCategoricalAccuracy)"
            )
        out.append(metric)
    return out


def check_metric_names(metrics: Sequence[keras.metrics.Metric]) -> None:
    """Raise ``ValueError`` when two metrics share a name or one takes a standard report key."""
    seen: set[str] = set()
    for metric in metrics:
        if metric.name in STANDARD_METRICS:
            raise ValueError(
                f"the metric {type(metric).__name__} is named {metric.name!r}, a key of the standard report "
                f"{STANDARD_METRICS}; give it another name (e.g. name='keras_{metric.name}')"
            )
        if metric.name in seen:
            raise ValueError(f"two metrics are named {metric.name!r}; metric names must be unique")
        seen.add(metric.name)


def check_metrics_fit(metrics: Sequence[keras.metrics.Metric], y: Any, output: Any) -> None:
    """Raise ``ValueError`` when a metric cannot be updated as ``update_state(y_true, y_pred)``.

    Each metric is tried on a fresh copy built from its config (the metric itself is untouched); a
    metric that cannot be rebuilt from its config is not checked here.
    """
    for metric in metrics:
        try:
            probe = type(metric).from_config(metric.get_config())
        except Exception:  # a user metric whose config does not round-trip: not checkable here
            continue
        try:
            probe.update_state(y, output)
        except Exception as exc:
            raise ValueError(
                f"the metric {metric.name!r} ({type(metric).__name__}) cannot be updated as "
                f"update_state(y_true, y_pred) with labels of shape {tuple(getattr(y, 'shape', ()))} and "
                f"predictions of shape {tuple(getattr(output, 'shape', ()))}: {type(exc).__name__}: {exc}. "
                "Metrics get (y_true, y_pred), as in model.compile(metrics=...); a plain Mean or Sum "
                "takes (values, sample_weight) and needs a wrapper"
            ) from exc


@dataclass(frozen=True)
class KerasMetricFinalizer:
    """Finalize a summed metric state with a fresh Keras metric built from ``config``."""

    metric_class: type[keras.metrics.Metric]
    config: dict[str, Any]

    def __call__(self, state: Any) -> Any:
        """``result()`` of a fresh metric whose variables hold ``state`` (one array per variable)."""
        metric = self.metric_class.from_config(dict(self.config))
        values = list(state) if isinstance(state, (tuple, list)) else [state]
        if len(values) != len(metric.variables):
            raise ValueError(f"metric {metric.name!r} has {len(metric.variables)} variables, got {len(values)} values")
        for var, value in zip(metric.variables, values, strict=True):
            var.assign(np.asarray(value).astype(var.dtype))
        result = np.asarray(metric.result())
        return result.item() if result.ndim == 0 else result


def finalizer_for(metric: keras.metrics.Metric) -> Callable[[Any], Any]:
    """The finalizer of one metric's summed state (numpy for ``Mean`` and ``Sum``, Keras otherwise)."""
    if isinstance(metric, keras.metrics.Mean) and len(metric.variables) == 2:
        return ratio
    if isinstance(metric, keras.metrics.Sum) and len(metric.variables) == 1:
        return lambda state: identity(state[0])
    return KerasMetricFinalizer(type(metric), metric.get_config())


def output_computation(metrics: Sequence[keras.metrics.Metric], *, with_accuracy: bool) -> SumThenFinalize:
    """Sum every report over clients, then finalize the standard report and each Keras metric."""
    finalizers: dict[str, Callable[[Any], Any]] = {"loss": ratio}
    if with_accuracy:
        finalizers["accuracy"] = ratio
    for metric in metrics:
        finalizers[metric.name] = finalizer_for(metric)
    return SumThenFinalize(finalizers)
