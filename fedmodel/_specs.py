"""Tensor specs: the shape and dtype a model accepts, over nested structures.

A spec tree is any nesting of dicts, tuples, lists and namedtuples whose leaves are
:class:`TensorSpec`. A value tree is compatible with it when both have the same leaf paths
(sequences match by index, so a list may stand for a tuple) and every leaf has a compatible
shape (``None`` dimensions are free) and exactly the same dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedmodel import _tree
from fedmodel._errors import SpecError

__all__ = [
    "TensorSpec",
    "check_bounds",
    "check_spec",
    "classification_spec",
    "dtype_name",
    "is_compatible",
    "shape_of",
    "spec_like",
]


def dtype_name(dtype: Any) -> str:
    """The framework-neutral name of a dtype: ``"float32"``, ``"int64"``, ``"bfloat16"``...

    Accepts numpy dtypes and type objects, strings, ``torch.dtype``, ``tf.DType`` and JAX dtypes.

    >>> dtype_name("float32"), dtype_name(np.int64)
    ('float32', 'int64')
    """
    try:
        return _DTYPE_NAMES[dtype]
    except (KeyError, TypeError):  # TypeError: an unhashable dtype-like
        pass
    name = _dtype_name_uncached(dtype)
    if len(_DTYPE_NAMES) < 4096:
        with contextlib.suppress(TypeError):
            _DTYPE_NAMES[dtype] = name
    return name


_DTYPE_NAMES: dict[Any, str] = {}  # numpy's dtype.name costs microseconds: every batch check asks


def _dtype_name_uncached(dtype: Any) -> str:
    as_numpy = getattr(dtype, "as_numpy_dtype", None)  # tf.DType
    if as_numpy is not None:
        dtype = as_numpy
    try:
        return str(np.dtype(dtype).name)
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]  # torch.float32 -> float32


def shape_of(value: Any) -> tuple[int | None, ...]:
    """The shape of an array-like of any framework, as a tuple of ints."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return tuple(np.shape(value))
    return tuple(None if d is None else int(d) for d in shape)


