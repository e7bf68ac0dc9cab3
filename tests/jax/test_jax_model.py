"""The JAX model wrapper: names and order, compilation, randomness, specs, frozen params and state."""

from __future__ import annotations

from typing import Any

import fedmodel_jax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fedmodel_jax import models

import fedmodel

SPEC = (fedmodel.TensorSpec((None, 4), "float32", "x"), fedmodel.TensorSpec((None,), "int64", "y"))


def _batch(size: int, seed: int = 0, features: int = 4, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, features)).astype(np.float32), rng.integers(0, classes, size)


def _init(rng: Any, x: Any) -> tuple[models.Dense, ...]:
    return (models.Dense(jax.random.normal(rng, (x.shape[1], 3)), jnp.zeros(3)),)


def _counting_apply(calls: list[tuple[tuple[int, ...], bool]]) -> Any:
    """``mlp_apply`` that records each trace (a jitted function runs its Python body once per compilation)."""

    def apply(params: Any, state: Any, x: Any, training: bool, rng: Any) -> tuple[Any, Any]:
        calls.append((tuple(x.shape), training))
        return models.mlp_apply(params, state, x, training, rng)

    return apply


def test_x64_stays_off() -> None:
    assert not jax.config.jax_enable_x64


def test_mlp_variables_are_named_by_key_path_layer_by_layer_kernel_then_bias() -> None:
    model = models.mlp(num_features=5, hidden=(4,), num_classes=3)
    names = [v.name for v in model.trainable_variables]
    assert names == ["params/0/kernel", "params/0/bias", "params/1/kernel", "params/1/bias"]
    assert [v.shape for v in model.trainable_variables] == [(5, 4), (4,), (4, 3), (3,)]
    assert [v.name for v in model.local_variables] == ["metrics/correct", "metrics/count", "metrics/loss_sum"]
    assert model.non_trainable_variables == ()
    assert fedmodel.get_weights(model).names == tuple(names)


def test_frozen_prefix_makes_the_first_layer_non_trainable_and_training_never_moves_it() -> None:
    model = models.frozen_mlp(num_features=4, hidden=(5,), num_classes=3)
    assert [v.name for v in model.non_trainable_variables] == ["params/0/kernel", "params/0/bias"]
    assert [v.name for v in model.trainable_variables] == ["params/1/kernel", "params/1/bias"]
    before = fedmodel.get_weights(model)
    backend = fedmodel.backend_for(model)
    optimizer = backend.make_optimizer(model, fedmodel.SGD(learning_rate=0.5))
    for seed in range(3):
        backend.train_step(model, _batch(8, seed), optimizer)
    after = fedmodel.get_weights(model)
    for a, b in zip(before.non_trainable, after.non_trainable, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(before.trainable, after.trainable, strict=True))


def test_frozen_accepts_a_predicate_on_names() -> None:
    model = fedmodel_jax.from_functions(
        _init, models.mlp_apply, models.cross_entropy, SPEC, frozen=lambda name: name.endswith("bias")
    )
    assert [v.name for v in model.trainable_variables] == ["params/0/kernel"]
    assert [v.name for v in model.non_trainable_variables] == ["params/0/bias"]


def test_forward_and_train_step_compile_once_per_input_shape() -> None:
    calls: list[tuple[tuple[int, ...], bool]] = []
    model = fedmodel_jax.from_functions(_init, _counting_apply(calls), models.cross_entropy, SPEC)
    backend = fedmodel.backend_for(model)
    optimizer = backend.make_optimizer(model, fedmodel.SGD(learning_rate=0.1))
    for seed in range(3):
        model.forward_pass(_batch(8, seed), training=False)
        model.forward_pass(_batch(8, seed), training=True)
        backend.train_step(model, _batch(8, seed), optimizer)
    assert calls == [((8, 4), False), ((8, 4), True), ((8, 4), True)]

    model.forward_pass(_batch(5), training=False)
    model.forward_pass(backend.to_native(model, _batch(8)), training=False)  # jax arrays, same shape: no new trace
    assert calls[3:] == [((5, 4), False)]


