"""get_weights / assign_weights: names, copies and views, and all-or-nothing validation."""

from __future__ import annotations

import numpy as np
import pytest

import fedmodel
from fedmodel.reference import SoftmaxRegression


def _snapshot(model: SoftmaxRegression) -> list[np.ndarray]:
    return [v.value.copy() for v in (*model.trainable_variables, *model.non_trainable_variables)]


def _assert_unchanged(model: SoftmaxRegression, before: list[np.ndarray]) -> None:
    now = [v.value for v in (*model.trainable_variables, *model.non_trainable_variables)]
    for a, b in zip(before, now, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)  # bit-identical


def test_weights_carry_stable_names_in_group_order() -> None:
    weights = fedmodel.get_weights(SoftmaxRegression(3, 2))
    assert weights.trainable_names == ("kernel", "bias")
    assert weights.non_trainable_names == ("input_scale",)
    assert [name for name, _ in weights.items()] == ["kernel", "bias", "input_scale"]
    assert weights.num_parameters == 3 * 2 + 2 + 3


def test_round_trip_is_bit_identical() -> None:
    src, dst = SoftmaxRegression(3, 2, seed=1), SoftmaxRegression(3, 2, seed=2)
    fedmodel.assign_weights(dst, fedmodel.get_weights(src))
    for a, b in zip(fedmodel.get_weights(src).arrays, fedmodel.get_weights(dst).arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_copies_are_independent_of_the_model() -> None:
    model = SoftmaxRegression(3, 2)
    weights = fedmodel.get_weights(model)
    weights.trainable[0][...] = 42.0
    assert not np.any(model.trainable_variables[0].value == 42.0)


def test_views_are_read_only() -> None:
    model = SoftmaxRegression(3, 2)
    view = fedmodel.get_weights(model, copy=False).trainable[0]
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1.0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: [a[0][:1], *a[1:]], r"trainable 'kernel' \(index 0\): expected shape \(3, 2\), got \(1, 2\)"),
        (lambda a: [a[0], a[1].astype(np.float64), a[2]], "trainable 'bias' .*expected dtype float32, got float64"),
        (lambda a: [a[0], a[1], a[2].astype(np.float16)], "non_trainable 'input_scale' .*float16"),
    ],
    ids=["shape", "dtype", "non-trainable-dtype"],
)
def test_assign_with_one_bad_value_raises_and_changes_nothing(mutate, message) -> None:  # type: ignore[no-untyped-def]
    model = SoftmaxRegression(3, 2, seed=3)
    before = _snapshot(model)
    good = fedmodel.get_weights(SoftmaxRegression(3, 2, seed=4))
    bad = fedmodel.ModelWeights(
        tuple(mutate(list(good.arrays))[:2]),
        tuple(mutate(list(good.arrays))[2:]),
        good.trainable_names,
        good.non_trainable_names,
    )
    with pytest.raises(fedmodel.WeightsError, match=message):
        fedmodel.assign_weights(model, bad)
    _assert_unchanged(model, before)


def test_assign_with_wrong_count_raises_and_changes_nothing() -> None:
    model = SoftmaxRegression(3, 2)
    before = _snapshot(model)
    good = fedmodel.get_weights(model)
    with pytest.raises(fedmodel.WeightsError, match="trainable: the model has 2 variables, the weights have 1"):
        fedmodel.assign_weights(model, fedmodel.ModelWeights(good.trainable[:1], good.non_trainable))
    _assert_unchanged(model, before)


def test_assign_with_wrong_names_raises_and_changes_nothing() -> None:
    model = SoftmaxRegression(3, 2)
    before = _snapshot(model)
    good = fedmodel.get_weights(SoftmaxRegression(3, 2, seed=9))
    renamed = fedmodel.ModelWeights(good.trainable, good.non_trainable, ("bias", "kernel"), good.non_trainable_names)
    message = r"trainable\[0\]: expected the variable named 'kernel', got 'bias'"
    with pytest.raises(fedmodel.WeightsError, match=message):
        fedmodel.assign_weights(model, renamed)
    _assert_unchanged(model, before)


def test_positional_weights_skip_the_name_check() -> None:
    model = SoftmaxRegression(3, 2)
    good = fedmodel.get_weights(SoftmaxRegression(3, 2, seed=9))
    fedmodel.assign_weights(model, fedmodel.ModelWeights(good.trainable, good.non_trainable))
    np.testing.assert_array_equal(model.trainable_variables[0].value, good.trainable[0])


def test_assign_rejects_non_arrays_and_non_weights() -> None:
    model = SoftmaxRegression(2, 2)
    good = fedmodel.get_weights(model)
    with pytest.raises(fedmodel.WeightsError, match=r"expected fedmodel\.ModelWeights"):
        fedmodel.assign_weights(model, list(good.arrays))  # type: ignore[arg-type]
    with pytest.raises(fedmodel.WeightsError, match="expected a numpy array, got list"):
        fedmodel.assign_weights(model, good.with_arrays([good.arrays[0].tolist(), *good.arrays[1:]]))


def test_model_weights_rejects_mismatched_names() -> None:
    with pytest.raises(fedmodel.WeightsError, match="1 trainable arrays but 2 trainable names"):
        fedmodel.ModelWeights((np.zeros(1),), (), trainable_names=("a", "b"))
