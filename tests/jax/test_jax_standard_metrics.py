"""JAX's metrics: the standard report (accuracy never broadcasts ``(n,)`` predictions against ``(n, 1)`` labels,
a regression model reports no accuracy: issue 16) and the kit's one user-metric API (issue 17), traced inside
the jitted steps with Keras's ``update(state, y_true, y_pred, sample_weight=None)``."""

from __future__ import annotations

from typing import Any

import fedmodel_jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fedmodel_conformance import Case, run_checks
from fedmodel_jax import mean_metric, sum_metric

import fedmodel
from fedmodel.backend_kit import Metric


def _linear(outputs: int) -> Any:
    def init(rng: Any, x: Any) -> dict[str, Any]:
        return {"w": jnp.eye(x.shape[1], outputs), "b": jnp.zeros(outputs)}

    def apply(params: Any, state: Any, x: Any, training: bool, rng: Any) -> tuple[Any, Any]:
        return x @ params["w"] + params["b"], state

    return init, apply


def _mse(out: Any, y: Any) -> Any:
    return jnp.mean((out - y) ** 2)


REGRESSION_SPEC = (fedmodel.TensorSpec((None, 3), "float32"), fedmodel.TensorSpec((None, 1), "float32"))


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

    def make_model() -> Any:
        return fedmodel_jax.from_functions(init, apply, _mse, REGRESSION_SPEC)

    def make_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((size, 3)).astype(np.float32)
        return x, (x.sum(axis=1, keepdims=True) + 0.5).astype(np.float32)

    model = make_model()
    model.forward_pass(make_batch(4, np.random.default_rng(0)), training=False)
    assert sorted(model.report_local_outputs()) == ["loss", "num_examples"]
    assert [v.name for v in model.local_variables] == ["metrics/count", "metrics/loss_sum"]
    report = run_checks(Case("jax-linear-regression", make_model, make_batch))
    assert report.ok, report.format()


def test_mean_and_sum_metrics_are_exact_over_batches_and_clients() -> None:
    init, apply = _linear(1)  # outputs x[:, 0]
    mae = mean_metric("mae", lambda y_true, y_pred: jnp.abs(y_pred[:, 0] - y_true[:, 0]))
    big = sum_metric("big", lambda y_true, y_pred: jnp.stack([jnp.sum(y_true > 1), jnp.sum(y_true <= 1)]), shape=(2,))
    model = fedmodel_jax.from_functions(init, apply, _mse, REGRESSION_SPEC, metrics=[mae, big])
    x = np.array([[1, 0, 0], [2, 0, 0], [3, 0, 0]], np.float32)
    model.forward_pass((x, np.array([[1.5], [2.0], [5.0]], np.float32)), training=False)  # |errors| 0.5, 0, 2
    model.forward_pass((x[:1], np.array([[0.0]], np.float32)), training=False)  # |error| 1
    report = model.report_local_outputs()
    assert [float(a) for a in report["mae"]] == [3.5, 4.0]
    np.testing.assert_array_equal(report["big"][0], [3.0, 1.0])
    final = model.federated_output_computation([report, report])
    assert final["mae"] == pytest.approx(3.5 / 4) and list(final["big"]) == [6.0, 2.0]
    assert final["loss"] == pytest.approx((0.25 + 0 + 4 + 1) / 4)


def test_the_same_metric_runs_outside_the_model_with_a_sample_weight() -> None:
    mae = mean_metric("mae", lambda y_true, y_pred: jnp.abs(y_pred - y_true))
    state = mae.update(mae.init(), jnp.array([1.0, 2.0]), jnp.array([2.0, 2.0]), sample_weight=jnp.array([3.0, 1.0]))
    assert [float(s) for s in state] == [3.0, 4.0]


def test_metrics_must_be_kit_metrics_with_distinct_names_and_states_that_keep_their_shape() -> None:
    init, apply = _linear(1)
    with pytest.raises(TypeError, match=r"backend_kit\.Metric"):
        fedmodel_jax.from_functions(init, apply, _mse, REGRESSION_SPEC, metrics=[lambda s, y, p: s])  # type: ignore[list-item]
    m = mean_metric("m", lambda y_true, y_pred: y_pred[:, 0])
    with pytest.raises(ValueError, match="two metrics are named 'm'"):
        fedmodel_jax.from_functions(init, apply, _mse, REGRESSION_SPEC, metrics=[m, m])
    grows = Metric("grows", lambda: (jnp.zeros(()),), lambda state, y_true, y_pred, sample_weight=None: (y_pred,))
    model = fedmodel_jax.from_functions(init, apply, _mse, REGRESSION_SPEC, metrics=[grows])
    with pytest.raises(ValueError, match=r"metric 'grows': state\[0\] changed from float32\[\] to float32\[2, 1\]"):
        model.forward_pass((np.zeros((2, 3), np.float32), np.zeros((2, 1), np.float32)))
    assert int(model.report_local_outputs()["num_examples"]) == 0
