"""Keras metrics are reported unfinalized and finalized after aggregation: exact across clients."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import fedmodel

tf = pytest.importorskip("tensorflow")
fmtf = pytest.importorskip("fedmodel_tensorflow")
keras = fmtf._compat.keras

SPEC = (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None,), "int64"))


class LabelZeroRate(keras.metrics.Metric):
    """A user metric that is not a Mean: the fraction of labels equal to 0 (finalized by Keras)."""

    def __init__(self, name: str = "label_zero_rate", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.zeros = self.add_variable(shape=(), initializer="zeros", name="zeros")
        self.seen = self.add_variable(shape=(), initializer="zeros", name="seen")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        self.zeros.assign_add(tf.reduce_sum(tf.cast(tf.equal(y_true, 0), self.dtype)))
        self.seen.assign_add(tf.cast(tf.size(y_true), self.dtype))

    def result(self) -> Any:
        return self.zeros / self.seen


class LabelSum(keras.metrics.Sum):
    """A user ``Sum`` metric over the labels (a ``Sum`` finalizes as its total)."""

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        super().update_state(tf.cast(y_true, self.dtype))


def make_model(seed: int = 0) -> fmtf.KerasModel:
    keras_model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=seed))]
    )
    metrics = [
        keras.metrics.SparseCategoricalAccuracy,  # constructors: a fresh metric per model
        lambda: LabelSum(name="label_sum"),
        LabelZeroRate,
    ]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return fmtf.from_keras_model(keras_model, loss, SPEC, metrics=metrics)


def batches(rng: np.random.Generator, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n).astype(np.int64)) for n in sizes]


def test_two_clients_aggregate_to_exactly_the_metrics_of_one_client_with_all_batches() -> None:
    rng = np.random.default_rng(0)
    data = batches(rng, [7, 3, 5])
    alice, bob, everyone = make_model(), make_model(), make_model()
    alice.forward_pass(data[0], training=False)
    for batch in data[1:]:
        bob.forward_pass(batch, training=False)
    for batch in data:
        everyone.forward_pass(batch, training=False)
    aggregate = alice.federated_output_computation
    federated = aggregate([alice.report_local_outputs(), bob.report_local_outputs()])
    central = aggregate([everyone.report_local_outputs()])
    assert federated == pytest.approx(central, rel=1e-12)

    x, y = np.concatenate([b[0] for b in data]), np.concatenate([b[1] for b in data])
    correct = int(np.sum(np.asarray(everyone.predict_on_batch(x)).argmax(axis=1) == y))
    assert Fraction(federated["accuracy"]).limit_denominator(100) == Fraction(correct, 15)
    assert federated["sparse_categorical_accuracy"] == pytest.approx(correct / 15, abs=1e-7)
    assert federated["label_sum"] == float(y.sum())
    assert federated["label_zero_rate"] == pytest.approx(np.mean(y == 0), abs=1e-7)
    assert federated["num_examples"] == 15
    # a mean of the two clients' accuracies would differ: 7 and 8 examples are weighted by their counts
    assert set(federated) == {
        "loss", "accuracy", "num_examples", "sparse_categorical_accuracy", "label_sum", "label_zero_rate"
    }  # fmt: skip


def test_reports_are_unfinalized_and_pure() -> None:
    model = make_model()
    model.forward_pass(batches(np.random.default_rng(1), [4])[0], training=False)
    first, second = model.report_local_outputs(), model.report_local_outputs()
    assert first.keys() == second.keys()
    total, count = first["sparse_categorical_accuracy"]
    assert float(count) == 4.0  # Keras' (total, count) state, not the ratio
    assert first["accuracy"][1] == 4
    assert float(total) == float(first["accuracy"][0])  # both count the correct predictions
    for name in first:
        np.testing.assert_equal(first[name], second[name])


def test_reset_metrics_returns_every_local_variable_to_zero() -> None:
    model = make_model()
    initial = [np.array(v.numpy()) for v in model.local_variables]
    model.forward_pass(batches(np.random.default_rng(2), [5])[0], training=False)
    assert any(np.any(v.numpy() != 0) for v in model.local_variables)
    model.reset_metrics()
    for var, value in zip(model.local_variables, initial, strict=True):
        np.testing.assert_array_equal(var.numpy(), value)


def test_two_models_from_one_factory_share_no_metric_variable() -> None:
    a, b = make_model(), make_model()
    assert not {id(v) for v in a.local_variables} & {id(v) for v in b.local_variables}


def test_a_metric_named_like_a_standard_report_key_is_refused() -> None:
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(ValueError, match=r"named 'accuracy'.*name='keras_accuracy'"):
        fmtf.from_keras_model(
            keras_model, loss, SPEC, metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        )


def test_a_metric_that_is_not_a_keras_metric_is_refused() -> None:
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(TypeError, match=r"metrics\[0\] is str"):
        fmtf.from_keras_model(keras_model, loss, SPEC, metrics=["accuracy"])


def test_regression_outputs_report_no_accuracy_unless_asked() -> None:
    spec = (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None, 1), "float32"))
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model = fmtf.from_keras_model(keras_model, keras.losses.MeanSquaredError(), spec)
    model.forward_pass((np.zeros((2, 4), np.float32), np.ones((2, 1), np.float32)), training=False)
    report = model.report_local_outputs()
    assert set(report) == {"loss", "num_examples"}
    assert model.federated_output_computation([report]) == {"loss": pytest.approx(1.0), "num_examples": 2}


def test_one_hot_labels_are_counted_for_accuracy() -> None:
    spec = (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None, 3), "float32"))
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, bias_initializer="zeros")])
    model = fmtf.from_keras_model(keras_model, keras.losses.CategoricalCrossentropy(from_logits=True), spec)
    x = np.zeros((2, 4), np.float32)  # logits all zero: argmax is class 0
    model.forward_pass((x, np.eye(3, dtype=np.float32)[[0, 2]]), training=False)
    assert model.report_local_outputs()["accuracy"] == (1, 2)


def test_integer_labels_of_shape_batch_by_one_are_counted_for_accuracy() -> None:
    spec = (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None, 1), "int64"))
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, bias_initializer="zeros")])
    model = fmtf.from_keras_model(keras_model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), spec)
    model.forward_pass((np.zeros((3, 4), np.float32), np.array([[0], [2], [0]])), training=False)
    assert model.report_local_outputs()["accuracy"] == (2, 3)  # zero logits predict class 0


def test_a_metric_that_cannot_take_labels_and_predictions_is_refused_at_construction() -> None:
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(ValueError, match=r"metric 'mean' cannot be updated as update\(state, y_true, y_pred\)"):
        fmtf.from_keras_model(keras_model, loss, SPEC, metrics=[keras.metrics.Mean])


def test_kit_metrics_and_keras_metrics_together_aggregate_exactly() -> None:
    abs_error = fmtf.mean_metric("mean_top_logit", lambda y, p: tf.reduce_max(p, axis=-1))
    per_class = fmtf.sum_metric("label_counts", lambda y, p: tf.math.bincount(y, minlength=3, maxlength=3), shape=(3,))
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model = fmtf.from_keras_model(
        keras_model,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        SPEC,
        metrics=[abs_error, per_class, keras.metrics.SparseCategoricalAccuracy],
    )
    data = batches(np.random.default_rng(5), [4, 6])
    for batch in data:
        model.forward_pass(batch, training=False)
    report = model.report_local_outputs()
    assert [type(v) for v in report["label_counts"]] == [np.ndarray]
    final = model.federated_output_computation([report])
    x, y = np.concatenate([b[0] for b in data]), np.concatenate([b[1] for b in data])
    logits = np.asarray(model.predict_on_batch(x))
    assert final["mean_top_logit"] == pytest.approx(float(logits.max(axis=1).mean()), rel=1e-6)
    np.testing.assert_array_equal(final["label_counts"], np.bincount(y, minlength=3))
    assert final["sparse_categorical_accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == y), abs=1e-7)
    assert fedmodel.get_weights(model).names == ("dense/kernel", "dense/bias")
    local = fmtf.BACKEND.variable_names(model, model.local_variables)
    assert local[3:] == [
        "metrics/mean_top_logit/0",
        "metrics/mean_top_logit/1",
        "metrics/label_counts/0",
        "metrics/sparse_categorical_accuracy/total",
        "metrics/sparse_categorical_accuracy/count",
    ]


def test_a_keras_metric_object_is_never_changed_by_the_model() -> None:
    metric = keras.metrics.SparseCategoricalAccuracy()
    model = fmtf.from_keras_model(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        SPEC,
        metrics=[metric],
    )
    model.forward_pass(batches(np.random.default_rng(6), [5])[0], training=False)
    assert [float(v.numpy()) for v in metric.variables] == [0.0, 0.0]
    assert float(model.report_local_outputs()["sparse_categorical_accuracy"][1]) == 5.0


def test_the_aggregator_refuses_a_report_whose_standard_metrics_disagree() -> None:
    model = make_model()
    model.forward_pass(batches(np.random.default_rng(7), [4])[0], training=False)
    report = model.report_local_outputs()
    report["num_examples"] = np.int64(5)  # 4 examples in loss and accuracy
    with pytest.raises(fedmodel.AggregationError, match="disagree on the number of examples"):
        model.federated_output_computation([report])


def test_a_kit_metric_whose_update_changes_the_state_dtype_is_refused_at_construction() -> None:
    bad = fmtf.Metric("bad", lambda: (tf.zeros((), tf.int64),), lambda s, y, p, sample_weight=None: (s[0] + 0.5,))
    with pytest.raises(ValueError, match="'bad'"):
        fmtf.from_keras_model(
            keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            SPEC,
            metrics=[bad],
        )