def _dtype_of(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        dtype = np.asarray(value).dtype
    return dtype_name(dtype)


@dataclass(frozen=True, repr=False)
class TensorSpec:
    """Shape and dtype of one tensor; ``None`` dimensions are free (typically the batch).

    ``minimum`` and ``maximum``, when given, bound every value (inclusive), as TensorFlow's
    ``BoundedTensorSpec`` and dm_env's ``BoundedArray`` do: a classifier's labels are
    ``TensorSpec((None,), "int64", minimum=0, maximum=num_classes - 1)``. A frozen dataclass, so
    :mod:`optree` treats it as a leaf of a spec tree.

    >>> spec = TensorSpec((None, 64), "float32", name="pixels")
    >>> spec.is_compatible_with(np.zeros((8, 64), np.float32))
    True
    >>> TensorSpec((None,), "int64", minimum=0, maximum=9).mismatch(np.array([3, 10]))
    'expected values in [0, 9], got values in [3, 10]'
    """

    shape: tuple[int | None, ...]
    dtype: str
    name: str | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None

    def __post_init__(self) -> None:
        try:
            shape = tuple(None if d is None else int(d) for d in self.shape)
        except TypeError as exc:
            raise TypeError(f"TensorSpec shape must be a sequence of int or None, got {self.shape!r}") from exc
        if any(d is not None and d < 0 for d in shape):
            raise ValueError(f"TensorSpec shape has a negative dimension: {shape}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.dtype in ("object", "str", "bytes", "void") or self.dtype.startswith(("str", "bytes", "void")):
            raise ValueError(f"TensorSpec dtype {self.dtype!r} does not describe numbers")
        for bound in (self.minimum, self.maximum):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float, np.number))):
                raise TypeError(f"TensorSpec bounds must be numbers or None, got {bound!r}")
        if self.minimum is not None and self.maximum is not None and not self.minimum <= self.maximum:
            raise ValueError(f"TensorSpec minimum {self.minimum} is above its maximum {self.maximum}")

    def __repr__(self) -> str:
        bounds = "" if not self.bounded else f", minimum={self.minimum!r}, maximum={self.maximum!r}"
        return f"TensorSpec(shape={self.shape!r}, dtype={self.dtype!r}, name={self.name!r}{bounds})"

    @property
    def bounded(self) -> bool:
        """Whether the spec bounds the values (``minimum`` or ``maximum`` set)."""
        return self.minimum is not None or self.maximum is not None

    def mismatch(self, value: Any) -> str | None:
        """Why ``value`` is not compatible with this spec, or ``None`` when it is."""
        if not (hasattr(value, "shape") and hasattr(value, "dtype")) and not isinstance(
            value, (int, float, bool, np.generic, list)
        ):
            return f"expected an array of shape {self.shape} and dtype {self.dtype}, got {type(value).__name__}"
        try:
            shape = shape_of(value)
            dtype = _dtype_of(value)
        except (TypeError, ValueError) as exc:
            return f"expected an array of shape {self.shape} and dtype {self.dtype}, got {type(value).__name__} ({exc})"
        if len(shape) != len(self.shape) or any(
            want is not None and got != want for want, got in zip(self.shape, shape, strict=False)
        ):
            return f"expected shape {_fmt_shape(self.shape)}, got {_fmt_shape(shape)}"
        if dtype != self.dtype:
            return f"expected dtype {self.dtype}, got {dtype}"
        if not getattr(getattr(value, "dtype", None), "isnative", True):
            order = "big" if value.dtype.byteorder == ">" else "little"
            return f"expected native byte order, got {order}-endian {dtype} (convert with .astype('{dtype}'))"
        return self.out_of_range(value)

    def out_of_range(self, value: Any) -> str | None:
        """Why ``value``'s values break ``minimum``/``maximum`` (NaN breaks any bound), or ``None``."""
        if not self.bounded:
            return None
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        if arr.size == 0:
            return None
        if arr.size <= _FEW and arr.dtype.kind in "biu":  # a batch's labels: Python's min and max cost less than
            values = arr.ravel().tolist()  # two numpy reductions, and compare exactly (no NaN among integers)
            low, high = min(values), max(values)
        else:
            low, high = arr.min(), arr.max()
        if (self.minimum is not None and not low >= self.minimum) or (
            self.maximum is not None and not high <= self.maximum
        ):
            low_bound = "-inf" if self.minimum is None else self.minimum
            high_bound = "inf" if self.maximum is None else self.maximum
            return f"expected values in [{low_bound}, {high_bound}], got values in [{low}, {high}]"
        return None

    def _quick_ok(self, value: Any) -> bool:
        """The common case without building a message: an array of the right shape and dtype, native byte order
        (bounds are checked apart, on every call)."""
        shape = getattr(value, "shape", None)
        dtype = getattr(value, "dtype", None)
        if shape is None or dtype is None or dtype_name(dtype) != self.dtype or not getattr(dtype, "isnative", True):
            return False
        try:
            if len(shape) != len(self.shape):
                return False
            return all(want is None or want == got for want, got in zip(self.shape, shape, strict=True))
        except TypeError:
            return False

    def is_compatible_with(self, value: Any) -> bool:
        """True when ``value`` (an array of any framework) has a matching shape, dtype and values."""
        return self.mismatch(value) is None


_FEW = 256  # up to this many integer values, bounds are checked on a Python list


def _fmt_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _is_spec(x: Any) -> bool:
    return isinstance(x, TensorSpec)


