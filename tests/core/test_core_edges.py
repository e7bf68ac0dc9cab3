"""Edges of the core's contract types: weights, specs, batches and metric aggregators (issue 18, item 5).

Each test pins one behaviour a user relies on, with the exact value where the math is known; mutation testing
(docs/mutation.md) showed these lines unguarded by the other tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fedmodel
from fedmodel import (
    AggregationError,
    ModelWeights,
    SpecError,
    TensorSpec,
    WeightsError,
    check_batch,
    check_spec,
    is_compatible,
)
from fedmodel._batch import split_batch
from fedmodel.metrics import MeanOfFinalized, SumThenFinalize, identity, ratio
from fedmodel.reference import SoftmaxRegression

# --- ModelWeights ---------------------------------------------------------------------------------------------


def _weights() -> ModelWeights:
    return ModelWeights(
        (np.array([1.0, 2.0], np.float32), np.array([[3.0]], np.float64)),
        (np.array(7, np.int64),),
        ("dense/kernel", "dense/bias"),
        ("steps",),
    )


def test_copy_returns_independent_writable_arrays_with_the_same_names() -> None:
    w = _weights()
    for a in w.arrays:
        a.flags.writeable = False
    c = w.copy()
    assert c.names == ("dense/kernel", "dense/bias", "steps")
    for got, original in zip(c.arrays, w.arrays, strict=True):
        assert got is not original and not np.shares_memory(got, original)
        assert got.flags.writeable and got.dtype == original.dtype
        np.testing.assert_array_equal(got, original)
    c.trainable[0][0] = 100.0
    c.non_trainable[0][...] = -1
    assert w.trainable[0].tolist() == [1.0, 2.0] and int(w.non_trainable[0]) == 7


def test_names_items_and_parameter_count() -> None:
    w = _weights()
    assert w.num_parameters == 2 + 1 + 1
    assert [k for k, _ in w.items()] == ["dense/kernel", "dense/bias", "steps"]
    positional = ModelWeights(w.trainable, w.non_trainable)
    assert positional.names is None
    assert [k for k, _ in positional.items()] == ["trainable/0", "trainable/1", "non_trainable/0"]
    # names for the trainable group only are the names when there is nothing else
    assert ModelWeights(w.trainable, (), ("a", "b")).names == ("a", "b")
    assert ModelWeights(w.trainable, w.non_trainable, ("a", "b")).names is None


def test_name_count_and_array_count_must_agree() -> None:
    with pytest.raises(WeightsError, match="2 trainable arrays but 1 trainable names"):
        ModelWeights(_weights().trainable, (), ("only",))
    with pytest.raises(WeightsError, match="1 non_trainable arrays but 2 non_trainable names"):
        ModelWeights((), (np.zeros(1),), None, ("a", "b"))
    with pytest.raises(WeightsError, match="expected 3 arrays, got 2"):
        _weights().with_arrays(_weights().trainable)


def test_with_arrays_splits_trainable_first() -> None:
    w = _weights()
    new = w.with_arrays([np.zeros(2, np.float32), np.zeros((1, 1)), np.array(9, np.int64)])
    assert len(new.trainable) == 2 and len(new.non_trainable) == 1
    assert int(new.non_trainable[0]) == 9
    assert new.trainable_names == w.trainable_names and new.non_trainable_names == w.non_trainable_names


# --- specs and batches ----------------------------------------------------------------------------------------

X = TensorSpec((None, 2), "float32", "x")
Y = TensorSpec((None,), "int64", "y", minimum=0, maximum=2)


def test_is_compatible_returns_false_for_every_kind_of_mismatch() -> None:
    good = (np.zeros((3, 2), np.float32), np.array([0, 1, 2], np.int64))
    assert is_compatible((X, Y), good)
    assert not is_compatible((X, Y), (np.zeros((3, 3), np.float32), good[1]))  # shape
    assert not is_compatible((X, Y), (good[0].astype(np.float64), good[1]))  # dtype
    assert not is_compatible((X, Y), (good[0], np.array([0, 1, 3], np.int64)))  # bounds
    assert not is_compatible((X, Y), (good[0].astype(">f4"), good[1]))  # byte order
    assert not is_compatible({"x": X}, {"z": good[0]})  # structure


def test_a_list_batch_is_a_pair() -> None:
    x, y = np.zeros((2, 2), np.float32), np.array([0, 2], np.int64)
    assert split_batch([x, y])[0] is x and split_batch([x, y])[1] is y
    gx, gy = check_batch((X, Y), [x, y])
    assert gx is x and gy is y
    with pytest.raises(SpecError, match=r"batch at 'y': expected values in \[0, 2\], got values in \[0, 3\]"):
        check_batch((X, Y), [x, np.array([0, 3], np.int64)])
    with pytest.raises(SpecError, match="a batch must be a pair"):
        split_batch([x, y, y])
    with pytest.raises(SpecError, match=r"exactly the keys 'x' and 'y', got \['x', 'z'\]"):
        split_batch({"x": x, "z": y})


def test_bounded_spec_repr_and_bounds_messages() -> None:
    assert repr(Y) == "TensorSpec(shape=(None,), dtype='int64', name='y', minimum=0, maximum=2)"
    assert repr(X) == "TensorSpec(shape=(None, 2), dtype='float32', name='x')"
    low_only = TensorSpec((None,), "float32", minimum=0.0)
    assert low_only.bounded and not X.bounded
    assert (
        low_only.out_of_range(np.array([-1.0], np.float32))
        == "expected values in [0.0, inf], got values in [-1.0, -1.0]"
    )
    high_only = TensorSpec((None,), "float32", maximum=1.0)
    assert high_only.out_of_range(np.array([0.5, 2.0], np.float32)) == (
        "expected values in [-inf, 1.0], got values in [0.5, 2.0]"
    )
    assert high_only.out_of_range(np.array([np.nan], np.float32)) is not None  # NaN breaks any bound
    assert high_only.out_of_range(np.zeros(0, np.float32)) is None  # nothing to break a bound
    assert Y.out_of_range([0, 2]) is None  # a list is read as an array


# --- metric aggregators ---------------------------------------------------------------------------------------


def test_ratio_of_a_zero_count_is_nan_and_not_inf() -> None:
    assert ratio((6.0, 4)) == 1.5
    assert math.isnan(ratio((6.0, 0)))
    out = ratio((np.array([6.0, 6.0]), np.array([3, 0])))
    assert out[0] == 2.0 and math.isnan(out[1])


def test_mean_of_finalized_weights_each_client_by_its_weight() -> None:
    reports = [{"acc": 0.5, "loss": (1.0, 4.0), "num_examples": 2}, {"acc": 0.8, "loss": (2.0, 0.0), "num_examples": 3}]
    out = MeanOfFinalized()(reports)
    assert out["num_examples"] == 5
    assert out["acc"] == pytest.approx((0.5 * 2 + 0.8 * 3) / 5, abs=1e-15)
    assert out["loss"] == pytest.approx(((1.0 * 2 + 2.0 * 3) / 5, (4.0 * 2) / 5), abs=1e-15)
    assert MeanOfFinalized(weight_key="n")([{"acc": 1.0, "n": 1}, {"acc": 0.0, "n": 4}]) == {"n": 5, "acc": 0.2}


def test_mean_of_finalized_with_zero_total_weight_is_nan_and_empty_is_empty() -> None:
    out = MeanOfFinalized()([{"acc": 0.5, "num_examples": 0}])
    assert out["num_examples"] == 0 and math.isnan(out["acc"])
    assert MeanOfFinalized()([]) == {}


def test_metric_sums_refuse_what_cannot_be_summed_and_leave_the_state() -> None:
    agg = SumThenFinalize()
    state = agg.accumulate(agg.init(), {"n": np.int64(2), "s": 1.5})
    with pytest.raises(AggregationError, match="metric value of dtype <U1 cannot be summed"):
        agg.accumulate(state, {"n": np.int64(1), "s": "x"})
    with pytest.raises(AggregationError, match="the int64 sum would overflow"):
        agg.accumulate(state, {"n": np.int64(2**63 - 2), "s": 0.0})
    with pytest.raises(AggregationError, match=r"metric 's': the sum is not finite"):
        agg.accumulate(state, {"n": np.int64(1), "s": np.inf})
    with pytest.raises(AggregationError, match="another structure than earlier reports"):
        agg.accumulate(state, {"n": np.int64(1), "s": (1.0, 2.0)})
    assert agg.finalize(state) == {"n": 2, "s": 1.5}  # every failed report left the sums as they were
    assert agg.finalize(agg.accumulate(state, {"n": np.int32(-3), "s": np.float16(0.5)})) == {"n": -1, "s": 2.0}
    assert identity({"a": np.array(3), "b": np.array([1, 2])})["a"] == 3


# --- dtype names and array-likes of other frameworks ----------------------------------------------------------


class _TFLikeDType:
    """Stands for a ``tf.DType``: it names its numpy dtype in ``as_numpy_dtype``."""

    as_numpy_dtype = np.float16


class _Named:
    """A dtype-like numpy cannot read, known by its ``str`` only (as ``torch.float32`` is)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class _Tensor:
    """A framework tensor that numpy cannot convert: a shape and a dtype name, nothing else."""

    shape = (2,)
    dtype = "float32"


