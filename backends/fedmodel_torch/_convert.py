"""Moving values between numpy and torch: batches in, variables out (zero-copy where safe)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedmodel import tree as _tree

__all__ = ["detached", "from_numpy", "module_device", "to_device", "to_numpy"]


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a module without any)."""
    for param in module.parameters():
        return param.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def _bfloat16() -> Any:
    import ml_dtypes  # installed with JAX and TensorFlow; the only numpy bfloat16

    return ml_dtypes.bfloat16


def from_numpy(value: Any) -> torch.Tensor:
    """A CPU tensor sharing memory with a writable numpy array, or holding a copy of a read-only one.

    ``torch.from_numpy`` would warn on read-only arrays (torch has no read-only tensors) and refuses
    negative strides and non-native byte order, so those are copied; bfloat16 arrays (``ml_dtypes``)
    are reinterpreted bit for bit.
    """
    if type(value) is np.ndarray:  # the common case, tested in the fewest steps
        flags, dtype = value.flags, value.dtype
        if flags.c_contiguous and flags.writeable and dtype.isnative and dtype.kind != "V":
            return torch.from_numpy(value)
    arr = np.asarray(value)
    if arr.dtype.kind == "V" and arr.dtype.name == "bfloat16":  # ``dtype.name`` is slow: test it last
        return from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    elif not arr.flags.writeable or (not arr.flags.c_contiguous and min(arr.strides, default=0) < 0):
        arr = np.array(arr, copy=True)
    return torch.from_numpy(arr)


def to_device(value: Any, device: torch.device) -> Any:
    """A nested structure of numpy arrays or tensors as tensors on ``device`` (no copy when already there)."""

    def leaf(v: Any) -> torch.Tensor:
        tensor = v if isinstance(v, torch.Tensor) else from_numpy(v)
        return tensor if tensor.device == device else tensor.to(device, non_blocking=True)

    if device.type == "cpu":  # the common cases, a host array or a pair of them for a host model, first
        if type(value) is np.ndarray:
            return from_numpy(value)
        if type(value) is tuple and len(value) == 2 and type(value[0]) is type(value[1]) is np.ndarray:
            return from_numpy(value[0]), from_numpy(value[1])
    if isinstance(value, (np.ndarray, torch.Tensor)):  # no tree to walk
        return leaf(value)
    return _tree.map_structure(leaf, value)


def to_numpy(tensor: torch.Tensor, *, copy: bool) -> np.ndarray:
    """A tensor as a host numpy array: a view of a CPU tensor's memory unless ``copy``, else a copy.

    A tensor on an accelerator always comes back as a new host array (one transfer, no second copy).
    """
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return to_numpy(tensor.view(torch.int16), copy=copy).view(_bfloat16())
    if tensor.device.type != "cpu":
        return tensor.cpu().numpy()
    arr = tensor.resolve_conj().resolve_neg().numpy()
    return arr.copy() if copy else arr


def detached(tree: Any, *, host: bool = False) -> Any:
    """Every tensor of ``tree`` detached (and on the CPU when ``host``); the one-tensor case walks no tree."""

    def leaf(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        t = t.detach()
        return t.cpu() if host and t.device.type != "cpu" else t

    return leaf(tree) if isinstance(tree, torch.Tensor) else _tree.map_structure(leaf, tree)
