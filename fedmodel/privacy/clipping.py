"""Clipping one client's change from the server weights to an L2 norm: the step both DP mechanisms share.

A client's *change* is ``update - template`` over every floating-point variable (trainable and
non-trainable alike: batch-norm statistics summarize private data too); integer, boolean and other
non-float variables are not part of it and are never taken from a client (see :mod:`fedmodel.privacy`).
The change is scaled by ``min(1, clip / ||change||)``, so its norm is at most ``clip`` (to float64
rounding: ``clip * (1 + 2**-50)`` at worst).

>>> from fedmodel import ModelWeights
>>> server = ModelWeights((np.zeros(2, np.float32),))
>>> update = ModelWeights((np.array([3.0, 4.0], np.float32),))
>>> norm, scale = clip_factor(server, update, 1.0, client="client 0")
>>> norm, scale
(5.0, 0.2)
>>> clipped_change(server.arrays[0], update.arrays[0], scale).tolist()
[0.6000000000000001, 0.8]
"""

from __future__ import annotations

import math

import numpy as np

from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights
from fedmodel.validation import delta_norm, is_float

__all__ = ["MAX_CLIP", "MIN_CLIP", "clip_factor", "clipped_change", "is_float"]

MAX_CLIP = 1e100
"""The largest clip norm accepted (and where adaptive clipping stops growing): a running sum of ``K``
clipped changes has every coordinate within ``K * MAX_CLIP``, finite in float64 for any ``K < 2**63``."""

MIN_CLIP = 1e-100
"""The smallest clip norm adaptive clipping shrinks to (so the norm never underflows to zero)."""


def clip_factor(template: ModelWeights, update: ModelWeights, clip: float, *, client: str) -> tuple[float, float]:
    """``(norm, scale)``: the L2 norm of ``update - template`` and the factor ``min(1, clip / norm)``.

    ``update`` must already be valid against ``template``
    (:func:`fedmodel.validation.check_client_update`).

    Raises:
        AggregationError: when the norm overflows float64 (a change whose norm is beyond float64's largest
            value, about ``1.8e308``); such an update cannot be clipped faithfully and is refused.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        norm = delta_norm(template, update)
    if not math.isfinite(norm):
        raise AggregationError(f"{client}: the L2 norm of its change from the server weights overflows float64")
    return norm, (1.0 if norm <= clip else clip / norm)


def clipped_change(origin: np.ndarray, value: np.ndarray, scale: float) -> np.ndarray:
    """``scale * (value - origin)`` in float64 (one temporary of the variable's size)."""
    change: np.ndarray = np.subtract(value, origin, dtype=np.float64)
    change *= scale
    return change
