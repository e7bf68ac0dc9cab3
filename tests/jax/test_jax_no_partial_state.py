"""A forward_pass, predict_on_batch or train_step that raises leaves every variable, metric, statistic, the
dropout key's call count and the optimizer state as they were (issue 18 item 2): the jitted function computes
everything, the model commits only after it returned. Failures: out-of-range labels (the spec check), a loss
or a user metric that raises while JAX traces the step, an ``apply`` that raises."""

from __future__ import annotations

from typing import Any

import fedmodel_jax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fedmodel_jax import models

import fedmodel
from fedmodel.backend_kit import Metric, classification_spec

ARMED = {"loss": False, "metric": False, "apply": False}
BACKEND = fedmodel_jax.BACKEND


def _loss(logits: Any, y: Any) -> Any:
    if ARMED["loss"]:
        raise RuntimeError("the loss failed")
    return models.cross_entropy(logits, y)


def _update(state: Any, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
    if ARMED["metric"]:
        raise FloatingPointError("the metric found a NaN")
    return (state[0] + jnp.sum(y_pred),)


METRIC = Metric("logit_sum", lambda: (jnp.zeros((), jnp.float32),), _update)


def _init(rng: Any, x: Any) -> tuple[models.Dense, ...]:
    k1, k2 = jax.random.split(rng)
    return (
        models.Dense(jax.random.normal(k1, (16, 8)), jnp.zeros(8)),
        models.Dense(jax.random.normal(k2, (8, 3)), jnp.zeros(3)),
    )


def _apply(params: Any, state: Any, x: Any, training: bool, rng: Any) -> tuple[Any, Any]:
    if ARMED["apply"]:
        raise ValueError("apply failed")
    logits, _ = models.mlp_apply(params, state, x, training, rng)
    return logits, ({"seen": state["seen"] + x.shape[0]} if training else state)


def _make(kind: str) -> Any:
    spec = classification_spec(16, 3)
    if kind == "mlp":  # with a plain state, a counter that training moves
        state = {"seen": jnp.zeros((), jnp.int32)}
        return fedmodel_jax.from_functions(_init, _apply, _loss, spec, state=state, metrics=[METRIC], seed=3)
    module = models._cnn_bn_class()(side=4, channels=(2, 3), num_classes=3, dropout=0.5)
    return fedmodel_jax.from_flax(module, _loss, spec, metrics=[METRIC], seed=3)


def _batch(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, 16)).astype(np.float32), rng.integers(0, 3, size)


def _everything(model: Any, optimizer: Any) -> list[np.ndarray]:
    values = [np.asarray(v.value) for v in (*model.trainable_variables, *model.non_trainable_variables)]
    values += [np.asarray(v.value) for v in model.local_variables] + [np.asarray(model._count)]  # dropout calls
    return values + [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(optimizer.state)]


def _fail(model: Any, op: str, failure: str, optimizer: Any) -> None:
    x, y = _batch(5, seed=9)  # a batch size never traced, so a failing loss or metric is traced again
    if failure == "bad_labels":
        y = np.array([0, 1, 3, 2, 0])  # 3 classes: label 3 is out of range
    else:
        ARMED[failure] = True
    try:
        with pytest.raises((fedmodel.SpecError, RuntimeError, FloatingPointError, ValueError)):
            if op == "forward_eval":
                model.forward_pass((x, y), training=False)
            elif op == "forward_train":
                model.forward_pass((x, y), training=True)
            elif op == "predict_train":
                model.predict_on_batch(x if failure != "bad_labels" else x.astype(np.float64), training=True)
            else:
                BACKEND.train_step(model, BACKEND.to_native(model, (x, y)), optimizer)
    finally:
        ARMED[failure] = False


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn"])
@pytest.mark.parametrize("op", ["forward_eval", "forward_train", "predict_train", "train_step"])
def test_a_failing_call_changes_nothing_and_the_model_trains_on_exactly_like_its_twin(kind: str, op: str) -> None:
    model, twin = _make(kind), _make(kind)
    spec = fedmodel.SGD(learning_rate=0.1, momentum=0.9)
    optimizer, twin_optimizer = BACKEND.make_optimizer(model, spec), BACKEND.make_optimizer(twin, spec)
    for m, opt in ((model, optimizer), (twin, twin_optimizer)):  # warm: statistics, metrics, momentum, call count move
        BACKEND.train_step(m, _batch(8, 0), opt)
        m.forward_pass(_batch(8, 1), training=True)
    before = _everything(model, optimizer)
    failures = ["bad_labels", "loss", "metric", "apply"] if kind == "mlp" else ["bad_labels", "loss", "metric"]
    if op == "predict_train":  # no loss, no metric: a bad x, or apply
        failures = [f for f in failures if f in ("bad_labels", "apply")]
    for failure in failures:
        _fail(model, op, failure, optimizer)
        for got, want in zip(_everything(model, optimizer), before, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=f"{op} failing with {failure}")
    for m, opt in ((model, optimizer), (twin, twin_optimizer)):  # the same next steps, dropout keys included
        BACKEND.train_step(m, _batch(8, 2), opt)
        m.predict_on_batch(_batch(8, 3)[0], training=True)
    for got, want in zip(_everything(model, optimizer), _everything(twin, twin_optimizer), strict=True):
        np.testing.assert_array_equal(got, want)
    assert model.report_local_outputs()["num_examples"] == 24
