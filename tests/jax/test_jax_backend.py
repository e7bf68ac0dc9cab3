"""The JAX Backend: zero-copy reads, copying all-or-nothing writes, Optax mapping, dispatch."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from dataclasses import dataclass

import fedmodel_jax
import jax
import numpy as np
import optax
import pytest
from fedmodel_jax import models

import fedmodel


def _batch(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, 4)).astype(np.float32), rng.integers(0, 3, size)


def _model(seed: int = 0) -> fedmodel_jax.JaxModel:
    return models.mlp(num_features=4, hidden=(5,), num_classes=3, seed=seed)


def test_backend_for_finds_the_jax_backend_through_the_model_class() -> None:
    assert fedmodel.backend_for(_model()) is fedmodel_jax.BACKEND
    assert isinstance(fedmodel_jax.BACKEND, fedmodel.Backend)


def test_get_weights_without_copy_gives_read_only_views_of_the_device_buffers() -> None:
    model = _model()
    views = fedmodel.get_weights(model, copy=False).trainable
    for view, var in zip(views, model.trainable_variables, strict=True):
        assert not view.flags.writeable
        assert view.__array_interface__["data"][0] == var.value.unsafe_buffer_pointer()  # no copy on CPU


def test_get_weights_copies_by_default_and_views_are_snapshots_that_training_does_not_change() -> None:
    model = _model()
    copies, views = fedmodel.get_weights(model), fedmodel.get_weights(model, copy=False)
    assert all(
        c.flags.writeable and not np.shares_memory(c, v) for c, v in zip(copies.trainable, views.trainable, strict=True)
    )
    backend = fedmodel.backend_for(model)
    backend.train_step(model, _batch(8), backend.make_optimizer(model, fedmodel.SGD(learning_rate=0.5)))
    for c, v in zip(copies.trainable, views.trainable, strict=True):
        np.testing.assert_array_equal(c, v)  # JAX arrays are immutable: the step made new ones


def test_round_trip_is_bitwise_and_assign_moves_predictions() -> None:
    source, target = _model(seed=1), _model(seed=2)
    x, _ = _batch(6)
    weights = fedmodel.get_weights(source)
    fedmodel.assign_weights(target, weights)
    for a, b in zip(weights.arrays, fedmodel.get_weights(target).arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(target.predict_on_batch(x)), np.asarray(source.predict_on_batch(x)))


def test_assigned_arrays_are_copied_so_the_caller_may_reuse_its_buffers() -> None:
    model = _model()
    weights = fedmodel.get_weights(model)
    fedmodel.assign_weights(model, weights)
    expected = weights.trainable[0].copy()
    weights.trainable[0][...] = 99.0
    np.testing.assert_array_equal(np.asarray(model.trainable_variables[0].value), expected)


@pytest.mark.parametrize("broken", ["shape", "dtype", "name", "count"])
def test_assign_with_one_bad_value_changes_nothing(broken: str) -> None:
    model = _model()
    before = fedmodel.get_weights(model)
    arrays = [a + 1.0 for a in before.trainable]
    names = list(before.trainable_names or ())
    if broken == "shape":
        arrays[-1] = np.zeros(4, np.float32)
    elif broken == "dtype":
        arrays[-1] = arrays[-1].astype(np.float64)
    elif broken == "name":
        names[-1] = "params/1/oops"
    else:
        arrays, names = arrays[:-1], names[:-1]
    with pytest.raises(fedmodel.WeightsError):
        fedmodel.assign_weights(model, fedmodel.ModelWeights(tuple(arrays), (), tuple(names), ()))
    for a, b in zip(before.trainable, fedmodel.get_weights(model).trainable, strict=True):
        np.testing.assert_array_equal(a, b)


def test_to_native_copies_every_numpy_leaf_for_the_jitted_step() -> None:
    x, y = _batch(3)
    model = _model()
    native = fedmodel_jax.BACKEND.to_native(model, {"x": x, "y": y})
    assert native["x"] is not x and native["y"] is not y
    assert native["x"].dtype == np.float32 and native["y"].dtype == np.int64  # still matches input_spec
    assert isinstance(fedmodel_jax.BACKEND.to_native(model, {"x": jax.numpy.asarray(x), "y": y})["x"], jax.Array)
    expected = x.copy()
    x[...] = 7.0
    np.testing.assert_array_equal(np.asarray(native["x"]), expected)
    np.testing.assert_array_equal(np.asarray(native["y"]), y)


def test_optax_transformations_are_cached_per_spec_and_fresh_optimizers_share_them() -> None:
    spec = fedmodel.Adam(learning_rate=0.01)
    assert fedmodel_jax.to_optax(spec) is fedmodel_jax.to_optax(fedmodel.Adam(learning_rate=0.01))
    model = _model()
    first = fedmodel_jax.BACKEND.make_optimizer(model, spec)
    second = fedmodel_jax.BACKEND.make_optimizer(model, spec)
    assert first.tx is second.tx and first.state is not second.state
    assert isinstance(first.tx, optax.GradientTransformation) and first.anchor is None


def test_fedprox_anchors_at_the_weights_of_creation() -> None:
    model = _model()
    optimizer = fedmodel_jax.BACKEND.make_optimizer(model, fedmodel.SGD(learning_rate=0.1, proximal_mu=0.5))
    anchor = [np.asarray(a).copy() for a in optimizer.anchor or ()]
    for seed in range(2):
        fedmodel_jax.BACKEND.train_step(model, _batch(8, seed), optimizer)
    for a, w in zip(anchor, fedmodel.get_weights(model).trainable, strict=True):
        assert not np.array_equal(a, w)  # trained away from the anchor...
    for a, kept in zip(anchor, optimizer.anchor or (), strict=True):
        np.testing.assert_array_equal(a, np.asarray(kept))  # ...which itself never moves


def test_an_unknown_optimizer_spec_is_refused() -> None:
    @dataclass(frozen=True)
    class Lion(fedmodel.OptimizerSpec):
        pass

    with pytest.raises(TypeError, match="Lion"):
        fedmodel_jax.BACKEND.make_optimizer(_model(), Lion(learning_rate=0.1))


@pytest.mark.parametrize(
    "name",
    ["fedmodel_jax", *sorted(n for _, n, _ in pkgutil.walk_packages(fedmodel_jax.__path__, "fedmodel_jax."))],
)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
