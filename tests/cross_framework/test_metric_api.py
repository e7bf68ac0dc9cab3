"""One user-metric API in every backend: the kit's ``Metric`` with Keras's ``update(state, y_true, y_pred,
sample_weight=None)``, and ``mean_metric``/``sum_metric`` that mean the same thing in torch, Keras and JAX."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pytest

from fedmodel.backend_kit import Metric
from tests._next_token import masked_cross_entropy

Y_TRUE = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
Y_PRED = np.array([0.5, 1.0, 1.0, 5.0], np.float32)
WEIGHT = np.array([1.0, 0.0, 2.0, 1.0], np.float32)


def _framework(backend: str) -> tuple[Any, Any, Any, Any]:
    """The backend's metrics module, its ``abs``, its sum and its array constructor."""
    metrics = pytest.importorskip(f"fedmodel_{backend}").metrics
    if backend == "torch":
        torch = importlib.import_module("torch")
        return metrics, torch.abs, torch.sum, torch.as_tensor
    if backend == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return metrics, tf.abs, tf.reduce_sum, tf.convert_to_tensor
    jnp = importlib.import_module("jax.numpy")
    return metrics, jnp.abs, jnp.sum, jnp.asarray


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_mean_metric_weights_values_and_count_and_finalizes_to_the_weighted_mean(backend: str) -> None:
    metrics, absolute, _, array = _framework(backend)
    mae = metrics.mean_metric("mae", lambda y_true, y_pred: absolute(y_pred - y_true))
    assert isinstance(mae, Metric)
    state = mae.update(mae.init(), array(Y_TRUE), array(Y_PRED))
    state = mae.update(state, array(Y_TRUE), array(Y_PRED), sample_weight=array(WEIGHT))
    total, count = (float(np.asarray(s)) for s in state)
    # unweighted: 0.5 + 0 + 1 + 2 over 4; weighted: 0.5*1 + 0*0 + 1*2 + 2*1 over 4
    assert (total, count) == (3.5 + 4.5, 4.0 + 4.0)
    assert mae.finalize(tuple(np.asarray(s) for s in state)) == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_sum_metric_sums_per_batch_values_and_refuses_a_sample_weight(backend: str) -> None:
    metrics, absolute, total_of, array = _framework(backend)
    total = metrics.sum_metric("l1", lambda y_true, y_pred: total_of(absolute(y_pred - y_true)))
    (value,) = total.update(total.init(), array(Y_TRUE), array(Y_PRED))
    assert float(np.asarray(value)) == 3.5
    with pytest.raises(ValueError, match="sample_weight"):
        total.update(total.init(), array(Y_TRUE), array(Y_PRED), sample_weight=array(WEIGHT))


# next-token batches: 2 sequences of 4 steps over 3 classes; the second sequence ends in 2 padding steps
SEQ_Y = np.array([[1, 2, 1, 2], [2, 1, 0, 0]], np.int64)
SEQ_LOGITS = np.array(
    [
        [[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]],
        [[0.0, 0.0, 0.0], [0.0, 5.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.0, 9.0]],
    ],
    np.float32,
)


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_next_token_loss_and_token_accuracy_are_the_same_in_every_backend(backend: str) -> None:
    """``models.sequence_cross_entropy`` (Keras's masked mean: real tokens summed, over batch * length) and
    ``models.token_accuracy`` (correct real tokens, real tokens; a weight per sequence) of the next-token models."""
    models = pytest.importorskip(f"fedmodel_{backend}").models
    _, _, _, array = _framework(backend)
    logits, y = array(SEQ_LOGITS), array(SEQ_Y)
    loss = (
        models.sequence_cross_entropy(y, logits)
        if backend == "tensorflow"
        else models.sequence_cross_entropy(logits, y)
    )
    assert float(np.asarray(loss)) == pytest.approx(masked_cross_entropy(SEQ_LOGITS, SEQ_Y), rel=1e-6)
    metric = models.token_accuracy()
    assert metric.name == "token_accuracy"
    # argmax per step: [1, 2, 2, 0] against [1, 2, 1, 2] -> 2 of 4; [0, 1, -, -] against [2, 1] -> 1 of 2
    state = metric.update(metric.init(), y, logits)
    assert [float(np.asarray(s)) for s in state] == [3.0, 6.0]
    state = metric.update(state, y, logits, sample_weight=array(np.array([2.0, 0.5], np.float32)))
    assert [float(np.asarray(s)) for s in state] == [3.0 + 4.5, 6.0 + 9.0]
    assert metric.finalize(tuple(np.asarray(s) for s in state)) == pytest.approx(7.5 / 15.0)
