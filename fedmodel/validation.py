"""The one validation of what a client sends: its weights, its weight (example count) and its metric report.

Every engine (the simulation runner, the Flower strategy) hands a client's reply to
:class:`fedmodel.server.ServerRound`, which validates it here, on exactly what it will aggregate:

* :func:`validate_update` reads a :class:`~fedmodel.ModelWeights` once and returns plain weights: every array
  a plain ``numpy.ndarray`` (subclasses such as masked arrays are rejected, never trusted) whose name,
  shape and dtype (native byte order) match the server's template, and whose floating-point values
  (``bfloat16`` and ``float8`` included) are all finite;
* :func:`validate_weight` accepts a finite, non-negative number no larger than a documented cap;
* :func:`check_report` accepts a metric report with the template report's names, paths and shapes, finite
  floats, and counts that are non-negative integers within range.

Each raises :class:`~fedmodel.AggregationError` naming the client, the variable or path, expected and actual.

>>> from fedmodel import ModelWeights
>>> server = ModelWeights((np.zeros(2, np.float32),), (), trainable_names=("w",))
>>> good = ModelWeights((np.ones(2, np.float32),), (), trainable_names=("w",))
>>> bad = ModelWeights((np.array([1.0, np.nan], np.float32),), (), trainable_names=("w",))
>>> result = filter_updates(server, [(good, 10), (bad, 5)])
>>> len(result.accepted), result.rejected[0].reason
(1, "client 1: 'w' has 1 non-finite value(s) (NaN or inf)")
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmodel import _tree
from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights
from fedmodel.metrics import _ONE_ARRAY, _usual_shape

__all__ = [
    "MAX_COUNT",
    "MAX_WEIGHT",
    "FilterResult",
    "Rejection",
    "ReplyLimits",
    "ReportTemplate",
    "ValidatedWeights",
    "check_client_update",
    "check_report",
    "delta_norm",
    "filter_updates",
    "is_float",
    "max_abs",
    "nonfinite_count",
    "update_problem",
    "validate_update",
    "validate_weight",
    "validated_for",
]

MAX_WEIGHT = 2.0**31
"""The default cap on a client's aggregation weight (the number of examples it claims)."""

MAX_COUNT = 2**53
"""The largest integer a metric report may hold (every such count is exact in float64)."""

_ML_FLOATS = frozenset(
    {"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3b11fnuz", "float8_e5m2", "float8_e5m2fnuz"}
)
_BLOCK = 1 << 16  # elements per block of the finiteness check: its boolean scratch stays in cache
_BLAS_CHUNK = 1 << 28  # elements per BLAS call: BLAS counts elements in 32-bit integers


def is_float(array: Any) -> bool:
    """Whether an array (or dtype) is floating point: numpy floats, complex, and ``ml_dtypes``' bfloat16/float8.

    >>> is_float(np.zeros(1, np.float16)), is_float(np.dtype(np.int64))
    (True, False)
    """
    dtype = array if isinstance(array, np.dtype) else array.dtype
    return dtype.kind in "fc" or dtype.name in _ML_FLOATS


def _generic_max_abs(flat: np.ndarray) -> float:
    """The largest ``|value|`` of a flat array, block by block in float64; NaN when a value is not finite."""
    biggest = 0.0
    for start in range(0, flat.size, _BLOCK):
        top = float(np.abs(flat[start : start + _BLOCK]).astype(np.float64).max())  # NaN propagates
        if not math.isfinite(top):
            return math.nan
        biggest = max(biggest, top)
    return biggest


