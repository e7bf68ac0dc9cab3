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
  reported by the client (its number of examples) is itself an attack surface.
* :class:`NormClipping` streams (one float64 accumulator, like ``WeightedMean``): each client's change
  from the server weights is scaled down to an L2 norm of at most ``max_norm`` (over all float
  variables), then the example-weighted mean is taken, so no client moves the model by more than
  ``max_norm``, whatever it claims as weight.

Integer variables follow the declared :data:`~fedmodel.aggregation.IntegerRule`: ``"round"`` rounds the
aggregator's own statistic (median, trimmed mean, weighted mean of the values), ``"max"`` and ``"first"``
as in ``WeightedMean``.

>>> from fedmodel import ModelWeights
>>> ups = [ModelWeights((np.array([v], np.float32),)) for v in (1.0, 2.0, 1000.0)]
>>> CoordinateMedian().aggregate([(u, 1.0) for u in ups]).trainable[0]
array([2.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights
from fedmodel.aggregation import IntegerRule, aggregate
from fedmodel.server_optimizers import is_float
from fedmodel.validation import check_client_update, delta_norm

__all__ = ["CoordinateMedian", "NormClipping", "TrimmedMean"]

_RULES = ("round", "max", "first")


def _check_rule(rule: str) -> None:
    if rule not in _RULES:
        raise ValueError(f"integer_rule must be one of {_RULES}, got {rule!r}")


@dataclass
class _Collected:
    template: ModelWeights
    updates: list[ModelWeights] = field(default_factory=list)


def _integer(rule: IntegerRule, state: _Collected, i: int, statistic: np.ndarray) -> np.ndarray:
    """An integer variable by the declared rule, from the clients' own arrays (no float64 round trip)."""
    dtype = state.template.arrays[i].dtype
    if rule == "max":
        return np.asarray(np.maximum.reduce([u.arrays[i] for u in state.updates]), dtype)
    if rule == "first":
        return np.array(state.updates[0].arrays[i], dtype)
    return np.asarray(np.rint(statistic), dtype)


def _collect(state: _Collected, update: ModelWeights, weight: float) -> _Collected:
    check_client_update(state.template, update, weight, client=f"client {len(state.updates)}")
    state.updates.append(update)
    return state


class _AllUpdatesAtOnce:
    """What the coordinate-wise aggregators share: keep every valid update, then one statistic per coordinate."""

    integer_rule: IntegerRule

    def init(self, template: ModelWeights) -> _Collected:
        """An empty list of updates, to be checked against ``template``."""
        return _Collected(template)

    def accumulate(self, state: _Collected, update: ModelWeights, weight: float) -> _Collected:
        """Validate ``update`` (raising :class:`~fedmodel.AggregationError` with the reason) and keep it."""
        return _collect(state, update, weight)

    def finalize(self, state: _Collected) -> ModelWeights:
        """The statistic of every coordinate over the kept updates, in float64, cast back to each
        variable's dtype (integer variables by ``integer_rule``)."""
        self._check_count(len(state.updates))
        out = []
        for i, like in enumerate(state.template.arrays):
            stacked = np.stack([np.asarray(u.arrays[i], np.float64) for u in state.updates])
            value = self._statistic(stacked)
            out.append(value.astype(like.dtype) if is_float(like) else _integer(self.integer_rule, state, i, value))
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

    Needs all K updates at once: the state holds every accepted update until :meth:`finalize`.

    Args:
        integer_rule: how integer variables are combined (default: the rounded median).
    """

    integer_rule: IntegerRule = "round"

    def __post_init__(self) -> None:
        _check_rule(self.integer_rule)

    def _statistic(self, stacked: np.ndarray) -> np.ndarray:
        return np.median(stacked, axis=0)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TrimmedMean(_AllUpdatesAtOnce):
    """The coordinate-wise ``beta``-trimmed mean: per coordinate, drop the ``floor(beta K)`` largest and
    smallest client values and average the rest (each client counts once).

    Needs all K updates at once: the state holds every accepted update until :meth:`finalize`, which
    raises :class:`~fedmodel.AggregationError` when ``2 floor(beta K) >= K`` (nothing would remain).

    Args:
        beta: the fraction trimmed on each side, in ``[0, 0.5)``.
        integer_rule: how integer variables are combined (default: the rounded trimmed mean).
    """

    beta: float = 0.1
    integer_rule: IntegerRule = "round"

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 0.5:
            raise ValueError(f"beta must be in [0, 0.5), got {self.beta}")
        _check_rule(self.integer_rule)

    def _check_count(self, k: int) -> None:
        cut = int(np.floor(self.beta * k))
        if k == 0 or 2 * cut >= k:
            raise AggregationError(f"trimming {cut} of {k} updates per side leaves nothing to aggregate")

    def _statistic(self, stacked: np.ndarray) -> np.ndarray:
        k = len(stacked)
        cut = int(np.floor(self.beta * k))
        if cut:  # a partition puts the cut smallest first and the cut largest last, in O(K)
            stacked = np.partition(stacked, (cut, k - cut - 1), axis=0)
        return stacked[cut : k - cut].mean(axis=0)  # type: ignore[no-any-return]


@dataclass
class _ClipState:
    template: ModelWeights
    sums: list[np.ndarray]
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
    ``template + Σ w_k clipped_k / Σ w_k``. Streams: one float64 accumulator per variable.

    Args:
        max_norm: the largest L2 norm of one client's change, ``> 0``.
        integer_rule: how integer variables are combined (default: the rounded weighted mean).
    """

    max_norm: float
    integer_rule: IntegerRule = "round"

    def __post_init__(self) -> None:
        if not self.max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {self.max_norm}")
        _check_rule(self.integer_rule)

    def init(self, template: ModelWeights) -> _ClipState:
        """One float64 accumulator per variable; ``template`` is the origin of every change."""
        sums = [np.zeros(a.shape, np.float64) for a in template.arrays]
        return _ClipState(template, sums, [None] * len(sums), [None] * len(sums))

    def accumulate(self, state: _ClipState, update: ModelWeights, weight: float) -> _ClipState:
        """Validate ``update``, clip its change from the template and add ``weight *`` it in place."""
        check_client_update(state.template, update, weight, client=f"client {state.count}")
        weight = float(weight)
        norm = delta_norm(state.template, update)
        scale = 1.0 if norm <= self.max_norm else self.max_norm / norm
        state.clipped += int(scale < 1.0)
        for i, (origin, arr) in enumerate(zip(state.template.arrays, update.arrays, strict=True)):
            if is_float(origin):
                change = np.subtract(np.asarray(arr, np.float64), np.asarray(origin, np.float64))
                state.sums[i] += (weight * scale) * change
                continue
            if self.integer_rule == "max":
                prev = state.maxima[i]
                state.maxima[i] = arr.copy() if prev is None else np.maximum(prev, arr)
            elif self.integer_rule == "first" and state.firsts[i] is None:
                state.firsts[i] = arr.copy()
            state.sums[i] += weight * np.asarray(arr, np.float64)
        state.total_weight += weight
        state.count += 1
        return state

    def finalize(self, state: _ClipState) -> ModelWeights:
        """``template + Σ w_k clipped_k / Σ w_k``, cast back to each variable's dtype."""
        if state.count == 0 or state.total_weight <= 0:
            raise AggregationError("nothing to aggregate: no client update with a positive weight")
        out = []
        for i, (origin, acc) in enumerate(zip(state.template.arrays, state.sums, strict=True)):
            if is_float(origin):
                out.append((np.asarray(origin, np.float64) + acc / state.total_weight).astype(origin.dtype))
                continue
            chosen = {"max": state.maxima[i], "first": state.firsts[i]}.get(self.integer_rule)
            out.append(np.rint(acc / state.total_weight).astype(origin.dtype) if chosen is None else chosen)
        return state.template.with_arrays(out)

    def aggregate(self, server: ModelWeights, updates: Iterable[tuple[ModelWeights, float]]) -> ModelWeights:
        """``finalize`` of every ``(weights, weight)`` pair, clipped around the ``server`` weights."""
        state = self.init(server)
        for update, weight in updates:
            state = self.accumulate(state, update, weight)
        return self.finalize(state)
