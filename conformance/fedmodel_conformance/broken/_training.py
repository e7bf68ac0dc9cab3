"""Broken training: backends whose ``train_step`` or optimizers break one clause of ``Backend`` or a spec's rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedmodel import SGD, Adam, BatchOutput, OptimizerSpec, split_batch
from fedmodel.reference import NumpyBackend, NumpyOptimizer, SoftmaxRegression, Variable

__all__ = [
    "AdamWithoutBiasCorrection",
    "AnchorAtBuildBackend",
    "CountsTwiceBackend",
    "DecoupledWeightDecay",
    "LeftoverGradientBackend",
    "LiveAnchorBackend",
    "NesterovIgnored",
    "PostStepLossBackend",
    "RemembersBuiltWeights",
    "SilentTrainStepBackend",
    "StickyOptimizerBackend",
]


class CountsTwiceBackend(NumpyBackend):
    """``train_step`` adds the batch to the metrics twice: once in the step, once in a logging forward pass."""

    def train_step(self, model: Any, batch: Any, optimizer: NumpyOptimizer) -> BatchOutput[Any]:
        """The reference step, then ``forward_pass(batch, training=True)`` "to log the loss"."""
        out = super().train_step(model, batch, optimizer)
        model.forward_pass(batch, training=True)
        return out


class SilentTrainStepBackend(NumpyBackend):
    """``train_step`` leaves the metrics alone (the runner would report NaN training metrics)."""

    def train_step(self, model: Any, batch: Any, optimizer: NumpyOptimizer) -> BatchOutput[Any]:
        """The reference step, with the local variables put back as they were."""
        saved = [v.value.copy() for v in model.local_variables]
        out = super().train_step(model, batch, optimizer)
        for v, value in zip(model.local_variables, saved, strict=True):
            v.value = value
        return out


class PostStepLossBackend(NumpyBackend):
    """``train_step`` returns the loss after the step, not the batch's loss at the weights it started from."""

    def train_step(self, model: Any, batch: Any, optimizer: NumpyOptimizer) -> BatchOutput[Any]:
        """The reference step, then the loss recomputed at the new weights."""
        out = super().train_step(model, batch, optimizer)
        x, y = split_batch(batch)
        after = model._loss(model._logits(x), y)
        return BatchOutput(np.float32(after), out.predictions, out.num_examples)


class _Accumulating(NumpyOptimizer):
    def apply(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        total = getattr(self, "_total", None)
        grads = list(grads) if total is None else [t + g for t, g in zip(total, grads, strict=True)]
        self._total = grads
        return super().apply(params, grads)


class LeftoverGradientBackend(NumpyBackend):
    """Never zeroes the gradients: each step applies the sum of every gradient its optimizer has seen."""

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """An optimizer that keeps adding the new gradients to the old ones."""
        base = super().make_optimizer(model, spec)
        return _Accumulating(base.spec, base.anchor)


class StickyOptimizerBackend(NumpyBackend):
    """Keeps one optimizer per model and spec, and hands it out again: momentum leaks from client to client."""

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """The optimizer made the first time for this model and spec, with whatever state it has."""
        kept: dict[OptimizerSpec, NumpyOptimizer] = model.__dict__.setdefault("_sticky_optimizers", {})
        if spec not in kept:
            kept[spec] = super().make_optimizer(model, spec)
        return kept[spec]


class _SpecVariant(NumpyOptimizer):
    """An optimizer that runs the reference rule of another spec (what a mapping bug does)."""

    def rule(self) -> OptimizerSpec:
        return self.spec

    def apply(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        spec, self.spec = self.spec, self.rule()
        try:
            return super().apply(params, grads)
        finally:
            self.spec = spec


class _PlainMomentum(_SpecVariant):
    def rule(self) -> OptimizerSpec:
        return dataclasses.replace(self.spec, nesterov=False) if isinstance(self.spec, SGD) else self.spec


class NesterovIgnored(NumpyBackend):
    """Maps ``SGD(nesterov=True)`` to plain momentum (the flag is dropped on the way to the native optimizer)."""

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """Plain momentum, whatever ``nesterov`` says."""
        base = super().make_optimizer(model, spec)
        return _PlainMomentum(base.spec, base.anchor)


class _NoBiasCorrection(NumpyOptimizer):
    def apply(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        spec = self.spec
        if not isinstance(spec, Adam):
            return super().apply(params, grads)
        if not self.slots:
            self.slots = [[np.zeros(g.shape) for g in grads], [np.zeros(g.shape) for g in grads]]
        m, v = self.slots
        out = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = np.asarray(g, np.float64)
            m[i] = spec.beta1 * m[i] + (1 - spec.beta1) * g
            v[i] = spec.beta2 * v[i] + (1 - spec.beta2) * g * g
            out.append(np.asarray(p - spec.learning_rate * m[i] / (np.sqrt(v[i]) + spec.epsilon), dtype=p.dtype))
        return out


class AdamWithoutBiasCorrection(NumpyBackend):
    """Adam without the bias correction of ``m`` and ``v`` (its first steps are about 3x too small)."""

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """Adam as ``w -= lr * m / (sqrt(v) + eps)``."""
        base = super().make_optimizer(model, spec)
        return _NoBiasCorrection(base.spec, base.anchor)


class _Decoupled(_SpecVariant):
    def rule(self) -> OptimizerSpec:
        return dataclasses.replace(self.spec, weight_decay=0.0) if isinstance(self.spec, SGD) else self.spec

    def apply(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        new = super().apply(params, grads)
        decay = getattr(self.spec, "weight_decay", 0.0) * self.spec.learning_rate
        return [np.asarray(n - decay * p, n.dtype) for n, p in zip(new, params, strict=True)]


class DecoupledWeightDecay(NumpyBackend):
    """SGD's weight decay applied to the weights after the step (decoupled, AdamW style), not to the gradient."""

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """``w -= lr * wd * w`` after the step, outside the momentum."""
        base = super().make_optimizer(model, spec)
        return _Decoupled(base.spec, base.anchor)


class RemembersBuiltWeights(SoftmaxRegression):
    """The reference model, keeping a copy of the trainable weights it was built with (for its backend)."""

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self.built_weights = [v.value.copy() for v in self._trainable]


class AnchorAtBuildBackend(NumpyBackend):
    """Anchors FedProx at the weights the model was built with, not at those it holds at ``make_optimizer``."""

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """The reference optimizer with the build-time anchor."""
        base = super().make_optimizer(model, spec)
        if spec.proximal_mu:
            base.anchor = [np.asarray(a, np.float64) for a in model.built_weights]
        return base


class _LiveAnchor(NumpyOptimizer):
    variables: Sequence[Variable] = ()

    def apply(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.anchor is not None:
            self.anchor = [np.asarray(v.value, np.float64) for v in self.variables]
        return super().apply(params, grads)


class LiveAnchorBackend(NumpyBackend):
    """Anchors FedProx at the live variables instead of a copy: the proximal term is always zero."""

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """An anchor that follows the weights."""
        base = super().make_optimizer(model, spec)
        live = _LiveAnchor(base.spec, base.anchor)
        live.variables = tuple(model.trainable_variables)
        return live