def max_abs(array: np.ndarray) -> float:
    """An upper bound on ``|value|`` over ``array`` (its largest ``|value|``, or the sum of every ``|value|``); NaN
    when a value is not finite.

    float32 and float64 arrays take one BLAS ``asum`` pass (the sum of ``|value|``: finite exactly when every
    value is finite and the sum does not overflow, and never below the largest ``|value|``, since a rounded sum
    of non-negative numbers never falls below its largest term); other dtypes, sums that overflow and sums below
    the smallest normal number (a kernel that flushes subnormals) take the exact path.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow only sends us down the exact path
        return _max_abs(array)


def _max_abs(array: np.ndarray) -> float:
    """:func:`max_abs` under the caller's ``np.errstate(over="ignore", invalid="ignore")``."""
    flat = array.reshape(-1)
    if not flat.size or flat.dtype.kind == "b":
        return float(flat.size and flat.any())
    if flat.dtype.kind in "iu":
        return max(abs(float(flat.min())), abs(float(flat.max())))
    tiny = _TINY.get(flat.dtype)  # float32 or float64: the BLAS path
    if tiny is not None and (asum := _blas_asum(flat.dtype)) is not None:
        if flat.size <= _BLAS_CHUNK:
            total = float(asum(flat))
        else:
            total = 0.0
            for start in range(0, flat.size, _BLAS_CHUNK):  # BLAS counts elements in 32-bit integers
                total += float(asum(flat[start : start + _BLAS_CHUNK]))
        if math.isfinite(total) and total >= tiny:
            return total
    return _generic_max_abs(flat)


_TINY = {np.dtype(t): float(np.finfo(t).tiny) for t in (np.float32, np.float64)}  # the smallest normal numbers


_ASUM: dict[np.dtype[Any], Any] = {}


def _blas_asum(dtype: np.dtype[Any]) -> Any:
    """BLAS ``sasum``/``dasum`` once it has shown, on this machine, that a NaN or inf anywhere makes its sum
    non-finite; ``None`` (the exact path) otherwise.

    The validation's speed rests on ``asum`` (OpenBLAS runs it on every core, twice the speed of one
    ``np.dot``); its safety rests on NaN propagating through every kernel and thread's share, which is checked
    here once per process rather than trusted.
    """
    if dtype not in _ASUM:
        from scipy.linalg import blas

        asum = blas.sasum if dtype == np.float32 else blas.dasum
        _ASUM[dtype] = asum if _propagates_nonfinite(asum, dtype) else None
    return _ASUM[dtype]


