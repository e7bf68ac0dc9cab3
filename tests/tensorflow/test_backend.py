"""The TensorFlow Backend: weights in and out, batches, optimizers and the train step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fedmodel

tf = pytest.importorskip("tensorflow")
fmtf = pytest.importorskip("fedmodel_tensorflow")
BACKEND = fmtf.BACKEND


def test_backend_is_found_by_the_model_hook_and_by_its_variables() -> None:
    model = fmtf.models.mlp(hidden=(4,))
    assert fedmodel.backend_for(model) is BACKEND
    assert isinstance(BACKEND, fedmodel.Backend)

    class Bare:  # a third-party model over tf.Variables without the hook
        trainable_variables = (tf.Variable(np.zeros(2, np.float32)),)

    assert fedmodel.backend_for(Bare()) is BACKEND


def test_round_trip_between_two_instances_is_bit_identical() -> None:
    source, target = fmtf.models.cnn_bn(seed=1), fmtf.models.cnn_bn(seed=2)
    rng = np.random.default_rng(0)
    weights = fedmodel.get_weights(source)
    noisy = weights.with_arrays([(a + rng.standard_normal(a.shape)).astype(a.dtype) for a in weights.arrays])
    fedmodel.assign_weights(target, noisy)
    back = fedmodel.get_weights(target)
    assert back.names == noisy.names
    for got, want in zip(back.arrays, noisy.arrays, strict=True):
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()


def test_get_weights_returns_independent_copies() -> None:
    model = fmtf.models.mlp(hidden=(4,))
    weights = fedmodel.get_weights(model)
    weights.trainable[0][...] = 7.0
    assert not np.any(model.trainable_variables[0].numpy() == 7.0)


def test_copy_false_gives_read_only_snapshots_that_survive_later_writes() -> None:
    model = fmtf.models.mlp(hidden=(4,))
    view = fedmodel.get_weights(model, copy=False)
    kept = [a.copy() for a in view.arrays]
    assert not any(a.flags.writeable for a in view.arrays)
    fedmodel.assign_weights(model, view.with_arrays([np.ones_like(a) for a in view.arrays]))
    for snapshot, original in zip(view.arrays, kept, strict=True):
        np.testing.assert_array_equal(snapshot, original)  # TensorFlow copied the buffer on write
    assert np.all(model.trainable_variables[0].numpy() == 1.0)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda arrays: arrays[:-1],
        lambda arrays: [*arrays[:-1], np.zeros((11,), np.float32)],
        lambda arrays: [*arrays[:-1], arrays[-1].astype(np.float64)],
    ],
    ids=["one-missing", "last-wrong-shape", "last-wrong-dtype"],
)
def test_a_bad_assign_changes_nothing(corrupt: Callable[[list[np.ndarray]], list[np.ndarray]]) -> None:
    model = fmtf.models.mlp(hidden=(4,))
    before = fedmodel.get_weights(model)
    arrays = [np.full_like(a, 3.0) for a in before.trainable]
    bad = fedmodel.ModelWeights(tuple(corrupt(arrays)), (), before.trainable_names[: len(corrupt(arrays))])
    with pytest.raises(fedmodel.WeightsError):
        fedmodel.assign_weights(model, bad)
    for got, want in zip(fedmodel.get_weights(model).arrays, before.arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_assign_with_a_wrong_name_changes_nothing() -> None:
    model = fmtf.models.mlp(hidden=(4,))
    before = fedmodel.get_weights(model)
    renamed = fedmodel.ModelWeights(
        tuple(np.zeros_like(a) for a in before.trainable), (), ("dense/kernel", "dense/bias", "out/kernel", "out/bias")
    )
    with pytest.raises(fedmodel.WeightsError, match="'dense_1/kernel'"):
        fedmodel.assign_weights(model, renamed)
    np.testing.assert_array_equal(fedmodel.get_weights(model).trainable[0], before.trainable[0])


def test_to_native_converts_numpy_leaves_and_keeps_tensors(batch: Any) -> None:
    native = BACKEND.to_native(fmtf.models.mlp(), {"x": batch[0], "y": tf.constant(batch[1])})
    assert isinstance(native["x"], tf.Tensor)
    assert native["x"].dtype == tf.float32
    assert native["y"].dtype == tf.int64


def test_a_tf_data_dataset_and_numpy_batches_train_to_the_same_weights(make_batch: Callable[..., Any]) -> None:
    rng = np.random.default_rng(1)
    x, y = make_batch(20, rng)
    from_numpy, from_dataset = fmtf.models.mlp(hidden=(8,)), fmtf.models.mlp(hidden=(8,))
    numpy_batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 20, 8)]
    dataset = tf.data.Dataset.from_tensor_slices({"x": x, "y": y}).batch(8)
    a = fmtf.train_on_batches(from_numpy, numpy_batches, fedmodel.SGD(0.1))
    b = fmtf.train_on_batches(from_dataset, dataset, fedmodel.SGD(0.1))
    assert a["num_examples"] == b["num_examples"] == 20
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    for p, q in zip(fedmodel.get_weights(from_numpy).arrays, fedmodel.get_weights(from_dataset).arrays, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)


def test_train_step_changes_trainable_weights_and_reports_the_batch(batch: Any) -> None:
    model = fmtf.models.frozen_mlp(hidden=(8,))
    before = fedmodel.get_weights(model)
    out = BACKEND.train_step(model, batch, BACKEND.make_optimizer(model, fedmodel.SGD(0.5)))
    after = fedmodel.get_weights(model)
    assert out.num_examples == 6
    assert all(not np.array_equal(a, b) for a, b in zip(after.trainable, before.trainable, strict=True))
    for a, b in zip(after.non_trainable, before.non_trainable, strict=True):  # the frozen layer stays put
        np.testing.assert_array_equal(a, b)
    assert int(model.report_local_outputs()["num_examples"]) == 6


def test_a_new_optimizer_starts_fresh_and_the_replaced_one_refuses_to_step(batch: Any) -> None:
    model = fmtf.models.mlp(hidden=(4,))
    spec = fedmodel.SGD(0.1, momentum=0.9)
    start = fedmodel.get_weights(model)
    first = BACKEND.make_optimizer(model, spec)
    BACKEND.train_step(model, batch, first)
    one_step = fedmodel.get_weights(model)
    fedmodel.assign_weights(model, start)
    second = BACKEND.make_optimizer(model, spec)  # no momentum carried over from `first`
    BACKEND.train_step(model, batch, second)
    for a, b in zip(fedmodel.get_weights(model).arrays, one_step.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(fedmodel.BackendError, match="replaced"):
        BACKEND.train_step(model, batch, first)
    with pytest.raises(fedmodel.BackendError, match="another model"):
        BACKEND.train_step(fmtf.models.mlp(hidden=(4,)), batch, second)


def test_fedprox_pulls_toward_the_weights_at_optimizer_creation(batch: Any) -> None:
    mu, lr = 10.0, 0.01
    plain, prox = fmtf.models.mlp(hidden=(4,)), fmtf.models.mlp(hidden=(4,))
    anchor = fedmodel.get_weights(prox)
    opt_plain = BACKEND.make_optimizer(plain, fedmodel.SGD(lr))
    opt_prox = BACKEND.make_optimizer(prox, fedmodel.SGD(lr, proximal_mu=mu))
    for _ in range(2):
        BACKEND.train_step(plain, batch, opt_plain)
        BACKEND.train_step(prox, batch, opt_prox)
    dist = [
        sum(
            float(np.sum((w - a) ** 2))
            for w, a in zip(fedmodel.get_weights(m).trainable, anchor.trainable, strict=True)
        )
        for m in (plain, prox)
    ]
    assert dist[1] < dist[0]
    assert dist[1] > 0


def test_an_unknown_optimizer_spec_is_refused() -> None:
    with pytest.raises(TypeError, match="fedmodel optimizer spec"):
        BACKEND.make_optimizer(fmtf.models.mlp(hidden=(4,)), "sgd")


def test_variable_names_of_foreign_variables_fall_back_to_tf_names() -> None:
    variables = [tf.Variable(1.0, name="w"), tf.Variable(2.0, name="w")]
    assert BACKEND.variable_names(object(), variables) == ["w", "w#1"]


def test_assigned_arrays_are_not_aliased_by_the_model() -> None:
    model = fmtf.models.mlp(hidden=(4,))
    weights = fedmodel.get_weights(model).copy()
    fedmodel.assign_weights(model, weights)
    weights.trainable[0][...] = 5.0  # the caller reuses its buffer
    assert not np.any(model.trainable_variables[0].numpy() == 5.0)


def test_large_assigned_arrays_are_copied_and_training_still_updates_them(batch: Any) -> None:
    model = fmtf.models.mlp(hidden=(512,))  # 128 KiB kernel: aligned buffers could be adopted without a copy
    weights = fedmodel.get_weights(model).copy()
    fedmodel.assign_weights(model, weights)
    snapshot = weights.trainable[0].copy()
    weights.trainable[0][...] = 5.0
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), snapshot)
    BACKEND.train_step(model, batch, BACKEND.make_optimizer(model, fedmodel.SGD(1.0)))
    assert not np.array_equal(model.trainable_variables[0].numpy(), snapshot)
    assert np.all(weights.trainable[0] == 5.0)  # training wrote into the model, not into the caller's array


def test_copy_false_snapshots_survive_in_place_training_updates(batch: Any) -> None:
    model = fmtf.models.mlp(hidden=(512,))
    view = fedmodel.get_weights(model, copy=False)
    kept = [a.copy() for a in view.arrays]
    optimizer = BACKEND.make_optimizer(model, fedmodel.SGD(1.0, momentum=0.9))
    for _ in range(2):
        BACKEND.train_step(model, batch, optimizer)  # the optimizer updates the variables in place
    for snapshot, original in zip(view.arrays, kept, strict=True):
        np.testing.assert_array_equal(snapshot, original)
    assert not np.array_equal(model.trainable_variables[0].numpy(), kept[0])


@pytest.mark.parametrize(
    "layout",
    [lambda a: a, lambda a: a.astype(a.dtype.newbyteorder(">")), lambda a: np.asfortranarray(a)],
    ids=["native", "byte-swapped", "fortran-order"],
)
def test_writes_store_any_numpy_layout_exactly(layout: Callable[[np.ndarray], np.ndarray]) -> None:
    model = fmtf.models.mlp(hidden=(4,))
    rng = np.random.default_rng(3)
    values = [rng.standard_normal(a.shape).astype(a.dtype) for a in fedmodel.get_weights(model).arrays]
    BACKEND.write_variables(list(model.trainable_variables), [layout(v) for v in values])
    for var, want in zip(model.trainable_variables, values, strict=True):
        np.testing.assert_array_equal(var.numpy(), want)


def test_writes_of_empty_and_scalar_arrays() -> None:
    scalar, empty = tf.Variable(np.float32(0.0)), tf.Variable(np.zeros((0, 3), np.int64))
    BACKEND.write_variables([scalar, empty], [np.array(2.5, np.float32), np.zeros((0, 3), np.int64)])
    assert scalar.numpy() == np.float32(2.5) and empty.numpy().shape == (0, 3)


def test_a_write_is_one_copy_that_tensorflow_adopts_as_the_variable_buffer() -> None:
    """The write path's premise (kept for the weights round-trip bar): AssignVariableOp takes a 64-byte-aligned
    numpy array as the variable's buffer without copying it again. If TensorFlow changes this, writes
    still work but cost a second copy: re-measure the bar, then use ``var.assign``."""
    from fedmodel.backend_kit import aligned_copy

    variable = tf.Variable(np.zeros((300, 300), np.float32))
    value = aligned_copy(np.full((300, 300), 2.0, ">f4"))
    assert value.ctypes.data % 64 == 0 and value.dtype == np.float32  # native byte order
    tf.raw_ops.AssignVariableOp(resource=variable.handle, value=value)
    assert np.asarray(variable.read_value()).ctypes.data == value.ctypes.data


def test_adam_adds_epsilon_after_bias_correction_as_torch_and_optax_do() -> None:
    """Three steps on tiny gradients, where Keras's own rule (epsilon before bias correction) is 20% off."""
    spec = fedmodel.Adam(0.01)
    optimizer = fmtf.keras_optimizer(spec)
    variable = fmtf._compat.keras.Variable(np.zeros(2, np.float32))
    grads = [
        np.array([1e-6, -3e-6], np.float32),
        np.array([2e-6, 1e-6], np.float32),
        np.array([-1e-6, 5e-7], np.float32),
    ]
    w, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    for t, g in enumerate(grads, start=1):
        optimizer.apply([tf.constant(g)], [variable])
        m = spec.beta1 * m + (1 - spec.beta1) * g
        v = spec.beta2 * v + (1 - spec.beta2) * g.astype(np.float64) ** 2
        m_hat, v_hat = m / (1 - spec.beta1**t), v / (1 - spec.beta2**t)
        w -= spec.learning_rate * m_hat / (np.sqrt(v_hat) + spec.epsilon)
        np.testing.assert_allclose(variable.numpy(), w, rtol=1e-4)
