"""Metrics as pure functions over a pytree of accumulators (optax style: ``init`` / ``update`` / ``report``).

The accumulators are the model's local variables; ``update`` runs inside the model's jitted forward
pass and train step, so a metric costs no extra dispatch.

>>> metrics = standard_metrics()
>>> state = metrics.init()
>>> sorted(state)
['correct', 'count', 'loss_sum']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedmodel.metrics import Aggregator, standard_output_computation

__all__ = ["JaxMetrics", "standard_metrics"]


class JaxMetrics(NamedTuple):
    """Metrics of a JAX model as three pure functions and the aggregator of their reports.

    Attributes:
        init: ``() -> state``, the pytree of accumulators at their initial values.
        update: ``(state, loss, outputs, y) -> state``, traced inside the model's jitted step; ``loss``
            is the batch's mean loss, ``outputs`` the model's predictions.
        report: ``(state) -> {name: unfinalized value}`` on numpy arrays (the contract's
            ``report_local_outputs``).
        aggregator: the :class:`fedmodel.Aggregator` that finalizes clients' reports.
    """

    init: Callable[[], Any]
    update: Callable[[Any, jax.Array, Any, Any], Any]
    report: Callable[[Any], Mapping[str, Any]]
    aggregator: Aggregator


def _standard_init() -> dict[str, jax.Array]:
    return {
        "loss_sum": jnp.zeros((), jnp.float32),
        "correct": jnp.zeros((), jnp.int32),
        "count": jnp.zeros((), jnp.int32),
    }


def _hits(outputs: Any, y: Any) -> jax.Array:
    """How many rows' argmax is the label; labels shaped ``(n,)`` or ``(n, 1)`` (never broadcast to ``(n, n)``)."""
    predicted = jnp.argmax(outputs, axis=-1)
    if y.ndim == predicted.ndim + 1 and y.shape[-1] == 1:
        y = y.reshape(predicted.shape)
    return jnp.sum(predicted == y).astype(jnp.int32)


def _standard_update(state: dict[str, jax.Array], loss: jax.Array, outputs: Any, y: Any) -> dict[str, jax.Array]:
    n = y.shape[0]
    return {
        "loss_sum": state["loss_sum"] + loss.astype(jnp.float32) * n,
        "correct": state["correct"] + _hits(outputs, y),
        "count": state["count"] + n,
    }


def _standard_report(state: Mapping[str, Any]) -> dict[str, Any]:
    loss_sum, correct, count = (np.array(state[k], copy=True) for k in ("loss_sum", "correct", "count"))
    return {"loss": (loss_sum, count), "accuracy": (correct, count), "num_examples": count}


def _loss_only_init() -> dict[str, jax.Array]:
    return {"loss_sum": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.int32)}


def _loss_only_update(state: dict[str, jax.Array], loss: jax.Array, outputs: Any, y: Any) -> dict[str, jax.Array]:
    n = jax.tree_util.tree_leaves(y)[0].shape[0]
    return {"loss_sum": state["loss_sum"] + loss.astype(jnp.float32) * n, "count": state["count"] + n}


def _loss_only_report(state: Mapping[str, Any]) -> dict[str, Any]:
    loss_sum, count = (np.array(state[k], copy=True) for k in ("loss_sum", "count"))
    return {"loss": (loss_sum, count), "num_examples": count}


def standard_metrics(accuracy: bool = True) -> JaxMetrics:
    """fedmodel's ``STANDARD_METRICS``: ``loss`` and, for a classifier, ``accuracy``, as ``(total, count)``.

    ``loss`` sums ``mean batch loss * batch size``; ``accuracy`` counts ``argmax(outputs, -1) == y`` for
    integer labels shaped ``(n,)`` or ``(n, 1)``; ``num_examples`` counts examples. With
    ``accuracy=False`` (a regression: :class:`~fedmodel_jax.JaxModel` chooses it when the labels are not
    one integer array) there is no accuracy. Aggregated by :func:`fedmodel.metrics.standard_output_computation`.
    """
    if not accuracy:
        return JaxMetrics(_loss_only_init, _loss_only_update, _loss_only_report, standard_output_computation())
    return JaxMetrics(_standard_init, _standard_update, _standard_report, standard_output_computation())
