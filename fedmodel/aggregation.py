"""Aggregation of client weight updates: numpy, in place, streaming.

Every aggregator has the optax-like shape ``init(template) -> state``,
``accumulate(state, update, weight) -> state`` and ``finalize(state) -> ModelWeights``; the state of
:class:`WeightedMean` is one float64 accumulator per variable, so a round holds one extra model in
memory, never K client copies.

Integer variables (counters such as BatchNorm's ``num_batches_tracked``) follow a declared rule
(:data:`IntegerRule`); they are never silently truncated to zero, as Flower's ``aggregate_inplace`` does.

>>> import numpy as np
>>> from fedmodel import ModelWeights
>>> agg = WeightedMean()
>>> w1 = ModelWeights((np.array([1.0], np.float32),))
>>> w2 = ModelWeights((np.array([4.0], np.float32),))
>>> agg.aggregate([(w1, 1.0), (w2, 2.0)]).trainable[0]
array([3.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights

__all__ = ["Accumulator", "IntegerRule", "WeightedMean", "WeightsAggregator", "aggregate", "check_update"]

IntegerRule = Literal["round", "max", "first"]
"""How integer variables are aggregated: ``"round"`` the weighted mean rounded to the nearest integer,
``"max"`` the largest client value, ``"first"`` the first client's value."""


@runtime_checkable
class WeightsAggregator(Protocol):
    """Combines weighted client :class:`~fedmodel.ModelWeights` into one."""

    def init(self, template: ModelWeights) -> Any:
        """Empty state shaped like ``template`` (the server's current weights)."""
        ...

    def accumulate(self, state: Any, update: ModelWeights, weight: float) -> Any:
        """Fold one client's weights (already validated) with its weight (e.g. its number of examples)."""
        ...

    def finalize(self, state: Any) -> ModelWeights:
        """The aggregated weights, in the template's names and dtypes."""
        ...


def check_update(template: ModelWeights, update: ModelWeights, *, client: str = "client") -> None:
    """Raise :class:`AggregationError` unless ``update`` matches ``template`` in count, names, shapes and dtypes,
    and every floating-point value is finite."""
    if not isinstance(update, ModelWeights):
        raise AggregationError(f"{client}: expected fedmodel.ModelWeights, got {type(update).__name__}")
    if len(update.arrays) != len(template.arrays) or len(update.trainable) != len(template.trainable):
        raise AggregationError(
            f"{client}: expected {len(template.trainable)}+{len(template.non_trainable)} arrays, "
            f"got {len(update.trainable)}+{len(update.non_trainable)}"
        )
    names = template.names or tuple(f"#{i}" for i in range(len(template.arrays)))
    if template.names is not None and update.names is not None and update.names != template.names:
        bad = next(i for i, (a, b) in enumerate(zip(template.names, update.names, strict=True)) if a != b)
        raise AggregationError(f"{client}: variable {bad} is named {update.names[bad]!r}, expected {names[bad]!r}")
    for name, want, got in zip(names, template.arrays, update.arrays, strict=True):
        if not isinstance(got, np.ndarray):
            raise AggregationError(f"{client}: {name!r} is {type(got).__name__}, not a numpy array")
        if got.shape != want.shape:
            raise AggregationError(f"{client}: {name!r} has shape {got.shape}, expected {want.shape}")
        if got.dtype != want.dtype:
            raise AggregationError(f"{client}: {name!r} has dtype {got.dtype}, expected {want.dtype}")
        if got.dtype.kind in "fc" and not np.isfinite(got).all():
            bad = int(np.size(got) - np.count_nonzero(np.isfinite(got)))
            raise AggregationError(f"{client}: {name!r} has {bad} non-finite values (NaN or inf)")


@dataclass
class _MeanState:
    template: ModelWeights
    sums: list[np.ndarray]
    maxima: list[np.ndarray | None]
    firsts: list[np.ndarray | None]
    scratch: np.ndarray
    total_weight: float = 0.0
    count: int = 0


Accumulator = Literal["auto", "float64"]
"""Precision of the running sum: ``"auto"`` keeps float32 for float32 (and narrower: bfloat16, float16)
variables and float64 for float64 ones, so the accumulator is one model in size; ``"float64"`` sums every
float in float64 (twice the memory of a float32 model, about twice the time, exact for any K)."""

_BLOCK = 1 << 16  # elements per block: the scaled update of one block stays in cache