def check_spec(spec: Any, value: Any, *, what: str = "batch", prefix: str = "") -> int | None:
    """Raise :class:`SpecError` unless ``value`` matches the spec tree ``spec``; return its batch size.

    Every leaf must have the spec's shape (``None`` dimensions free), dtype (native byte order) and, for a
    bounded spec, values within its bounds; leaves whose spec has a free first dimension (the batch) must
    agree on it. The message names the path (``x/pixels``), the expected and the actual shape, dtype or
    values. The spec's flattening, the leaf order of each value structure seen, and each accepted signature
    (structure, leaf shapes and dtypes) are cached, so a batch like one already accepted costs a flatten and
    one set lookup, plus a min and a max of each bounded leaf.

    >>> check_spec({"x": TensorSpec((None, 2), "float32")}, {"x": np.zeros((1, 3), np.float32)})
    Traceback (most recent call last):
    ...
    fedmodel._errors.SpecError: batch at 'x': expected shape (None, 2), got (1, 3)

    ``prefix`` is prepended to every path in messages (``check_batch`` checks ``x`` and ``y`` apart).

    Returns:
        The common first dimension of the leaves whose spec leaves it free, or ``None`` when there are none.
    """
    spec_paths, spec_leaves = _spec_plan(spec)
    try:
        value_leaves, value_treedef = _tree.flatten(value)
    except Exception as exc:  # optree refuses some exotic containers
        raise SpecError(f"{what} cannot be read as a nested structure: {exc}") from exc
    signature = _signature(id(spec), value_treedef, value_leaves)
    order = _ORDERS.get((id(spec), value_treedef))
    if order is None:
        order = _leaf_order(spec, spec_paths, value_treedef, what, prefix)
    if _seen(signature, _ACCEPTED):
        check_bounds(spec_paths, spec_leaves, [value_leaves[i] for i in order], what, prefix)
        return _batch_size(spec_leaves, [value_leaves[i] for i in order])
    ordered = [value_leaves[i] for i in order]
    for path, leaf, value_leaf in zip(spec_paths, spec_leaves, ordered, strict=True):
        reason = None if leaf._quick_ok(value_leaf) else leaf.mismatch(value_leaf)
        if reason is None and leaf.bounded:
            reason = leaf.out_of_range(value_leaf)
        if reason is not None:
            raise SpecError(f"{what} at {_join(prefix, path)!r}: {reason}")
    sizes = {
        path: size
        for path, leaf, v in zip(spec_paths, spec_leaves, ordered, strict=True)
        if _free_batch(leaf) and (size := shape_of(v)[0]) is not None  # None: a symbolic tensor being traced
    }
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{_join(prefix, p)!r} has {n}" for p, n in sizes.items())
        raise SpecError(f"{what}: its parts disagree on the number of examples: {listed}")
    if signature is not None and len(_ACCEPTED) < _CACHE_LIMIT * 4:
        with contextlib.suppress(TypeError):
            _ACCEPTED.add(signature)
    return next(iter(sizes.values()), None)


def _free_batch(spec: TensorSpec) -> bool:
    return bool(spec.shape) and spec.shape[0] is None


def _batch_size(spec_leaves: list[TensorSpec], values: list[Any]) -> int | None:
    for leaf, value in zip(spec_leaves, values, strict=True):
        if _free_batch(leaf):
            return shape_of(value)[0]
    return None


def check_bounds(paths: list[str], spec_leaves: list[TensorSpec], values: list[Any], what: str, prefix: str) -> None:
    """Raise :class:`SpecError` for the first value outside its bounded spec's ``[minimum, maximum]``."""
    for path, leaf, value in zip(paths, spec_leaves, values, strict=True):
        if leaf.bounded:
            reason = leaf.out_of_range(value)
            if reason is not None:
                raise SpecError(f"{what} at {_join(prefix, path)!r}: {reason}")


def _signature(spec_id: int, treedef: Any, leaves: list[Any]) -> tuple[Any, ...] | None:
    """What the check depends on: the spec, the structure, and every leaf's shape and dtype."""
    parts: list[Any] = [spec_id, treedef]
    try:
        for leaf in leaves:
            parts += (leaf.shape, leaf.dtype)
    except AttributeError:  # a leaf that is not an array: no fast path
        return None
    return tuple(parts)


