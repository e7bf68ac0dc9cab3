"""Issue 18 item 2: a forward_pass, predict_on_batch or train_step that raises changes no variable, metric,
statistic or optimizer state (the step computes everything first and commits after)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fedmodel

tf = pytest.importorskip("tensorflow")
fmtf = pytest.importorskip("fedmodel_tensorflow")
keras = fmtf._compat.keras

UNBOUNDED = (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None,), "int64"))
SCCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def bn_model(*, check_numerics: bool = False, **kwargs: Any) -> fmtf.KerasModel:
    """Dense -> BatchNorm (-> a check that raises on a non-finite value) -> Dense, labels unbounded."""
    layers = [keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization()]
    if check_numerics:
        layers.append(keras.layers.Lambda(lambda t: tf.debugging.check_numerics(t, "after batch norm")))
    layers.append(keras.layers.Dense(3))
    return fmtf.from_keras_model(keras.Sequential(layers), SCCE, UNBOUNDED, **kwargs)


def everything(model: fmtf.KerasModel, optimizer: Any = None) -> list[np.ndarray]:
    variables = [*model.trainable_variables, *model.non_trainable_variables, *model.local_variables]
    if optimizer is not None:
        variables += list(optimizer.keras_optimizer.variables)
    return [np.array(v.numpy()) for v in variables]


def assert_unchanged(before: list[np.ndarray], after: list[np.ndarray]) -> None:
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def good_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5).astype(np.int64)


def prepared(model: fmtf.KerasModel) -> Any:
    """Train one good step with momentum (so optimizer state and metrics are non-trivial); the optimizer."""
    optimizer = fmtf.BACKEND.make_optimizer(model, fedmodel.SGD(0.1, momentum=0.9))
    fmtf.BACKEND.train_step(model, good_batch(np.random.default_rng(0)), optimizer)
    return optimizer


CALLS: dict[str, Callable[[fmtf.KerasModel, Any, Any], Any]] = {
    "forward_pass(training=False)": lambda m, b, o: m.forward_pass(b, training=False),
    "forward_pass(training=True)": lambda m, b, o: m.forward_pass(b, training=True),
    "train_step": lambda m, b, o: fmtf.BACKEND.train_step(m, b, o),
}


@pytest.mark.parametrize("eager", [False, True], ids=["graph", "eager"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_out_of_range_labels_raise_and_change_nothing(call: str, eager: bool) -> None:
    model = bn_model(run_eagerly=eager)
    optimizer = prepared(model)
    before = everything(model, optimizer)
    x, _ = good_batch(np.random.default_rng(1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label"):
        CALLS[call](model, (x, np.array([0, 1, 10, 2, 0])), optimizer)
    assert_unchanged(before, everything(model, optimizer))
    report = model.report_local_outputs()  # the counts still agree: nothing was half counted
    assert int(report["num_examples"]) == int(report["loss"][1]) == 5


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_user_metric_that_raises_on_a_non_finite_value_changes_nothing(kind: str, call: str) -> None:
    def finite_mean(y_true: Any, y_pred: Any) -> Any:  # log(9 - label): -inf for label 9, which it refuses
        return tf.debugging.check_numerics(tf.math.log(tf.cast(9 - y_true, tf.float32)), "log(9 - label)")

    base = getattr(fmtf.models, kind)()
    model = fmtf.from_keras_model(
        base.keras_model, SCCE, base.input_spec, metrics=[fmtf.mean_metric("finite_mean", finite_mean)]
    )
    rng = np.random.default_rng(2)
    x, y = rng.random((4, 64), dtype=np.float32), np.array([0, 3, 8, 1])
    optimizer = fmtf.BACKEND.make_optimizer(model, fedmodel.SGD(0.1, momentum=0.9))
    fmtf.BACKEND.train_step(model, (x, y), optimizer)
    before = everything(model, optimizer)
    y[2] = 9
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"log\(9 - label\)"):
        CALLS[call](model, (x, y), optimizer)
    assert_unchanged(before, everything(model, optimizer))


def test_a_loss_that_raises_at_its_second_call_changes_nothing() -> None:
    calls = {"n": 0}

    def flaky(y_true: Any, y_pred: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # the dry run, the first step, then this one
            raise RuntimeError("the loss failed")
        return SCCE(y_true, y_pred)

    model = fmtf.from_keras_model(fmtf.models.cnn_bn().keras_model, flaky, UNBOUNDED_64, run_eagerly=True)
    optimizer = fmtf.BACKEND.make_optimizer(model, fedmodel.SGD(0.1, momentum=0.9))
    rng = np.random.default_rng(3)
    batch = (rng.random((4, 64), dtype=np.float32), rng.integers(0, 10, 4))
    fmtf.BACKEND.train_step(model, batch, optimizer)
    before = everything(model, optimizer)
    with pytest.raises(RuntimeError, match="the loss failed"):
        fmtf.BACKEND.train_step(model, batch, optimizer)
    assert_unchanged(before, everything(model, optimizer))  # batch-norm statistics and momentum included


UNBOUNDED_64 = (fedmodel.TensorSpec((None, 64), "float32"), fedmodel.TensorSpec((None,), "int64"))


@pytest.mark.parametrize("eager", [False, True], ids=["graph", "eager"])
def test_a_failing_training_mode_predict_leaves_batch_norm_statistics_alone(eager: bool) -> None:
    model = bn_model(check_numerics=True, run_eagerly=eager)
    x = np.random.default_rng(4).standard_normal((5, 4)).astype(np.float32)
    model.predict_on_batch(x, training=True)  # a good call moves the statistics...
    before = everything(model)
    assert not np.array_equal(before[len(model.trainable_variables)], np.zeros(8, np.float32))
    x[0, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="after batch norm"):
        model.predict_on_batch(x, training=True)
    assert_unchanged(before, everything(model))  # ...a failing one does not
