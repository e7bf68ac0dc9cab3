"""Validation of incoming client updates before aggregation: a bad update is rejected with its reason.

An update is accepted when it is a :class:`~fedmodel.ModelWeights` that matches the server's template in
count, names, shapes and dtypes (:func:`fedmodel.aggregation.check_update`), every floating-point value
(bfloat16 included) is finite, its aggregation weight is finite and non-negative and, optionally, the L2
norm of its change from the server's weights is at most a bound.

>>> from fedmodel import ModelWeights
>>> server = ModelWeights((np.zeros(2, np.float32),), (), trainable_names=("w",))
>>> good = ModelWeights((np.ones(2, np.float32),), (), trainable_names=("w",))
>>> bad = ModelWeights((np.array([1.0, np.nan], np.float32),), (), trainable_names=("w",))
>>> result = filter_updates(server, [(good, 10), (bad, 5)])
>>> len(result.accepted), result.rejected[0].reason
(1, "client 1: 'w' has 1 non-finite values (NaN or inf)")
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights
from fedmodel.aggregation import check_update
from fedmodel.server_optimizers import is_float

__all__ = [
    "FilterResult",
    "Rejection",
    "check_client_update",
    "delta_norm",
    "filter_updates",
    "update_problem",
]


def _names(weights: ModelWeights) -> tuple[str, ...]:
    return weights.names or tuple(f"#{i}" for i in range(len(weights.arrays)))


def delta_norm(template: ModelWeights, update: ModelWeights) -> float:
    """The L2 norm of ``update - template`` over every floating-point variable, in float64.

    Integer variables (counters) are left out: they are not a direction in weight space. One temporary of
    one variable's size is held at a time.
    """
    total = 0.0
    for want, got in zip(template.arrays, update.arrays, strict=True):
        if is_float(want):
            d = np.subtract(np.asarray(got, np.float64), np.asarray(want, np.float64)).reshape(-1)
            total += float(np.dot(d, d))
    return math.sqrt(total)


def check_client_update(
    template: ModelWeights,
    update: Any,
    weight: float = 1.0,
    *,
    client: str = "client",
    max_delta_norm: float | None = None,
) -> None:
    """Raise :class:`~fedmodel.AggregationError` with the reason unless ``update`` may be aggregated.

    Args:
        template: the server's current weights (names, shapes and dtypes to match; the norm's origin).
        update: what the client sent.
        weight: its aggregation weight (usually its number of examples): finite and ``>= 0``.
        client: how the client is named in the message.
        max_delta_norm: when given, the largest accepted L2 norm of ``update - template`` (float variables).
    """
    if not isinstance(update, ModelWeights):
        raise AggregationError(f"{client}: expected fedmodel.ModelWeights, got {type(update).__name__}")
    try:
        w = float(weight)
    except (TypeError, ValueError):
        raise AggregationError(f"{client}: the weight {weight!r} is not a number") from None
    if not math.isfinite(w) or w < 0:
        raise AggregationError(f"{client}: the weight must be finite and >= 0, got {w}")
    check_update(template, update, client=client)
    for name, arr in zip(_names(template), update.arrays, strict=True):
        if arr.dtype.name == "bfloat16" and not np.isfinite(arr).all():  # check_update misses kind "V"
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise AggregationError(f"{client}: {name!r} has {bad} non-finite values (NaN or inf)")
    if max_delta_norm is not None:
        norm = delta_norm(template, update)
        if not norm <= max_delta_norm:
            raise AggregationError(f"{client}: the update moves the weights by {norm:.6g} (L2), above {max_delta_norm}")


def update_problem(
    template: ModelWeights,
    update: Any,
    weight: float = 1.0,
    *,
    client: str = "client",
    max_delta_norm: float | None = None,
) -> str | None:
    """The reason :func:`check_client_update` would reject ``update``, or ``None`` when it is valid."""
    try:
        check_client_update(template, update, weight, client=client, max_delta_norm=max_delta_norm)
    except AggregationError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Rejection:
    """One rejected update: its position in the input, the client's label and the reason."""

    index: int
    client: str
    reason: str


@dataclass(frozen=True)
class FilterResult:
    """:func:`filter_updates`'s answer: the accepted ``(weights, weight)`` pairs in order, and the rejections."""

    accepted: list[tuple[ModelWeights, float]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def filter_updates(
    template: ModelWeights,
    updates: Iterable[tuple[Any, float]],
    *,
    clients: Sequence[str] | None = None,
    max_delta_norm: float | None = None,
) -> FilterResult:
    """Split ``(update, weight)`` pairs into the accepted ones and the rejected ones with their reasons.

    Args:
        template: the server's current weights.
        updates: ``(weights, weight)`` pairs, e.g. ``(result.weights, result.num_examples)``.
        clients: labels for the messages (default ``"client <index>"``).
        max_delta_norm: as in :func:`check_client_update`.
    """
    result = FilterResult()
    for i, (update, weight) in enumerate(updates):
        label = clients[i] if clients is not None else f"client {i}"
        reason = update_problem(template, update, weight, client=label, max_delta_norm=max_delta_norm)
        if reason is None:
            result.accepted.append((update, float(weight)))
        else:
            result.rejected.append(Rejection(i, label, reason))
    return result
