"""from_keras_model: the contract's clauses, tracing, eager mode, names and construction errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fedmodel

tf = pytest.importorskip("tensorflow")
fmtf = pytest.importorskip("fedmodel_tensorflow")
keras = fmtf._compat.keras

SPEC = (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None,), "int64"))
SCCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def dense_model(**kwargs: Any) -> fmtf.KerasModel:
    return fmtf.from_keras_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]), SCCE, SPEC, **kwargs)


def values(variables: Any) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# -- variables and names --------------------------------------------------------------------------


def test_variables_are_the_tf_variables_behind_the_keras_weights() -> None:
    model = fmtf.models.cnn_bn()
    keras_model = model.keras_model
    assert [id(v) for v in model.trainable_variables] == [id(v.value) for v in keras_model.trainable_weights]
    assert [id(v) for v in model.non_trainable_variables] == [id(v.value) for v in keras_model.non_trainable_weights]
    assert all(isinstance(v, tf.Variable) for v in model.trainable_variables)
    groups = [*model.trainable_variables, *model.non_trainable_variables, *model.local_variables]
    assert len({id(v) for v in groups}) == len(groups)


def test_dropout_seed_state_is_in_no_group() -> None:
    model = fmtf.models.cnn_bn()
    names = fmtf.BACKEND.variable_names(model, [*model.non_trainable_variables, *model.local_variables])
    assert not [n for n in names if "seed" in n]


def test_names_are_the_same_for_two_instances_of_one_factory() -> None:
    first, second = fmtf.models.cnn_bn(seed=1), fmtf.models.cnn_bn(seed=1)
    assert first.keras_model.name != second.keras_model.name  # Keras numbers models per process...
    assert fedmodel.get_weights(first).names == fedmodel.get_weights(second).names  # ...fedmodel's names don't
    assert fedmodel.get_weights(first).names == (
        "conv2d/kernel",  # no convolution bias before batch norm (as in the other backends)
        "batch_normalization/gamma",
        "batch_normalization/beta",
        "conv2d_1/kernel",
        "batch_normalization_1/gamma",
        "batch_normalization_1/beta",
        "dense/kernel",
        "dense/bias",
        "batch_normalization/moving_mean",
        "batch_normalization/moving_variance",
        "batch_normalization_1/moving_mean",
        "batch_normalization_1/moving_variance",
    )


def test_auto_named_layers_are_renumbered_in_layer_order() -> None:
    keras.layers.Dense(1)  # moves Keras' global counter of "dense" names
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.Dense(3)])
    model = fmtf.from_keras_model(keras_model, SCCE, SPEC)
    assert fedmodel.get_weights(model).names == ("dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias")


def test_frozen_layer_is_non_trainable_and_keeps_its_name() -> None:
    weights = fedmodel.get_weights(fmtf.models.frozen_mlp(hidden=(8,)))
    assert weights.trainable_names == ("dense_1/kernel", "dense_1/bias")
    assert weights.non_trainable_names == ("dense/kernel", "dense/bias")
    assert [a.shape for a in weights.non_trainable] == [(64, 8), (8,)]


def test_one_seed_gives_the_same_weights_and_two_seeds_different_ones() -> None:
    a, b, c = (fedmodel.get_weights(fmtf.models.mlp(seed=s)) for s in (3, 3, 4))
    assert_same(list(a.arrays), list(b.arrays))
    assert not np.array_equal(a.trainable[0], c.trainable[0])


def test_builtin_mlp_follows_the_shared_conventions() -> None:
    model = fmtf.models.mlp(num_features=6, hidden=(5, 4), num_classes=3)
    assert model.input_spec == (
        fedmodel.TensorSpec((None, 6), "float32", "x"),
        fedmodel.TensorSpec((None,), "int64", "y", minimum=0, maximum=2),
    )
    assert [tuple(v.shape) for v in model.trainable_variables] == [(6, 5), (5,), (5, 4), (4,), (4, 3), (3,)]
    assert model.non_trainable_variables == ()


# -- forward_pass and predict_on_batch ------------------------------------------------------------


def test_forward_pass_never_changes_trainable_and_eval_mode_changes_no_weight(batch: Any) -> None:
    model = fmtf.models.cnn_bn()
    trainable, non_trainable = values(model.trainable_variables), values(model.non_trainable_variables)
    model.forward_pass(batch, training=False)
    assert_same(values(model.non_trainable_variables), non_trainable)
    model.forward_pass(batch, training=True)
    assert_same(values(model.trainable_variables), trainable)
    moved = [
        not np.array_equal(a, b) for a, b in zip(values(model.non_trainable_variables), non_trainable, strict=True)
    ]
    assert all(moved) and len(moved) == 4  # batch-norm moving means and variances follow the batch in training


def test_predict_on_batch_in_eval_mode_changes_nothing_at_all(batch: Any) -> None:
    model = fmtf.models.cnn_bn()
    everything = [*model.trainable_variables, *model.non_trainable_variables, *model.local_variables]
    before = values(everything)
    predictions = model.predict_on_batch(batch[0])
    assert tuple(predictions.shape) == (6, 10)
    assert_same(values(everything), before)


def test_predict_on_batch_in_training_mode_moves_statistics_but_never_metrics(batch: Any) -> None:
    model = fmtf.models.cnn_bn()
    local = values(model.local_variables)
    stats = values(model.non_trainable_variables)
    model.predict_on_batch(batch[0], training=True)
    assert_same(values(model.local_variables), local)
    assert not np.array_equal(values(model.non_trainable_variables)[0], stats[0])


def test_eval_mode_is_deterministic_and_dropout_makes_training_mode_random(batch: Any) -> None:
    model = fmtf.models.cnn_bn(dropout=0.5)
    first, second = (np.asarray(model.predict_on_batch(batch[0])) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    a, b = (np.asarray(model.forward_pass(batch, training=True).predictions) for _ in range(2))
    assert not np.array_equal(a, b)


def test_batch_as_mapping_or_pair_and_numpy_or_tensors_give_the_same_output(batch: Any) -> None:
    model = dense_model()
    x, y = batch[0][:, :4].copy(), batch[1] % 3
    outs = [
        model.forward_pass((x, y), training=False),
        model.forward_pass({"x": x, "y": y}, training=False),
        model.forward_pass((tf.constant(x), tf.constant(y)), training=False),
    ]
    for out in outs:
        assert out.num_examples == 6
        assert float(out.loss) == float(outs[0].loss)


def test_a_wrong_batch_raises_spec_error_naming_the_path_and_changes_nothing() -> None:
    model = dense_model()
    before = values([*model.trainable_variables, *model.local_variables])
    with pytest.raises(fedmodel.SpecError, match=r"'x'.*expected shape \(None, 4\), got \(2, 5\)"):
        model.forward_pass((np.zeros((2, 5), np.float32), np.zeros(2, np.int64)))
    with pytest.raises(fedmodel.SpecError, match=r"'y'.*expected dtype int64, got int32"):
        model.forward_pass((np.zeros((2, 4), np.float32), np.zeros(2, np.int32)))
    with pytest.raises(fedmodel.SpecError, match=r"'x'.*expected dtype float32, got float64"):
        model.predict_on_batch(np.zeros((2, 4), np.float64))
    assert_same(values([*model.trainable_variables, *model.local_variables]), before)


def test_regularization_losses_are_part_of_the_loss() -> None:
    layer = keras.layers.Dense(3, kernel_initializer="ones", kernel_regularizer=keras.regularizers.L2(0.5))
    model = fmtf.from_keras_model(keras.Sequential([keras.Input((4,)), layer]), SCCE, SPEC)
    out = model.forward_pass((np.zeros((2, 4), np.float32), np.array([0, 1])), training=False)
    assert float(out.loss) == pytest.approx(np.log(3) + 0.5 * 12, rel=1e-6)  # uniform logits + 0.5 * Σ 1^2


# -- tracing and eager mode -----------------------------------------------------------------------


def test_each_function_is_traced_once_for_many_calls_and_batch_sizes(make_batch: Callable[..., Any]) -> None:
    model = fmtf.models.mlp(hidden=(8,))
    rng = np.random.default_rng(0)
    optimizer = fmtf.BACKEND.make_optimizer(model, fedmodel.SGD(0.1))
    for size in [4, 4, 4, 1, 7, 32, 4, 2]:
        x, y = make_batch(size, rng)
        model.forward_pass((x, y), training=True)
        model.forward_pass({"x": tf.constant(x), "y": y}, training=False)
        model.predict_on_batch(x)
        model.predict_on_batch(x, training=True)
        fmtf.BACKEND.train_step(model, (x, y), optimizer)
    for _ in range(3):  # a fresh optimizer each round (FedAvg) reuses the traced step
        optimizer = fmtf.BACKEND.make_optimizer(model, fedmodel.SGD(0.1))
        fmtf.BACKEND.train_step(model, make_batch(3, rng), optimizer)
    assert model.tracing_counts() == {
        "forward_pass(training=True)": 1,
        "forward_pass(training=False)": 1,
        "predict_on_batch(training=True)": 1,
        "predict_on_batch(training=False)": 1,
        "train_step": 1,
    }


def test_eager_mode_gives_the_graph_mode_numbers_and_traces_nothing(batch: Any) -> None:
    graph, eager = fmtf.models.mlp(seed=5), fmtf.models.mlp(seed=5, run_eagerly=True)
    for model in (graph, eager):
        opt = fmtf.BACKEND.make_optimizer(model, fedmodel.SGD(0.1, momentum=0.9))
        for _ in range(2):
            fmtf.BACKEND.train_step(model, batch, opt)
    g_out, e_out = graph.forward_pass(batch, training=False), eager.forward_pass(batch, training=False)
    assert float(e_out.loss) == pytest.approx(float(g_out.loss), rel=1e-6)
    for a, b in zip(fedmodel.get_weights(graph).arrays, fedmodel.get_weights(eager).arrays, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert set(eager.tracing_counts().values()) == {0}


# -- construction errors --------------------------------------------------------------------------


def test_a_compiled_model_is_refused_saying_what_would_be_ignored() -> None:
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    keras_model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"compiled.*ignore its compiled loss, metrics and optimizer"):
        fmtf.from_keras_model(keras_model, SCCE, SPEC)


def test_a_loss_that_does_not_fit_the_output_is_refused() -> None:
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"the loss .* does not fit the model.*\(2, 3\)"):
        fmtf.from_keras_model(keras_model, keras.losses.CategoricalCrossentropy(), SPEC)


def test_a_loss_returning_a_matrix_is_refused() -> None:
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"scalar or one value per example.*\(2, 3\)"):
        fmtf.from_keras_model(keras_model, lambda y, p: p * 2.0, SPEC)


@pytest.mark.parametrize(
    ("input_spec", "message"),
    [
        (fedmodel.TensorSpec((None, 4), "float32"), "a pair"),
        ((np.zeros((1, 4)), fedmodel.TensorSpec((None,), "int64")), r"input_spec at '0' is ndarray"),
        ({"x": "float32", "y": fedmodel.TensorSpec((None,), "int64")}, r"input_spec at 'x' is str"),
    ],
    ids=["not-a-pair", "array-leaf", "string-leaf"],
)
def test_an_input_spec_that_is_not_a_spec_is_refused(input_spec: Any, message: str) -> None:
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(TypeError, match=message):
        fmtf.from_keras_model(keras_model, SCCE, input_spec)


def test_an_input_spec_that_does_not_match_the_model_inputs_is_refused() -> None:
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    spec = (fedmodel.TensorSpec((None, 5), "float32"), fedmodel.TensorSpec((None,), "int64"))
    with pytest.raises(fedmodel.SpecError, match=r"\(None, 5\).*model's input.*\(None, 4\)"):
        fmtf.from_keras_model(keras_model, SCCE, spec)


def test_an_unbuilt_model_is_built_from_the_spec_and_tf_specs_are_accepted() -> None:
    keras_model = keras.Sequential([keras.layers.Dense(3)])
    assert not keras_model.built
    spec = {"x": tf.TensorSpec((None, 4), tf.float32), "y": tf.TensorSpec((None,), tf.int64)}
    model = fmtf.from_keras_model(keras_model, SCCE, spec)
    assert [tuple(v.shape) for v in model.trainable_variables] == [(4, 3), (3,)]
    assert model.input_spec == {"x": SPEC[0], "y": SPEC[1]}


def test_an_unbuilt_model_that_cannot_take_the_spec_is_refused() -> None:
    keras_model = keras.Sequential([keras.layers.Conv2D(2, 3)])
    with pytest.raises(fedmodel.SpecError, match="cannot be called on a batch matching input_spec"):
        fmtf.from_keras_model(keras_model, SCCE, SPEC)


def test_not_a_keras_model_is_refused() -> None:
    with pytest.raises(TypeError, match=r"keras\.Model"):
        fmtf.from_keras_model(object(), SCCE, SPEC)  # type: ignore[arg-type]


def test_a_functional_model_with_named_inputs_takes_nested_x() -> None:
    inputs = {"a": keras.Input((2,), name="a"), "b": keras.Input((3,), name="b")}
    joined = keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    keras_model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(joined))
    spec = {
        "x": {"a": fedmodel.TensorSpec((None, 2), "float32"), "b": fedmodel.TensorSpec((None, 3), "float32")},
        "y": fedmodel.TensorSpec((None,), "int64"),
    }
    model = fmtf.from_keras_model(keras_model, SCCE, spec)
    x = {"a": np.ones((5, 2), np.float32), "b": np.zeros((5, 3), np.float32)}
    out = model.forward_pass({"x": x, "y": np.arange(5) % 4}, training=False)
    assert out.num_examples == 5
    assert tuple(model.predict_on_batch(x).shape) == (5, 4)
    assert fedmodel.get_weights(model).names == ("logits/kernel", "logits/bias")
    with pytest.raises(fedmodel.SpecError, match="'x/b'"):
        model.predict_on_batch({"a": x["a"], "b": np.zeros((5, 2), np.float32)})


def test_canonical_names_drop_the_model_scope_renumber_layers_and_stay_unique() -> None:
    from fedmodel_tensorflow.model import canonical_names

    paths = ["functional_9/dense_7/kernel", "dense_8/kernel", "encoder/dense_7/bias", "w", "w"]
    assert canonical_names(paths, "functional_9") == [
        "dense/kernel",
        "dense_1/kernel",
        "encoder/dense/bias",
        "w",
        "w#1",
    ]
