"""JAX's standard metrics: accuracy never broadcasts ``(n,)`` predictions against ``(n, 1)`` labels, and a
regression model reports no accuracy (issue 16's reproductions)."""

from __future__ import annotations

from typing import Any

import fedmodel_jax
import jax.numpy as jnp
import numpy as np
import optax
from fedmodel_conformance import Case, run_checks

import fedmodel


def _linear(outputs: int) -> Any:
    def init(rng: Any, x: Any) -> dict[str, Any]:
        return {"w": jnp.eye(x.shape[1], outputs), "b": jnp.zeros(outputs)}

    def apply(params: Any, state: Any, x: Any, training: bool, rng: Any) -> tuple[Any, Any]:
        return x @ params["w"] + params["b"], state

    return init, apply


def test_an_all_correct_batch_of_three_column_labels_is_three_of_three() -> None:
    init, apply = _linear(3)
    spec = (fedmodel.TensorSpec((None, 3), "float32"), fedmodel.TensorSpec((None, 1), "int64"))
    model = fedmodel_jax.from_functions(
        init, apply, lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y[:, 0]).mean(), spec
    )
    x = np.eye(3, dtype=np.float32)  # the identity model predicts class i for row i
    model.forward_pass((x, np.arange(3).reshape(3, 1)), training=False)
    report = model.report_local_outputs()
    assert (int(report["accuracy"][0]), int(report["accuracy"][1])) == (3, 3)
    assert model.federated_output_computation([report])["accuracy"] == 1.0


def test_a_regression_model_reports_no_accuracy_and_passes_the_suite() -> None:
    init, apply = _linear(1)
    spec = (fedmodel.TensorSpec((None, 3), "float32"), fedmodel.TensorSpec((None, 1), "float32"))

    def mse(out: Any, y: Any) -> Any:
        return jnp.mean((out - y) ** 2)

    def make_model() -> Any:
        return fedmodel_jax.from_functions(init, apply, mse, spec)

    def make_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((size, 3)).astype(np.float32)
        return x, (x.sum(axis=1, keepdims=True) + 0.5).astype(np.float32)

    model = make_model()
    model.forward_pass(make_batch(4, np.random.default_rng(0)), training=False)
    assert sorted(model.report_local_outputs()) == ["loss", "num_examples"]
    report = run_checks(Case("jax-linear-regression", make_model, make_batch))
    assert report.ok, report.format()
