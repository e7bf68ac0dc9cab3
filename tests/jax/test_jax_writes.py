"""JAX weight writes copy the caller's arrays (numpy, synchronously) before handing them to ``jax.device_put``,
whatever their alignment, layout or byte order (``device_put(may_alias=False)`` still adopts aligned buffers)."""

from __future__ import annotations

import jax
import numpy as np
from fedmodel_jax import models

import fedmodel


def _aligned(values: np.ndarray) -> np.ndarray:
    """``values`` in a 64-byte-aligned buffer: what XLA's CPU client would adopt as is, were it allowed to."""
    raw = np.empty(values.nbytes + 64, np.uint8)
    offset = -raw.ctypes.data % 64
    out = raw[offset : offset + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


def test_a_written_aligned_buffer_is_copied_and_reusing_it_at_once_changes_nothing() -> None:
    model = models.mlp(num_features=64, hidden=(256,), num_classes=10)
    weights = fedmodel.get_weights(model)
    rng = np.random.default_rng(0)
    for _ in range(3):
        arrays = [_aligned(rng.standard_normal(a.shape).astype(np.float32)) for a in weights.arrays]
        kept = [a.copy() for a in arrays]
        fedmodel.assign_weights(model, weights.with_arrays(arrays))
        for a in arrays:
            a[...] = 7.0  # the caller reuses its buffers right away
        for var, want in zip(model.trainable_variables, kept, strict=True):
            assert var.value.unsafe_buffer_pointer() not in {a.ctypes.data for a in arrays}
            np.testing.assert_array_equal(np.asarray(var.value), want)


def test_big_endian_and_strided_values_are_assigned_exactly() -> None:
    model = models.mlp(num_features=4, hidden=(3,), num_classes=2)
    weights = fedmodel.get_weights(model)
    rng = np.random.default_rng(1)
    wanted = [rng.standard_normal(a.shape).astype(np.float32) for a in weights.arrays]
    odd = [w.astype(">f4") if i % 2 else np.asfortranarray(w) for i, w in enumerate(wanted)]
    fedmodel.assign_weights(model, weights.with_arrays(odd))
    for got, want in zip(fedmodel.get_weights(model).arrays, wanted, strict=True):
        np.testing.assert_array_equal(got, want)


def test_on_cpu_a_write_costs_one_copy_because_xla_adopts_the_aligned_host_copy() -> None:
    # fails loudly if XLA's CPU client stops adopting 64-byte-aligned host buffers: then every write costs
    # two copies and the kit's aligned_copy buys nothing (the weights round trip bar needs one copy)
    from fedmodel.backend_kit import aligned_copy

    value = np.random.default_rng(2).standard_normal((300, 70)).astype(np.float32)
    host = aligned_copy(value, np.dtype(np.float32))
    assert host.ctypes.data % 64 == 0 and not np.shares_memory(host, value)
    like = models.mlp(num_features=4, hidden=(), num_classes=2).trainable_variables[0].value
    placed = jax.device_put(host, like.sharding)
    assert placed.unsafe_buffer_pointer() == host.ctypes.data
