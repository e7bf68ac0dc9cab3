"""Property tests: spec checks fail only with SpecError; an assign is all or nothing, for any input."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fedmodel
from fedmodel import ModelWeights, SpecError, TensorSpec, WeightsError
from fedmodel.reference import SoftmaxRegression

DTYPES = ["float32", "float64", "float16", "int64", "int32", "uint8", "bool"]
Pair = namedtuple("Pair", ["first", "second"])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dims = st.one_of(st.none(), st.integers(0, 4))
specs = st.builds(TensorSpec, st.lists(dims, max_size=3).map(tuple), st.sampled_from(DTYPES))
keys = st.text("abcxyz_", min_size=1, max_size=4)
spec_trees = st.recursive(
    specs,
    lambda children: st.one_of(
        st.dictionaries(keys, children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.tuples(children, children).map(lambda t: Pair(*t)),
    ),
    max_leaves=6,
)


class _FakeArray:
    """An object that pretends to be an array, with whatever ``shape`` and ``dtype`` it is given."""

    def __init__(self, shape: Any, dtype: Any) -> None:
        self.shape, self.dtype = shape, dtype


arrays = st.builds(
    lambda shape, dtype: np.zeros(shape, dtype),
    st.lists(st.integers(0, 3), max_size=3).map(tuple),
    st.sampled_from(DTYPES),
)
junk = st.one_of(
    arrays,
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.just(object()),
    st.just(np.float32(1.0)),
)
value_trees = st.recursive(
    junk,
    lambda children: st.one_of(
        st.dictionaries(st.one_of(keys, st.integers(0, 3)), children, max_size=3),
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
    ),
    max_leaves=8,
)


@SETTINGS
@given(spec=spec_trees, value=value_trees)
def test_check_spec_on_any_value_raises_nothing_but_spec_error(spec: Any, value: Any) -> None:
    try:
        fedmodel.check_spec(spec, value)
    except SpecError as exc:
        assert str(exc)


@pytest.mark.parametrize(
    "value",
    [
        _FakeArray((2,), "no such dtype"),
        _FakeArray((None, 2), np.float32),
        _FakeArray("not a shape", "float32"),
        _FakeArray(3, "float32"),
    ],
    ids=["bad-dtype", "unknown-dim", "string-shape", "int-shape"],
)
def test_a_malformed_array_like_is_a_spec_error(value: _FakeArray) -> None:
    with pytest.raises(SpecError):
        fedmodel.check_spec(TensorSpec((2,), "float32"), value)


def _instantiate(spec: Any, draw: Any, batch: int | None = None) -> Any:
    """A value of the spec tree: one batch size for every free first dimension, other free dimensions drawn."""
    batch = draw(st.integers(0, 3)) if batch is None else batch
    if isinstance(spec, TensorSpec):
        shape = tuple(
            (batch if i == 0 else draw(st.integers(0, 3))) if d is None else d for i, d in enumerate(spec.shape)
        )
        return np.zeros(shape, spec.dtype)
    if isinstance(spec, dict):
        return {k: _instantiate(v, draw, batch) for k, v in spec.items()}
    if isinstance(spec, Pair):
        return Pair(*(_instantiate(v, draw, batch) for v in spec))
    return tuple(_instantiate(v, draw, batch) for v in spec)


@SETTINGS
@given(spec=spec_trees, data=st.data())
def test_a_value_built_from_the_spec_always_passes(spec: Any, data: st.DataObject) -> None:
    value = _instantiate(spec, data.draw)
    fedmodel.check_spec(spec, value)
    assert fedmodel.is_compatible(spec, value)


@SETTINGS
@given(spec=spec_trees, data=st.data())
def test_changing_one_leaf_dtype_is_a_spec_error_naming_its_path(spec: Any, data: st.DataObject) -> None:
    value = _instantiate(spec, data.draw)
    paths, leaves, treedef = fedmodel._tree.flatten_with_paths(value)
    i = data.draw(st.integers(0, len(leaves) - 1))
    other = data.draw(st.sampled_from([d for d in DTYPES if d != leaves[i].dtype.name]))
    leaves[i] = leaves[i].astype(other)
    try:
        fedmodel.check_spec(spec, fedmodel._tree.unflatten(treedef, leaves))
    except SpecError as exc:
        assert repr(paths[i]) in str(exc)
    else:
        raise AssertionError("a changed dtype was accepted")


# -- assign: all or nothing ----------------------------------------------------------------------
def _snapshot(model: SoftmaxRegression) -> list[tuple[str, tuple[int, ...], bytes]]:
    return [
        (v.value.dtype.name, v.value.shape, v.value.tobytes())
        for v in (*model.trainable_variables, *model.non_trainable_variables)
    ]


@st.composite
def candidate_weights(draw: st.DrawFn) -> ModelWeights:
    """Mostly valid weights for SoftmaxRegression(3, 2), each part sometimes wrong (shape, dtype, name, count)."""
    wrong = draw(st.sampled_from(["none", "shape", "dtype", "name", "count", "type"]))
    target = draw(st.integers(0, 2))
    shapes, names = [(3, 2), (2,), (3,)], ["kernel", "bias", "input_scale"]
    floats = st.floats(width=32)
    values: list[Any] = []
    for i, shape in enumerate(shapes):
        if wrong == "shape" and i == target:
            shape = draw(st.sampled_from([(2, 3), (3, 3), (3, 2, 1), ()]))
        size = int(np.prod(shape))
        arr = np.array(draw(st.lists(floats, min_size=size, max_size=size)), np.float32).reshape(shape)
        if wrong == "dtype" and i == target:
            with np.errstate(over="ignore", invalid="ignore"):  # the values do not matter, the dtype does
                arr = arr.astype(draw(st.sampled_from(["float64", "float16", "int32"])))
        values.append(arr.tolist() if wrong == "type" and i == target else arr)
    if wrong == "name":
        names[target] = draw(st.sampled_from(["w", "b", "scale"]))
    if wrong == "count":
        del values[target], names[target]
    n = 2 if wrong != "count" or target == 2 else 1
    return ModelWeights(tuple(values[:n]), tuple(values[n:]), tuple(names[:n]), tuple(names[n:]))


@SETTINGS
@given(weights=candidate_weights())
def test_assign_either_fully_succeeds_or_changes_nothing(weights: ModelWeights) -> None:
    model = SoftmaxRegression(3, 2, seed=0)
    before = _snapshot(model)
    try:
        fedmodel.assign_weights(model, weights)
    except WeightsError:
        assert _snapshot(model) == before
        return
    after = _snapshot(model)
    assert after == [(a.dtype.name, a.shape, a.tobytes()) for a in weights.arrays]
