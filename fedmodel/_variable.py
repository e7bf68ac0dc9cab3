"""A named, mutable box around an array: the variable of frameworks that have none of their own.

The contract speaks of variables; numpy arrays and JAX arrays are values. The numpy reference backend
and the JAX backend both box their leaves in :class:`Variable` (one box per weight, whose ``value`` is
swapped on assignment), so ``get_weights``/``assign_weights`` and the conformance suite see variables with
a stable identity, a ``shape`` and a ``dtype``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Variable"]


class Variable:
    """A named, mutable box around one array (numpy, JAX or any array with ``shape`` and ``dtype``).

    >>> v = Variable("dense/kernel", np.zeros((2, 3), np.float32))
    >>> v.shape, v.dtype
    ((2, 3), dtype('float32'))
    """

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = value

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the value."""
        return tuple(self.value.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        """Dtype of the value, as a numpy dtype."""
        dtype: np.dtype[Any] = np.dtype(self.value.dtype)
        return dtype

    def __repr__(self) -> str:
        return f"Variable({self.name!r}, shape={self.shape}, dtype={self.dtype})"
