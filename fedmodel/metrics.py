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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fedmodel import _tree
from fedmodel._errors import AggregationError

__all__ = [
    "STANDARD_METRICS",
    "Aggregator",
    "Sum",
    "SumThenFinalize",
    "WeightedMean",
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
        """Fold one client's report into the state (may update ``state`` in place and return it)."""
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
    return {name: _tree.map_structure(np.asarray, value) for name, value in report.items()}


def _add_report(state: dict[str, Any], report: Report, scale: float | None = None) -> dict[str, Any]:
    for name, value in report.items():
        wide = _tree.map_structure(_wide, value)
        if scale is not None:
            wide = _tree.map_structure(lambda a: a * scale, wide)
        if name not in state:
            state[name] = wide
            continue
        try:
            state[name] = _tree.map_structure(_add_checked(name), state[name], wide)
        except (ValueError, TypeError) as exc:
            raise AggregationError(f"metric {name!r} has another structure than earlier reports: {exc}") from exc
    return state


def _add_checked(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def add(acc: np.ndarray, new: np.ndarray) -> np.ndarray:
        if acc.shape != new.shape:
            raise AggregationError(f"metric {name!r}: shape {new.shape} cannot be added to {acc.shape}")
        out: np.ndarray = acc + new
        return out

    return add


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


@dataclass(frozen=True)
class Sum(_Streaming):
    """Leafwise sum of every reported value; nothing finalized."""

    def init(self) -> dict[str, Any]:
        return {}

    def accumulate(self, state: dict[str, Any], report: Report) -> dict[str, Any]:
        return _add_report(state, report)

    def finalize(self, state: dict[str, Any]) -> dict[str, Any]:
        return {name: _tree.map_structure(_unwrap, value) for name, value in state.items()}


def ratio(total_and_count: Any) -> float | np.ndarray:
    """Finalizer for a ``(total, count)`` pair: ``total / count`` (NaN for a zero count).

    >>> ratio((6.0, 4))
    1.5
    """
    total, count = total_and_count
    total, count = np.asarray(total, np.float64), np.asarray(count, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
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
    """

    finalizers: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    def init(self) -> dict[str, Any]:
        return {}

    def accumulate(self, state: dict[str, Any], report: Report) -> dict[str, Any]:
        return _add_report(state, report)

    def finalize(self, state: dict[str, Any]) -> dict[str, Any]:
        return {name: self.finalizers.get(name, identity)(value) for name, value in state.items()}


@dataclass(frozen=True)
class WeightedMean(_Streaming):
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
``(total, count)`` pairs (the sum of per-example losses, the number of correct predictions, and the
number of examples), and ``num_examples`` as a count."""


def standard_output_computation() -> SumThenFinalize:
    """The aggregator of :data:`STANDARD_METRICS`: sums, then ``loss`` and ``accuracy`` as ratios.

    >>> standard_output_computation()([{"loss": (2.0, 4), "accuracy": (3, 4), "num_examples": 4}])
    {'loss': 0.5, 'accuracy': 0.75, 'num_examples': 4}
    """
    return SumThenFinalize({"loss": ratio, "accuracy": ratio})
