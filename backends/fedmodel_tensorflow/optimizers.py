"""Neutral optimizer specs (``fedmodel.SGD``, ``fedmodel.Adam``) as native Keras optimizers, and the train step.

Semantics follow the neutral specs (PyTorch's): SGD's ``weight_decay`` is added to the gradient (coupled
L2, as ``torch.optim.SGD``), not Keras' decoupled decay; FedProx's ``proximal_mu * (w - w0)`` is added to
the gradient, with ``w0`` the trainable weights when :func:`make_optimizer` was called. Keras' SGD
momentum (``m = momentum*m - lr*g; w += m``) equals PyTorch's for a constant learning rate. Keras' Adam
adds ``epsilon`` to ``sqrt(v)`` before bias correction (Kingma & Ba's "epsilon hat") where PyTorch and
Optax add it to ``sqrt(v_hat)``: the steps differ by a relative ``O(epsilon / sqrt(v))``.

The train step is one ``tf.function`` per (model, spec), traced once: a new optimizer for the same model
and spec resets the Keras optimizer's state to fresh and re-anchors FedProx, rather than retracing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fedmodel._errors import BackendError
from fedmodel.optimizers import SGD, Adam, OptimizerSpec
from fedmodel_tensorflow._compat import keras, tf

if TYPE_CHECKING:
    from fedmodel_tensorflow.model import KerasModel

__all__ = ["KerasOptimizer", "Trainer", "keras_optimizer", "make_optimizer"]


def keras_optimizer(spec: OptimizerSpec) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer for a neutral spec (weight decay and FedProx are added by the train step)."""
    if isinstance(spec, SGD):
        return keras.optimizers.SGD(learning_rate=spec.learning_rate, momentum=spec.momentum, nesterov=spec.nesterov)
    if isinstance(spec, Adam):
        return keras.optimizers.Adam(
            learning_rate=spec.learning_rate, beta_1=spec.beta1, beta_2=spec.beta2, epsilon=spec.epsilon
        )
    raise TypeError(f"fedmodel_tensorflow has no Keras optimizer for {type(spec).__name__}; use fedmodel.SGD or Adam")


class Trainer:
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
                loss, predictions, data_loss = model._loss_and_predictions(x, y, True)
            grads = tape.gradient(loss, self._vars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            if decay:
                grads = [g + decay * w for g, w in zip(grads, self._vars, strict=True)]
            if mu:
                grads = [g + mu * (w - a) for g, w, a in zip(grads, self._vars, self.anchor, strict=True)]
            if grads:
                self.optimizer.apply(grads, self._keras_vars)
            model._update_metrics(y, predictions, data_loss)
            return loss, predictions

        return step


@dataclass(frozen=True)
class KerasOptimizer:
    """What :meth:`TensorFlowBackend.make_optimizer` returns: a handle on the model's trainer for ``spec``.

    ``keras_optimizer`` is the native optimizer. Only the newest handle for a (model, spec) pair is live:
    making another resets the shared state, and the older handle then refuses to step.
    """

    spec: OptimizerSpec
    trainer: Trainer
    generation: int
    model_id: int

    @property
    def keras_optimizer(self) -> keras.optimizers.Optimizer:
        """The native Keras optimizer."""
        return self.trainer.optimizer

    def check_live(self, model: KerasModel) -> None:
        """Raise :class:`fedmodel.BackendError` when this handle belongs to another model or was replaced."""
        if id(model) != self.model_id:
            raise BackendError("this optimizer was made for another model; call make_optimizer(model, spec)")
        if self.trainer.generation != self.generation:
            raise BackendError(
                "this optimizer was replaced: a later make_optimizer(model, spec) for the same model and spec "
                "reset the shared Keras optimizer; use the newest one"
            )


def make_optimizer(model: KerasModel, spec: OptimizerSpec) -> KerasOptimizer:
    """A fresh optimizer for ``model`` (the traced step is reused when the model and spec were seen before)."""
    if not isinstance(spec, OptimizerSpec):
        raise TypeError(f"expected a fedmodel optimizer spec (fedmodel.SGD, fedmodel.Adam), got {type(spec).__name__}")
    trainer = model._trainers.get(spec)
    if trainer is None:
        trainer = model._trainers[spec] = Trainer(model, spec)
    return KerasOptimizer(spec, trainer, trainer.reset(), id(model))
