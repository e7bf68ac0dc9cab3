"""Exact numbers: the JAX softmax regression against hand-computed math and fedmodel.reference."""

from __future__ import annotations

import numpy as np
import pytest
from fedmodel_jax import models

import fedmodel
from fedmodel.reference import SoftmaxRegression

KERNEL = np.array([[0.5, -0.2, 0.1], [0.3, 0.8, -0.5], [-0.4, 0.2, 0.6], [0.1, -0.3, 0.2]], np.float32)
BIAS = np.array([0.1, -0.1, 0.05], np.float32)
X = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 1.5, 2.0], [-0.5, 0.5, 1.0, 0.0]], np.float32)
Y = np.array([0, 2, 1], np.int64)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _jax_model() -> fedmodel.Model:
    model = models.mlp(num_features=4, hidden=(), num_classes=3)
    fedmodel.assign_weights(model, fedmodel.ModelWeights((KERNEL, BIAS), (), ("params/0/kernel", "params/0/bias")))
    return model


def _reference() -> SoftmaxRegression:
    ref = SoftmaxRegression(num_features=4, num_classes=3)
    fedmodel.assign_weights(ref, fedmodel.ModelWeights((KERNEL, BIAS), (np.ones(4, np.float32),)))
    return ref


def test_loss_and_predictions_equal_the_hand_computed_softmax_regression() -> None:
    logits = X.astype(np.float64) @ KERNEL + BIAS
    loss = -np.log(_softmax(logits)[np.arange(3), Y]).mean()

    out = _jax_model().forward_pass((X, Y), training=False)

    np.testing.assert_allclose(np.asarray(out.predictions), logits, rtol=1e-6, atol=1e-6)
    assert float(out.loss) == pytest.approx(loss, rel=1e-6)
    assert out.num_examples == 3


def test_one_sgd_step_applies_the_hand_computed_gradient() -> None:
    probs = _softmax(X.astype(np.float64) @ KERNEL + BIAS)
    dlogits = (probs - np.eye(3)[Y]) / 3
    want_kernel = KERNEL - 0.5 * (X.T @ dlogits)
    want_bias = BIAS - 0.5 * dlogits.sum(axis=0)
    model = _jax_model()
    backend = fedmodel.backend_for(model)

    backend.train_step(model, (X, Y), backend.make_optimizer(model, fedmodel.SGD(learning_rate=0.5)))

    kernel, bias = fedmodel.get_weights(model).trainable
    np.testing.assert_allclose(kernel, want_kernel, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bias, want_bias, rtol=1e-6, atol=1e-6)


def test_predictions_loss_and_metrics_equal_the_numpy_reference() -> None:
    model, ref = _jax_model(), _reference()
    batches = [(X, Y), (X[:2], Y[:2])]
    for batch in batches:
        ours, theirs = model.forward_pass(batch, training=False), ref.forward_pass(batch, training=False)
        np.testing.assert_allclose(np.asarray(ours.predictions), theirs.predictions, rtol=1e-6, atol=1e-6)
        assert float(ours.loss) == pytest.approx(float(theirs.loss), rel=1e-6)

    ours_report, ref_report = model.report_local_outputs(), ref.report_local_outputs()
    assert int(ours_report["num_examples"]) == int(ref_report["num_examples"]) == 5
    assert int(ours_report["accuracy"][0]) == int(ref_report["accuracy"][0])
    assert float(ours_report["loss"][0]) == pytest.approx(float(ref_report["loss"][0]), rel=1e-6)
    assert model.federated_output_computation([ours_report]) == pytest.approx(
        ref.federated_output_computation([ref_report]), rel=1e-6
    )


@pytest.mark.parametrize(
    "spec",
    [
        fedmodel.SGD(learning_rate=0.3, momentum=0.9),
        fedmodel.SGD(learning_rate=0.3, momentum=0.9, nesterov=True, weight_decay=0.01),
        fedmodel.SGD(learning_rate=0.3, proximal_mu=0.5),
        fedmodel.Adam(learning_rate=0.05),
        fedmodel.Adam(learning_rate=0.05, proximal_mu=0.1),
    ],
    ids=["momentum", "nesterov+decay", "fedprox", "adam", "adam+fedprox"],
)
def test_optimizers_follow_the_reference_step_by_step(spec: fedmodel.OptimizerSpec) -> None:
    model, ref = _jax_model(), _reference()
    backend, ref_backend = fedmodel.backend_for(model), fedmodel.backend_for(ref)
    optimizer, ref_optimizer = backend.make_optimizer(model, spec), ref_backend.make_optimizer(ref, spec)
    rng = np.random.default_rng(3)
    for step in range(5):
        batch = (rng.standard_normal((3, 4)).astype(np.float32), rng.integers(0, 3, 3))
        backend.train_step(model, batch, optimizer)
        ref_backend.train_step(ref, batch, ref_optimizer)
        for ours, theirs in zip(
            fedmodel.get_weights(model).trainable, fedmodel.get_weights(ref).trainable, strict=True
        ):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=f"after step {step + 1}")
