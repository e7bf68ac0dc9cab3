"""Aggregation of client weight updates: numpy, in place, streaming, and finite for any finite input.

Every aggregator has the optax-like shape ``init(template) -> state``,
``accumulate(state, update, weight) -> state`` and ``finalize(state) -> ModelWeights``; ``template`` is the
server's current weights. The state of :class:`WeightedMean` is one accumulator per variable, so a round
holds one extra model in memory, never K client copies.

An aggregator validates what it is given (:func:`fedmodel.validation.validated_for`: names, shapes, dtypes,
finite values, a finite weight ``>= 0``) and raises :class:`~fedmodel.AggregationError` with the reason,
leaving its state as it was. Weights that :class:`fedmodel.server.ServerRound` validated already are not
checked twice.

Integer variables (counters such as BatchNorm's ``num_batches_tracked``) follow a declared rule
(:data:`IntegerRule`); they are never silently truncated to zero, as Flower's ``aggregate_inplace`` does,
and never wrap around: a result beyond the dtype's range saturates at its bound.

>>> import numpy as np
>>> from fedmodel import ModelWeights
>>> agg = WeightedMean()
>>> w1 = ModelWeights((np.array([1.0], np.float32),))
>>> w2 = ModelWeights((np.array([4.0], np.float32),))
>>> agg.aggregate([(w1, 1.0), (w2, 2.0)]).trainable[0]
array([3.], dtype=float32)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights
from fedmodel.validation import _BLAS_CHUNK, _names, is_float, validate_weight, validated_for

__all__ = [
    "Accumulator",
    "IntegerRule",
    "ScaledSum",
    "WeightedMean",
    "WeightsAggregator",
    "aggregate",
    "integer_result",
]

IntegerRule = Literal["round", "max", "first"]
"""How integer variables are aggregated: ``"round"`` the aggregator's statistic (e.g. the weighted mean)
rounded to the nearest integer, ``"max"`` the largest client value, ``"first"`` the first client's value."""

_RULES = ("round", "max", "first")


@runtime_checkable
class WeightsAggregator(Protocol):
    """Combines weighted client :class:`~fedmodel.ModelWeights` into one.

    An aggregator that keeps state between rounds (an adaptive clip norm, a noise stream) also defines
    ``initial_carry(template)``, ``init(template, carry)`` and ``next_carry(state)``; the server round keeps
    the carry in :attr:`fedmodel.algorithms.ServerState.aggregator_state`.
    """

    def init(self, template: ModelWeights) -> Any:
        """Empty state shaped like ``template`` (the server's current weights)."""
        ...

    def accumulate(self, state: Any, update: ModelWeights, weight: float) -> Any:
        """Fold one client's weights with its weight (e.g. its number of examples), after validating both.

        Raises:
            AggregationError: for an invalid update or weight; ``state`` is unchanged.
        """
        ...

    def finalize(self, state: Any) -> ModelWeights:
        """The aggregated weights, in the template's names and dtypes."""
        ...


def check_integer_rule(rule: str) -> None:
    """Raise ``ValueError`` unless ``rule`` is one of :data:`IntegerRule`."""
    if rule not in _RULES:
        raise ValueError(f"integer_rule must be one of {_RULES}, got {rule!r}")


def check_real(template: ModelWeights) -> None:
    """Raise :class:`~fedmodel.AggregationError` for a complex variable: the aggregators average real values
    (a complex one would lose its imaginary part)."""
    for name, arr in zip(_names(template), template.arrays, strict=True):
        if (dtype := np.asarray(arr).dtype).kind == "c":
            raise AggregationError(f"variable {name!r} is {dtype}: the aggregators take real values only")


