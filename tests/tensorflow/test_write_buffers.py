"""The TensorFlow backend's pool of write buffers: reused only when nothing but the pool holds them."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import fedmodel

tf = pytest.importorskip("tensorflow")
fmtf = pytest.importorskip("fedmodel_tensorflow")
backend_module = pytest.importorskip("fedmodel_tensorflow.backend")
BACKEND = fmtf.BACKEND


@pytest.fixture(autouse=True)
def _reuse_on() -> Iterator[None]:
    """Every test starts (and leaves) the backend with buffer reuse on, the default."""
    assert BACKEND.reuse_write_buffers
    yield
    BACKEND.reuse_write_buffers = True


def address(var: Any) -> int:
    """The data address of ``var``'s current buffer (a ``copy=False`` read aliases it); the read is dropped."""
    return int(BACKEND.read_variables([var], copy=False)[0].__array_interface__["data"][0])


def write(var: Any, value: np.ndarray) -> int:
    BACKEND.write_variables([var], [value])
    return address(var)


def random_weights(model: Any, rng: np.random.Generator) -> fedmodel.ModelWeights:
    weights = fedmodel.get_weights(model)
    return weights.with_arrays([rng.standard_normal(a.shape).astype(a.dtype) for a in weights.arrays])


def test_steady_state_writes_alternate_between_two_buffers(rng: np.random.Generator) -> None:
    var = tf.Variable(np.zeros((64, 32), np.float32))
    values = [rng.standard_normal((64, 32)).astype(np.float32) for _ in range(5)]
    addresses = [write(var, v) for v in values]
    assert addresses[0] != addresses[1]  # the first buffer was still the variable's during the second write
    assert addresses[2] == addresses[0]  # the third write reuses the first write's buffer ...
    assert addresses[3] == addresses[1]
    assert addresses[4] == addresses[0]
    np.testing.assert_array_equal(var.numpy(), values[-1])  # ... with the right value in it


def test_steady_state_model_round_trips_reuse_buffers(rng: np.random.Generator) -> None:
    model = fmtf.models.mlp(hidden=(16,))
    var = model.trainable_variables[0]
    seen = []
    for _ in range(4):
        fedmodel.assign_weights(model, random_weights(model, rng))
        seen.append(address(var))
    assert seen[2] == seen[0]
    assert seen[3] == seen[1]


def test_without_reuse_no_buffer_is_kept(rng: np.random.Generator) -> None:
    var = tf.Variable(np.zeros((64, 32), np.float32))
    write(var, rng.standard_normal((64, 32)).astype(np.float32))
    assert var in backend_module._BUFFERS
    BACKEND.reuse_write_buffers = False
    value = rng.standard_normal((64, 32)).astype(np.float32)
    write(var, value)
    assert not len(backend_module._BUFFERS)
    np.testing.assert_array_equal(var.numpy(), value)


def test_copy_false_snapshot_keeps_its_values_over_later_writes(rng: np.random.Generator) -> None:
    model = fmtf.models.mlp(hidden=(16,))
    for _ in range(3):  # a warm pool: a free spare buffer for every variable
        fedmodel.assign_weights(model, random_weights(model, rng))
    view = fedmodel.get_weights(model, copy=False)
    kept = [a.copy() for a in view.arrays]
    addresses = [a.__array_interface__["data"][0] for a in view.arrays]
    for _ in range(3):
        fedmodel.assign_weights(model, random_weights(model, rng))
        for var, held in zip(model.trainable_variables, addresses, strict=True):
            assert address(var) != held  # the snapshot's buffer is never written into
    for snapshot, original in zip(view.arrays, kept, strict=True):
        np.testing.assert_array_equal(snapshot, original)


def test_held_value_tensor_keeps_its_values_over_later_writes(rng: np.random.Generator) -> None:
    var = tf.Variable(np.zeros((64, 32), np.float32))
    for _ in range(3):
        write(var, rng.standard_normal((64, 32)).astype(np.float32))
    held = var.value()
    held_numpy = var.numpy()
    kept = held.numpy().copy()
    for _ in range(3):
        write(var, rng.standard_normal((64, 32)).astype(np.float32))
    np.testing.assert_array_equal(held.numpy(), kept)
    np.testing.assert_array_equal(held_numpy, kept)
    del held
    gc.collect()
    value = rng.standard_normal((64, 32)).astype(np.float32)
    write(var, value)  # once released, the buffer may be reused; the value is still right
    np.testing.assert_array_equal(var.numpy(), value)


def test_a_held_snapshot_forces_a_fresh_buffer_and_is_dropped_from_the_pool(rng: np.random.Generator) -> None:
    var = tf.Variable(np.zeros((64, 32), np.float32))
    first = write(var, rng.standard_normal((64, 32)).astype(np.float32))
    snapshot = BACKEND.read_variables([var], copy=False)[0]  # holds the first buffer
    kept = snapshot.copy()
    second = write(var, rng.standard_normal((64, 32)).astype(np.float32))
    third = write(var, rng.standard_normal((64, 32)).astype(np.float32))
    assert len({first, second, third}) == 3
    np.testing.assert_array_equal(snapshot, kept)
    assert all(b.__array_interface__["data"][0] != first for b in backend_module._BUFFERS.held(var))


