"""Host buffers a framework adopts without a copy, and the reuse of those it has released.

TensorFlow's eager runtime and XLA's CPU client (JAX) take a C-contiguous, 64-byte-aligned numpy array
as a new tensor's memory as is, and keep a Python reference to it (to the array, or to the allocation
it views) for as long as any tensor shares that memory: the variable that holds it, a value a user
read, a zero-copy numpy view of it. A weight write therefore costs one copy into such a buffer, plus
the page faults of fresh memory on every write. :class:`AdoptedBuffers` removes the page faults: it
keeps, per variable, the buffers of its last two writes, and copies the next value into the older one
once reference counts show that nothing but the pool holds it. The buffer a variable held one write
ago is free as soon as nothing else read it, so steady-state writes land in memory that is already
mapped; the price is up to one spare copy of each written variable.

Framework-free: the TensorFlow and JAX backends share it, each adding only how to make its runtime
drop references to released buffers without delay (both release them lazily).
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["ALIGNMENT", "AdoptedBuffers", "aligned_copy", "aligned_empty"]

ALIGNMENT = 64
"""Bytes: what XLA's CPU client and TensorFlow need to adopt a buffer without copying it."""


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """An uninitialized C-contiguous array on an :data:`ALIGNMENT` boundary, viewing its own ``uint8``
    allocation (its ``base``).

    >>> a = aligned_empty((3, 4), np.dtype(np.float32))
    >>> a.shape, a.ctypes.data % ALIGNMENT, a.base.dtype
    ((3, 4), 0, dtype('uint8'))
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % ALIGNMENT
    out: np.ndarray = raw[offset : offset + nbytes].view(dtype).reshape(shape)
    return out


def aligned_copy(value: np.ndarray, dtype: np.dtype[Any] | None = None) -> np.ndarray:
    """A copy of ``value`` in a fresh :func:`aligned_empty` buffer, as ``dtype`` (default: ``value``'s,
    in native byte order; a cast must be ``same_kind``)."""
    out = aligned_empty(value.shape, value.dtype.newbyteorder("=") if dtype is None else dtype)
    np.copyto(out, value, casting="same_kind")
    return out


def _refcounts(buffers: list[np.ndarray], i: int) -> tuple[int, int]:
    """``sys.getrefcount`` of ``buffers[i]`` and of its allocation (``base``), seen from this one call site."""
    return sys.getrefcount(buffers[i]), sys.getrefcount(buffers[i].base)


# The counts of a buffer that only a pool's list holds, measured through the same call as the real
# check (so they do not depend on how this interpreter counts its own temporary references).
_UNSHARED = _refcounts([aligned_empty((1,), np.dtype(np.float32))], 0)


class AdoptedBuffers:
    """Per-owner (per-variable) pools of the buffers last handed to a framework for adoption.

    Thread-safe. Owners are held weakly; an owner that cannot be weakly referenced gets fresh buffers.

    >>> pool = AdoptedBuffers()
    >>> class Var: ...
    >>> var, value = Var(), np.arange(6, dtype=np.float32)
    >>> first = pool.copy(var, value)          # the framework adopts ``first``...
    >>> address = first.ctypes.data
    >>> second = pool.copy(var, value + 1)     # ... and then this one, while ``first`` is still held
    >>> del first                              # the framework released it: the next copy reuses it
    >>> third = pool.copy(var, value + 2)
    >>> third.ctypes.data == address, third[:2].tolist(), len(pool.held(var))
    (True, [2.0, 3.0], 2)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # id(owner) -> (weak reference to the owner, the buffers last handed out for it, oldest first)
        self._entries: dict[int, tuple[weakref.ref[Any], list[np.ndarray]]] = {}

    def copy(self, owner: Any, value: np.ndarray, dtype: np.dtype[Any] | None = None) -> np.ndarray:
        """:func:`aligned_copy` of ``value`` for ``owner``, into a buffer of an earlier call for the same owner
        when nothing but this pool references it any more (neither the array nor its allocation)."""
        target = value.dtype.newbyteorder("=") if dtype is None else dtype
        key = id(owner)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0]() is not owner:
                try:
                    entry = (weakref.ref(owner, functools.partial(self._forget, key)), [])
                except TypeError:  # not weakly referenceable: no pool, a fresh copy
                    return aligned_copy(value, target)
                self._entries[key] = entry
            buffers = entry[1]
            out = None
            for i in range(len(buffers)):
                fits = buffers[i].shape == value.shape and buffers[i].dtype == target
                if fits and _refcounts(buffers, i) == _UNSHARED:
                    out = buffers.pop(i)  # now referenced by this call only: no other writer can pick it
                    break
        if out is None:
            out = aligned_empty(value.shape, target)
        np.copyto(out, value, casting="same_kind")
        with self._lock:
            buffers.append(out)
            del buffers[:-2]  # the buffer the framework now holds, and the one it held before (the next spare)
        return out

    def _forget(self, key: int, ref: weakref.ref[Any]) -> None:
        """Weak-reference callback: drop a dead owner's buffers. Lock-free, as it may run inside a garbage
        collection that starts while this thread holds the lock; the id cannot be reused until the dying
        owner is freed, after this callback."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] is ref:
            self._entries.pop(key, None)

    def held(self, owner: Any) -> tuple[np.ndarray, ...]:
        """The buffers kept for ``owner``, oldest first (empty when none)."""
        with self._lock:
            entry = self._entries.get(id(owner))
            return tuple(entry[1]) if entry is not None and entry[0]() is owner else ()

    def __contains__(self, owner: object) -> bool:
        return bool(self.held(owner))

    def __len__(self) -> int:
        """How many owners have buffers kept."""
        return len(self._entries)

    def clear(self) -> None:
        """Drop every kept buffer."""
        with self._lock:
            self._entries.clear()
