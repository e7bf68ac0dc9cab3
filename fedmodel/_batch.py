"""The batch convention of the contract (TFF's): a pair ``(x, y)`` or a mapping with ``"x"`` and ``"y"``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from fedmodel import _tree
from fedmodel._errors import SpecError
from fedmodel._specs import TensorSpec, _seen, _signature, check_spec

__all__ = ["check_batch", "split_batch"]


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(x, y)`` from a batch that is a pair or a mapping with keys ``"x"`` and ``"y"``.

    Raises:
        SpecError: when the batch is neither.
    """
    if type(batch) is tuple and len(batch) == 2:  # the common case first: an ABC check costs more
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        if set(batch) != {"x", "y"}:
            raise SpecError(f"a batch mapping must have exactly the keys 'x' and 'y', got {sorted(map(str, batch))}")
        return batch["x"], batch["y"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise SpecError(f"a batch must be a pair (x, y) or a mapping with keys 'x' and 'y', got {type(batch).__name__}")


def check_batch(input_spec: Any, batch: Any) -> tuple[Any, Any]:
    """Validate ``batch`` against a model's ``input_spec`` and return ``(x, y)``.

    Either side may use either convention (pair or mapping); paths in errors are ``x/...`` and ``y/...``.
    Every leaf must match its spec (shape, dtype, native byte order, the bounds of a bounded spec), ``x``
    and ``y`` must hold the same number of examples, and at least one. A batch with the structure, shapes
    and dtypes of one already accepted for this spec is accepted after one flatten and a set lookup (a pair
    of two arrays: after one set lookup), plus a min and a max of each bounded leaf.

    Raises:
        SpecError: naming the path, the expected and the actual shape, dtype or values.
    """
    if type(batch) is tuple and len(batch) == 2:  # the hot path: a pair of two arrays seen before
        x, y = batch
        try:
            pair = (id(input_spec), type(x), x.shape, x.dtype, type(y), y.shape, y.dtype)
            if pair in _ACCEPTED_PAIRS:
                bounded = _PAIR_BOUNDS.get(id(input_spec))
                if bounded is not None:
                    _check_pair_bounds(bounded, x, y)
                return x, y
        except (AttributeError, TypeError):  # a nested side, or an unhashable shape
            pair = None
    else:
        pair = None
    x, y = split_batch(batch)
    try:
        leaves, treedef = _tree.flatten(batch)
    except Exception:  # an exotic container: check_spec below says what is wrong
        signature = None
    else:
        signature = _signature(id(input_spec), treedef, leaves)
        if _seen(signature, _ACCEPTED):
            if id(input_spec) in _BOUNDED_SPECS:
                _check_sides(input_spec, x, y)  # the cached path of check_spec: the bounds only
            _remember_pair(input_spec, pair, leaves, x, y)
            return x, y
    _check_sides(input_spec, x, y)
    if signature is not None:
        if len(_ACCEPTED) >= _LIMIT:
            _ACCEPTED.clear()
            _ACCEPTED_PAIRS.clear()
            _SPECS.clear()
            _BOUNDED_SPECS.clear()
            _PAIR_BOUNDS.clear()
        _SPECS[id(input_spec)] = input_spec  # the strong reference keeps id(input_spec) from being reused
        if any(leaf.bounded for leaf in _tree.flatten(input_spec, is_leaf=_is_spec)[0]):
            _BOUNDED_SPECS.add(id(input_spec))
        with contextlib.suppress(TypeError):
            _ACCEPTED.add(signature)
            _remember_pair(input_spec, pair, leaves, x, y)
    return x, y


def _check_sides(input_spec: Any, x: Any, y: Any) -> None:
    """Both sides against their specs, then the batch as a whole: one number of examples, at least one."""
    spec_x, spec_y = split_batch(input_spec)
    size_x = check_spec(spec_x, x, prefix="x")
    size_y = check_spec(spec_y, y, prefix="y")
    if size_x is not None and size_y is not None and size_x != size_y:
        raise SpecError(f"batch: x holds {size_x} examples but y holds {size_y}")
    if (size_x if size_x is not None else size_y) == 0:
        raise SpecError("batch: it holds 0 examples; a batch needs at least one")


def _check_pair_bounds(bounded: tuple[TensorSpec | None, TensorSpec | None], x: Any, y: Any) -> None:
    for side, spec, value in (("x", bounded[0], x), ("y", bounded[1], y)):
        if spec is not None:
            reason = spec.out_of_range(value)
            if reason is not None:
                raise SpecError(f"batch at {side!r}: {reason}")


def _remember_pair(input_spec: Any, pair: tuple[Any, ...] | None, leaves: list[Any], x: Any, y: Any) -> None:
    """Add an accepted pair's key when both of its sides are leaves (then it says all the signature says)."""
    if pair is not None and len(leaves) == 2 and leaves[0] is x and leaves[1] is y:
        spec_x, spec_y = split_batch(input_spec)
        if isinstance(spec_x, TensorSpec) and isinstance(spec_y, TensorSpec):
            if spec_x.bounded or spec_y.bounded:
                _PAIR_BOUNDS[id(input_spec)] = (spec_x if spec_x.bounded else None, spec_y if spec_y.bounded else None)
            _ACCEPTED_PAIRS.add(pair)


def _is_spec(x: Any) -> bool:
    return isinstance(x, TensorSpec)


# batch signatures (input spec, structure, leaf shapes and dtypes) already accepted: the hot path
_ACCEPTED: set[tuple[Any, ...]] = set()
_ACCEPTED_PAIRS: set[tuple[Any, ...]] = set()  # (spec id, then type, shape and dtype of x and of y)
_PAIR_BOUNDS: dict[int, tuple[TensorSpec | None, TensorSpec | None]] = {}  # spec id -> its bounded sides
_BOUNDED_SPECS: set[int] = set()  # ids of accepted specs with a bounded leaf
_SPECS: dict[int, Any] = {}
_LIMIT = 1024
