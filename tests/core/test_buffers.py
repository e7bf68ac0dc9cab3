"""fedmodel._buffers: aligned buffers for frameworks to adopt, reused only when nothing else holds them."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from fedmodel._buffers import ALIGNMENT, AdoptedBuffers, aligned_copy


class Owner:
    """Stands for a framework variable (weakly referenceable)."""


def test_a_buffer_is_reused_only_once_nothing_but_the_pool_holds_it() -> None:
    pool, owner = AdoptedBuffers(), Owner()
    value = np.arange(12, dtype=np.float32).reshape(3, 4)
    first = pool.copy(owner, value)  # "adopted": the framework keeps a reference, here ``first``
    second = pool.copy(owner, value + 1)
    third = pool.copy(owner, value + 2)  # ``first`` is still held: a fresh buffer
    assert len({first.ctypes.data, second.ctypes.data, third.ctypes.data}) == 3
    np.testing.assert_array_equal(first, value)  # a held buffer is never written
    del first, second  # released
    gc.collect()
    fourth = pool.copy(owner, value + 3)
    assert fourth.ctypes.data in {b.ctypes.data for b in pool.held(owner)}
    assert fourth.ctypes.data % ALIGNMENT == 0 and fourth.flags.c_contiguous
    np.testing.assert_array_equal(fourth, value + 3)
    assert len(pool.held(owner)) == 2  # the current buffer and one spare, never more


def test_a_view_of_a_buffer_blocks_its_reuse() -> None:
    pool, owner = AdoptedBuffers(), Owner()
    value = np.ones(8, np.float32)
    view = pool.copy(owner, value)[2:4]  # the framework holds only part of the allocation
    addresses = {pool.copy(owner, value * k).base.ctypes.data for k in (2, 3, 4)}
    assert view.base.ctypes.data not in addresses  # numpy points every view at the allocation itself
    np.testing.assert_array_equal(view, 1.0)


def test_other_shapes_and_dtypes_get_fresh_buffers_and_casts_are_same_kind() -> None:
    pool, owner = AdoptedBuffers(), Owner()
    a = pool.copy(owner, np.zeros(4, np.float32)).ctypes.data
    pool.copy(owner, np.zeros(4, np.float32))
    assert pool.copy(owner, np.zeros(5, np.float32)).ctypes.data != a
    narrowed = pool.copy(owner, np.array([1, 2], ">i8"), np.dtype(np.int32))  # big-endian int64 -> native int32
    assert narrowed.dtype == np.int32 and narrowed.tolist() == [1, 2]
    swapped = aligned_copy(np.array([1.5], ">f4"))
    assert swapped.dtype.isnative and swapped.tolist() == [1.5]


def test_a_dead_owner_takes_its_buffers_with_it_and_unreferenceable_owners_get_no_pool() -> None:
    pool, owner = AdoptedBuffers(), Owner()
    pool.copy(owner, np.zeros(3, np.float32))
    assert owner in pool and len(pool) == 1
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None and len(pool) == 0
    plain = object()  # no __weakref__: fresh copies, nothing kept
    pool.copy(plain, np.zeros(3, np.float32))
    assert plain not in pool and len(pool) == 0
