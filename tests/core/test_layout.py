"""Canonical layouts: native weights of any framework to one neutral layout and back."""

from __future__ import annotations

import numpy as np
import pytest

import fedmodel
from fedmodel import ModelWeights, WeightsError
from fedmodel.layout import Layout, LayoutEntry, inverse_permutation
from fedmodel.reference import SoftmaxRegression

TORCH_STYLE = Layout(
    (
        LayoutEntry("conv_0/kernel", "conv.weight", (2, 3, 1, 0)),
        LayoutEntry("conv_0/bias", "conv.bias"),
        LayoutEntry("dense_0/kernel", "fc.weight", (1, 0)),
        LayoutEntry("dense_0/bias", "fc.bias"),
    )
)


def _torch_weights(rng: np.random.Generator) -> ModelWeights:
    arrays = (
        rng.standard_normal((4, 1, 3, 3)).astype(np.float32),  # (out, in, h, w)
        rng.standard_normal(4).astype(np.float32),
        rng.standard_normal((10, 16)).astype(np.float32),  # (out, in)
        rng.standard_normal(10).astype(np.float32),
    )
    return ModelWeights(arrays, (), ("conv.weight", "conv.bias", "fc.weight", "fc.bias"), ())


def test_to_canonical_transposes_and_renames(rng: np.random.Generator) -> None:
    native = _torch_weights(rng)
    canonical = TORCH_STYLE.to_canonical(native)
    assert canonical.trainable_names == ("conv_0/bias", "conv_0/kernel", "dense_0/bias", "dense_0/kernel")
    named = dict(canonical.items())
    np.testing.assert_array_equal(named["conv_0/kernel"], native.trainable[0].transpose(2, 3, 1, 0))
    assert named["conv_0/kernel"].shape == (3, 3, 1, 4)  # (h, w, in, out) as Keras and Flax
    np.testing.assert_array_equal(named["dense_0/kernel"], native.trainable[2].T)


def test_round_trip_is_exact_and_restores_native_order(rng: np.random.Generator) -> None:
    native = _torch_weights(rng)
    back = TORCH_STYLE.from_canonical(TORCH_STYLE.to_canonical(native))
    assert back.trainable_names == native.trainable_names
    for a, b in zip(native.arrays, back.arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_variable_the_layout_does_not_declare_is_an_error(rng: np.random.Generator) -> None:
    native = _torch_weights(rng)
    extra = ModelWeights(native.trainable, (np.zeros(1, np.int64),), native.trainable_names, ("bn.num_batches",))
    with pytest.raises(WeightsError, match=r"non_trainable variables \['bn.num_batches'\] have no entry"):
        TORCH_STYLE.to_canonical(extra)


def test_a_declared_variable_that_is_absent_is_an_error(rng: np.random.Generator) -> None:
    native = _torch_weights(rng)
    short = ModelWeights(native.trainable[:3], (), native.trainable_names[:3], ())
    with pytest.raises(WeightsError, match=r"lack \['dense_0/bias'\]"):
        TORCH_STYLE.to_canonical(short)


def test_a_shape_the_permutation_cannot_explain_is_an_error(rng: np.random.Generator) -> None:
    native = _torch_weights(rng)
    flat = native.with_arrays([native.trainable[0].reshape(4, 9), *native.arrays[1:]])
    with pytest.raises(WeightsError, match=r"'conv.weight': shape \(4, 9\) cannot take the permutation"):
        TORCH_STYLE.to_canonical(flat)


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate canonical names"):
        Layout((LayoutEntry("a", "x"), LayoutEntry("a", "y")))


def test_inverse_permutation_undoes_it(rng: np.random.Generator) -> None:
    a = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(a.transpose((2, 3, 1, 0)).transpose(inverse_permutation((2, 3, 1, 0))), a)


def test_get_and_assign_take_no_layout_the_canonical_wrapper_is_the_one_way() -> None:
    model = SoftmaxRegression(3, 2, seed=1)
    with pytest.raises(TypeError, match="layout"):
        fedmodel.get_weights(model, layout=None)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="layout"):
        fedmodel.assign_weights(model, fedmodel.get_weights(model), layout=None)  # type: ignore[call-arg]


def test_a_canonical_model_exchanges_weights_in_canonical_names_order_and_axes() -> None:
    from fedmodel.layout import canonical

    layout = Layout(
        (
            LayoutEntry("dense_0/kernel", "kernel", (1, 0)),
            LayoutEntry("dense_0/bias", "bias"),
            LayoutEntry("scale", "input_scale"),
        )
    )
    inner = SoftmaxRegression(3, 2, seed=1)
    wrapped = canonical(inner, layout)
    assert fedmodel.check_protocol(wrapped) == []
    weights = fedmodel.get_weights(wrapped)
    assert weights.trainable_names == ("dense_0/bias", "dense_0/kernel")
    np.testing.assert_array_equal(weights.trainable[1], inner.trainable_variables[0].value.T)
    other = canonical(SoftmaxRegression(3, 2, seed=2), layout)
    fedmodel.assign_weights(other, weights)
    np.testing.assert_array_equal(other.model.trainable_variables[0].value, inner.trainable_variables[0].value)
    with pytest.raises(fedmodel.BackendError, match="declares no canonical layout"):
        canonical(SoftmaxRegression(3, 2))


def test_a_permuted_read_never_aliases_the_model_even_when_the_transpose_is_contiguous() -> None:
    from fedmodel.layout import canonical

    layout = Layout((LayoutEntry("k", "kernel", (1, 0)), LayoutEntry("b", "bias"), LayoutEntry("s", "input_scale")))
    inner = SoftmaxRegression(1, 3, seed=1)  # kernel (1, 3): its transpose (3, 1) is C-contiguous
    weights = fedmodel.get_weights(canonical(inner, layout))
    named = dict(weights.items())
    named["k"][...] = 42.0
    named["b"][...] = 42.0
    assert not np.any(inner.trainable_variables[0].value == 42.0)
    assert not np.any(inner.trainable_variables[1].value == 42.0)
