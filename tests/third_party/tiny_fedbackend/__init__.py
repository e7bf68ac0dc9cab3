"""A third-party fedmodel backend: opaque handles into a store, hand-written gradients, numpy optimizers.

Registered in the ``fedmodel.backends`` entry-point group as ``tiny``; its models name it with
``__fedmodel_backend__ = "tiny"``, so ``fedmodel.backend_for`` finds it through the entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import fedmodel
from tiny_fedbackend import models as models
from tiny_fedbackend.models import Handle, TinyMLP
from tiny_fedbackend.optimizers import TinyOptimizer

__all__ = ["BACKEND", "TinyBackend", "models"]


class TinyBackend:
    """The :class:`fedmodel.Backend` of :class:`~tiny_fedbackend.models.TinyMLP` (variables are :class:`Handle` s)."""

    name = "tiny"

    def variable_names(self, model: Any, variables: Sequence[Handle]) -> list[str]:
        """The names the model gave its handles."""
        return [h.store.names[h.key] for h in variables]

    def read_variables(self, variables: Sequence[Handle], *, copy: bool = True) -> list[np.ndarray]:
        """The stored arrays (copies, or read-only views)."""
        out = []
        for h in variables:
            value = h.store.values[h.key]
            if not copy:
                value = value.view()
                value.flags.writeable = False
            out.append(value.copy() if copy else value)
        return out

    def write_variables(self, variables: Sequence[Handle], values: Sequence[np.ndarray]) -> None:
        """Store a copy of each (already validated) value."""
        for h, value in zip(variables, values, strict=True):
            h.store.values[h.key] = np.array(value, copy=True)

    def to_native(self, model: Any, batch: Any) -> Any:
        """numpy is this library's native array."""
        return batch

    def make_optimizer(self, model: Any, spec: fedmodel.OptimizerSpec) -> TinyOptimizer:
        """A fresh optimizer over the model's trainable handles (FedProx anchored at a copy of their values)."""
        return TinyOptimizer(spec, list(model.trainable_variables))

    def train_step(self, model: Any, batch: Any, optimizer: TinyOptimizer) -> fedmodel.BatchOutput[Any]:
        """The batch's output and gradients at the current weights (metrics updated), then one step."""
        if not isinstance(model, TinyMLP):
            raise fedmodel.BackendError(f"the tiny backend trains TinyMLP models, got {type(model).__name__}")
        out, grads = model.output_and_gradients(batch)
        optimizer.step(grads)
        return out


BACKEND = TinyBackend()
