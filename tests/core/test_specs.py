"""TensorSpec and nested spec compatibility, with the error messages users read."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedmodel
from fedmodel import SpecError, TensorSpec, check_batch, check_spec, dtype_name, is_compatible, spec_like

Pair = namedtuple("Pair", ["image", "mask"])


def test_none_dimension_is_free_and_fixed_dimensions_are_checked() -> None:
    spec = TensorSpec((None, 3), "float32")
    assert spec.is_compatible_with(np.zeros((1, 3), np.float32))
    assert spec.is_compatible_with(np.zeros((100, 3), np.float32))
    assert not spec.is_compatible_with(np.zeros((1, 4), np.float32))
    assert not spec.is_compatible_with(np.zeros((3,), np.float32))


def test_dtype_must_match_exactly() -> None:
    spec = TensorSpec((None,), np.int64)
    assert spec.dtype == "int64"
    assert not spec.is_compatible_with(np.zeros(2, np.int32))
    assert spec.mismatch(np.zeros(2, np.int32)) == "expected dtype int64, got int32"


def test_spec_is_a_leaf_not_a_tuple_of_fields() -> None:
    spec = {"x": TensorSpec((2,), "float32"), "y": TensorSpec((), "int64")}
    check_spec(spec, {"x": np.zeros(2, np.float32), "y": np.int64(3)})


def test_nested_dicts_tuples_lists_and_namedtuples() -> None:
    image, mask = TensorSpec((None, 4), "float32"), TensorSpec((None,), "bool")
    spec = {"x": Pair(image, [mask]), "y": TensorSpec((None,), "int64")}
    good = {"x": Pair(np.zeros((2, 4), np.float32), [np.ones(2, bool)]), "y": np.zeros(2, np.int64)}
    check_spec(spec, good)
    # sequences match by index: a plain tuple may stand for the namedtuple
    check_spec(spec, {"x": (good["x"].image, (good["x"].mask[0],)), "y": good["y"]})
    assert is_compatible(spec, good)


def test_error_names_the_path_expected_and_actual_shape() -> None:
    spec = {"x": {"pixels": TensorSpec((None, 64), "float32")}, "y": TensorSpec((None,), "int64")}
    with pytest.raises(SpecError, match=r"batch at 'x/pixels': expected shape \(None, 64\), got \(8, 63\)"):
        check_spec(spec, {"x": {"pixels": np.zeros((8, 63), np.float32)}, "y": np.zeros(8, np.int64)})


def test_error_names_missing_and_unexpected_paths() -> None:
    spec = {"x": TensorSpec((None,), "float32"), "y": TensorSpec((None,), "int64")}
    with pytest.raises(SpecError, match=r"missing \['y'\].*unexpected \['z'\]"):
        check_spec(spec, {"x": np.zeros(1, np.float32), "z": np.zeros(1, np.int64)})


def test_non_array_leaf_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="got str"):
        check_spec(TensorSpec((None,), "float32"), "not an array")


def test_a_spec_tree_with_a_non_spec_leaf_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"not a fedmodel\.TensorSpec"):
        check_spec({"x": (None, 3)}, {"x": np.zeros(3)})


def test_check_batch_accepts_either_convention_on_either_side() -> None:
    spec = (TensorSpec((None, 2), "float32"), TensorSpec((None,), "int64"))
    x, y = np.zeros((3, 2), np.float32), np.zeros(3, np.int64)
    assert check_batch(spec, {"x": x, "y": y})[0] is x
    assert check_batch({"x": spec[0], "y": spec[1]}, (x, y))[1] is y
    with pytest.raises(SpecError, match="at 'y': expected dtype int64, got float64"):
        check_batch(spec, (x, np.zeros(3)))
    with pytest.raises(SpecError, match=r"pair"):
        check_batch(spec, x)


def test_dtype_names_are_framework_neutral() -> None:
    assert dtype_name(np.float32) == "float32"
    assert dtype_name("int64") == "int64"

    class FakeTorchDtype:
        def __str__(self) -> str:
            return "torch.bfloat16"

    assert dtype_name(FakeTorchDtype()) == "bfloat16"


def test_spec_like_frees_the_batch_dimension() -> None:
    spec = spec_like({"x": np.zeros((5, 2), np.float32), "y": np.zeros(5, np.int64)})
    assert spec == {"x": TensorSpec((None, 2), "float32"), "y": TensorSpec((None,), "int64")}


def test_invalid_spec_construction() -> None:
    with pytest.raises(ValueError, match="negative"):
        TensorSpec((-1,), "float32")
    with pytest.raises(TypeError, match="sequence of int or None"):
        TensorSpec(3, "float32")  # type: ignore[arg-type]


def test_accepted_signatures_are_remembered_per_spec_and_never_admit_a_different_batch() -> None:
    spec = (TensorSpec((None, 2), "float32"), TensorSpec((None,), "int64"))
    other = (TensorSpec((None, 2), "float32"), TensorSpec((None,), "int32"))
    x, y = np.zeros((3, 2), np.float32), np.zeros(3, np.int64)
    for _ in range(3):  # the first call checks, the next ones hit the cache
        check_batch(spec, (x, y))
    with pytest.raises(SpecError, match=r"at 'x': expected shape \(None, 2\), got \(3, 4\)"):
        check_batch(spec, (np.zeros((3, 4), np.float32), y))
    with pytest.raises(SpecError, match="at 'y': expected dtype int32, got int64"):
        check_batch(other, (x, y))  # another spec does not share the first one's accepted batches
    with pytest.raises(SpecError, match="at '1': expected dtype int64, got float32"):
        check_spec(spec, (x, y.astype(np.float32)))


def test_an_accepted_pair_of_arrays_never_admits_a_pair_with_another_type_dtype_shape_or_nesting() -> None:
    spec = (TensorSpec((None, 2), "float32"), TensorSpec((None,), "int64"))
    x, y = np.zeros((3, 2), np.float32), np.zeros(3, np.int64)
    check_batch(spec, (x, y))
    assert check_batch(spec, (x, y)) == (x, y)  # the pair's fast path returns the batch's own arrays
    cases = {
        r"at 'y': expected dtype int64, got int32": (x, y.astype(np.int32)),
        r"at 'x': expected dtype float32, got float64": (x.astype(np.float64), y),
        r"at 'x': expected shape \(None, 2\), got \(3, 2, 1\)": (x[..., None], y),
        r"missing \['x'\], unexpected \['x/0'\]": ((x,), y),  # a nested side is never taken for a leaf
        r"at 'y': expected shape \(None,\), got \(\)": (x, 7),  # a Python number: no shape, no dtype
    }
    for message, batch in cases.items():
        with pytest.raises(SpecError, match=message):
            check_batch(spec, batch)


class _Tagged(np.ndarray):  # type: ignore[type-arg]
    """An ndarray subclass, as a user's array type might be."""


