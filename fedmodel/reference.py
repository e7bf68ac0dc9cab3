"""The reference implementation of the contract in pure numpy: softmax regression, hand-written gradients.

It is the worked example of implementing :class:`fedmodel.Model` for a new framework and lets the
core, the algorithms and the conformance suite run with no ML framework installed.

>>> model = SoftmaxRegression(num_features=4, num_classes=3, seed=0)
>>> x, y = np.ones((2, 4), np.float32), np.array([0, 2])
>>> out = model.forward_pass((x, y), training=False)
>>> out.num_examples, round(float(out.loss), 4)
(2, 1.0965)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmodel._batch import check_batch, split_batch
from fedmodel._contract import BatchOutput
from fedmodel._specs import TensorSpec, check_spec, classification_spec
from fedmodel._variable import Variable
from fedmodel.metrics import SumThenFinalize, standard_output_computation
from fedmodel.optimizers import SGD, Adam, OptimizerSpec

__all__ = ["NUMPY_BACKEND", "NumpyBackend", "NumpyOptimizer", "SoftmaxRegression", "Variable"]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


class SoftmaxRegression:
    """Multinomial logistic regression ``logits = (x * input_scale) @ kernel + bias``.

    Trainable: ``kernel`` (features, classes) and ``bias``; non-trainable: ``input_scale``, a frozen
    per-feature preprocessing layer; local: ``loss_sum``, ``correct`` and ``count``. The loss is the mean
    cross-entropy plus ``l2 / 2 * ||kernel||^2``.
    """

    __fedmodel_backend__: NumpyBackend

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        *,
        seed: int = 0,
        l2: float = 0.0,
        input_scale: np.ndarray | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        kernel = (rng.standard_normal((num_features, num_classes)) * 0.01).astype(np.float32)
        scale = np.ones(num_features, np.float32) if input_scale is None else np.asarray(input_scale, np.float32)
        self.l2 = float(l2)
        self._trainable = (Variable("kernel", kernel), Variable("bias", np.zeros(num_classes, np.float32)))
        self._non_trainable = (Variable("input_scale", scale.copy()),)
        self._local = (
            Variable("loss_sum", np.zeros((), np.float64)),
            Variable("correct", np.zeros((), np.int64)),
            Variable("count", np.zeros((), np.int64)),
        )
        self._spec = classification_spec(num_features, num_classes)

    # -- the contract -------------------------------------------------------------------------
    @property
    def trainable_variables(self) -> Sequence[Variable]:
        """``kernel``, ``bias``."""
        return self._trainable

    @property
    def non_trainable_variables(self) -> Sequence[Variable]:
        """``input_scale`` (frozen)."""
        return self._non_trainable

    @property
    def local_variables(self) -> Sequence[Variable]:
        """``loss_sum``, ``correct``, ``count``."""
        return self._local

    @property
    def input_spec(self) -> tuple[TensorSpec, TensorSpec]:
        """``(x: (None, features) float32, y: (None,) int64)``."""
        return self._spec

    def _logits(self, x: np.ndarray) -> np.ndarray:
        kernel, bias = self._trainable
        return (x * self._non_trainable[0].value) @ kernel.value + bias.value  # type: ignore[no-any-return]

    def _penalty(self) -> float:
        """``l2 / 2 * ||kernel||^2`` (0 without computing anything when ``l2`` is 0, the default)."""
        return 0.5 * self.l2 * float(np.sum(self._trainable[0].value.astype(np.float64) ** 2)) if self.l2 else 0.0

    def _loss(self, logits: np.ndarray, y: np.ndarray) -> float:
        """The batch's mean cross-entropy plus the penalty: the loss to optimize."""
        return float(-_log_softmax(logits.astype(np.float64))[np.arange(len(y)), y].mean()) + self._penalty()

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Loss (with the penalty), logits and batch size; adds the batch to the metrics (the loss metric
        without the penalty, as every backend's standard report)."""
        x, y = check_batch(self._spec, batch_input)
        logits = self._logits(x)
        loss = self._loss(logits, y)
        loss_sum, correct, count = self._local
        n = len(y)
        loss_sum.value = loss_sum.value + (loss - self._penalty()) * n
        correct.value = correct.value + np.count_nonzero(logits.argmax(axis=1) == y)  # no reduction wrapper
        count.value = count.value + n
        return BatchOutput(loss=np.float32(loss), predictions=logits, num_examples=n)

    def predict_on_batch(self, x: Any, training: bool = False) -> np.ndarray:
        """Logits for ``x``; changes nothing."""
        check_spec(self._spec[0], x, what="x")
        return self._logits(x)

    def report_local_outputs(self) -> dict[str, Any]:
        """``loss`` and ``accuracy`` as ``(total, count)`` pairs, and ``num_examples``."""
        loss_sum, correct, count = (v.value.copy() for v in self._local)
        return {"loss": (loss_sum, count), "accuracy": (correct, count), "num_examples": count}

    @property
    def federated_output_computation(self) -> SumThenFinalize:
        """Sum over clients, then ``loss = Σloss_sum / Σcount``, ``accuracy = Σcorrect / Σcount``."""
        return standard_output_computation()

    def reset_metrics(self) -> None:
        """Zero the three accumulators."""
        for v in self._local:
            v.value = np.zeros_like(v.value)

    # -- what the numpy backend needs ---------------------------------------------------------
    def value_and_grad(self, batch: Any) -> tuple[BatchOutput[Any], list[np.ndarray]]:
        """The training-mode output and the gradients of the loss w.r.t. ``kernel`` and ``bias``.

        ``d loss / d logits = (softmax - onehot) / n``; ``d kernel = (x * scale)^T d logits + l2 kernel``;
        ``d bias = Σ d logits``. Metrics are updated as by :meth:`forward_pass`.
        """
        out = self.forward_pass(batch, training=True)
        x, y = split_batch(batch)
        logits = np.asarray(out.predictions, np.float64)
        dlogits = np.exp(_log_softmax(logits))
        dlogits[np.arange(len(y)), y] -= 1.0
        dlogits /= len(y)
        kernel = self._trainable[0].value
        xs = (x * self._non_trainable[0].value).astype(np.float64)
        grad_kernel = xs.T @ dlogits + self.l2 * kernel
        return out, [grad_kernel.astype(np.float32), dlogits.sum(axis=0).astype(np.float32)]


@dataclass
class NumpyOptimizer:
    """A numpy SGD (momentum, Nesterov, weight decay) or Adam, with an optional FedProx anchor."""

    spec: OptimizerSpec
    anchor: list[np.ndarray] | None = None
    slots: list[list[np.ndarray]] = field(default_factory=list)
    step: int = 0

    def apply(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        """New parameter values after one step."""
        spec = self.spec
        grads = [g.astype(np.float64) for g in grads]
        if spec.proximal_mu > 0 and self.anchor is not None:
            grads = [g + spec.proximal_mu * (p - a) for g, p, a in zip(grads, params, self.anchor, strict=True)]
        self.step += 1
        if isinstance(spec, SGD):
            if spec.weight_decay:
                grads = [g + spec.weight_decay * p for g, p in zip(grads, params, strict=True)]
            if spec.momentum:
                if not self.slots:
                    self.slots = [[g.copy() for g in grads]]
                else:
                    self.slots[0] = [spec.momentum * b + g for b, g in zip(self.slots[0], grads, strict=True)]
                bufs = self.slots[0]
                grads = [g + spec.momentum * b for g, b in zip(grads, bufs, strict=True)] if spec.nesterov else bufs
            return [np.asarray(p - spec.learning_rate * g, dtype=p.dtype) for p, g in zip(params, grads, strict=True)]
        if isinstance(spec, Adam):
            if not self.slots:
                self.slots = [[np.zeros_like(g) for g in grads], [np.zeros_like(g) for g in grads]]
            m, v = self.slots
            out = []
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                m[i] = spec.beta1 * m[i] + (1 - spec.beta1) * g
                v[i] = spec.beta2 * v[i] + (1 - spec.beta2) * g * g
                m_hat = m[i] / (1 - spec.beta1**self.step)
                v_hat = v[i] / (1 - spec.beta2**self.step)
                out.append(np.asarray(p - spec.learning_rate * m_hat / (np.sqrt(v_hat) + spec.epsilon), dtype=p.dtype))
            return out
        raise TypeError(f"the numpy backend has no optimizer for {type(spec).__name__}")


class NumpyBackend:
    """The :class:`fedmodel.Backend` of the reference model (variables are :class:`Variable` boxes).

    Its training step draws no random numbers, so it has no optional ``seed_training``: an update is
    already a function of the server's weights, the data and the seed's example order.
    """

    name = "numpy"

    def variable_names(self, model: Any, variables: Sequence[Variable]) -> list[str]:
        """Each box's own name."""
        return [v.name for v in variables]

    def read_variables(self, variables: Sequence[Variable], *, copy: bool = True) -> list[np.ndarray]:
        """Copies, or the boxed arrays themselves with ``copy=False``."""
        return [np.array(v.value, copy=True) if copy else np.asarray(v.value).view() for v in variables]

    def write_variables(self, variables: Sequence[Variable], values: Sequence[np.ndarray]) -> None:
        """Copy each value into a new array (earlier read-only views stay valid)."""
        for var, value in zip(variables, values, strict=True):
            var.value = np.array(value, dtype=var.value.dtype, copy=True)

    def to_native(self, model: Any, batch: Any) -> Any:
        """Numpy is native."""
        return batch

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> NumpyOptimizer:
        """A fresh :class:`NumpyOptimizer`, anchored at the current weights for FedProx."""
        anchor = [v.value.astype(np.float64) for v in model.trainable_variables] if spec.proximal_mu else None
        return NumpyOptimizer(spec, anchor)

    def train_step(self, model: Any, batch: Any, optimizer: NumpyOptimizer) -> BatchOutput[Any]:
        """Gradients from ``model.value_and_grad``, then one optimizer step."""
        out, grads = model.value_and_grad(batch)
        params = [v.value for v in model.trainable_variables]
        for var, new in zip(model.trainable_variables, optimizer.apply(params, grads), strict=True):
            var.value = new
        return out  # type: ignore[no-any-return]


NUMPY_BACKEND = NumpyBackend()
SoftmaxRegression.__fedmodel_backend__ = NUMPY_BACKEND
