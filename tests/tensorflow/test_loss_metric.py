"""The ``loss`` metric sums the per-example losses without regularization; ``forward_pass``'s loss adds it.

As TFF reports: on a model of ones with an L2 penalty, ``forward_pass(...).loss`` is the data loss plus
the penalty, while the finalized ``loss`` metric is the data loss alone, in evaluation and in training.
"""

from __future__ import annotations

import numpy as np
import pytest

import fedmodel

fmtf = pytest.importorskip("fedmodel_tensorflow")
keras = fmtf._compat.keras

SPEC = (fedmodel.TensorSpec((None, 2), "float32"), fedmodel.TensorSpec((None, 1), "float32"))


def ones_model() -> fmtf.KerasModel:
    """``y = x @ [[1], [1]] + 1``, with an L2 penalty of 0.01 on the kernel (0.01 * 2 = 0.02)."""
    layer = keras.layers.Dense(
        1, kernel_initializer="ones", bias_initializer="ones", kernel_regularizer=keras.regularizers.L2(0.01)
    )
    net = keras.Sequential([keras.Input((2,)), layer])
    return fmtf.from_keras_model(net, keras.losses.MeanSquaredError(), SPEC)


def test_the_loss_metric_leaves_out_the_regularization_that_the_loss_includes() -> None:
    model = ones_model()
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    y = np.array([[2.0], [5.0]], np.float32)  # predictions 4 and 8: squared errors 4 and 9, mean 6.5
    out = model.forward_pass((x, y), training=False)
    assert float(out.loss) == pytest.approx(6.5 + 0.02, rel=1e-6)
    report = model.report_local_outputs()
    assert float(report["loss"][0]) == pytest.approx(13.0, rel=1e-6)  # the sum of the two squared errors
    assert model.federated_output_computation([report])["loss"] == pytest.approx(6.5, rel=1e-6)


def test_a_train_step_adds_the_data_loss_to_the_metric_too() -> None:
    model = ones_model()
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    y = np.array([[2.0], [5.0]], np.float32)
    out = fmtf.BACKEND.train_step(model, (x, y), fmtf.BACKEND.make_optimizer(model, fedmodel.SGD(0.01)))
    assert float(out.loss) == pytest.approx(6.52, rel=1e-6)  # the pre-step loss, penalty included
    assert float(model.report_local_outputs()["loss"][0]) == pytest.approx(13.0, rel=1e-6)
