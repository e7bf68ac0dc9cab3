"""fedmodel's neutral optimizer specs, implemented from their docstrings (SGD, Adam, the FedProx term)."""

from __future__ import annotations

from typing import Any

import numpy as np

import fedmodel

__all__ = ["TinyOptimizer"]


class TinyOptimizer:
    """One optimizer's state over a model's trainable handles; ``step`` applies the spec's rule once."""

    def __init__(self, spec: fedmodel.OptimizerSpec, handles: list[Any]) -> None:
        if not isinstance(spec, (fedmodel.SGD, fedmodel.Adam)):
            raise TypeError(f"the tiny backend has no optimizer for {type(spec).__name__}")
        self.spec, self.handles, self.t = spec, handles, 0
        self.anchor = [self._get(h).copy() for h in handles] if spec.proximal_mu > 0 else None
        self.first: list[np.ndarray] = []
        self.second: list[np.ndarray] = []

    @staticmethod
    def _get(handle: Any) -> np.ndarray:
        return handle.store.values[handle.key].astype(np.float64)

    def step(self, grads: list[np.ndarray]) -> None:
        """One update of every trainable value from ``grads`` (the loss's gradients at the current weights)."""
        spec, self.t = self.spec, self.t + 1
        weights = [self._get(h) for h in self.handles]
        if self.anchor is not None:
            grads = [g + spec.proximal_mu * (w - a) for g, w, a in zip(grads, weights, self.anchor, strict=True)]
        if isinstance(spec, fedmodel.SGD):
            grads = [g + spec.weight_decay * w for g, w in zip(grads, weights, strict=True)]
            if spec.momentum:
                self.first = (
                    grads if self.t == 1 else [spec.momentum * b + g for b, g in zip(self.first, grads, strict=True)]
                )
                grads = (
                    [g + spec.momentum * b for g, b in zip(grads, self.first, strict=True)]
                    if spec.nesterov
                    else self.first
                )
            deltas = [-spec.learning_rate * g for g in grads]
        else:
            assert isinstance(spec, fedmodel.Adam)
            if self.t == 1:
                self.first, self.second = [np.zeros_like(g) for g in grads], [np.zeros_like(g) for g in grads]
            self.first = [spec.beta1 * m + (1 - spec.beta1) * g for m, g in zip(self.first, grads, strict=True)]
            self.second = [spec.beta2 * v + (1 - spec.beta2) * g * g for v, g in zip(self.second, grads, strict=True)]
            deltas = [
                -spec.learning_rate
                * (m / (1 - spec.beta1**self.t))
                / (np.sqrt(v / (1 - spec.beta2**self.t)) + spec.epsilon)
                for m, v in zip(self.first, self.second, strict=True)
            ]
        for h, w, d in zip(self.handles, weights, deltas, strict=True):
            h.store.values[h.key] = (w + d).astype(h.store.values[h.key].dtype)
