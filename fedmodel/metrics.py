"""Metric aggregation: clients report unfinalized sums, the server sums them and finalizes once.

Every aggregator is streaming (optax style): ``state = agg.init()``, then
``state = agg.accumulate(state, report)`` once per client, then ``agg.finalize(state)``. Calling the
aggregator on a sequence of reports does all three. Sums are kept in float64 (integers in int64),
so the server's accuracy over many clients is exact.

>>> agg = SumThenFinalize({"accuracy": ratio})
>>> agg([{"accuracy": (3, 4)}, {"accuracy": (5, 6)}])
{'accuracy': 0.8}
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fedmodel import _tree
from fedmodel._errors import AggregationError

__all__ = [
    "STANDARD_METRICS",
    "Aggregator",
    "MeanOfFinalized",
    "SumThenFinalize",
    "check_standard_report",
    "identity",
    "ratio",
    "standard_output_computation",
    "to_numpy_report",
]

Report = Mapping[str, Any]


@runtime_checkable
class Aggregator(Protocol):
    """Turns a stream of clients' metric reports into one finalized mapping."""

    def init(self) -> Any:
        """The empty accumulator state."""
        ...

    def accumulate(self, state: Any, report: Report) -> Any:
        """Fold one client's report into the state (may update ``state`` in place and return it).

        Clause: all or nothing: a report that cannot be folded raises before ``state`` changes (the server
        round keeps one state for all clients and goes on without that client's report).
        """
        ...

    def finalize(self, state: Any) -> dict[str, Any]:
        """The final metrics from the accumulated state."""
        ...

    def __call__(self, reports: Iterable[Report]) -> dict[str, Any]:
        """``finalize`` of every report accumulated in order."""
        ...


