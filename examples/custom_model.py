"""Implementing the fedmodel contract for your own framework, in about twenty lines.

A linear regression with hand-written gradients. Its variables are the numpy reference backend's
boxes, so it borrows that backend for weights and training steps (``value_and_grad`` is all the numpy
backend asks of a model). Check it with:

    fedmodel conformance examples.custom_model:make_case
"""

from __future__ import annotations

from typing import Any

import numpy as np

import fedmodel
from fedmodel import Variable
from fedmodel.metrics import SumThenFinalize, ratio
from fedmodel.reference import NUMPY_BACKEND


class LinearRegression:
    """``y ≈ x @ w + b`` with the mean squared error; every member of fedmodel.Model."""

    __fedmodel_backend__ = NUMPY_BACKEND

    def __init__(self, num_features: int) -> None:
        self.trainable_variables = (
            Variable("w", np.zeros(num_features, np.float32)),
            Variable("b", np.zeros((), np.float32)),
        )
        self.non_trainable_variables: tuple[Variable, ...] = ()
        self.local_variables = (
            Variable("squared_error", np.zeros((), np.float64)),
            Variable("count", np.zeros((), np.int64)),
        )
        self.input_spec = (
            fedmodel.TensorSpec((None, num_features), "float32"),
            fedmodel.TensorSpec((None,), "float32"),
        )
        self.federated_output_computation = SumThenFinalize({"loss": ratio})

    def predict_on_batch(self, x: Any, training: bool = False) -> np.ndarray:
        fedmodel.check_spec(self.input_spec[0], x, what="x")
        w, b = self.trainable_variables
        return (x @ w.value + b.value).astype(np.float32)

    def forward_pass(self, batch: Any, training: bool = True) -> fedmodel.BatchOutput[Any]:
        x, y = fedmodel.check_batch(self.input_spec, batch)
        predictions = self.predict_on_batch(x)
        squared_error, count = self.local_variables
        squared_error.value = squared_error.value + float(np.sum((predictions - y) ** 2, dtype=np.float64))
        count.value = count.value + len(y)
        return fedmodel.BatchOutput(np.float32(np.mean((predictions - y) ** 2)), predictions, len(y))

    def report_local_outputs(self) -> dict[str, Any]:
        squared_error, count = (v.value.copy() for v in self.local_variables)
        return {"loss": (squared_error, count), "num_examples": count}

    def reset_metrics(self) -> None:
        for v in self.local_variables:
            v.value = np.zeros_like(v.value)

    def value_and_grad(self, batch: Any) -> tuple[fedmodel.BatchOutput[Any], list[np.ndarray]]:
        """What the numpy backend's train_step needs: the output and d loss / d (w, b)."""
        out = self.forward_pass(batch)
        x, y = fedmodel.split_batch(batch)
        residual = 2.0 * (out.predictions - y) / len(y)
        return out, [(x.T @ residual).astype(np.float32), np.float32(residual.sum())]


def make_case() -> Any:
    """The conformance case: a fresh model per call and a batch maker."""
    from fedmodel_conformance import Case

    true_w = np.array([1.0, -2.0, 0.5], np.float32)

    def make_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((size, 3)).astype(np.float32)
        return x, (x @ true_w + 0.3).astype(np.float32)

    return Case(name="linear-regression", make_model=lambda: LinearRegression(3), make_batch=make_batch)
