"""Small helpers shared by the modules of this package: specs, signatures, batches, names, compiled steps."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedmodel import tree as _tree
from fedmodel._batch import split_batch
from fedmodel._errors import SpecError
from fedmodel._specs import TensorSpec, shape_of
from fedmodel_tensorflow._compat import tf

__all__ = [
    "Compiled",
    "as_fedmodel_spec",
    "canonical_names",
    "flat_specs",
    "leading_dim",
    "leaves",
    "tf_signature",
    "unique",
    "zeros_like_spec",
]


def _is_spec_leaf(x: Any) -> bool:
    return isinstance(x, (TensorSpec, tf.TensorSpec))


def _convert_leaf(path: str, leaf: Any) -> TensorSpec:
    if isinstance(leaf, TensorSpec):
        return leaf
    if isinstance(leaf, tf.TensorSpec):
        if leaf.shape.rank is None:
            raise TypeError(
                f"input_spec at {path!r}: a tf.TensorSpec of unknown rank cannot be checked; give its shape"
            )
        return TensorSpec(tuple(leaf.shape.as_list()), leaf.dtype.name, leaf.name)
    raise TypeError(
        f"input_spec at {path!r} is {type(leaf).__name__} ({leaf!r}), not a fedmodel.TensorSpec "
        "(or tf.TensorSpec); write e.g. TensorSpec((None, 64), 'float32')"
    )


def as_fedmodel_spec(input_spec: Any) -> Any:
    """``input_spec`` with every leaf a :class:`fedmodel.TensorSpec` (``tf.TensorSpec`` leaves are converted).

    Raises:
        TypeError: when it is not a pair ``(x, y)`` / mapping ``{"x", "y"}`` of specs, naming the bad path.
    """
    try:
        split_batch(input_spec)
    except SpecError as exc:
        raise TypeError(
            "input_spec must be a pair (x_spec, y_spec) or a mapping {'x': x_spec, 'y': y_spec} of "
            f"fedmodel.TensorSpec, got {type(input_spec).__name__}: {exc}"
        ) from exc
    paths, leaves, treedef = _tree.flatten_with_paths(input_spec, is_leaf=_is_spec_leaf)
    if not leaves:
        raise TypeError("input_spec has no TensorSpec leaf")
    return _tree.unflatten(treedef, [_convert_leaf(p, leaf) for p, leaf in zip(paths, leaves, strict=True)])


def flat_specs(spec: Any) -> tuple[list[TensorSpec], Any]:
    """The leaves of a fedmodel spec tree in canonical order, and its structure."""
    leaves, treedef = _tree.flatten(spec, is_leaf=lambda s: isinstance(s, TensorSpec))
    return leaves, treedef


def tf_signature(specs: Sequence[TensorSpec]) -> list[tf.TensorSpec]:
    """``tf.TensorSpec`` for each fedmodel spec (``None`` dims stay free, so any batch size shares one trace)."""
    return [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=None) for s in specs]


def leaves(value: Any) -> list[Any]:
    """The leaves of an already-validated value, in the canonical order of its spec (arrays or tensors)."""
    flat: list[Any] = _tree.flatten(value)[0]
    return flat


def leading_dim(first_leaf: Any) -> int:
    """The leading dimension of a batch's first leaf (the batch size)."""
    shape = shape_of(first_leaf)
    if not shape or shape[0] is None:
        raise SpecError(f"cannot read a batch size from a value of shape {shape}")
    return int(shape[0])


def zeros_like_spec(specs: Sequence[TensorSpec], batch_size: int) -> list[np.ndarray]:
    """A zero array per spec, with every free dimension set to ``batch_size`` (leading) or 1 (others)."""
    out = []
    for spec in specs:
        shape = tuple((batch_size if i == 0 else 1) if d is None else d for i, d in enumerate(spec.shape))
        out.append(np.zeros(shape, np.dtype(spec.dtype)))
    return out


_SUFFIX = re.compile(r"(.+?)(?:_(\d+))?")


def canonical_names(paths: Sequence[str], model_name: str) -> list[str]:
    """Instance-independent, unique names for Keras variable paths.

    Keras numbers auto-named layers per process (``dense``, ``dense_1``, ...), so two models built by one
    factory get different paths. Here the model's own name is dropped and every scope component is
    renumbered by order of first appearance within this model: the first distinct ``dense*`` scope is
    ``dense``, the second ``dense_1``, as Keras would name them in a fresh process. Names that are still
    equal get a ``#k`` suffix.

    >>> canonical_names(["sequential_7/dense_3/kernel", "sequential_7/dense_4/kernel"], "sequential_7")
    ['dense/kernel', 'dense_1/kernel']
    """
    seen: dict[str, dict[str, int]] = {}
    names = []
    for path in paths:
        parts = path.split("/")
        if len(parts) > 1 and parts[0] == model_name:
            parts = parts[1:]
        *scopes, leaf = parts
        renamed = []
        for scope in scopes:
            match = _SUFFIX.fullmatch(scope)
            base = match.group(1) if match else scope
            table = seen.setdefault(base, {})
            k = table.setdefault(scope, len(table))
            renamed.append(base if k == 0 else f"{base}_{k}")
        names.append("/".join([*renamed, leaf]))
    return unique(names)


def unique(names: Sequence[str]) -> list[str]:
    """``names`` with later duplicates suffixed ``#1``, ``#2``... (first occurrences unchanged)."""
    counts: dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        k = counts.get(name, 0)
        counts[name] = k + 1
        if k == 0:
            out.append(name)
            continue
        candidate = f"{name}#{k}"
        while candidate in taken:
            k += 1
            candidate = f"{name}#{k}"
        taken.add(candidate)
        out.append(candidate)
    return out


class Compiled:
    """``fn(flat)`` over a flat list of leaves: a ``tf.function`` traced once, called through its concrete
    function (a third of the per-call overhead of ``tf.function`` dispatch), or plain eager code."""

    def __init__(self, fn: Callable[[list[tf.Tensor]], Any], signature: list[tf.TensorSpec], *, eager: bool) -> None:
        self._fn = fn
        self._dtypes = [s.dtype for s in signature]
        # TensorFlow counts traces per code object, so every new model's first trace of a closure would
        # count as a "retrace" of the last model's and log a warning; a partial is keyed by itself.
        self.function = (
            None if eager else tf.function(functools.partial(fn), input_signature=[signature], autograph=False)
        )
        self._concrete: Any = None

    def __call__(self, flat: Sequence[Any]) -> Any:
        tensors = [
            a if isinstance(a, tf.Tensor) else tf.convert_to_tensor(a, dtype=d)
            for a, d in zip(flat, self._dtypes, strict=True)
        ]
        if self.function is None:
            return self._fn(tensors)
        if self._concrete is None:
            self._concrete = self.function.get_concrete_function()
        return self._concrete(tensors)

    def tracing_count(self) -> int:
        """How many times the ``tf.function`` was traced (0 when eager)."""
        return 0 if self.function is None else int(self.function.experimental_get_tracing_count())
