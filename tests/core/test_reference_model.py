"""The numpy reference model: the contract by hand, with loss and gradient checked against hand math."""

from __future__ import annotations

import numpy as np
import pytest

import fedmodel
from fedmodel.reference import NUMPY_BACKEND, SoftmaxRegression

X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
Y = np.array([0, 1, 1], np.int64)
KERNEL = np.array([[0.5, -0.5], [0.25, 0.0]], np.float32)
BIAS = np.array([0.0, 0.1], np.float32)


def _model() -> SoftmaxRegression:
    model = SoftmaxRegression(num_features=2, num_classes=2)
    weights = fedmodel.get_weights(model)
    fedmodel.assign_weights(model, weights.with_arrays([KERNEL, BIAS, np.ones(2, np.float32)]))
    return model


def _hand_loss_and_grads() -> tuple[float, np.ndarray, np.ndarray]:
    # logits by hand: [1*0.5+0, 1*-0.5+0.1] = [0.5, -0.4]; [2*0.25, 0.1] = [0.5, 0.1]; [0.75, -0.4]
    logits = np.array([[0.5, -0.4], [0.5, 0.1], [0.75, -0.4]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[[0, 1, 2], [0, 1, 1]]))
    d = p.copy()
    d[[0, 1, 2], [0, 1, 1]] -= 1
    d /= 3
    return float(loss), X.astype(np.float64).T @ d, d.sum(axis=0)


def test_reference_model_is_a_model_at_run_time() -> None:
    model = SoftmaxRegression(num_features=64, num_classes=10)
    assert isinstance(model, fedmodel.Model)
    assert fedmodel.check_protocol(model) == []
    assert fedmodel.backend_for(model) is NUMPY_BACKEND


def test_loss_equals_the_hand_computation_on_three_examples() -> None:
    loss, _, _ = _hand_loss_and_grads()
    out = _model().forward_pass((X, Y), training=False)
    assert out.num_examples == 3
    np.testing.assert_allclose(float(out.loss), loss, rtol=1e-6)
    np.testing.assert_allclose(out.predictions, [[0.5, -0.4], [0.5, 0.1], [0.75, -0.4]], rtol=1e-6)


def test_gradient_equals_the_hand_computation() -> None:
    _, grad_kernel, grad_bias = _hand_loss_and_grads()
    _, grads = _model().value_and_grad((X, Y))
    np.testing.assert_allclose(grads[0], grad_kernel, rtol=1e-5)
    np.testing.assert_allclose(grads[1], grad_bias, rtol=1e-5)


def test_one_sgd_step_moves_the_weights_by_minus_lr_times_the_gradient() -> None:
    _, grad_kernel, grad_bias = _hand_loss_and_grads()
    model = _model()
    opt = NUMPY_BACKEND.make_optimizer(model, fedmodel.SGD(learning_rate=0.5))
    NUMPY_BACKEND.train_step(model, (X, Y), opt)
    after = fedmodel.get_weights(model)
    np.testing.assert_allclose(after.trainable[0], KERNEL - 0.5 * grad_kernel, rtol=1e-5)
    np.testing.assert_allclose(after.trainable[1], BIAS - 0.5 * grad_bias, rtol=1e-5)
    np.testing.assert_array_equal(after.non_trainable[0], np.ones(2, np.float32))


def test_forward_pass_counts_metrics_and_reset_restores_them() -> None:
    model = _model()
    model.forward_pass((X, Y), training=False)
    model.forward_pass({"x": X[:1], "y": Y[:1]}, training=True)
    report = model.report_local_outputs()
    assert int(report["num_examples"]) == 4
    again = model.report_local_outputs()  # pure: a second call reports the same
    for name in ("loss", "accuracy"):
        np.testing.assert_array_equal(report[name][0], again[name][0])
        np.testing.assert_array_equal(report[name][1], again[name][1])
    model.reset_metrics()
    assert int(model.report_local_outputs()["num_examples"]) == 0


def test_predict_on_batch_changes_nothing() -> None:
    model = _model()
    before = fedmodel.get_weights(model)
    model.predict_on_batch(X)
    assert int(model.report_local_outputs()["num_examples"]) == 0
    for a, b in zip(before.arrays, fedmodel.get_weights(model).arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_two_clients_aggregated_equal_one_client_over_both_batches() -> None:
    rng = np.random.default_rng(1)
    xa, xb = rng.random((5, 2), np.float32), rng.random((7, 2), np.float32)
    ya, yb = rng.integers(0, 2, 5), rng.integers(0, 2, 7)
    a, b, union = _model(), _model(), _model()
    a.forward_pass((xa, ya), training=False)
    b.forward_pass((xb, yb), training=False)
    union.forward_pass((np.concatenate([xa, xb]), np.concatenate([ya, yb])), training=False)
    agg = union.federated_output_computation
    two = agg([a.report_local_outputs(), b.report_local_outputs()])
    one = agg([union.report_local_outputs()])
    assert two["num_examples"] == one["num_examples"] == 12
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6)
    assert two["accuracy"] == pytest.approx(one["accuracy"])


def test_spec_error_on_wrong_batch_changes_nothing() -> None:
    model = _model()
    with pytest.raises(fedmodel.SpecError, match="'x': expected shape"):
        model.forward_pass((np.zeros((3, 5), np.float32), Y))
    assert int(model.report_local_outputs()["num_examples"]) == 0