def test_models_of_equal_structure_share_compiled_code_across_rounds() -> None:
    calls: list[tuple[tuple[int, ...], bool]] = []
    apply = _counting_apply(calls)
    spec = fedmodel.SGD(learning_rate=0.1, momentum=0.9)
    for client in range(3):  # a fresh model and a fresh optimizer per client, as in a federated round
        model = fedmodel_jax.from_functions(_init, apply, models.cross_entropy, SPEC, seed=client)
        backend = fedmodel.backend_for(model)
        backend.train_step(model, _batch(8, client), backend.make_optimizer(model, spec))
        model.forward_pass(_batch(8, client), training=False)
    assert calls == [((8, 4), True), ((8, 4), False)]


def test_evaluation_is_deterministic_and_does_not_advance_the_dropout_key() -> None:
    model = models.bn_mlp(num_features=4, hidden=8, num_classes=3, dropout=0.5)
    x, _ = _batch(16)
    first = np.asarray(model.predict_on_batch(x))
    model.forward_pass(_batch(16), training=False)
    np.testing.assert_array_equal(np.asarray(model.predict_on_batch(x)), first)


def test_training_randomness_is_fresh_per_call_and_reproducible_from_the_seed() -> None:
    def run(seed: int) -> list[np.ndarray]:
        model = models.bn_mlp(num_features=4, hidden=8, num_classes=3, dropout=0.5, seed=seed)
        x, _ = _batch(16)
        return [np.asarray(model.predict_on_batch(x, training=True)) for _ in range(2)]

    a, b, other = run(0), run(0), run(1)
    assert not np.array_equal(a[0], a[1])  # the key advances between training calls
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(a[0], other[0])


def test_batch_statistics_move_in_training_only_and_predict_never_touches_metrics() -> None:
    model = models.bn_mlp(num_features=4, hidden=8, num_classes=3)
    assert [v.name for v in model.non_trainable_variables] == [
        "batch_stats/BatchNorm_0/mean",
        "batch_stats/BatchNorm_0/var",
    ]
    stats = fedmodel.get_weights(model).non_trainable
    model.forward_pass(_batch(16), training=False)
    model.predict_on_batch(_batch(16)[0], training=False)
    for a, b in zip(stats, fedmodel.get_weights(model).non_trainable, strict=True):
        np.testing.assert_array_equal(a, b)
    metrics = [np.asarray(v.value) for v in model.local_variables]

    model.predict_on_batch(_batch(16, seed=1)[0] + 3.0, training=True)

    assert all(not np.array_equal(a, b) for a, b in zip(stats, fedmodel.get_weights(model).non_trainable, strict=True))
    for a, v in zip(metrics, model.local_variables, strict=True):
        np.testing.assert_array_equal(a, np.asarray(v.value))


def test_plain_state_is_threaded_through_apply_in_training_only() -> None:
    def apply(params: Any, state: Any, x: Any, training: bool, rng: Any) -> tuple[Any, Any]:
        logits, _ = models.mlp_apply(params, state, x, training, rng)
        return logits, ({"seen": state["seen"] + x.shape[0]} if training else state)

    model = fedmodel_jax.from_functions(
        _init, apply, models.cross_entropy, SPEC, state={"seen": jnp.zeros((), jnp.int32)}
    )
    assert [v.name for v in model.non_trainable_variables] == ["state/seen"]
    model.forward_pass(_batch(5), training=True)
    model.forward_pass(_batch(7), training=False)
    model.forward_pass(_batch(2), training=True)
    assert int(np.asarray(model.non_trainable_variables[0].value)) == 7


def test_incompatible_batch_raises_spec_error_naming_the_path_and_changes_nothing() -> None:
    model = models.mlp(num_features=4, hidden=(), num_classes=3)
    x, y = _batch(4)
    with pytest.raises(fedmodel.SpecError, match=r"'x'.*expected shape \(None, 4\), got \(4, 5\)"):
        model.forward_pass((np.zeros((4, 5), np.float32), y))
    with pytest.raises(fedmodel.SpecError, match=r"'y'.*expected dtype int64, got int32"):
        model.forward_pass((x, y.astype(np.int32)))  # numpy int32 is not the spec's int64
    with pytest.raises(fedmodel.SpecError, match=r"'x'.*expected dtype float32, got float64"):
        model.predict_on_batch(x.astype(np.float64))
    assert int(model.report_local_outputs()["num_examples"]) == 0


