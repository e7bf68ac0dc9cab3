"""The :class:`fedmodel.Backend` for TensorFlow: ``tf.Variable`` reads and writes, batches, the train step.

Reads: ``copy=True`` (default) gives independent numpy arrays. ``copy=False`` gives read-only arrays that
share the buffer of a read of the variable, with no copy; unlike PyTorch's and JAX's views they are
*snapshots*, not live: TensorFlow copies the variable's buffer on its next write (copy on write), so a
``copy=False`` array keeps the value it had when read. Writes copy once (:meth:`TensorFlowBackend.write_variables`).

The train step is one ``tf.function`` per (model, spec), traced once: a new optimizer for the same model
and spec resets the Keras optimizer's state to fresh and re-anchors FedProx, rather than retracing. It
computes the loss, the gradients, the new batch-norm statistics and the new metric sums first and
commits them (the optimizer's update included) only after, so a step that raises changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedmodel import tree as _tree
from fedmodel.backend_kit import BackendError, BatchOutput, aligned_copy
from fedmodel.optimizers import OptimizerSpec
from fedmodel_tensorflow._compat import keras, tf
from fedmodel_tensorflow.model import KerasModel, commit, unique
from fedmodel_tensorflow.optimizers import keras_optimizer

__all__ = ["BACKEND", "KerasOptimizer", "TensorFlowBackend", "train_on_batches"]


class _Trainer:
    """One Keras optimizer and one traced train step for a (model, spec) pair; reused across rounds."""

    def __init__(self, model: KerasModel, spec: OptimizerSpec) -> None:
        self.spec = spec
        self.optimizer = keras_optimizer(spec)
        self._keras_vars = model.keras_trainable_weights
        self._vars = list(model.trainable_variables)
        self.optimizer.build(self._keras_vars)
        self._fresh = [v.numpy() for v in self.optimizer.variables]
        self.anchor = [tf.Variable(v, trainable=False) for v in self._vars] if spec.proximal_mu else []
        self.generation = 0
        self.function = model._compile(self._step_fn(model), model._signature_xy)

    def reset(self) -> int:
        """Fresh optimizer state, FedProx anchor at the current weights; returns the new generation."""
        for var, value in zip(self.optimizer.variables, self._fresh, strict=True):
            var.assign(value)
        if self.anchor:
            for anchor, var in zip(self.anchor, self._vars, strict=True):
                anchor.assign(var)
        self.generation += 1
        return self.generation

    def _step_fn(self, model: KerasModel) -> Callable[[list[tf.Tensor]], tuple[tf.Tensor, Any]]:
        mu = float(self.spec.proximal_mu)
        decay = float(getattr(self.spec, "weight_decay", 0.0))

        def step(flat: list[tf.Tensor]) -> tuple[tf.Tensor, Any]:
            x, y = model._split_flat(flat)
            with tf.GradientTape() as tape:
                loss, predictions, data_loss, non_trainable = model._loss_and_predictions(x, y, True)
            grads = tape.gradient(loss, self._vars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            # dense gradients: Keras applies IndexedSlices (embeddings) with sparse rules (Adam's v gets Σg² per row)
            grads = [tf.convert_to_tensor(g) for g in grads]
            if decay:
                grads = [g + decay * w for g, w in zip(grads, self._vars, strict=True)]
            if mu:
                grads = [g + mu * (w - a) for g, w, a in zip(grads, self._vars, self.anchor, strict=True)]
            updates = model._metric_updates(y, predictions, data_loss) + model._statistics_updates(non_trainable)

            def apply() -> None:
                if grads:
                    self.optimizer.apply(grads, self._keras_vars)

            commit([loss, predictions, grads], updates, then=apply)
            return loss, predictions

        return step


@dataclass(frozen=True)
class KerasOptimizer:
    """What :meth:`TensorFlowBackend.make_optimizer` returns: a handle on the model's trainer for ``spec``.

    ``keras_optimizer`` is the native optimizer. Only the newest handle for a (model, spec) pair is live:
    making another resets the shared state, and the older handle then refuses to step.
    """

    spec: OptimizerSpec
    trainer: _Trainer
    generation: int
    model: KerasModel

    @property
    def keras_optimizer(self) -> keras.optimizers.Optimizer:
        """The native Keras optimizer."""
        return self.trainer.optimizer

    def check_live(self, model: KerasModel) -> None:
        """Raise :class:`fedmodel.BackendError` when this handle belongs to another model or was replaced."""
        if model is not self.model:
            raise BackendError("this optimizer was made for another model; call make_optimizer(model, spec)")
        if self.trainer.generation != self.generation:
            raise BackendError(
                "this optimizer was replaced: a later make_optimizer(model, spec) for the same model and spec "
                "reset the shared Keras optimizer; use the newest one"
            )


def _as_keras_model(model: Any) -> KerasModel:
    if not isinstance(model, KerasModel):
        raise BackendError(
            f"the TensorFlow backend trains models made by fedmodel_tensorflow.from_keras_model, got "
            f"{type(model).__name__}"
        )
    return model


def _snapshot(variable: Any) -> np.ndarray:
    """A numpy view of one read of ``variable`` (no copy); TensorFlow copies the variable's buffer before
    its next write while the read is alive, so the view never changes."""
    value = variable.read_value() if hasattr(variable, "read_value") else tf.convert_to_tensor(variable)
    return np.asarray(value)


class TensorFlowBackend:
    """Framework operations on ``tf.Variable`` models (see the module docstring for ``copy=False``)."""

    name = "tensorflow"

    def canonical_layout(self, model: Any) -> Any:
        """The neutral :class:`fedmodel.layout.Layout` of ``model``'s weights (``fedmodel_tensorflow.layout``)."""
        from fedmodel_tensorflow.layout import canonical_layout

        return canonical_layout(model)

    def variable_names(self, model: Any, variables: Sequence[Any]) -> list[str]:
        """The model's names for its variables (from Keras paths); else each ``tf.Variable``'s own name."""
        lookup = getattr(model, "variable_name", None)
        names = []
        for var in variables:
            name = lookup(var) if lookup is not None else None
            names.append(name if name is not None else str(getattr(var, "name", "variable")).removesuffix(":0"))
        return unique(names)

    def read_variables(self, variables: Sequence[Any], *, copy: bool = True) -> list[np.ndarray]:
        """Each value as numpy: an independent copy, or with ``copy=False`` a read-only snapshot without a copy."""
        if copy:
            return [np.array(_snapshot(v), copy=True) for v in variables]
        out = []
        for var in variables:
            array = _snapshot(var).view()
            array.flags.writeable = False  # it shares the variable's buffer until the next write
            out.append(array)
        return out

    def write_variables(self, variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
        """Write each (already validated) value; no variable aliases a caller's array.

        A numeric value is copied once into a fresh 64-byte-aligned array, which ``AssignVariableOp`` adopts
        as the variable's buffer; other dtypes (bfloat16) and other variables go through ``assign``.
        """
        for var, value in zip(variables, values, strict=True):
            if value.dtype.kind in "fiub" and hasattr(var, "handle"):
                # one copy instead of assign's two: the weights round trip's bar (1.5x numpy) needs it
                tf.raw_ops.AssignVariableOp(resource=var.handle, value=aligned_copy(value))
            else:
                var.assign(value)

    def to_native(self, model: Any, batch: Any) -> Any:
        """Every numpy leaf of ``batch`` as a tensor of the same dtype; tensors pass through."""
        return _tree.map_structure(lambda a: a if isinstance(a, tf.Tensor) else tf.convert_to_tensor(a), batch)

    def seed_training(self, model: Any, seed: int) -> None:
        """Set every Keras ``SeedGenerator`` state of the model from ``seed`` (deterministically, per generator).

        Dropout then draws a function of ``seed`` and of the steps since; Keras's stateless random ops touch
        no global generator of TensorFlow's or the user's, and no step is traced again.
        """
        if isinstance(model, KerasModel):
            model.seed_training(seed)

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> KerasOptimizer:
        """A fresh native Keras optimizer for the model (FedProx anchored at the current weights); the traced
        step is reused when the model and spec were seen before."""
        keras_model = _as_keras_model(model)
        if not isinstance(spec, OptimizerSpec):
            raise TypeError(
                f"expected a fedmodel optimizer spec (fedmodel.SGD, fedmodel.Adam), got {type(spec).__name__}"
            )
        trainer = keras_model._trainers.get(spec)
        if trainer is None:
            trainer = keras_model._trainers[spec] = _Trainer(keras_model, spec)
        return KerasOptimizer(spec, trainer, trainer.reset(), keras_model)

    def train_step(self, model: Any, batch: Any, optimizer: KerasOptimizer) -> BatchOutput[Any]:
        """One optimizer step on a numpy or TensorFlow batch, in training mode (metrics updated); a step
        that raises changes no weight, statistic, metric or optimizer state."""
        keras_model = _as_keras_model(model)
        if not isinstance(optimizer, KerasOptimizer):
            raise BackendError(f"expected an optimizer from make_optimizer, got {type(optimizer).__name__}")
        optimizer.check_live(keras_model)
        flat, num_examples = keras_model._flatten_batch(batch)
        loss, predictions = optimizer.trainer.function(flat)
        return BatchOutput(loss=loss, predictions=predictions, num_examples=num_examples)


BACKEND = TensorFlowBackend()
KerasModel.__fedmodel_backend__ = BACKEND


def train_on_batches(
    model: KerasModel, batches: Iterable[Any], optimizer: OptimizerSpec | KerasOptimizer
) -> dict[str, float]:
    """One pass of local training over ``batches`` (a ``tf.data.Dataset`` of batches, or any iterable of
    numpy or TensorFlow batches); returns ``{"num_examples": n, "loss": mean training loss}``."""
    opt = optimizer if isinstance(optimizer, KerasOptimizer) else BACKEND.make_optimizer(model, optimizer)
    total, count = 0.0, 0
    for batch in batches:
        out = BACKEND.train_step(model, batch, opt)
        total += float(out.loss) * out.num_examples
        count += out.num_examples
    return {"num_examples": count, "loss": total / count if count else float("nan")}