def test_caller_arrays_are_never_aliased_with_a_warm_pool(rng: np.random.Generator) -> None:
    model = fmtf.models.mlp(hidden=(16,))
    for _ in range(3):
        fedmodel.assign_weights(model, random_weights(model, rng))
    weights = random_weights(model, rng)
    kept = [a.copy() for a in weights.arrays]
    fedmodel.assign_weights(model, weights)
    for array in weights.arrays:
        array[...] = 5.0  # the caller reuses its buffers
    for got, want in zip(fedmodel.get_weights(model).arrays, kept, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_failed_assign_with_a_warm_pool_changes_nothing(rng: np.random.Generator) -> None:
    model = fmtf.models.mlp(hidden=(16,))
    for _ in range(3):
        fedmodel.assign_weights(model, random_weights(model, rng))
    before = fedmodel.get_weights(model)
    variables = [*model.trainable_variables, *model.non_trainable_variables]
    spares = [[b.copy() for b in backend_module._BUFFERS.held(v)] for v in variables]
    assert any(spares)
    bad = random_weights(model, rng)
    bad = bad.with_arrays([*bad.arrays[:-1], np.zeros((11,), np.float32)])
    with pytest.raises(fedmodel.WeightsError):
        fedmodel.assign_weights(model, bad)
    for got, want in zip(fedmodel.get_weights(model).arrays, before.arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    for var, kept in zip(variables, spares, strict=True):
        for buffer, copy in zip(backend_module._BUFFERS.held(var), kept, strict=True):
            np.testing.assert_array_equal(buffer, copy)


def test_many_alternating_writes_reads_and_training_stay_exact(rng: np.random.Generator, batch: Any) -> None:
    model = fmtf.models.mlp(hidden=(16,))
    optimizer = BACKEND.make_optimizer(model, fedmodel.SGD(0.5))
    held: list[tuple[fedmodel.ModelWeights, list[np.ndarray]]] = []
    for step in range(30):
        weights = random_weights(model, rng)
        fedmodel.assign_weights(model, weights)
        for got, want in zip(fedmodel.get_weights(model).arrays, weights.arrays, strict=True):
            assert got.tobytes() == want.tobytes()
        if step % 4 == 0:
            view = fedmodel.get_weights(model, copy=False)
            held.append((view, [a.copy() for a in view.arrays]))
        if step % 5 == 0:
            BACKEND.train_step(model, batch, optimizer)  # in-place updates between writes
        if step % 7 == 0 and held:
            held.pop(0)  # release an old snapshot: its buffers may come back into use
    for view, kept in held:
        for snapshot, original in zip(view.arrays, kept, strict=True):
            np.testing.assert_array_equal(snapshot, original)


def test_writes_from_several_threads_stay_exact(rng: np.random.Generator) -> None:
    variables = [tf.Variable(np.zeros((128, 64), np.float32)) for _ in range(4)]
    values = [[rng.standard_normal((128, 64)).astype(np.float32) for _ in range(20)] for _ in variables]

    def worker(var: Any, series: list[np.ndarray]) -> None:
        for value in series:
            BACKEND.write_variables([var], [value])

    threads = [threading.Thread(target=worker, args=pair) for pair in zip(variables, values, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for var, series in zip(variables, values, strict=True):
        np.testing.assert_array_equal(var.numpy(), series[-1])


def test_a_deleted_model_and_its_variables_are_collected_with_their_buffers(rng: np.random.Generator) -> None:
    model = fmtf.models.mlp(hidden=(16,))
    for _ in range(3):
        fedmodel.assign_weights(model, random_weights(model, rng))
    keys = [id(v) for v in model.trainable_variables]
    assert all(k in backend_module._BUFFERS._entries for k in keys)
    refs = [weakref.ref(v) for v in model.trainable_variables]
    del model
    gc.collect()
    assert all(r() is None for r in refs)
    assert not any(k in backend_module._BUFFERS._entries for k in keys)


def test_a_view_of_a_spare_buffer_blocks_its_reuse(rng: np.random.Generator) -> None:
    var = tf.Variable(np.zeros((64, 32), np.float32))
    for _ in range(3):
        write(var, rng.standard_normal((64, 32)).astype(np.float32))
    current = address(var)
    (spare,) = [b for b in backend_module._BUFFERS.held(var) if b.__array_interface__["data"][0] != current]
    view = spare[:]  # numpy makes the allocation, not ``spare``, the view's base
    assert view.base is spare.base
    kept = view.copy()
    del spare
    for _ in range(2):
        assert write(var, rng.standard_normal((64, 32)).astype(np.float32)) != view.__array_interface__["data"][0]
    np.testing.assert_array_equal(view, kept)
