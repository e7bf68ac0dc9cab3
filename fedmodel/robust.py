"""Robust aggregators: coordinate-wise median, trimmed mean and norm clipping.

Each has :class:`fedmodel.aggregation.WeightsAggregator`'s shape (``init`` / ``accumulate`` /
``finalize``) and can replace :class:`~fedmodel.aggregation.WeightedMean` in a
:class:`fedmodel.algorithms.FederatedAlgorithm`. Each rejects, in ``accumulate``, an update that is not
valid against the template (count, names, shapes, dtypes, non-finite values, a bad weight) with an
:class:`~fedmodel.AggregationError` naming the reason, and leaves its state as it was, so a caller may
drop that client and go on.

* :class:`CoordinateMedian` and :class:`TrimmedMean` (Yin et al., "Byzantine-Robust Distributed
  Learning: Towards Optimal Statistical Rates", ICML 2018) need **all K updates at once**: their state
  keeps a reference to every accepted update (K models in memory), and ``finalize`` stacks them one
  variable at a time. Every client counts once: the weight is validated but not used, since a weight
  reported by the client (its number of examples) is itself an attack surface. The median tolerates up
  to ``ceil(K / 2) - 1`` arbitrary updates; the trimmed mean ``floor(beta K)`` (by default ``beta = 0.2``:
  one among 5 to 9 clients, two among 10 to 14; none below 5 clients).
* :class:`NormClipping` streams (one float64 accumulator per variable): each client's change from the
  server weights is scaled down to an L2 norm of at most ``max_norm`` (over all float variables), then the
  example-weighted mean is taken, so the aggregate moves the model by at most ``max_norm``, whatever the
  updates and whatever the clients claim as weights.

Integer variables follow the declared :data:`~fedmodel.aggregation.IntegerRule`: ``"round"`` rounds the
aggregator's own statistic (median, trimmed mean, weighted mean of the values), saturating at the dtype's
bounds, ``"max"`` and ``"first"`` as in ``WeightedMean``.

>>> from fedmodel import ModelWeights
>>> ups = [ModelWeights((np.array([v], np.float32),)) for v in (1.0, 2.0, 1000.0)]
>>> CoordinateMedian().aggregate([(u, 1.0) for u in ups]).trainable[0]
array([2.], dtype=float32)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights
from fedmodel.aggregation import (
    IntegerRule,
    ScaledSum,
    _integer_final,
    _integer_rules,
    aggregate,
    check_integer_rule,
    check_real,
)
from fedmodel.validation import delta_norm, is_float, validate_weight, validated_for

__all__ = ["CoordinateMedian", "NormClipping", "TrimmedMean"]


@dataclass
class _Collected:
    template: ModelWeights
    updates: list[ModelWeights] = field(default_factory=list)
    maxima: list[np.ndarray | None] = field(default_factory=list)
    firsts: list[np.ndarray | None] = field(default_factory=list)


class _AllUpdatesAtOnce:
    """What the coordinate-wise aggregators share: keep every valid update, then one statistic per coordinate."""

    integer_rule: IntegerRule

    def init(self, template: ModelWeights) -> _Collected:
        """An empty list of updates, to be checked against ``template``."""
        check_real(template)
        none: list[np.ndarray | None] = [None] * len(template.arrays)
        return _Collected(template, [], list(none), list(none))

    def accumulate(self, state: _Collected, update: ModelWeights, weight: float) -> _Collected:
        """Validate ``update`` and ``weight`` (raising :class:`~fedmodel.AggregationError` with the reason) and
        keep the update."""
        client = f"client {len(state.updates)}"
        validate_weight(weight, client=client)
        checked = validated_for(state.template, update, client=client)
        _integer_rules(self.integer_rule, state, checked)
        state.updates.append(checked)
        return state

    def finalize(self, state: _Collected) -> ModelWeights:
        """The statistic of every coordinate over the kept updates, in float64, cast back to each
        variable's dtype (integer variables by ``integer_rule``)."""
        self._check_count(len(state.updates))
        out = []
        for i, like in enumerate(state.template.arrays):
            stacked = np.stack([np.asarray(u.arrays[i], np.float64) for u in state.updates])
            value = self._statistic(stacked)
            out.append(
                value.astype(like.dtype) if is_float(like) else _integer_final(self.integer_rule, state, i, value)
            )
        return state.template.with_arrays(out)

    def aggregate(self, updates: Iterable[tuple[ModelWeights, float]]) -> ModelWeights:
        """``finalize`` of every ``(weights, weight)`` pair (the first one is the template)."""
        return aggregate(self, updates)

    def _check_count(self, k: int) -> None:
        if k == 0:
            raise AggregationError("nothing to aggregate: no client update")

    def _statistic(self, stacked: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class CoordinateMedian(_AllUpdatesAtOnce):
    """The coordinate-wise median of the client updates (each client counts once).

    Needs all K updates at once: the state holds every accepted update until :meth:`finalize`. Tolerates up
    to ``ceil(K / 2) - 1`` arbitrary updates.

    Args:
        integer_rule: how integer variables are combined (default: the rounded median).
    """

    integer_rule: IntegerRule = "round"

    def __post_init__(self) -> None:
        check_integer_rule(self.integer_rule)

    def _statistic(self, stacked: np.ndarray) -> np.ndarray:
        return np.median(stacked, axis=0)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TrimmedMean(_AllUpdatesAtOnce):
    """The coordinate-wise ``beta``-trimmed mean: per coordinate, drop the ``floor(beta K)`` largest and
    smallest client values and average the rest (each client counts once).

    Needs all K updates at once: the state holds every accepted update until :meth:`finalize`. Tolerates
    ``floor(beta K)`` arbitrary updates: with the default ``beta = 0.2``, one among 5 to 9 clients, two among
    10 to 14, none among fewer than 5.

    Args:
        beta: the fraction trimmed on each side, in ``[0, 0.5)``.
        integer_rule: how integer variables are combined (default: the rounded trimmed mean).
    """

    beta: float = 0.2
    integer_rule: IntegerRule = "round"

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 0.5:
            raise ValueError(f"beta must be in [0, 0.5), got {self.beta}")
        check_integer_rule(self.integer_rule)

    def _statistic(self, stacked: np.ndarray) -> np.ndarray:
        k = len(stacked)
        cut = int(np.floor(self.beta * k))  # 2 cut < k since beta < 0.5
        if cut:  # a partition puts the cut smallest first and the cut largest last, in O(K)
            stacked = np.partition(stacked, (cut, k - cut - 1), axis=0)
        return stacked[cut : k - cut].mean(axis=0)  # type: ignore[no-any-return]


@dataclass
class _ClipState:
    template: ModelWeights
    sums: list[ScaledSum]
    maxima: list[np.ndarray | None]
    firsts: list[np.ndarray | None]
    total_weight: float = 0.0
    count: int = 0
    clipped: int = 0


@dataclass(frozen=True)
class NormClipping:
    """The example-weighted mean of the clients' changes, each clipped to an L2 norm of ``max_norm``.

    ``init`` must receive the **server's current weights**: a client's change is ``update - template``,
    scaled by ``min(1, max_norm / ||update - template||)`` over all float variables, and the result is
    ``template + Σ w_k clipped_k / Σ w_k``, which moves the model by at most ``max_norm`` for any finite
    updates and weights. Streams: one float64 accumulator per variable.

    Args:
        max_norm: the largest L2 norm of one client's change, finite and ``> 0``.
        integer_rule: how integer variables are combined (default: the rounded weighted mean).
    """

    max_norm: float
    integer_rule: IntegerRule = "round"

    def __post_init__(self) -> None:
        if not 0 < self.max_norm < math.inf:
            raise ValueError(f"max_norm must be finite and > 0, got {self.max_norm}")
        check_integer_rule(self.integer_rule)

    def init(self, template: ModelWeights) -> _ClipState:
        """One float64 accumulator per variable; ``template`` is the origin of every change."""
        check_real(template)
        sums = [ScaledSum(a.shape, np.dtype(np.float64)) for a in template.arrays]
        return _ClipState(template, sums, [None] * len(sums), [None] * len(sums))

    def accumulate(self, state: _ClipState, update: ModelWeights, weight: float) -> _ClipState:
        """Validate ``update``, clip its change from the template and add ``weight *`` it in place."""
        client = f"client {state.count}"
        w = validate_weight(weight, client=client)
        checked = validated_for(state.template, update, client=client)
        if not math.isfinite(state.total_weight + w):
            raise AggregationError(f"{client}: the total weight would overflow ({state.total_weight} + {w})")
        norm = delta_norm(state.template, checked)
        scale = 1.0 if norm <= self.max_norm else self.max_norm / norm  # norm may be inf: scale 0
        state.clipped += int(scale < 1.0)
        _integer_rules(self.integer_rule, state, checked)
        for total, origin, arr, bound in zip(
            state.sums, state.template.arrays, checked.arrays, checked.max_abs, strict=True
        ):
            if not is_float(origin):
                total.add(arr, w, bound)
                continue
            change = np.subtract(np.asarray(arr, np.float64), np.asarray(origin, np.float64))
            if scale < 1.0:
                change *= scale
            total.add(change, w, min(self.max_norm, float(np.max(np.abs(change), initial=0.0))))
        state.total_weight += w
        state.count += 1
        return state

    def finalize(self, state: _ClipState) -> ModelWeights:
        """``template + Σ w_k clipped_k / Σ w_k``, cast back to each variable's dtype."""
        if state.count == 0 or state.total_weight <= 0:
            raise AggregationError("nothing to aggregate: no client update with a positive weight")
        out = []
        for i, (origin, total) in enumerate(zip(state.template.arrays, state.sums, strict=True)):
            mean = total.mean(state.total_weight)
            if not is_float(origin):
                out.append(_integer_final(self.integer_rule, state, i, mean))
                continue
            with np.errstate(over="ignore"):  # a model at the dtype's edge: the server round checks the result
                out.append((np.asarray(origin, np.float64) + mean).astype(origin.dtype))
        return state.template.with_arrays(out)

    def aggregate(self, server: ModelWeights, updates: Iterable[tuple[ModelWeights, float]]) -> ModelWeights:
        """``finalize`` of every ``(weights, weight)`` pair, clipped around the ``server`` weights."""
        state = self.init(server)
        for update, weight in updates:
            state = self.accumulate(state, update, weight)
        return self.finalize(state)