def test_a_jax_batch_is_accepted_with_int32_labels_while_x64_is_off() -> None:
    model = models.mlp(num_features=4, hidden=(), num_classes=3)
    x, y = _batch(4)
    native = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    assert isinstance(native["y"], jax.Array) and native["y"].dtype == jnp.int32
    out = model.forward_pass(native, training=False)
    assert out.num_examples == 4
    with pytest.raises(fedmodel.SpecError, match="int64"):  # a numpy int32 batch of that signature still fails
        model.forward_pass({"x": x, "y": y.astype(np.int32)}, training=False)
    np.testing.assert_allclose(np.asarray(out.loss), np.asarray(model.forward_pass((x, y), training=False).loss))


def test_reset_metrics_restores_zeros_and_report_is_a_numpy_copy() -> None:
    model = models.mlp(num_features=4, hidden=(), num_classes=3)
    model.forward_pass(_batch(6))
    report = model.report_local_outputs()
    assert int(report["num_examples"]) == 6 and isinstance(report["loss"][0], np.ndarray)
    model.reset_metrics()
    assert int(report["num_examples"]) == 6  # the earlier report is unaffected
    assert [int(np.asarray(v.value)) for v in model.local_variables] == [0, 0, 0]


def test_user_metrics_accumulate_in_local_variables_beside_the_standard_ones() -> None:
    batches = fedmodel_jax.sum_metric("batches", lambda y_true, y_pred: 1.0)
    model = fedmodel_jax.from_functions(_init, models.mlp_apply, models.cross_entropy, SPEC, metrics=[batches])
    model.forward_pass(_batch(3))
    model.forward_pass(_batch(3))
    names = [v.name for v in model.local_variables]
    assert names == ["metrics/correct", "metrics/count", "metrics/loss_sum", "metrics/batches/0"]
    report = model.report_local_outputs()
    assert report["batches"] == (np.float32(2.0),) and int(report["num_examples"]) == 6
    assert model.federated_output_computation([report] * 2)["batches"] == 4.0


def test_flax_frozen_prefix_and_training_kwarg() -> None:
    nn = pytest.importorskip("flax.linen")
    module = nn.Sequential([nn.Dense(5), nn.relu, nn.Dense(3)])
    model = fedmodel_jax.from_flax(module, models.cross_entropy, SPEC, frozen="params/layers_0", training_kwarg=None)
    assert [v.name for v in model.trainable_variables] == ["params/layers_2/bias", "params/layers_2/kernel"]
    assert [v.name for v in model.non_trainable_variables] == ["params/layers_0/bias", "params/layers_0/kernel"]
    assert np.asarray(model.predict_on_batch(_batch(2)[0])).shape == (2, 3)


def test_train_step_refuses_a_model_of_another_backend() -> None:
    from fedmodel.reference import SoftmaxRegression

    backend = fedmodel_jax.BACKEND
    model = models.mlp(num_features=4, hidden=(), num_classes=3)
    with pytest.raises(TypeError, match="JaxModel"):
        backend.train_step(SoftmaxRegression(4, 3), _batch(2), backend.make_optimizer(model, fedmodel.SGD(0.1)))


def test_cnn_bn_has_two_batch_norms_whose_statistics_train_and_whose_eval_is_deterministic() -> None:
    model = models.cnn_bn(num_features=16, num_classes=3, channels=(2, 3))
    assert [v.name for v in model.non_trainable_variables] == [
        "batch_stats/BatchNorm_0/mean",
        "batch_stats/BatchNorm_0/var",
        "batch_stats/BatchNorm_1/mean",
        "batch_stats/BatchNorm_1/var",
    ]
    assert [v.shape for v in model.trainable_variables if v.name.endswith("kernel")] == [
        (3, 3, 1, 2),
        (3, 3, 2, 3),
        (3, 3),
    ]
    before = fedmodel.get_weights(model)
    backend = fedmodel.backend_for(model)
    x, y = _batch(8, features=16)
    out = backend.train_step(model, (x, y), backend.make_optimizer(model, fedmodel.SGD(learning_rate=0.1)))
    assert np.asarray(out.predictions).shape == (8, 3) and np.isfinite(float(out.loss))
    after = fedmodel.get_weights(model)
    assert all(not np.array_equal(a, b) for a, b in zip(before.non_trainable, after.non_trainable, strict=True))
    np.testing.assert_array_equal(np.asarray(model.predict_on_batch(x)), np.asarray(model.predict_on_batch(x)))
    with pytest.raises(ValueError, match="square"):
        models.cnn_bn(num_features=10)
