"""User metrics of JAX models: the kit's :class:`Metric` over JAX arrays, traced inside the jitted steps.

A metric's state is a tuple of arrays of fixed shapes and dtypes (the model's local variables
``metrics/<name>/<i>``); ``update(state, y_true, y_pred, sample_weight=None)`` is pure JAX, so it runs
inside the model's jitted forward pass and train step at no extra dispatch. The server sums the states
over clients and calls ``finalize`` once.

>>> import jax.numpy as jnp
>>> mae = mean_metric("mae", lambda y_true, y_pred: jnp.abs(y_pred[:, 0] - y_true))
>>> state = mae.update(mae.init(), jnp.array([1.0, 2.0]), jnp.array([[1.5], [2.0]]))
>>> [float(s) for s in state]
[0.5, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fedmodel.backend_kit import Metric
from fedmodel.metrics import ratio

__all__ = ["Metric", "mean_metric", "sum_metric"]


def mean_metric(name: str, per_example: Callable[[Any, Any], Any]) -> Metric:
    """A metric averaged over examples: state ``(Σ values, Σ weights)`` (``float32``), finalized as their ratio.

    Args:
        name: the metric's name.
        per_example: ``per_example(y_true, y_pred)`` -> one value per example, shape ``(batch,)``.
    """

    def init() -> tuple[jax.Array, jax.Array]:
        return jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)

    def update(state: tuple[Any, ...], y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[Any, ...]:
        values = jnp.asarray(per_example(y_true, y_pred), jnp.float32)
        weights = jnp.ones_like(values) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
        total, count = state
        return total + jnp.sum(values * weights), count + jnp.sum(weights)

    return Metric(name, init, update, ratio)


def sum_metric(name: str, per_batch: Callable[[Any, Any], Any], *, shape: Sequence[int] = ()) -> Metric:
    """A metric summed over batches and clients (a count, a confusion matrix): state ``(Σ values,)`` (``float32``).

    Args:
        name: the metric's name.
        per_batch: ``per_batch(y_true, y_pred)`` -> the batch's contribution, of shape ``shape``.
        shape: the shape of the sum.

    ``sample_weight`` is not defined for a per-batch value: passing one raises ``ValueError``.
    """

    def init() -> tuple[jax.Array]:
        return (jnp.zeros(tuple(shape), jnp.float32),)

    def update(state: tuple[Any, ...], y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[Any, ...]:
        if sample_weight is not None:
            raise ValueError(f"sum metric {name!r}: a per-batch sum takes no sample_weight")
        (total,) = state
        return (total + jnp.asarray(per_batch(y_true, y_pred), jnp.float32),)

    return Metric(name, init, update, lambda summed: summed[0])