class _ShapeOnly:
    shape = (2,)


def test_dtype_names_of_other_frameworks() -> None:
    from fedmodel import dtype_name

    assert dtype_name(_TFLikeDType()) == "float16"
    assert dtype_name(_Named("torch.bfloat16")) == "bfloat16"
    assert dtype_name(_Named("lib.sub.float8")) == "float8"  # the last part only
    assert dtype_name(_Named("plain")) == "plain"


def test_mismatch_reads_shape_and_dtype_of_any_array_like() -> None:
    spec = TensorSpec((2,), "float32")
    assert spec.mismatch(_Tensor()) is None  # its own dtype, not numpy's reading of it (object)
    assert TensorSpec((2,), "int64").mismatch([1, 2]) is None
    assert TensorSpec((2,), "float64").mismatch([1.0, 2.0]) is None
    assert spec.mismatch(_ShapeOnly()) == "expected an array of shape (2,) and dtype float32, got _ShapeOnly"
    ragged = spec.mismatch([[1.0], [1.0, 2.0]])
    assert ragged is not None and ragged.startswith("expected an array of shape (2,) and dtype float32, got list (")
    assert spec.mismatch(np.zeros(2, ">f4")) == (
        "expected native byte order, got big-endian float32 (convert with .astype('float32'))"
    )


