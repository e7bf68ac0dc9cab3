"""The same canonical weights and batches give the same unfinalized report in torch, Keras and JAX.

Labels shaped ``(n,)`` and ``(n, 1)`` (TFF's usual shape); batches where every example is correct, where
none is, and random ones; the report's ``loss`` and ``accuracy`` pairs and ``num_examples`` agree to 1e-5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fedmodel

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("jax")

FEATURES, HIDDEN, CLASSES = 16, 8, 5


def _canonical(seed: int) -> list[np.ndarray]:
    """``kernel (in, out), bias`` of both dense layers."""
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0, 0.5, (FEATURES, HIDDEN)).astype(np.float32),
        rng.normal(0, 0.1, HIDDEN).astype(np.float32),
        rng.normal(0, 0.5, (HIDDEN, CLASSES)).astype(np.float32),
        rng.normal(0, 0.1, CLASSES).astype(np.float32),
    ]


def _spec(column: bool) -> tuple[fedmodel.TensorSpec, fedmodel.TensorSpec]:
    return (
        fedmodel.TensorSpec((None, FEATURES), "float32"),
        fedmodel.TensorSpec((None, 1) if column else (None,), "int64"),
    )


def _torch(column: bool, weights: list[np.ndarray]) -> Any:
    import fedmodel_torch
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES))
    model = fedmodel_torch.from_module(
        module, lambda p, y: torch.nn.functional.cross_entropy(p, y.reshape(-1)), _spec(column)
    )
    w1, b1, w2, b2 = weights
    template = fedmodel.get_weights(model)
    fedmodel.assign_weights(model, template.with_arrays([w1.T.copy(), b1, w2.T.copy(), b2]))
    return model


def _keras(column: bool, weights: list[np.ndarray]) -> Any:
    import fedmodel_tensorflow
    from fedmodel_tensorflow._compat import keras

    net = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(HIDDEN, activation="relu"), keras.layers.Dense(CLASSES)]
    )
    model = fedmodel_tensorflow.from_keras_model(
        net, keras.losses.SparseCategoricalCrossentropy(from_logits=True), _spec(column)
    )
    fedmodel.assign_weights(model, fedmodel.get_weights(model).with_arrays(weights))
    return model


def _jax(column: bool, weights: list[np.ndarray]) -> Any:
    import fedmodel_jax
    import optax
    from fedmodel_jax.models import Dense, mlp_apply

    def init(rng: Any, x: Any) -> tuple[Dense, ...]:
        return tuple(Dense(np.zeros_like(weights[i]), np.zeros_like(weights[i + 1])) for i in (0, 2))

    def loss(logits: Any, y: Any) -> Any:
        return optax.softmax_cross_entropy_with_integer_labels(logits, y.reshape(-1)).mean()

    model = fedmodel_jax.from_functions(init, mlp_apply, loss, _spec(column))
    fedmodel.assign_weights(model, fedmodel.get_weights(model).with_arrays(weights))
    return model


BUILDERS: dict[str, Callable[[bool, list[np.ndarray]], Any]] = {"torch": _torch, "keras": _keras, "jax": _jax}


def _batches(column: bool, weights: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """A random batch, one whose labels are the predicted classes (all correct), one where none is."""
    rng = np.random.default_rng(1)
    w1, b1, w2, b2 = weights
    out = []
    for kind in ("random", "correct", "wrong"):
        x = rng.standard_normal((5, FEATURES)).astype(np.float32)
        predicted = (np.maximum(x @ w1 + b1, 0) @ w2 + b2).argmax(axis=1)
        y = {"random": rng.integers(0, CLASSES, 5), "correct": predicted, "wrong": (predicted + 1) % CLASSES}[kind]
        y = y.astype(np.int64)
        out.append((x, y.reshape(-1, 1) if column else y))
    return out


def _report(model: Any, batches: list[Any]) -> dict[str, np.ndarray]:
    for batch in batches:
        model.forward_pass(batch, training=False)
    report = model.report_local_outputs()
    return {
        "loss_sum": np.asarray(report["loss"][0], np.float64),
        "loss_count": np.asarray(report["loss"][1], np.float64),
        "correct": np.asarray(report["accuracy"][0], np.float64),
        "accuracy_count": np.asarray(report["accuracy"][1], np.float64),
        "num_examples": np.asarray(report["num_examples"], np.float64),
    }


def _numpy_report(weights: list[np.ndarray], batches: list[Any]) -> dict[str, np.ndarray]:
    """The report computed here in float64: the sum of per-example cross-entropies, the argmax hits."""
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in weights)
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in batches:
        logits = np.maximum(x @ w1 + b1, 0) @ w2 + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        labels = y.reshape(-1)
        loss_sum += float(-log_probs[np.arange(len(labels)), labels].sum())
        correct += int(np.sum(logits.argmax(axis=1) == labels))
        count += len(labels)
    n = np.float64(count)
    return {
        "loss_sum": np.float64(loss_sum),
        "loss_count": n,
        "correct": np.float64(correct),
        "accuracy_count": n,
        "num_examples": n,
    }


@pytest.mark.parametrize("column", [False, True], ids=["labels (n,)", "labels (n, 1)"])
def test_the_same_weights_and_batches_give_the_same_unfinalized_report(column: bool) -> None:
    weights = _canonical(seed=3)
    batches = _batches(column, weights)
    expected = _numpy_report(weights, batches)
    assert expected["num_examples"] == 15 and 5 <= expected["correct"] <= 10  # all of one batch, none of another
    for name, build in BUILDERS.items():
        report = _report(build(column, weights), batches)
        assert sorted(report) == sorted(expected), name
        for key, want in expected.items():
            np.testing.assert_allclose(report[key], want, rtol=1e-5, atol=1e-5, err_msg=f"{name}: {key}")
