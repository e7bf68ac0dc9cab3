"""JAX weight writes reuse the host buffer a variable held one write ago, only when nothing else holds it."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pytest

import fedmodel

jax = pytest.importorskip("jax")
fedmodel_jax = pytest.importorskip("fedmodel_jax")
backend_module = pytest.importorskip("fedmodel_jax.backend")
BACKEND = fedmodel_jax.BACKEND


def address(var: Any) -> int:
    return int(var.value.unsafe_buffer_pointer())


def random_weights(model: Any, rng: np.random.Generator) -> fedmodel.ModelWeights:
    weights = fedmodel.get_weights(model)
    return weights.with_arrays([rng.standard_normal(a.shape).astype(a.dtype) for a in weights.arrays])


def test_steady_state_writes_alternate_between_two_buffers(rng: np.random.Generator) -> None:
    model = fedmodel_jax.models.mlp(num_features=8, hidden=(16,), num_classes=3)
    var = model.trainable_variables[0]
    seen, written = [], []
    for _ in range(5):
        weights = random_weights(model, rng)
        fedmodel.assign_weights(model, weights)
        seen.append(address(var))
        written.append(weights.arrays[0])
    assert seen[0] != seen[1]  # the first buffer was still the variable's during the second write
    assert seen[2] == seen[0] and seen[3] == seen[1] and seen[4] == seen[0]
    np.testing.assert_array_equal(np.asarray(var.value), written[-1])


def test_held_values_and_zero_copy_snapshots_keep_their_values(rng: np.random.Generator) -> None:
    model = fedmodel_jax.models.mlp(num_features=8, hidden=(16,), num_classes=3)
    fedmodel.assign_weights(model, random_weights(model, rng))
    held = model.trainable_variables[0].value  # a user keeps the array...
    snapshot = fedmodel.get_weights(model, copy=False)  # ... and a zero-copy snapshot
    kept_held, kept_snapshot = np.array(held), [a.copy() for a in snapshot.arrays]
    for _ in range(4):
        fedmodel.assign_weights(model, random_weights(model, rng))
        np.testing.assert_array_equal(np.asarray(held), kept_held)
        for got, want in zip(snapshot.arrays, kept_snapshot, strict=True):
            np.testing.assert_array_equal(got, want)
    assert address(model.trainable_variables[0]) != int(held.unsafe_buffer_pointer())


def test_caller_arrays_are_never_aliased_and_training_stays_exact(rng: np.random.Generator) -> None:
    model = fedmodel_jax.models.mlp(num_features=8, hidden=(16,), num_classes=3)
    reference = fedmodel_jax.models.mlp(num_features=8, hidden=(16,), num_classes=3)
    spec = fedmodel.SGD(learning_rate=0.1, proximal_mu=0.5)  # FedProx's anchor holds the start's arrays
    x, y = rng.standard_normal((4, 8)).astype(np.float32), rng.integers(0, 3, 4)
    for _ in range(4):
        weights = random_weights(model, rng)
        fedmodel.assign_weights(model, weights)
        fedmodel.assign_weights(reference, weights.with_arrays([a.copy() for a in weights.arrays]))
        weights.arrays[0][...] = 7.0  # the caller reuses its buffer: the model does not see it
        assert not np.any(np.asarray(model.trainable_variables[0].value) == 7.0)
        for m in (model, reference):
            opt = BACKEND.make_optimizer(m, spec)
            for _ in range(2):
                BACKEND.train_step(m, BACKEND.to_native(m, (x, y)), opt)
        for got, want in zip(fedmodel.get_weights(model).arrays, fedmodel.get_weights(reference).arrays, strict=True):
            np.testing.assert_array_equal(got, want)


def test_the_pool_holds_jax_variables_weakly_so_a_deleted_model_is_collected(rng: np.random.Generator) -> None:
    model = fedmodel_jax.models.mlp(num_features=8, hidden=(16,), num_classes=3)
    fedmodel.assign_weights(model, random_weights(model, rng))
    assert all(v in backend_module._BUFFERS for v in model.trainable_variables)  # pooled, not skipped
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # what the pool then drops is tests/core/test_buffers.py's concern