def _wide(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in "biu":
        return arr.astype(np.int64)
    if arr.dtype.kind in "fc" or arr.dtype.name == "bfloat16":
        return arr.astype(np.complex128 if arr.dtype.kind == "c" else np.float64)
    raise AggregationError(f"metric value of dtype {arr.dtype} cannot be summed")


def to_numpy_report(report: Report) -> dict[str, Any]:
    """A report with every leaf as a numpy array (framework tensors converted with ``np.asarray``)."""
    return {name: _map(np.asarray, value) for name, value in report.items()}


_INT64_MAX = np.iinfo(np.int64).max


def _add_report(state: dict[str, Any], report: Report, scale: float | None = None) -> dict[str, Any]:
    """Add ``report`` (times ``scale``) into ``state``, all or nothing.

    Raises:
        AggregationError: a value cannot be summed, a metric has another structure or shape than before, or a
            sum would overflow (int64 counts wrap silently in numpy, float sums become inf); ``state`` is unchanged.
    """
    updates: dict[str, Any] = {}
    for name, value in report.items():
        shape = _usual_shape(value)
        if shape is not None and (name not in state or _usual_shape(state[name]) == shape):
            updates[name] = _add_leaves(name, state.get(name), value, shape, scale)
            continue
        wide = _map(_wide, value)
        if scale is not None:
            wide = _map(lambda a: a * scale, wide)
        if name not in state:
            updates[name] = _map(functools.partial(_sum, name), wide)
            continue
        try:
            updates[name] = _map(functools.partial(_sum, name), state[name], wide)
        except AggregationError:  # a ValueError too: already says what is wrong
            raise
        except (ValueError, TypeError) as exc:
            raise AggregationError(f"metric {name!r} has another structure than earlier reports: {exc}") from exc
    state.update(updates)  # every sum checked: commit
    return state


_ARRAYS = (np.ndarray, np.generic)


_ONE_ARRAY = -1
""":func:`_usual_shape` of a metric that is one array (a count, a sum), not a tuple of them."""


def _usual_shape(value: Any) -> int | None:
    """The structure of a metric of the usual shape: :data:`_ONE_ARRAY` for a numpy array (or scalar), the length
    of a plain tuple of them (a ``(total, count)`` pair); ``None`` for anything else (optree reads it). Metrics of
    the usual shape are checked and summed without optree: a server does that for every client's few metrics."""
    if isinstance(value, _ARRAYS):
        return _ONE_ARRAY
    if type(value) is tuple and all(isinstance(leaf, _ARRAYS) for leaf in value):
        return len(value)
    return None


def _add_leaves(name: str, before: Any, value: Any, shape: int, scale: float | None) -> Any:
    """:func:`_add_report`'s sum of one metric whose value and running sum (``before``, ``None`` for the first)
    both have the usual shape ``shape`` (:func:`_usual_shape`), leaf by leaf: the same checks, sums and messages as
    the general path through optree."""
    one = shape == _ONE_ARRAY
    wide = [_wide(leaf) for leaf in ((value,) if one else value)]
    if scale is not None:
        wide = [a * scale for a in wide]
    if before is None:
        sums = [_sum(name, a) for a in wide]
    else:
        sums = [_sum(name, acc, new) for acc, new in zip((before,) if one else before, wide, strict=True)]
    return sums[0] if one else tuple(sums)


def _map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """:func:`fedmodel._tree.map_structure`, without optree's cost for the usual shapes of a metric: an array, or a
    plain tuple of arrays (a ``(total, count)`` pair). The same calls as optree's: an array of ``tree`` is a leaf
    that gets the whole corresponding part of ``rest``; anything else goes through optree."""
    if isinstance(tree, _ARRAYS):
        return fn(tree, *rest)
    if (
        type(tree) is tuple
        and all(isinstance(leaf, _ARRAYS) for leaf in tree)
        and all(type(other) is tuple and len(other) == len(tree) for other in rest)
    ):
        return tuple(map(fn, tree, *rest))
    return _tree.map_structure(fn, tree, *rest)


def _sum(name: str, *values: Any) -> np.ndarray:
    """Metric ``name``'s leaf: a new value alone (checked finite), or the running sum plus a new value; shapes
    equal, nothing overflows."""
    if len(values) == 1:
        out = values[0]
    else:
        acc, new = values
        if not isinstance(new, _ARRAYS):  # a leaf before, a container now
            raise AggregationError(f"metric {name!r} has another structure than earlier reports")
        if acc.shape != new.shape:
            raise AggregationError(f"metric {name!r}: shape {new.shape} cannot be added to {acc.shape}")
        if acc.dtype.kind == "i" and new.dtype.kind == "i":  # numpy's int64 sums wrap around silently
            if acc.shape == ():  # the usual count: one exact Python sum
                count = int(acc) + int(new)
                if not -_INT64_MAX <= count <= _INT64_MAX:
                    raise AggregationError(f"metric {name!r}: the int64 sum would overflow")
                return np.int64(count)  # type: ignore[return-value]
            pairs = zip(acc.ravel().tolist(), new.ravel().tolist(), strict=True)
            if any(not -_INT64_MAX <= a + b <= _INT64_MAX for a, b in pairs):  # exact: Python integers
                raise AggregationError(f"metric {name!r}: the int64 sum would overflow")
            return acc + new  # type: ignore[no-any-return]
        if acc.shape == () and acc.dtype == np.float64 and new.dtype == np.float64:  # the usual: Python's sum
            total = float(acc) + float(new)  # the same IEEE sum, without numpy's overflow warning
            if not math.isfinite(total):
                raise AggregationError(f"metric {name!r}: the sum is not finite ({total})")
            return np.float64(total)  # type: ignore[return-value]
        with np.errstate(over="ignore", invalid="ignore"):
            out = acc + new
    if out.dtype.kind in "fc" and not np.isfinite(out).all():
        raise AggregationError(f"metric {name!r}: the sum is not finite ({out.tolist()})")
    return out  # type: ignore[no-any-return]


def _unwrap(x: Any) -> Any:
    arr = np.asarray(x)
    return arr.item() if arr.ndim == 0 else arr


class _Streaming:
    def __call__(self, reports: Iterable[Report]) -> dict[str, Any]:
        state = self.init()
        for report in reports:
            state = self.accumulate(state, report)
        return self.finalize(state)

    def init(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def accumulate(self, state: Any, report: Report) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def finalize(self, state: Any) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError


def ratio(total_and_count: Any) -> float | np.ndarray:
    """Finalizer for a ``(total, count)`` pair: ``total / count`` (NaN for a zero count).

    >>> ratio((6.0, 4)), ratio((6.0, 0))
    (1.5, nan)
    """
    total, count = total_and_count
    total, count = np.asarray(total, np.float64), np.asarray(count, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count == 0, np.nan, total / count)
    return _unwrap(out)  # type: ignore[no-any-return]


def identity(value: Any) -> Any:
    """Finalizer that keeps the summed value (counts, totals)."""
    return _tree.map_structure(_unwrap, value)


@dataclass(frozen=True)
class SumThenFinalize(_Streaming):
    """Sum every metric over clients, then apply its finalizer (``identity`` when none is given).

    Args:
        finalizers: metric name → function of the summed value, e.g. :func:`ratio` for a
            ``(total, count)`` pair.
        check: called on every report before it is summed; raises :class:`~fedmodel.AggregationError` for a
            report that breaks what the metrics mean (e.g. :func:`check_standard_report`).
    """

    finalizers: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    check: Callable[[Report], None] | None = None

    def init(self) -> dict[str, Any]:
        """The empty sums."""
        return {}

    def accumulate(self, state: dict[str, Any], report: Report) -> dict[str, Any]:
        """Check ``report`` and add it to the sums, all or nothing."""
        if self.check is not None:
            self.check(report)
        return _add_report(state, report)

    def finalize(self, state: dict[str, Any]) -> dict[str, Any]:
        """Each metric's finalizer applied to its sum."""
        return {name: self.finalizers.get(name, identity)(value) for name, value in state.items()}


@dataclass(frozen=True)
class MeanOfFinalized(_Streaming):
    """Mean of already-finalized client metrics weighted by one reported key (``num_examples``).

    The weight key itself is summed. Use it for metrics that clients can only report finalized;
    prefer :class:`SumThenFinalize`, which is exact.
    """

    weight_key: str = "num_examples"

    def init(self) -> dict[str, Any]:
        return {}

    def accumulate(self, state: dict[str, Any], report: Report) -> dict[str, Any]:
        if self.weight_key not in report:
            raise AggregationError(f"report has no weight {self.weight_key!r}: keys {sorted(report)}")
        weight = float(np.asarray(report[self.weight_key]))
        rest = {k: v for k, v in report.items() if k != self.weight_key}
        _add_report(state, rest, scale=weight)
        _add_report(state, {self.weight_key: report[self.weight_key]})
        return state

    def finalize(self, state: dict[str, Any]) -> dict[str, Any]:
        if not state:
            return {}
        total = float(state[self.weight_key])
        out: dict[str, Any] = {self.weight_key: _unwrap(state[self.weight_key])}
        for name, value in state.items():
            if name != self.weight_key:
                out[name] = _tree.map_structure(lambda a: _unwrap(a / total if total else a * np.nan), value)
        return out


STANDARD_METRICS = ("loss", "accuracy", "num_examples")
"""The report every built-in model of every backend gives: ``loss`` and ``accuracy`` as
``(total, count)`` pairs (the sum of per-example losses without regularization, the number of correct
predictions, and the number of examples), and ``num_examples`` as a count."""


def _scalar(report: Report, name: str, *path: int) -> float | None:
    value: Any = report.get(name)
    try:
        for index in path:
            value = value[index]
        arr = np.asarray(value, np.float64)
    except (IndexError, KeyError, TypeError, ValueError):
        raise AggregationError(f"metric {name!r}: expected {'a (total, count) pair' if path else 'a number'}") from None
    if arr.shape != ():
        raise AggregationError(f"metric {name!r}: expected scalars, got shape {arr.shape}")
    return float(arr)


def check_standard_report(report: Report) -> None:
    """Raise :class:`~fedmodel.AggregationError` unless the :data:`STANDARD_METRICS` present in ``report`` agree:
    one example count for ``loss``, ``accuracy`` and ``num_examples``, and ``0 <= correct <= count``.

    >>> check_standard_report({"accuracy": (5, 3), "num_examples": 3})
    Traceback (most recent call last):
    ...
    fedmodel._errors.AggregationError: metric 'accuracy': 5.0 correct out of 3.0 examples
    """
    counts = {}
    if "loss" in report:
        counts["loss"] = _scalar(report, "loss", 1)
    if "accuracy" in report:
        correct, count = _scalar(report, "accuracy", 0), _scalar(report, "accuracy", 1)
        counts["accuracy"] = count
        if not (correct is not None and count is not None and 0 <= correct <= count):
            raise AggregationError(f"metric 'accuracy': {correct} correct out of {count} examples")
    if "num_examples" in report:
        counts["num_examples"] = _scalar(report, "num_examples")
    if any(c is None or not c >= 0 for c in counts.values()) or len(set(counts.values())) > 1:
        raise AggregationError(f"standard metrics disagree on the number of examples: {counts}")


def standard_output_computation() -> SumThenFinalize:
    """The aggregator of :data:`STANDARD_METRICS`: checked (:func:`check_standard_report`), summed, then ``loss``
    and ``accuracy`` as ratios.

    >>> standard_output_computation()([{"loss": (2.0, 4), "accuracy": (3, 4), "num_examples": 4}])
    {'loss': 0.5, 'accuracy': 0.75, 'num_examples': 4}
    """
    return SumThenFinalize({"loss": ratio, "accuracy": ratio}, check=check_standard_report)