def integer_result(values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """Float values rounded to the nearest integer of ``dtype``, saturating at its bounds (never wrapping).

    >>> integer_result(np.array([2.5, 3.5, 1e30, -1e30]), np.dtype(np.int8)).tolist()
    [2, 4, 127, -128]
    """
    if dtype.kind == "b":
        return np.asarray(np.rint(values) != 0)
    info = np.iinfo(dtype)
    rounded = np.rint(np.asarray(values, np.float64))
    out = np.empty(rounded.shape, dtype)
    high = rounded >= float(info.max)  # float(int64 max) is 2**63: everything at or above it is out of range
    low = rounded <= float(info.min)
    inside = ~(high | low)
    out[inside] = rounded[inside].astype(dtype)
    out[high] = info.max
    out[low] = info.min
    return out


_BLOCK = 1 << 16  # elements per block of a converting add: the converted block stays in cache
_HEADROOM = 10  # the running bound stays 2**10 below the accumulator's largest value


def _axpy(dtype: np.dtype[Any]) -> Any:
    """BLAS ``y += a x`` for float32 or float64 (one fused pass; numpy needs a multiply and an add)."""
    axpy = _AXPY.get(dtype)
    if axpy is None:
        from scipy.linalg import blas

        axpy = _AXPY[dtype] = blas.saxpy if dtype == np.float32 else blas.daxpy
    return axpy


_AXPY: dict[np.dtype[Any], Any] = {}
_LOG2_E = 1.0 / math.log(2.0)


def _logaddexp2(a: float, b: float) -> float:
    """``log2(2**a + 2**b)`` without overflow, as ``numpy.logaddexp2`` computes it, on Python floats (a numpy
    ufunc call on two scalars costs more than the arithmetic)."""
    if a == b:
        return a + 1.0
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(2.0 ** (low - high)) * _LOG2_E


class ScaledSum:
    """One variable's running weighted sum, kept finite for any finite values and weights.

    ``acc`` holds ``2**-exponent * Σ w_k x_k``. Before adding ``w x`` it bounds ``Σ w_k max|x_k|``; when that
    bound, or the coefficient ``w * 2**-exponent``, would come within ``2**-10`` of the accumulator dtype's
    largest value, ``acc`` is scaled down by an exact power of two and ``exponent`` grows. ``exponent`` starts
    at the first weight's binary exponent, so coefficients are near 1 whatever the scale of the weights. Honest
    updates never come close to the limit, so the common case is one BLAS ``axpy`` (a fused multiply-add) per
    value, and the mean has the rounding of the plain weighted sum divided by the total weight.

    >>> s = ScaledSum((1,), np.dtype(np.float32))
    >>> s.add(np.array([3e38], np.float32), 1e30, 3e38)
    >>> s.add(np.array([1.0], np.float32), 1e30, 1.0)
    >>> s.mean(2e30)  # the plain sum of the two products would be inf
    array([1.5e+38], dtype=float32)
    """

    __slots__ = ("acc", "exponent", "limit", "log2_bound")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.acc = np.zeros(shape, dtype)
        self.exponent: int | None = None  # set by the first positive weight
        self.log2_bound = -math.inf  # log2 of Σ w_k max|x_k|
        self.limit = math.log2(float(np.finfo(dtype).max)) - _HEADROOM

    def add(self, x: np.ndarray, weight: float, bound: float) -> None:
        """``acc += weight * x`` (scaled), where every ``|x| <= bound``; ``x`` finite, ``weight >= 0``."""
        if weight == 0 or bound == 0 or not x.size:  # adds nothing
            return
        if self.exponent is None:  # the first weight's coefficient is in [0.5, 1): products keep their precision
            self.exponent = math.frexp(weight)[1]
        log2_weight = math.log2(weight)
        log2_term = log2_weight + math.log2(bound)
        self.log2_bound = _logaddexp2(self.log2_bound, log2_term)
        excess = max(self.log2_bound, log2_weight) - self.exponent - self.limit
        if excess > 0:
            shift = math.ceil(excess)
            np.ldexp(self.acc, -shift, out=self.acc)  # exact, but for values that become subnormal
            self.exponent += shift
        coefficient = math.ldexp(weight, -self.exponent)
        flat = self.acc.reshape(-1)
        axpy = _axpy(self.acc.dtype)
        if x.dtype == self.acc.dtype and x.flags.c_contiguous:
            source = x.reshape(-1)
            if flat.size <= _BLAS_CHUNK:
                _axpy_into(axpy, source, flat, coefficient)
                return
            for start in range(0, flat.size, _BLAS_CHUNK):  # BLAS counts elements in 32-bit integers
                _axpy_into(axpy, source[start : start + _BLAS_CHUNK], flat[start : start + _BLAS_CHUNK], coefficient)
            return
        source = x.reshape(-1)  # another dtype (float16, bfloat16, integers) or layout: converted in blocks
        scratch = np.empty(min(_BLOCK, flat.size), self.acc.dtype)
        for start in range(0, flat.size, _BLOCK):
            part = scratch[: min(_BLOCK, flat.size - start)]
            np.copyto(part, source[start : start + _BLOCK], casting="unsafe")
            _axpy_into(axpy, part, flat[start : start + _BLOCK], coefficient)

    def mean(self, total_weight: float) -> np.ndarray:
        """``Σ w_k x_k / total_weight`` in the accumulator's dtype (``acc`` is reused: the sum is spent)."""
        if self.exponent is None:  # nothing but zeros was added: the sum is zero
            return self.acc
        exponent = self.exponent
        try:
            with np.errstate(over="ignore", under="ignore"):  # both sides scaled by 2**-exponent: the same rounding
                divisor = self.acc.dtype.type(math.ldexp(total_weight, -exponent))
        except OverflowError:
            divisor = self.acc.dtype.type(np.inf)
        if np.finfo(self.acc.dtype).tiny <= divisor < np.inf:
            with np.errstate(over="ignore"):
                np.divide(self.acc, divisor, out=self.acc)
        else:
            mantissa, power = math.frexp(total_weight)  # 2**exponent / total, without overflowing either
            factor = math.ldexp(1.0 / mantissa, exponent - power)
            flat = self.acc.reshape(-1)
            with np.errstate(over="ignore", under="ignore"):
                for start in range(0, flat.size, _BLOCK):
                    part = flat[start : start + _BLOCK]
                    part[...] = part.astype(np.float64) * factor
        # the mean lies within the values, but a division rounded up next to the dtype's largest value
        # overflows to inf: put it back on the largest finite value (one ulp from the exact mean)
        largest = np.finfo(self.acc.dtype).max
        mean: np.ndarray = np.clip(self.acc, -largest, largest, out=self.acc)
        return mean


def _axpy_into(axpy: Any, x: np.ndarray, y: np.ndarray, a: float) -> None:
    """``y += a x`` in place through BLAS (``y`` contiguous; written back should BLAS ever return a copy)."""
    out = axpy(x, y, a=a)
    if out is not y:
        y[...] = out


@dataclass
class _MeanState:
    template: ModelWeights
    sums: list[ScaledSum]
    maxima: list[np.ndarray | None]
    firsts: list[np.ndarray | None]
    total_weight: float = 0.0
    count: int = 0


Accumulator = Literal["auto", "float64"]
"""Precision of the running sum: ``"auto"`` keeps float32 for float32 (and narrower: bfloat16, float16)
variables and float64 for float64 ones, so the accumulator is one model in size; ``"float64"`` sums every
float in float64 (twice the memory of a float32 model, exact for any K)."""


def _accumulator_dtype(like: np.ndarray, accumulator: Accumulator) -> np.dtype[Any]:
    if not is_float(like) or accumulator == "float64" or like.dtype == np.float64:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _integer_rules(rule: IntegerRule, state: Any, update: ModelWeights) -> None:
    """Keep what the ``"max"`` and ``"first"`` rules need from one update's integer variables."""
    for i, arr in enumerate(update.arrays):
        if is_float(arr):
            continue
        if rule == "max":
            prev = state.maxima[i]
            state.maxima[i] = arr.copy() if prev is None else np.maximum(prev, arr)
        elif rule == "first" and state.firsts[i] is None:
            state.firsts[i] = arr.copy()


def _integer_final(rule: IntegerRule, state: Any, i: int, statistic: np.ndarray) -> np.ndarray:
    """An integer variable by the declared rule: the kept maximum or first value, or the rounded statistic."""
    like = state.template.arrays[i]
    chosen = {"max": state.maxima[i], "first": state.firsts[i]}.get(rule)
    return np.array(chosen, like.dtype) if chosen is not None else integer_result(statistic, like.dtype)


@dataclass(frozen=True)
class WeightedMean:
    """FedAvg's weighted mean ``Σ w_k x_k / Σ w_k``, streamed into one accumulator, in place.

    Memory: one accumulator of the model's size (``accumulator="auto"``), never K copies. Time: one BLAS
    ``axpy`` pass over each update. The result of finite updates is finite, whatever the weights: it lies
    between the smallest and the largest client value of each coordinate (see :class:`ScaledSum`).

    Args:
        integer_rule: how integer variables are combined (default: rounded weighted mean, saturating).
        accumulator: the precision of the running sum (see :data:`Accumulator`).
    """

    integer_rule: IntegerRule = "round"
    accumulator: Accumulator = "auto"

    def __post_init__(self) -> None:
        check_integer_rule(self.integer_rule)
        if self.accumulator not in ("auto", "float64"):
            raise ValueError(f"accumulator must be 'auto' or 'float64', got {self.accumulator!r}")

    def init(self, template: ModelWeights) -> _MeanState:
        """One accumulator per variable (float32 or float64, see :data:`Accumulator`)."""
        check_real(template)
        sums = [ScaledSum(a.shape, _accumulator_dtype(a, self.accumulator)) for a in template.arrays]
        none: list[np.ndarray | None] = [None] * len(sums)
        return _MeanState(template, sums, list(none), list(none))

    def accumulate(self, state: _MeanState, update: ModelWeights, weight: float) -> _MeanState:
        """Validate ``update`` and ``weight``, then ``sum += weight * update`` in place."""
        client = f"client {state.count}"
        w = validate_weight(weight, client=client)
        checked = validated_for(state.template, update, client=client)
        if not math.isfinite(state.total_weight + w):
            raise AggregationError(f"{client}: the total weight would overflow ({state.total_weight} + {w})")
        _integer_rules(self.integer_rule, state, checked)
        for total, arr, bound in zip(state.sums, checked.arrays, checked.max_abs, strict=True):
            total.add(arr, w, bound)
        state.total_weight += w
        state.count += 1
        return state

    def finalize(self, state: _MeanState) -> ModelWeights:
        """Divide by the total weight and cast back to each variable's dtype (integers by ``integer_rule``).

        The accumulators are reused for the result where the dtypes agree, so ``state`` is spent.
        """
        if state.count == 0 or state.total_weight <= 0:
            raise AggregationError("nothing to aggregate: no client update with a positive weight")
        out = []
        for i, (total, like) in enumerate(zip(state.sums, state.template.arrays, strict=True)):
            mean = total.mean(state.total_weight)
            if not is_float(like):
                out.append(_integer_final(self.integer_rule, state, i, mean))
            else:
                out.append(mean if mean.dtype == like.dtype else mean.astype(like.dtype))
        return state.template.with_arrays(out)

    def aggregate(self, updates: Iterable[tuple[ModelWeights, float]]) -> ModelWeights:
        """``finalize`` of every ``(weights, weight)`` pair accumulated in order (the first is the template)."""
        return aggregate(self, updates)


def aggregate(aggregator: WeightsAggregator, updates: Iterable[tuple[ModelWeights, float]]) -> ModelWeights:
    """Run any :class:`WeightsAggregator` over ``(weights, weight)`` pairs: init from the first, accumulate, finalize.

    Raises:
        AggregationError: when there is no update at all, or one is invalid.
    """
    state: Any = None
    for update, weight in updates:
        if state is None:
            state = aggregator.init(update)
        state = aggregator.accumulate(state, update, weight)
    if state is None:
        raise AggregationError("nothing to aggregate: no client update")
    return aggregator.finalize(state)