def _accumulator_dtype(like: np.ndarray, accumulator: Accumulator) -> np.dtype[Any]:
    if like.dtype.kind in "iub" or accumulator == "float64" or like.dtype == np.float64:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _add_scaled(acc: np.ndarray, arr: np.ndarray, weight: float, scratch: np.ndarray) -> None:
    """``acc += weight * arr`` in place, block by block through a small scratch buffer (no model-sized temporary)."""
    flat_acc, flat_arr = acc.reshape(-1), np.ascontiguousarray(arr).reshape(-1)
    buf = scratch if scratch.dtype == acc.dtype else np.empty(_BLOCK, acc.dtype)
    for start in range(0, flat_acc.size, _BLOCK):
        stop = min(start + _BLOCK, flat_acc.size)
        part = buf[: stop - start]
        np.multiply(flat_arr[start:stop], weight, out=part, dtype=acc.dtype, casting="unsafe")
        np.add(flat_acc[start:stop], part, out=flat_acc[start:stop])


@dataclass(frozen=True)
class WeightedMean:
    """FedAvg's weighted mean ``Σ w_k x_k / Σ w_k``, streamed into one accumulator, in place.

    Memory: one accumulator of the model's size (``accumulator="auto"``), never K copies; each update is
    scaled and added block by block. Time: about one pass over each update.

    Args:
        integer_rule: how integer variables are combined (default: rounded weighted mean, in float64).
        accumulator: the precision of the running sum (see :data:`Accumulator`).
    """

    integer_rule: IntegerRule = "round"
    accumulator: Accumulator = "auto"

    def init(self, template: ModelWeights) -> _MeanState:
        """One accumulator per variable (float32 or float64, see :data:`Accumulator`)."""
        sums = [np.zeros(a.shape, _accumulator_dtype(a, self.accumulator)) for a in template.arrays]
        none: list[np.ndarray | None] = [None] * len(sums)
        scratch_dtype = np.float64 if self.accumulator == "float64" else np.float32
        return _MeanState(template, sums, list(none), list(none), np.empty(_BLOCK, scratch_dtype))

    def accumulate(self, state: _MeanState, update: ModelWeights, weight: float) -> _MeanState:
        """``sum += weight * update`` in place."""
        weight = float(weight)
        if not np.isfinite(weight) or weight < 0:
            raise AggregationError(f"client weight must be finite and >= 0, got {weight}")
        for i, arr in enumerate(update.arrays):
            acc = state.sums[i]
            if arr.dtype.kind in "iub":
                if self.integer_rule == "max":
                    prev = state.maxima[i]
                    state.maxima[i] = arr.copy() if prev is None else np.maximum(prev, arr)
                elif self.integer_rule == "first" and state.firsts[i] is None:
                    state.firsts[i] = arr.copy()
            if acc.ndim == 0:
                state.sums[i] = np.asarray(acc + np.asarray(arr, acc.dtype) * acc.dtype.type(weight), acc.dtype)
            else:
                _add_scaled(acc, arr, weight, state.scratch)
        state.total_weight += weight
        state.count += 1
        return state

    def finalize(self, state: _MeanState) -> ModelWeights:
        """Divide by the total weight and cast back to each variable's dtype.

        The accumulator is reused for the result where the dtypes agree, so ``state`` is spent.
        """
        if state.count == 0 or state.total_weight <= 0:
            raise AggregationError("nothing to aggregate: no client update with a positive weight")
        out = []
        for i, (acc, like) in enumerate(zip(state.sums, state.template.arrays, strict=True)):
            if like.dtype.kind in "iub":
                chosen = {"max": state.maxima[i], "first": state.firsts[i]}.get(self.integer_rule)
                out.append(np.rint(acc / state.total_weight).astype(like.dtype) if chosen is None else chosen)
            elif acc.dtype == like.dtype:
                out.append(np.divide(acc, acc.dtype.type(state.total_weight), out=acc))
            else:
                result = np.empty(like.shape, like.dtype)
                np.divide(acc, state.total_weight, out=result, casting="unsafe")
                out.append(result)
        return state.template.with_arrays(out)

    def aggregate(self, updates: Iterable[tuple[ModelWeights, float]]) -> ModelWeights:
        """``finalize`` of every ``(weights, weight)`` pair accumulated in order."""
        return aggregate(self, updates)


def aggregate(aggregator: WeightsAggregator, updates: Iterable[tuple[ModelWeights, float]]) -> ModelWeights:
    """Run any :class:`WeightsAggregator` over ``(weights, weight)`` pairs: init from the first, accumulate, finalize.

    Raises:
        AggregationError: when there is no update at all.
    """
    state: Any = None
    for update, weight in updates:
        if state is None:
            state = aggregator.init(update)
        state = aggregator.accumulate(state, update, weight)
    if state is None:
        raise AggregationError("nothing to aggregate: no client update")
    return aggregator.finalize(state)
