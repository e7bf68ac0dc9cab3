"""Exact numbers: a Keras Dense layer against fedmodel.reference.SoftmaxRegression and hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fedmodel
from fedmodel.reference import NUMPY_BACKEND, SoftmaxRegression

tf = pytest.importorskip("tensorflow")
fmtf = pytest.importorskip("fedmodel_tensorflow")
keras = fmtf._compat.keras

SPEC = (fedmodel.TensorSpec((None, 4), "float32", "x"), fedmodel.TensorSpec((None,), "int64", "y"))
X3 = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32)
Y3 = np.array([0, 1, 2], np.int64)


def keras_softmax_regression(l2: float = 0.0) -> fmtf.KerasModel:
    """A single Dense(3) layer: the Keras twin of SoftmaxRegression(4, 3); L2(l) penalizes l * ||kernel||^2."""
    layer = keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)
    keras_model = keras.Sequential([keras.Input((4,)), layer])
    return fmtf.from_keras_model(keras_model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), SPEC)


def twins(seed: int = 0, l2: float = 0.0) -> tuple[SoftmaxRegression, fmtf.KerasModel]:
    """The reference model and a Keras model holding the same kernel and bias."""
    reference = SoftmaxRegression(4, 3, seed=seed, l2=l2)
    reference.trainable_variables[0].value = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)
    reference.trainable_variables[1].value = np.array([0.1, -0.2, 0.3], np.float32)
    model = keras_softmax_regression(l2 / 2)  # the reference's penalty is l2 / 2 * ||kernel||^2
    fedmodel.assign_weights(model, fedmodel.ModelWeights(fedmodel.get_weights(reference).trainable))
    return reference, model


def test_zero_weights_give_log3_loss_and_the_hand_computed_sgd_step() -> None:
    model = keras_softmax_regression()
    zeros = fedmodel.ModelWeights((np.zeros((4, 3), np.float32), np.zeros(3, np.float32)))
    fedmodel.assign_weights(model, zeros)
    out = fmtf.BACKEND.train_step(model, (X3, Y3), fmtf.BACKEND.make_optimizer(model, fedmodel.SGD(0.3)))
    assert float(out.loss) == pytest.approx(math.log(3), abs=1e-7)
    # d loss / d logits = (softmax - onehot) / n = (1/3 - onehot) / 3; x rows are unit vectors e_0, e_1, e_2
    grad_kernel = np.zeros((4, 3))
    grad_kernel[:3] = (1 / 3 - np.eye(3)) / 3
    kernel, bias = fedmodel.get_weights(model).trainable
    np.testing.assert_allclose(kernel, -0.3 * grad_kernel, atol=1e-7)
    np.testing.assert_allclose(bias, np.zeros(3), atol=1e-7)  # each class is the label once: Σ (1/3 - onehot) = 0


@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_loss_and_predictions_equal_the_numpy_reference(l2: float) -> None:
    reference, model = twins(seed=1, l2=l2)
    want = reference.forward_pass((X3 * 2 - 0.5, Y3), training=False)
    got = model.forward_pass((X3 * 2 - 0.5, Y3), training=False)
    assert float(got.loss) == pytest.approx(float(want.loss), rel=1e-6)
    np.testing.assert_allclose(np.asarray(got.predictions), want.predictions, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(X3)), reference.predict_on_batch(X3), atol=1e-6)


@pytest.mark.parametrize(
    "spec",
    [
        fedmodel.SGD(0.5),
        fedmodel.SGD(0.1, momentum=0.9),
        fedmodel.SGD(0.1, momentum=0.9, nesterov=True),
        fedmodel.SGD(0.1, weight_decay=0.05, momentum=0.5),
        fedmodel.SGD(0.1, proximal_mu=0.5),
        fedmodel.Adam(0.05),
    ],
    ids=["sgd", "momentum", "nesterov", "weight_decay", "fedprox", "adam"],
)
def test_three_train_steps_equal_the_numpy_reference(spec: fedmodel.OptimizerSpec) -> None:
    reference, model = twins(seed=2, l2=0.1)
    rng = np.random.default_rng(3)
    ref_opt, opt = NUMPY_BACKEND.make_optimizer(reference, spec), fmtf.BACKEND.make_optimizer(model, spec)
    for _ in range(3):
        batch = (rng.standard_normal((3, 4)).astype(np.float32), rng.integers(0, 3, 3).astype(np.int64))
        want = NUMPY_BACKEND.train_step(reference, batch, ref_opt)
        got = fmtf.BACKEND.train_step(model, batch, opt)
        assert float(got.loss) == pytest.approx(float(want.loss), rel=1e-6)
    # Adam: Keras adds epsilon to sqrt(v) before bias correction (documented), a relative O(1e-5) here
    tol = 1e-5 if isinstance(spec, fedmodel.Adam) else 1e-6
    for got_w, want_w in zip(
        fedmodel.get_weights(model).trainable, fedmodel.get_weights(reference).trainable, strict=True
    ):
        np.testing.assert_allclose(got_w, want_w, rtol=tol, atol=tol)


def test_metrics_report_equals_the_reference_report() -> None:
    reference, model = twins(seed=4)
    for batch in ((X3, Y3), (X3[:2], Y3[::-1][:2].copy())):
        reference.forward_pass(batch, training=False)
        model.forward_pass(batch, training=False)
    want, got = reference.report_local_outputs(), model.report_local_outputs()
    assert got["num_examples"] == want["num_examples"] == 5
    assert got["accuracy"] == (want["accuracy"][0], 5)
    assert float(got["loss"][0]) == pytest.approx(float(want["loss"][0]), rel=1e-6)