def test_spec_like_frees_the_leading_dimension_of_arrays_only() -> None:
    from fedmodel import spec_like

    assert spec_like(np.float32(1.0)) == TensorSpec((), "float32")
    assert spec_like({"a": np.zeros((3, 2), np.int32)}) == {"a": TensorSpec((None, 2), "int32")}
    assert spec_like(np.zeros((3, 2)), batch_dim_free=False) == TensorSpec((3, 2), "float64")


def test_the_cached_pair_path_still_checks_the_bounds_of_x() -> None:
    spec = (TensorSpec((None,), "float32", "x", minimum=0.0, maximum=1.0), TensorSpec((None,), "int64", "y"))
    y = np.zeros(2, np.int64)
    check_batch(spec, (np.array([0.0, 1.0], np.float32), y))  # accepted: its signature is cached
    with pytest.raises(SpecError, match=r"^batch at 'x': expected values in \[0.0, 1.0\], got values in \[0.5, 2.0\]$"):
        check_batch(spec, (np.array([0.5, 2.0], np.float32), y))


# --- the batch as a whole -------------------------------------------------------------------------------------

FREE = TensorSpec((None,), "float32")
FIXED = TensorSpec((2,), "float32")


def test_x_and_y_must_hold_the_same_number_of_examples() -> None:
    with pytest.raises(SpecError, match=r"^batch: x holds 3 examples but y holds 2$"):
        check_batch((FREE, FREE), (np.zeros(3, np.float32), np.zeros(2, np.float32)))


def test_an_empty_batch_is_refused_whichever_side_knows_the_size() -> None:
    message = r"^batch: it holds 0 examples; a batch needs at least one$"
    empty, two = np.zeros(0, np.float32), np.zeros(2, np.float32)
    with pytest.raises(SpecError, match=message):
        check_batch((FREE, FREE), (empty, empty))
    with pytest.raises(SpecError, match=message):
        check_batch((FREE, FIXED), (empty, two))  # only x has a batch dimension
    with pytest.raises(SpecError, match=message):
        check_batch((FIXED, FREE), (two, empty))  # only y has one
    assert check_batch((FIXED, FIXED), (two, two))[0] is two  # no batch dimension: nothing to count


def test_anything_but_a_pair_or_an_xy_mapping_is_a_spec_error() -> None:
    x = np.zeros(2, np.float32)
    for batch, kind in [((x, x, x), "tuple"), (5, "int"), (np.zeros((2, 2), np.float32), "ndarray"), ("xy", "str")]:
        with pytest.raises(
            SpecError, match=rf"^a batch must be a pair \(x, y\) or a mapping with keys 'x' and 'y', got {kind}$"
        ):
            check_batch((FREE, FREE), batch)