def test_a_pair_of_array_subclasses_is_checked_like_any_array() -> None:
    spec = (TensorSpec((None, 2), "float32"), TensorSpec((None,), "int64"))
    x, y = np.zeros((3, 2), np.float32), np.zeros(3, np.int64)
    check_batch(spec, (x, y))
    check_batch(spec, (x.view(_Tagged), y))  # another type: a key of its own, checked in full
    with pytest.raises(SpecError, match="at 'y': expected dtype int64, got uint8"):
        check_batch(spec, (x.view(_Tagged), y.view(np.uint8)[:3]))


# -- bounds, byte order, batch sizes (issue 18) ---------------------------------------------------
def test_a_bounded_spec_refuses_values_outside_even_after_the_same_shapes_were_accepted() -> None:
    spec = (TensorSpec((None, 2), "float32"), TensorSpec((None,), "int64", minimum=0, maximum=2))
    x = np.zeros((3, 2), np.float32)
    assert check_batch(spec, (x, np.array([0, 1, 2]))) is not None  # accepted: its signature is now cached
    for labels, shown in (([0, 3, 1], "[0, 3]"), ([-1, 0, 0], "[-1, 0]")):
        with pytest.raises(SpecError, match=rf"batch at 'y': expected values in \[0, 2\], got values in \{shown}"):
            check_batch(spec, (x, np.array(labels)))  # the pair fast path checks bounds too
    nested = {"x": {"a": x}, "y": np.array([0, 5, 1])}
    nested_spec = {"x": {"a": spec[0]}, "y": spec[1]}
    check_batch(nested_spec, {"x": {"a": x}, "y": np.array([0, 1, 1])})
    with pytest.raises(SpecError, match=r"at 'y': expected values in \[0, 2\]"):
        check_batch(nested_spec, nested)  # and so does the cached path of a nested batch


def test_nested_parts_must_agree_on_the_number_of_examples() -> None:
    spec = {"a": TensorSpec((None, 2), "float32"), "b": TensorSpec((None,), "float32"), "c": TensorSpec((), "float32")}
    value = {"a": np.zeros((3, 2), np.float32), "b": np.zeros(4, np.float32), "c": np.float32(1)}
    with pytest.raises(SpecError, match="disagree on the number of examples: 'a' has 3, 'b' has 4"):
        check_spec(spec, value)
    assert check_spec(spec, {**value, "b": np.zeros(3, np.float32)}) == 3


def test_non_native_byte_order_is_refused_never_misread() -> None:
    spec = TensorSpec((None,), "float32")
    swapped = np.arange(3, dtype=">f4")
    assert (
        spec.mismatch(swapped) == "expected native byte order, got big-endian float32 (convert with .astype('float32'))"
    )
    assert spec.mismatch(swapped.astype("float32")) is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dtype": "object"}, "does not describe numbers"),
        ({"minimum": 3, "maximum": 2}, "minimum 3 is above its maximum 2"),
        ({"minimum": True}, "bounds must be numbers"),
        ({"maximum": "9"}, "bounds must be numbers"),
    ],
)
def test_a_spec_that_cannot_describe_a_batch_is_refused_when_built(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        TensorSpec(**{"shape": (None,), "dtype": "int64", **kwargs})


def test_classification_labels_are_bounded_by_the_number_of_classes() -> None:
    _, labels = fedmodel.classification_spec(4, 3)
    assert (labels.minimum, labels.maximum) == (0, 2)
    assert fedmodel.classification_spec(4)[1].bounded is False
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        fedmodel.classification_spec(4, 0)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["int8", "int64", "uint8", "uint64", "bool"]),
    st.lists(st.integers(-(2**63), 2**64 - 1), min_size=1, max_size=40),
    st.integers(-5, 5),
    st.integers(-5, 300),
)
def test_bounds_of_a_few_integers_read_as_a_list_say_what_numpys_reductions_say(
    dtype: str, values: list[int], low: int, high: int
) -> None:
    info = np.iinfo(dtype) if dtype != "bool" else None
    clipped = [v % 2 for v in values] if info is None else [min(max(v, info.min), info.max) for v in values]
    few = np.array(clipped, dtype)  # within the size read as a list
    many = np.tile(few, 300 // len(few) + 1)  # past it: numpy's min and max, the same values
    spec = TensorSpec((None,), dtype, minimum=min(low, high), maximum=max(low, high))
    assert few.size <= 256 < many.size
    assert spec.out_of_range(few) == spec.out_of_range(many)