def _seen(signature: tuple[Any, ...] | None, accepted: set[tuple[Any, ...]]) -> bool:
    """``signature in accepted``, False for no signature or an unhashable one (a partly unknown TensorShape)."""
    if signature is None:
        return False
    try:
        return signature in accepted
    except TypeError:
        return False


_PLANS: dict[int, tuple[Any, list[str], list[TensorSpec]]] = {}
_ORDERS: dict[tuple[int, Any], tuple[int, ...]] = {}
_ACCEPTED: set[tuple[Any, ...]] = set()
_CACHE_LIMIT = 256


def _spec_plan(spec: Any) -> tuple[list[str], list[TensorSpec]]:
    cached = _PLANS.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1], cached[2]
    paths, leaves, _ = _tree.flatten_with_paths(spec, is_leaf=_is_spec)
    for path, leaf in zip(paths, leaves, strict=True):
        if not isinstance(leaf, TensorSpec):
            raise TypeError(f"input_spec at {path!r} is {type(leaf).__name__}, not a fedmodel.TensorSpec")
    if len(_PLANS) >= _CACHE_LIMIT:
        _PLANS.clear()
        _ORDERS.clear()
        _ACCEPTED.clear()
    _PLANS[id(spec)] = (spec, paths, leaves)  # the strong reference keeps id(spec) from being reused
    return paths, leaves


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return prefix if path == "<root>" else f"{prefix}/{path}"


def _leaf_order(spec: Any, spec_paths: list[str], value_treedef: Any, what: str, prefix: str) -> tuple[int, ...]:
    value_paths = [_tree.path_str(p) for p in value_treedef.paths()]
    index = {p: i for i, p in enumerate(value_paths)}
    missing = [p for p in spec_paths if p not in index]
    extra = sorted(set(value_paths) - set(spec_paths))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {[_join(prefix, p) for p in missing]}")
        if extra:
            parts.append(f"unexpected {[_join(prefix, p) for p in extra]}")
        detail = ", ".join(parts)
        raise SpecError(
            f"{what} structure does not match the spec: {detail} (spec paths: {[_join(prefix, p) for p in spec_paths]})"
        )
    order = tuple(index[p] for p in spec_paths)
    if len(_ORDERS) < _CACHE_LIMIT * 4:
        _ORDERS[(id(spec), value_treedef)] = order
    return order


def is_compatible(spec: Any, value: Any) -> bool:
    """True when :func:`check_spec` would accept ``value``."""
    try:
        check_spec(spec, value)
    except SpecError:
        return False
    return True


def classification_spec(num_features: int, num_classes: int | None = None) -> tuple[TensorSpec, TensorSpec]:
    """The input spec of a classifier over flat features with integer labels, as :mod:`fedmodel.data` serves them.

    With ``num_classes``, labels are bounded to ``[0, num_classes - 1]``, so a batch with another label is a
    :class:`SpecError` before any framework sees it.

    >>> classification_spec(64, 10)[1]
    TensorSpec(shape=(None,), dtype='int64', name='y', minimum=0, maximum=9)
    """
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    x = TensorSpec((None, num_features), "float32", "x")
    if num_classes is None:
        return x, TensorSpec((None,), "int64", "y")
    return x, TensorSpec((None,), "int64", "y", minimum=0, maximum=num_classes - 1)


def spec_like(value: Any, *, batch_dim_free: bool = True) -> Any:
    """A spec tree describing ``value``; the leading dimension is left free by default."""

    def leaf(v: Any) -> TensorSpec:
        shape = shape_of(v)
        if batch_dim_free and shape:
            shape = (None, *shape[1:])
        return TensorSpec(shape, _dtype_of(v))

    return _tree.map_structure(leaf, value)