def test_the_cached_pair_path_checks_the_bounds_of_both_sides() -> None:
    unit = TensorSpec((None,), "float32", minimum=0.0, maximum=1.0)
    spec = (unit, TensorSpec((None,), "int64", minimum=0, maximum=1))
    good = (np.array([0.0, 1.0], np.float32), np.array([0, 1], np.int64))
    for _ in range(2):  # the second call takes the cached path
        assert check_batch(spec, good)[1] is good[1]
    with pytest.raises(
        SpecError, match=r"^batch at 'x': expected values in \[0.0, 1.0\], got values in \[-1.0, 0.0\]$"
    ):
        check_batch(spec, (np.array([-1.0, 0.0], np.float32), good[1]))
    with pytest.raises(SpecError, match=r"^batch at 'y': expected values in \[0, 1\], got values in \[0, 2\]$"):
        check_batch(spec, (good[0], np.array([0, 2], np.int64)))


def test_a_new_spec_never_inherits_what_an_old_one_accepted() -> None:
    # a spec's id may be reused once it is freed: the cache keeps each spec it answered for alive
    for i in range(200):
        width = 2 + i % 2
        spec = (TensorSpec((None, width), "float32"), TensorSpec((None,), "int64"))
        check_batch(spec, (np.zeros((1, width), np.float32), np.zeros(1, np.int64)))
        with pytest.raises(SpecError, match="expected shape"):
            check_batch(spec, (np.zeros((1, 5 - width), np.float32), np.zeros(1, np.int64)))
        del spec


class _ListShaped:
    """An array-like whose shape is a list (unhashable), as a partly unknown TensorShape can be."""

    shape = [2]  # noqa: RUF012
    dtype = "float32"


def test_an_array_like_with_an_unhashable_shape_is_checked_without_the_cache() -> None:
    x, y = _ListShaped(), _ListShaped()
    for _ in range(2):
        got = check_batch((FREE, FREE), (x, y))
        assert got[0] is x and got[1] is y


# --- the second mutation run (every mutant): specs and weights -----------------------------------------------


def test_model_weights_and_tensor_spec_keep_tuples_whatever_sequence_they_get() -> None:
    a, b = np.zeros(2, np.float32), np.zeros((), np.int64)
    w = ModelWeights([a], [b], ["w"], ["steps"])
    assert type(w.trainable) is tuple and type(w.non_trainable) is tuple
    assert w.trainable[0] is a and w.non_trainable[0] is b
    spec = TensorSpec([None, np.int64(3)], np.float32)
    assert spec.shape == (None, 3) and type(spec.shape) is tuple and type(spec.shape[1]) is int
    assert spec == TensorSpec((None, 3), "float32") and hash(spec) == hash(TensorSpec((None, 3), "float32"))


