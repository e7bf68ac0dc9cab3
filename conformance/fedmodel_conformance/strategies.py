"""Hypothesis strategies: specs, batches from any ``input_spec``, and random weights for a model.

>>> from hypothesis import given
>>> from fedmodel_conformance import strategies as fst
>>> @given(fst.input_specs().flatmap(fst.batches))
... def test_batches_match_their_spec(spec_and_batch): ...

Values are drawn from a seeded numpy generator (hypothesis draws the seed), which keeps large arrays
fast; shapes, dtypes, structures and batch sizes are drawn by hypothesis and shrink.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

import fedmodel
from fedmodel import tree as _tree

__all__ = ["DTYPES", "batches", "input_specs", "model_weights", "nested_specs", "random_batch", "tensor_specs"]

DTYPES = ("float32", "float64", "int32", "int64", "bool")


def random_batch(spec: Any, size: int, rng: np.random.Generator, *, num_classes: int = 10) -> Any:
    """A numpy value matching the spec tree, with ``size`` for the leading ``None`` dimension.

    Other ``None`` dimensions get 2; floats are standard normal (clipped to a bounded spec's range),
    integers uniform in the spec's ``[minimum, maximum]`` or, unbounded, in ``[0, num_classes)`` (valid
    class ids), booleans fair coins. Usable as ``Case.make_batch`` via
    ``lambda size, rng: random_batch(model.input_spec, size, rng)``.
    """

    def leaf(s: fedmodel.TensorSpec) -> np.ndarray:
        shape = tuple((size if i == 0 else 2) if d is None else d for i, d in enumerate(s.shape))
        dtype = np.dtype(s.dtype)
        if dtype.kind == "f":
            values = rng.standard_normal(shape)
            return np.clip(values, s.minimum, s.maximum).astype(dtype) if s.bounded else values.astype(dtype)
        if dtype.kind in "iu":
            low = 0 if s.minimum is None else int(np.ceil(s.minimum))
            high = low + num_classes - 1 if s.maximum is None else int(np.floor(s.maximum))
            return rng.integers(low, high, shape, endpoint=True).astype(dtype)
        if dtype.kind == "b":
            return rng.random(shape) < 0.5
        raise ValueError(f"random_batch cannot draw dtype {s.dtype}")

    leaves, treedef = _tree.flatten(spec, is_leaf=lambda s: isinstance(s, fedmodel.TensorSpec))
    return _tree.unflatten(treedef, [leaf(s) for s in leaves])


@st.composite
def tensor_specs(draw: st.DrawFn, batch_dim: bool = True) -> fedmodel.TensorSpec:
    """A :class:`fedmodel.TensorSpec`: a free leading dimension, then 0 to 2 fixed dims of 1 to 4."""
    dims = draw(st.lists(st.integers(1, 4), max_size=2))
    shape = (None, *dims) if batch_dim else tuple(dims)
    return fedmodel.TensorSpec(shape, draw(st.sampled_from(DTYPES)), draw(st.none() | st.sampled_from(["a", "b"])))


_KEYS = st.text("abcdefgh", min_size=1, max_size=3)


def nested_specs(max_leaves: int = 4) -> st.SearchStrategy[Any]:
    """A nested structure of dicts, tuples and lists whose leaves are :func:`tensor_specs`."""
    return st.recursive(
        tensor_specs(),
        lambda children: (
            st.dictionaries(_KEYS, children, min_size=1, max_size=3)
            | st.lists(children, min_size=1, max_size=3).map(tuple)
            | st.lists(children, min_size=1, max_size=2)
        ),
        max_leaves=max_leaves,
    )


def input_specs(max_leaves: int = 4) -> st.SearchStrategy[Any]:
    """A model's ``input_spec``: a pair ``(x, y)`` or a mapping ``{"x", "y"}`` of nested specs."""
    pair = st.tuples(nested_specs(max_leaves), nested_specs(2))
    return pair | pair.map(lambda p: {"x": p[0], "y": p[1]})


def batches(spec: Any, sizes: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[tuple[Any, int, Any]]:
    """``(spec, size, batch)`` with a batch of ``size`` examples matching ``spec`` (sizes 1 to 8 by default)."""
    sizes = sizes if sizes is not None else st.integers(1, 8)
    seeds = st.integers(0, 2**32 - 1)
    return st.tuples(sizes, seeds).map(lambda a: (spec, a[0], random_batch(spec, a[0], np.random.default_rng(a[1]))))


def model_weights(
    model: Any, backend: fedmodel.Backend | None = None, scale: float = 1.0
) -> st.SearchStrategy[fedmodel.ModelWeights]:
    """Random :class:`fedmodel.ModelWeights` with the names, shapes and dtypes of ``model``'s weights.

    Floats are normal with standard deviation ``scale`` (and sometimes exactly zero or negative zero),
    integers small, booleans fair coins: always valid for :func:`fedmodel.assign_weights`.
    """
    template = fedmodel.get_weights(model, backend=backend)

    def build(seed: int, zeros: bool) -> fedmodel.ModelWeights:
        rng = np.random.default_rng(seed)
        out = []
        for a in template.arrays:
            if a.dtype.kind == "f":
                v = (rng.standard_normal(a.shape) * scale).astype(a.dtype)
                if zeros and v.size:
                    v.flat[0], v.flat[-1] = 0.0, -0.0
            elif a.dtype.kind in "iu":
                v = rng.integers(0, 100, a.shape).astype(a.dtype)
            elif a.dtype.kind == "b":
                v = rng.random(a.shape) < 0.5
            else:
                v = a.copy()
            out.append(np.asarray(v, a.dtype))
        return template.with_arrays(out)

    return st.builds(build, st.integers(0, 2**32 - 1), st.booleans())
