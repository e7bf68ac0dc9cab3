"""Small models shared by tests of several packages (import as ``tests._models``)."""

from __future__ import annotations

import numpy as np

from fedmodel import Variable
from fedmodel.data import ClientData
from fedmodel.reference import SoftmaxRegression


class MixedDtypes(SoftmaxRegression):
    """The numpy reference model with a bfloat16 preprocessing scale and an int64 counter among its weights.

    Weights: ``kernel`` (4, 3) and ``bias`` float32 (trainable), ``input_scale`` bfloat16 and ``steps`` int64
    (non-trainable, never changed by training): the dtypes a server must validate beyond plain float32.
    """

    def __init__(self) -> None:
        import ml_dtypes

        super().__init__(4, 3, seed=0)
        self._non_trainable = (
            Variable("input_scale", np.ones(4, ml_dtypes.bfloat16)),
            Variable("steps", np.zeros((), np.int64)),
        )


def mixed_clients(count: int, seed: int = 0) -> list[ClientData]:
    """``count`` clients of 12 to 20 examples for :class:`MixedDtypes`: three separable classes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 4)).astype(np.float32) * 2
    out = []
    for i in range(count):
        y = rng.integers(0, 3, 12 + 2 * i).astype(np.int64)
        out.append(ClientData((centers[y] + rng.normal(size=(len(y), 4))).astype(np.float32), y))
    return out