@pytest.mark.parametrize(("dtype", "name"), [("U8", "str256"), ("S4", "bytes32"), ("V8", "void64"), (object, "object")])
def test_a_spec_of_strings_bytes_void_or_objects_is_refused(dtype: object, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^TensorSpec dtype '{name}' does not describe numbers$"):
        TensorSpec((2,), dtype)


def test_dtype_name_remembers_each_name_and_takes_unhashable_dtype_likes() -> None:
    from fedmodel import dtype_name

    fresh = _TFLikeDType()  # a new key: the first call names it, the second reads what the first remembered
    assert dtype_name(fresh) == "float16" and dtype_name(fresh) == "float16"
    structured = [("a", "<f4"), ("b", "<i8")]  # a list: unhashable
    assert dtype_name(structured) == "void96" and dtype_name(structured) == "void96"


class _ShapeNoDtype:
    """An object with a shape and nothing else: not an array."""

    shape = (2,)


class _SymbolicShape:
    """A symbolic tensor being traced: its shape has an unknown (None) dimension, and numpy cannot read it."""

    shape = (None, 3)
    dtype = "float32"


def test_shape_of_reads_the_shape_attribute_and_keeps_unknown_dimensions() -> None:
    from fedmodel._specs import shape_of

    assert shape_of(_SymbolicShape()) == (None, 3)
    assert shape_of(_Tensor()) == (2,)
    assert shape_of([[1, 2, 3]]) == (1, 3) and shape_of(2.5) == ()
    check_spec(TensorSpec((None, 3), "float32"), _SymbolicShape())  # a traced batch: accepted
    with pytest.raises(SpecError, match=r"^batch at '<root>': expected shape \(None, 2\), got \(None, 3\)$"):
        check_spec(TensorSpec((None, 2), "float32"), _SymbolicShape())


def test_check_spec_refuses_each_wrong_dimension_dtype_or_kind_of_leaf() -> None:
    spec = TensorSpec((None, 2), "float64")
    with pytest.raises(SpecError, match=r"^batch at '<root>': expected shape \(None, 2\), got \(4, 3\)$"):
        check_spec(spec, np.zeros((4, 3)))
    with pytest.raises(SpecError, match=r"^batch at '<root>': expected shape \(2,\), got \(\)$"):
        check_spec(TensorSpec((2,), "float32"), 1.5)  # a Python number: no signature, never cached
    with pytest.raises(
        SpecError, match=r"^batch at '<root>': expected an array of shape \(2,\) and dtype float64, got "
    ):
        check_spec(TensorSpec((2,), "float64"), _ShapeNoDtype())
    with pytest.raises(SpecError, match=r"^batch at '<root>': expected shape \(3,\), got \(2,\)$"):
        check_spec(TensorSpec((3,), "float32"), _ListShapedLate())  # unhashable shape: checked every time


class _ListShapedLate:
    """As ``_ListShaped`` below: a list shape (unhashable)."""

    shape = [2]  # noqa: RUF012
    dtype = "float32"


def test_a_bounded_spec_still_refuses_the_wrong_shape_or_dtype_of_values_in_range() -> None:
    spec = TensorSpec((2,), "float32", minimum=0.0, maximum=1.0)
    with pytest.raises(SpecError, match=r"^batch at '<root>': expected shape \(2,\), got \(3,\)$"):
        check_spec(spec, np.zeros(3, np.float32))
    with pytest.raises(SpecError, match=r"^batch at '<root>': expected dtype float32, got float64$"):
        check_spec(spec, np.zeros(2, np.float64))


def test_a_cached_signature_never_admits_the_same_leaves_in_another_structure() -> None:
    from collections import OrderedDict

    spec = {"x": TensorSpec((2,), "float32"), "y": TensorSpec((2,), "int64")}
    f32, i64 = np.zeros(2, np.float32), np.zeros(2, np.int64)
    check_spec(spec, {"x": f32, "y": i64})  # accepted: its signature is cached
    swapped = OrderedDict([("y", f32), ("x", i64)])  # flattened in insertion order: the same leaf sequence
    with pytest.raises(SpecError, match=r"^batch at 'x': expected dtype float32, got int64$"):
        check_spec(spec, swapped)


def test_check_spec_messages_name_what_the_caller_checks_and_its_prefix() -> None:
    spec = {"a": TensorSpec((None,), "float32"), "b": TensorSpec((None,), "float32")}
    with pytest.raises(
        SpecError, match=r"^batch structure does not match the spec: missing \['b'\] \(spec paths: \['a', 'b'\]\)$"
    ):
        check_spec(spec, {"a": np.zeros(2, np.float32)})
    with pytest.raises(
        SpecError,
        match=r"^batch structure does not match the spec: missing \['x/b'\] \(spec paths: \['x/a', 'x/b'\]\)$",
    ):
        check_spec(spec, {"a": np.zeros(2, np.float32)}, prefix="x")
    with pytest.raises(
        SpecError, match=r"^batch: its parts disagree on the number of examples: 'x/a' has 2, 'x/b' has 3$"
    ):
        check_spec(spec, {"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)}, prefix="x")
    with pytest.raises(TypeError, match=r"^input_spec at 'b' is int, not a fedmodel.TensorSpec$"):
        check_spec({"a": TensorSpec((), "float32"), "b": 3}, {"a": np.float32(0), "b": 3})
    deep: object = np.float32(0)
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(SpecError, match=r"^batch cannot be read as a nested structure: .*recursion"):
        check_spec(TensorSpec((), "float32"), deep)


class _NumpyDims:
    """An array-like whose shape holds numpy integers (as some frameworks' shapes do)."""

    shape = (np.int64(4), None)
    dtype = "float32"


def test_shape_of_gives_python_ints_and_a_float64_spec_refuses_float32() -> None:
    from fedmodel._specs import shape_of

    shape = shape_of(_NumpyDims())
    assert shape == (4, None) and type(shape[0]) is int
    with pytest.raises(SpecError, match=r"^batch at '<root>': expected dtype float64, got float32$"):
        check_spec(TensorSpec((2,), "float64"), np.zeros(2, np.float32))


def test_assign_weights_takes_a_value_in_the_other_byte_order_as_its_dtype() -> None:
    """Dtypes are compared by name: a big-endian float32 is a float32 (the backend converts it on the write)."""
    model = SoftmaxRegression(3, 2, seed=0)
    weights = fedmodel.get_weights(model)
    swapped = [(a * 2).astype(a.dtype.newbyteorder(">")) for a in weights.arrays]
    assert not any(a.dtype.isnative for a in swapped)
    fedmodel.assign_weights(model, weights.with_arrays(swapped))
    for got, want in zip(fedmodel.get_weights(model).arrays, weights.arrays, strict=True):
        np.testing.assert_array_equal(got, want * 2)
