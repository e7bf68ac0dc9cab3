"""A call that fails inside the framework leaves no partial state (issue 18 item 2), through ``Case.failing_batch``.

The built-in models' specs bound their labels, so every batch the suite can make either passes the spec
and computes, or is refused before any framework runs. A user's model with an unbounded label spec
lets a label of 5 for 5 classes through to the framework, which raises inside the computation: torch's
``cross_entropy`` an ``IndexError``, Keras's sparse cross-entropy an ``InvalidArgumentError``. The
wrapper must then leave everything as it was (compute, then commit): batch-norm statistics, metric sums
and the optimizer. (JAX's cross-entropy returns NaN for such a label instead of raising: no failure to
provoke there.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fedmodel_conformance import Case, run_checks

import fedmodel

FEATURES, CLASSES = 16, 5
SPEC = (fedmodel.TensorSpec((None, FEATURES), "float32"), fedmodel.TensorSpec((None,), "int64"))  # labels unbounded


def make_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal features, labels in 0..4."""
    return rng.standard_normal((size, FEATURES)).astype(np.float32), rng.integers(0, CLASSES, size).astype(np.int64)


def label_out_of_range(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_batch` with the last label equal to the number of classes: the spec passes, the loss raises."""
    x, y = make_batch(size, rng)
    y[-1] = CLASSES
    return x, y


def _torch() -> Any:
    import fedmodel_torch
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, CLASSES)
    )
    return fedmodel_torch.from_module(net, torch.nn.functional.cross_entropy, SPEC)


def _keras() -> Any:
    import fedmodel_tensorflow
    from fedmodel_tensorflow._compat import keras

    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dense(CLASSES),
        ]
    )
    return fedmodel_tensorflow.from_keras_model(net, keras.losses.SparseCategoricalCrossentropy(from_logits=True), SPEC)


BUILD: dict[str, tuple[str, Callable[[], Any]]] = {"torch": ("torch", _torch), "tensorflow": ("tensorflow", _keras)}


@pytest.mark.parametrize("framework", sorted(BUILD))
@pytest.mark.parametrize(
    "optimizer", [fedmodel.SGD(learning_rate=0.1, momentum=0.9), fedmodel.Adam(0.01)], ids=["momentum", "adam"]
)
def test_a_batch_norm_model_whose_loss_raises_changes_nothing(
    framework: str, optimizer: fedmodel.OptimizerSpec
) -> None:
    module, build = BUILD[framework]
    pytest.importorskip(module)
    case = Case(
        name=f"{framework}-user-bn-mlp",
        make_model=build,
        make_batch=make_batch,
        optimizer=optimizer,
        training_changes_non_trainable=True,
        min_training_batch_size=2,
        failing_batch=label_out_of_range,
    )
    report = run_checks(case, checks=["failed_call_changes_nothing"])
    assert report.ok, report.format()
