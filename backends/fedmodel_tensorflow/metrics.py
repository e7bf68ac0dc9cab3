"""User metrics of TensorFlow models: the kit's :class:`Metric`, built here or from Keras metrics.

Every metric is a :class:`fedmodel.backend_kit.Metric`: a tuple of sums in tensors (the model's local
variables), updated per batch as ``update(state, y_true, y_pred, sample_weight=None)``, reported
unfinalized, summed over clients and finalized once, so the federated value is exactly the value over
the union of the clients' data, not a mean of means.

:func:`mean_metric` and :func:`sum_metric` build common ones. A Keras metric (an instance or a
zero-argument constructor) becomes a :class:`Metric` by :func:`from_keras_metric`: its state is its Keras
variables, updated with Keras's ``stateless_update_state`` (the Keras metric itself never changes).
Finalizers: ``Mean`` and its subclasses (every ``MeanMetricWrapper``: accuracies, MSE...) finalize as
``total / count`` and ``Sum`` as ``total``, in numpy. Any other Keras metric is finalized by a fresh
Keras metric of the same config whose variables hold the summed state, then ``result()``: correct for
every metric whose state adds up across clients (confusion counts of ``AUC``, ``Precision``...), not for
order statistics such as a running maximum.

>>> mae = mean_metric("mae", lambda y, p: tf.abs(p[:, 0] - y))
>>> [float(s) for s in mae.update(mae.init(), tf.constant([1.0, 2.0]), tf.constant([[1.5], [2.0]]))]
[0.5, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from fedmodel.backend_kit import Metric, check_metric_names, output_computation
from fedmodel.metrics import STANDARD_METRICS, identity, ratio
from fedmodel_tensorflow._compat import keras, tf

__all__ = [
    "KerasMetricFinalizer",
    "Metric",
    "MetricLike",
    "finalizer_for",
    "from_keras_metric",
    "make_metrics",
    "mean_metric",
    "output_computation",
    "sum_metric",
]

MetricLike: TypeAlias = "Metric | keras.metrics.Metric | Callable[[], keras.metrics.Metric]"


def mean_metric(name: str, per_example: Callable[[Any, Any], Any]) -> Metric:
    """A metric averaged over examples: state ``(Σ w·value, Σ w)`` in float64, finalized as their ratio.

    Args:
        name: the metric's name.
        per_example: ``per_example(y_true, y_pred)`` -> one value per example, shape ``(batch,)``.

    ``sample_weight`` (one weight per example) weights the values and the count; ``None`` weighs 1 each.
    """

    def init() -> tuple[tf.Tensor, tf.Tensor]:
        return tf.zeros((), tf.float64), tf.zeros((), tf.float64)

    def update(state: Any, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
        values = tf.cast(tf.convert_to_tensor(per_example(y_true, y_pred)), tf.float64)
        total, count = state
        if sample_weight is None:
            return total + tf.reduce_sum(values), count + tf.cast(tf.shape(values)[0], tf.float64)
        weight = tf.broadcast_to(tf.cast(sample_weight, tf.float64), tf.shape(values))
        return total + tf.reduce_sum(values * weight), count + tf.reduce_sum(weight)

    return Metric(name, init, update, ratio)


def sum_metric(name: str, per_batch: Callable[[Any, Any], Any], *, shape: Sequence[int] = ()) -> Metric:
    """A metric summed over batches and clients (a count, a confusion matrix): state ``(Σ values,)``.

    Args:
        name: the metric's name.
        per_batch: ``per_batch(y_true, y_pred)`` -> the batch's contribution, of shape ``shape``.
        shape: the shape of the sum.

    ``sample_weight`` is not defined for a per-batch value: passing one raises ``ValueError``.
    """
    dims = tuple(int(d) for d in shape)

    def init() -> tuple[tf.Tensor]:
        return (tf.zeros(dims, tf.float64),)

    def update(state: Any, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[tf.Tensor]:
        if sample_weight is not None:
            raise ValueError(f"sum metric {name!r}: a per-batch sum takes no sample_weight")
        (total,) = state
        return (total + tf.cast(per_batch(y_true, y_pred), tf.float64),)

    return Metric(name, init, update, lambda summed: identity(summed[0]))


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
    """The finalizer of one Keras metric's summed state (numpy for ``Mean`` and ``Sum``, Keras otherwise)."""
    if isinstance(metric, keras.metrics.Mean) and len(metric.variables) == 2:
        return ratio
    if isinstance(metric, keras.metrics.Sum) and len(metric.variables) == 1:
        return lambda state: identity(state[0])
    return KerasMetricFinalizer(type(metric), metric.get_config())


@dataclass(frozen=True)
class _KerasMetric(Metric):
    """A :class:`Metric` over a Keras metric's variables; ``state_names`` are those variables' names."""

    state_names: tuple[str, ...] = ()


def from_keras_metric(metric: keras.metrics.Metric) -> Metric:
    """``metric`` as a kit :class:`Metric` whose state is its variables' values, updated statelessly.

    Raises:
        ValueError: the metric takes a name of the standard report (naming a way out).
    """
    if metric.name in STANDARD_METRICS:
        raise ValueError(
            f"the metric {type(metric).__name__} is named {metric.name!r}, a key of the standard report "
            f"{STANDARD_METRICS}; give it another name (e.g. name='keras_{metric.name}')"
        )

    def init() -> tuple[tf.Tensor, ...]:
        return tuple(tf.convert_to_tensor(v) for v in metric.stateless_reset_state())

    def update(state: Any, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[Any, ...]:
        extra = {} if sample_weight is None else {"sample_weight": sample_weight}
        return tuple(metric.stateless_update_state(list(state), y_true, y_pred, **extra))

    names = tuple(v.name for v in metric.variables)
    return _KerasMetric(metric.name, init, update, finalizer_for(metric), state_names=names)


def make_metrics(metrics: Sequence[MetricLike] | None) -> list[Metric]:
    """Kit metrics from kit metrics, Keras metric instances or zero-argument Keras constructors.

    Raises:
        TypeError: an entry is none of those, naming its index.
        ValueError: two metrics share a name, or one takes a standard report key.
    """
    out: list[Metric] = []
    for i, item in enumerate(metrics or ()):
        if isinstance(item, Metric):
            out.append(item)
            continue
        metric = item if isinstance(item, keras.metrics.Metric) else item() if callable(item) else item
        if not isinstance(metric, keras.metrics.Metric):
            raise TypeError(
                f"metrics[{i}] is {type(item).__name__}: expected a fedmodel.backend_kit.Metric (mean_metric, "
                "sum_metric), a keras.metrics.Metric or a zero-argument callable returning one "
                "(e.g. keras.metrics.SparseCategoricalAccuracy)"
            )
        out.append(from_keras_metric(metric))
    try:
        check_metric_names(out)
    except ValueError as exc:
        raise ValueError(f"{exc}; metric names must be unique") from None
    return out