def _propagates_nonfinite(asum: Any, dtype: np.dtype[Any]) -> bool:
    """Whether ``asum`` returns NaN or inf for a NaN or inf anywhere along short and long arrays."""
    for size in (1, 7, 33, 1 << 17):  # scalar tails, vector bodies, and an array long enough for threads
        probe = np.ones(size, dtype)
        for where in {*range(0, size, max(1, size // 16)), size - 1}:  # every thread's share
            for bad in (np.nan, np.inf):
                probe[where] = bad
                if math.isfinite(float(asum(probe))):
                    return False
                probe[where] = 1
    return True


def nonfinite_count(array: np.ndarray) -> int:
    """How many values of a floating-point array are NaN or infinite (0 for any other dtype).

    Works block by block, so it allocates one small scratch buffer, never one of the array's size.
    """
    if not is_float(array):
        return 0
    flat = array.reshape(-1)
    scratch = np.empty(min(flat.size, _BLOCK), bool)
    bad = 0
    for start in range(0, flat.size, _BLOCK):
        part = scratch[: min(_BLOCK, flat.size - start)]
        np.isfinite(flat[start : start + _BLOCK], out=part)
        bad += part.size - int(np.count_nonzero(part))
    return bad


_SQRT_MAX_FLOAT32 = math.sqrt(float(np.finfo(np.float32).max))
_SQRT_MAX_FLOAT64 = math.sqrt(float(np.finfo(np.float64).max))


@dataclass(frozen=True)
class ReplyLimits:
    """What the server accepts from one client (besides matching the template exactly).

    Attributes:
        max_weight: the largest aggregation weight (claimed number of examples); a larger claim is rejected.
        max_count: the largest integer in a metric report.
        max_delta_norm: when set, the largest L2 norm of ``update - server weights`` (float variables).
        max_value: the largest ``|value|`` of a float variable. ``None`` (the default): the square root of the
            largest float32 (about 1.8e19; float64 variables: of the largest float64, about 1.3e154). A larger
            value is finite but its square is not: every model computes inf from it, so one such update would
            leave a global model that no honest client can train any more.
    """

    max_weight: float = MAX_WEIGHT
    max_count: int = MAX_COUNT
    max_delta_norm: float | None = None
    max_value: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.max_weight < math.inf:
            raise ValueError(f"max_weight must be finite and > 0, got {self.max_weight}")
        if not 0 < self.max_count <= 2**63 - 1:
            raise ValueError(f"max_count must be in [1, 2**63 - 1], got {self.max_count}")
        if self.max_delta_norm is not None and not self.max_delta_norm > 0:
            raise ValueError(f"max_delta_norm must be > 0, got {self.max_delta_norm}")
        if self.max_value is not None and not self.max_value > 0:
            raise ValueError(f"max_value must be > 0, got {self.max_value}")

    def value_limit(self, dtype: np.dtype[Any]) -> float:
        """The largest ``|value|`` accepted in a float variable of ``dtype``."""
        if self.max_value is not None:
            return self.max_value
        return _SQRT_MAX_FLOAT64 if dtype == np.float64 else _SQRT_MAX_FLOAT32


def validate_weight(weight: Any, *, client: str = "client", max_weight: float = math.inf) -> float:
    """``weight`` as a float when it is a real number, finite, ``>= 0`` and ``<= max_weight``.

    Raises:
        AggregationError: naming the client and the value.
    """
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise AggregationError(f"{client}: the weight (number of examples) {weight!r} is not a real number")
    try:
        w = float(weight)
    except (OverflowError, ValueError, TypeError):
        raise AggregationError(f"{client}: the weight {weight!r} cannot be read as a float") from None
    if not math.isfinite(w) or w < 0:
        raise AggregationError(f"{client}: the weight must be finite and >= 0, got {w}")
    if w > max_weight:
        raise AggregationError(f"{client}: the weight {w:.6g} is above the cap of {max_weight:.6g} examples")
    return w


def _dtype_label(dtype: np.dtype[Any]) -> str:
    """``float32``, or ``float32 (big-endian)`` for a non-native byte order."""
    if dtype.isnative:
        return str(dtype.name)
    return f"{dtype.name} ({'big' if dtype.byteorder == '>' else 'little'}-endian)"


def _names(weights: ModelWeights) -> tuple[str, ...]:
    return weights.names or tuple(f"#{i}" for i in range(len(weights.arrays)))


def _read_group(update: Any, group: str, client: str) -> tuple[tuple[Any, ...], tuple[str, ...] | None]:
    """One group's arrays and names, each attribute read exactly once."""
    try:
        arrays = tuple(getattr(update, group))
        names = getattr(update, f"{group}_names")
        names = None if names is None else tuple(names)
    except Exception as exc:  # a hostile ModelWeights subclass: report, never propagate
        raise AggregationError(f"{client}: cannot read its {group} weights ({type(exc).__name__}: {exc})") from None
    if names is not None and (len(names) != len(arrays) or not all(isinstance(n, str) for n in names)):
        raise AggregationError(f"{client}: {group} names do not match its {len(arrays)} arrays")
    return arrays, names


@dataclass(frozen=True)
class ValidatedWeights(ModelWeights):
    """Weights that :func:`validate_update` accepted against one template, with a bound on each array's values.

    Aggregators take such weights without checking them again when ``template`` is their own template;
    any other :class:`~fedmodel.ModelWeights` they validate themselves.

    Attributes:
        max_abs: per array (trainable first), an upper bound on ``|value|`` (see :func:`max_abs`).
        template: the weights they were checked against.
    """

    max_abs: tuple[float, ...] = ()
    template: ModelWeights | None = field(default=None, repr=False, compare=False)


def validated_for(template: ModelWeights, update: Any, *, client: str = "client") -> ValidatedWeights:
    """``update`` itself when it was validated against ``template`` already, else :func:`validate_update` of it."""
    if isinstance(update, ValidatedWeights) and update.template is template:
        return update
    return validate_update(template, update, client=client)


def validate_update(
    template: ModelWeights, update: Any, *, client: str = "client", limits: ReplyLimits | None = None
) -> ValidatedWeights:
    """The update as plain weights to aggregate, once it matches ``template`` and holds only finite floats.

    ``update`` is read exactly once. Every array must be a plain ``numpy.ndarray`` (a masked array or any
    other subclass is rejected: its methods could lie) of the template's shape and dtype, native byte order
    included; every floating-point value (``bfloat16`` and ``float8`` included) must be finite, and with
    ``limits`` within :meth:`ReplyLimits.value_limit`. Names, when both sides have them, must be the
    template's, in order. The returned weights hold the same array
    objects under the template's names.

    Raises:
        AggregationError: naming the client, the variable, expected and actual.
    """
    if not isinstance(update, ModelWeights):
        raise AggregationError(f"{client}: expected fedmodel.ModelWeights, got {type(update).__name__}")
    trainable, trainable_names = _read_group(update, "trainable", client)
    non_trainable, non_trainable_names = _read_group(update, "non_trainable", client)
    if len(trainable) != len(template.trainable) or len(non_trainable) != len(template.non_trainable):
        raise AggregationError(
            f"{client}: expected {len(template.trainable)}+{len(template.non_trainable)} arrays, "
            f"got {len(trainable)}+{len(non_trainable)}"
        )
    for want_names, got_names in (
        (template.trainable_names, trainable_names),
        (template.non_trainable_names, non_trainable_names),
    ):
        if want_names is not None and got_names is not None and want_names != got_names:
            i = next(i for i, (a, b) in enumerate(zip(want_names, got_names, strict=True)) if a != b)
            raise AggregationError(
                f"{client}: variable {i} of its group is named {got_names[i]!r}, expected {want_names[i]!r}"
            )
    with np.errstate(over="ignore", invalid="ignore"):  # once for every array: an overflow means the exact path
        bounds = _check_arrays(template, trainable + non_trainable, client, limits)
    arrays = trainable + non_trainable
    n = len(template.trainable)
    return ValidatedWeights(
        arrays[:n], arrays[n:], template.trainable_names, template.non_trainable_names, tuple(bounds), template
    )


def _check_arrays(
    template: ModelWeights, arrays: tuple[Any, ...], client: str, limits: ReplyLimits | None
) -> list[float]:
    """Each array's type, shape, dtype and finiteness against the template; its bound on ``|value|``."""
    names = _names(template)
    bounds: list[float] = []
    for name, want, got in zip(names, template.arrays, arrays, strict=True):
        if type(got) is not np.ndarray:
            raise AggregationError(f"{client}: {name!r} is {type(got).__name__}, not a plain numpy.ndarray")
        if got.shape != want.shape:
            raise AggregationError(f"{client}: {name!r} has shape {got.shape}, expected {want.shape}")
        if got.dtype != want.dtype:
            raise AggregationError(
                f"{client}: {name!r} has dtype {_dtype_label(got.dtype)}, expected {_dtype_label(want.dtype)}"
            )
        bound = _max_abs(got)
        if not math.isfinite(bound):
            bad = nonfinite_count(got)
            raise AggregationError(f"{client}: {name!r} has {bad} non-finite value(s) (NaN or inf)")
        if limits is not None and is_float(got) and bound > limits.value_limit(got.dtype):
            bound = _generic_max_abs(got.reshape(-1))  # the bound may be a sum: the exact largest value
            if bound > (limit := limits.value_limit(got.dtype)):
                raise AggregationError(
                    f"{client}: {name!r} holds values up to {bound:.3g} in magnitude, above the limit {limit:.3g}"
                )
        bounds.append(bound)
    return bounds


def delta_norm(template: ModelWeights, update: ModelWeights) -> float:
    """The L2 norm of ``update - template`` over every floating-point variable, in float64.

    Integer variables (counters) are left out: they are not a direction in weight space. The sum of squares
    is accumulated with a scale, so finite values never overflow it (``inf`` only if the norm itself is
    beyond float64). One temporary of one variable's size is held at a time.
    """
    scale, total = 0.0, 0.0  # the norm is scale * sqrt(total)
    for want, got in zip(template.arrays, update.arrays, strict=True):
        if not is_float(want):
            continue
        d = np.subtract(np.asarray(got, np.float64), np.asarray(want, np.float64)).reshape(-1)
        if not d.size:
            continue
        biggest = float(np.max(np.abs(d)))
        if not math.isfinite(biggest):
            return math.inf
        if biggest > scale:
            total *= (scale / biggest) ** 2
            scale = biggest
        if scale:
            d /= scale
            total += float(np.dot(d, d))
    return scale * math.sqrt(total)


def check_client_update(
    template: ModelWeights,
    update: Any,
    weight: Any = 1.0,
    *,
    client: str = "client",
    max_delta_norm: float | None = None,
    max_weight: float = math.inf,
) -> ValidatedWeights:
    """:func:`validate_weight` and :func:`validate_update`, and the bound on the change's norm when given.

    Returns:
        The plain weights to aggregate (see :func:`validate_update`).

    Raises:
        AggregationError: with the reason.
    """
    validate_weight(weight, client=client, max_weight=max_weight)
    plain = validated_for(template, update, client=client)
    if max_delta_norm is not None:
        norm = delta_norm(template, plain)
        if not norm <= max_delta_norm:
            raise AggregationError(f"{client}: the update moves the weights by {norm:.6g} (L2), above {max_delta_norm}")
    return plain


def update_problem(
    template: ModelWeights,
    update: Any,
    weight: Any = 1.0,
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


def _report_number(path: str, arr: np.ndarray, integer: bool, max_count: int) -> np.ndarray:
    """:func:`_report_leaf` of one number of a numpy integer or float dtype (the usual leaf), with Python's scalar
    checks instead of numpy's reductions; the same answers and messages."""
    number = arr.item()
    if not integer:  # a sum or a mean: finite
        if not math.isfinite(number):
            raise AggregationError(f"report {path!r}: non-finite value(s) {arr.tolist()}")
        return np.array(number, np.float64)
    if isinstance(number, float) and not (math.isfinite(number) and number.is_integer()):
        raise AggregationError(f"report {path!r}: expected integer counts, got {arr.tolist()}")
    if not 0 <= number <= max_count:
        raise AggregationError(f"report {path!r}: counts must be integers in [0, {max_count}], got {arr.tolist()}")
    return np.array(int(number), np.int64)


def _report_leaf(path: str, value: Any, shape: tuple[int, ...], integer: bool, max_count: int) -> np.ndarray:
    """One leaf of a report as int64 (counts) or float64, after every check."""
    if type(value) is np.ndarray or isinstance(value, np.generic):
        arr = np.asarray(value)
    elif isinstance(value, bool) or not isinstance(value, np.ndarray | numbers.Real | list | tuple):
        raise AggregationError(f"report {path!r}: expected numbers, got {type(value).__name__}")
    elif isinstance(value, np.ndarray):
        raise AggregationError(f"report {path!r}: {type(value).__name__} is not a plain numpy.ndarray")
    else:
        try:
            arr = np.asarray(value)
        except (OverflowError, ValueError, TypeError) as exc:
            raise AggregationError(f"report {path!r}: not an array of numbers ({exc})") from None
    if arr.shape != shape:
        raise AggregationError(f"report {path!r}: expected shape {shape}, got {arr.shape}")
    kind = arr.dtype.kind
    if kind not in "iuf" and arr.dtype.name not in _ML_FLOATS:
        raise AggregationError(f"report {path!r}: expected numbers, got dtype {arr.dtype}")
    if shape == () and kind in "iuf":
        return _report_number(path, arr, integer, max_count)
    if not arr.size:
        return arr.astype(np.int64 if integer else np.float64)
    if not integer:  # a sum or a mean: finite
        wide = arr.astype(np.float64)
        if not np.isfinite(wide).all():
            raise AggregationError(f"report {path!r}: non-finite value(s) {arr.tolist()}")
        return wide
    if kind not in "iu":  # a count sent as a float: integral only
        wide = arr.astype(np.float64)
        if not np.isfinite(wide).all() or (wide != np.rint(wide)).any():
            raise AggregationError(f"report {path!r}: expected integer counts, got {arr.tolist()}")
    if arr.min() < 0 or arr.max() > max_count:
        raise AggregationError(f"report {path!r}: counts must be integers in [0, {max_count}], got {arr.tolist()}")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class ReportTemplate:
    """A template report (the server model's own, see :func:`fedmodel.server.report_template`) prepared once:
    per metric, its structure, and each leaf's path, shape and whether it is a count."""

    metrics: tuple[tuple[str, Any, tuple[str, ...], tuple[tuple[int, ...], ...], tuple[bool, ...], int | None], ...]
    """Per metric: name, structure, leaf paths, leaf shapes, which leaves are counts, and its usual shape
    (:data:`_ONE_ARRAY`, the length of a plain tuple of arrays, or ``None`` for any other structure)."""

    @classmethod
    def of(cls, template: Mapping[str, Any] | ReportTemplate) -> ReportTemplate:
        """``template`` prepared (itself when it already is)."""
        if isinstance(template, ReportTemplate):
            return template
        prepared = []
        for name, like in template.items():
            paths, leaves, treedef = _tree.flatten_with_paths(like)
            arrays = [np.asarray(leaf) for leaf in leaves]
            shapes = tuple(a.shape for a in arrays)
            counts = tuple(a.dtype.kind in "biu" for a in arrays)
            prepared.append((name, treedef, tuple(paths), shapes, counts, _usual_shape(like)))
        return cls(tuple(prepared))

    @property
    def names(self) -> frozenset[str]:
        """The metric names."""
        return frozenset(name for name, *_ in self.metrics)


def check_report(
    report: Any, template: Mapping[str, Any] | ReportTemplate, *, client: str = "client", max_count: int = MAX_COUNT
) -> dict[str, Any]:
    """A client's metric report checked against the server model's own (``template``) and made plain.

    The report must have the template's metric names, and under each the same nesting and leaf shapes.
    Where the template holds integers (counts) the report must hold integers in ``[0, max_count]`` (a float
    is accepted only when integral); elsewhere finite numbers. Leaves come back as int64 or float64 arrays.
    A caller that checks many reports against one template passes it prepared (:meth:`ReportTemplate.of`).

    Raises:
        AggregationError: naming the client and the metric path, expected and actual.
    """
    prepared = ReportTemplate.of(template)
    if not isinstance(report, Mapping):
        raise AggregationError(f"{client}: the metric report is {type(report).__name__}, not a mapping")
    try:
        names = set(report)
    except Exception as exc:
        raise AggregationError(f"{client}: the metric report cannot be read ({exc})") from None
    if names != prepared.names:
        missing, extra = sorted(prepared.names - names), sorted(map(str, names - prepared.names))
        raise AggregationError(f"{client}: report metrics missing {missing}, unexpected {extra}")
    out: dict[str, Any] = {}
    for name, treedef, want_paths, shapes, counts, usual in prepared.metrics:
        try:
            value = report[name]
            fast = usual is not None and _usual_shape(value) == usual  # an array or a plain tuple of them
            if fast:
                got_leaves = [value] if usual == _ONE_ARRAY else list(value)
            else:
                got_leaves, got_treedef = _tree.flatten(value)
                if got_treedef != treedef:  # e.g. a list where the template has a tuple: compare the paths
                    got_paths, got_leaves, _ = _tree.flatten_with_paths(value)
                    if tuple(got_paths) != want_paths:
                        raise AggregationError(f"report {name!r} has paths {got_paths}, expected {list(want_paths)}")
            leaves = [
                _report_leaf(name if path == "<root>" else f"{name}/{path}", got, shape, count, max_count)
                for path, got, shape, count in zip(want_paths, got_leaves, shapes, counts, strict=True)
            ]
        except AggregationError as exc:
            raise AggregationError(f"{client}: {exc}") from None
        except Exception as exc:
            raise AggregationError(f"{client}: report {name!r} cannot be read ({exc})") from None
        if fast:  # what unflattening the template's structure gives, without optree's cost
            out[name] = leaves[0] if usual == _ONE_ARRAY else tuple(leaves)
        else:
            out[name] = _tree.unflatten(treedef, leaves)
    return out


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
    updates: Iterable[tuple[Any, Any]],
    *,
    clients: Sequence[str] | None = None,
    max_delta_norm: float | None = None,
) -> FilterResult:
    """Split ``(update, weight)`` pairs into the accepted ones (as plain weights) and the rejected ones.

    Args:
        template: the server's current weights.
        updates: ``(weights, weight)`` pairs, e.g. ``(result.weights, result.num_examples)``.
        clients: labels for the messages (default ``"client <index>"``).
        max_delta_norm: as in :func:`check_client_update`.
    """
    result = FilterResult()
    for i, (update, weight) in enumerate(updates):
        label = clients[i] if clients is not None else f"client {i}"
        try:
            plain = check_client_update(template, update, weight, client=label, max_delta_norm=max_delta_norm)
        except AggregationError as exc:
            result.rejected.append(Rejection(i, label, str(exc)))
        else:
            result.accepted.append((plain, float(weight)))
    return result
