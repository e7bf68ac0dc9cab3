"""Broken backends (and one broken aggregator) for the numpy reference model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from fedmodel import BatchOutput, OptimizerSpec, WeightsError
from fedmodel import tree as _tree
from fedmodel.metrics import standard_output_computation
from fedmodel.reference import NumpyBackend, NumpyOptimizer, SoftmaxRegression, Variable

__all__ = [
    "AliasingBackend",
    "CastingBackend",
    "DecaysFrozenBackend",
    "MomentumSignBackend",
    "NonAtomicBackend",
    "StaleViewBackend",
    "TypeNamedBackend",
    "UnweightedMeanAggregator",
    "UnweightedMeanModel",
]


class TypeNamedBackend(NumpyBackend):
    """Names every variable after its type, so all names collide."""

    def variable_names(self, model: Any, variables: Sequence[Variable]) -> list[str]:
        """``"Variable"`` for every variable."""
        return [type(v).__name__ for v in variables]


class AliasingBackend(NumpyBackend):
    """Stores the caller's arrays themselves: later writes into them change the model."""

    def write_variables(self, variables: Sequence[Variable], values: Sequence[np.ndarray]) -> None:
        """No copy."""
        for var, value in zip(variables, values, strict=True):
            var.value = value


class StaleViewBackend(NumpyBackend):
    """``read_variables(copy=False)`` serves the arrays it read the first time (a cache never invalidated)."""

    def read_variables(self, variables: Sequence[Variable], *, copy: bool = True) -> list[np.ndarray]:
        """Copies, or with ``copy=False`` the first value ever read of each variable."""
        if copy:
            return super().read_variables(variables, copy=True)
        cache: dict[int, tuple[Variable, np.ndarray]] = self.__dict__.setdefault("_views", {})
        # the variable is kept with its view, so that its id is never reused by another one
        return [cache.setdefault(id(v), (v, np.asarray(v.value).view()))[1] for v in variables]


class NonAtomicBackend(NumpyBackend):
    """Refuses a value in non-native byte order, as ``torch.from_numpy`` does, after writing the earlier ones."""

    def write_variables(self, variables: Sequence[Variable], values: Sequence[np.ndarray]) -> None:
        """Write one by one; raise on the first value that is not in native byte order."""
        for var, value in zip(variables, values, strict=True):
            if not value.dtype.isnative:
                raise WeightsError(f"{var.name}: non-native byte order")
            var.value = np.array(value, copy=True)


class CastingBackend(NumpyBackend):
    """``to_native`` casts every leaf to float32, labels included."""

    def to_native(self, model: Any, batch: Any) -> Any:
        """Every leaf as float32."""
        return _tree.map_structure(lambda a: np.asarray(a, np.float32), batch)


class _ReflectedMomentum(NumpyOptimizer):
    def apply(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        new = super().apply(params, grads)
        if getattr(self.spec, "momentum", 0.0):
            return [(2 * p - n).astype(p.dtype) for p, n in zip(params, new, strict=True)]
        return new


class MomentumSignBackend(NumpyBackend):
    """Maps SGD with momentum to an optimizer that steps up the gradient (a sign error in that branch)."""

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """Plain SGD is right; momentum SGD ascends."""
        base = super().make_optimizer(model, spec)
        return _ReflectedMomentum(base.spec, base.anchor)


class DecaysFrozenBackend(NumpyBackend):
    """Applies a weight decay to every weight after the step, frozen (non-trainable) ones included."""

    def train_step(self, model: Any, batch: Any, optimizer: NumpyOptimizer) -> BatchOutput[Any]:
        """The reference step, then ``w *= 0.99`` for the non-trainable variables too."""
        out = super().train_step(model, batch, optimizer)
        for v in model.non_trainable_variables:
            v.value = (v.value * 0.99).astype(v.value.dtype)
        return out


class UnweightedMeanAggregator:
    """Averages the clients' *finalized* metrics with equal weights, whatever their number of examples."""

    def init(self) -> list[dict[str, Any]]:
        """No client yet."""
        return []

    def accumulate(self, state: list[dict[str, Any]], report: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Finalize the client alone and keep it."""
        state.append(standard_output_computation()([report]))
        return state

    def finalize(self, state: list[dict[str, Any]]) -> dict[str, Any]:
        """The plain mean over clients."""
        return {k: float(np.mean([s[k] for s in state])) for k in state[0]} if state else {}

    def __call__(self, reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """``finalize`` of every report accumulated."""
        state = self.init()
        for r in reports:
            state = self.accumulate(state, r)
        return self.finalize(state)


class UnweightedMeanModel(SoftmaxRegression):
    """The reference model with :class:`UnweightedMeanAggregator` as its ``federated_output_computation``."""

    @property
    def federated_output_computation(self) -> UnweightedMeanAggregator:  # type: ignore[override]
        """The wrong aggregator."""
        return UnweightedMeanAggregator()
