"""Neutral optimizer specs (``fedmodel.SGD``, ``fedmodel.Adam``) as native Keras optimizers.

Semantics follow the neutral specs (PyTorch's): SGD's ``weight_decay`` is added to the gradient (coupled
L2, as ``torch.optim.SGD``), not Keras' decoupled decay; FedProx's ``proximal_mu * (w - w0)`` is added to
the gradient (both by the train step in :mod:`fedmodel_tensorflow.backend`). Keras' SGD momentum
(``m = momentum*m - lr*g; w += m``) equals PyTorch's for a constant learning rate. Keras' Adam adds
``epsilon`` to ``sqrt(v)`` before bias correction (Kingma & Ba's "epsilon hat") where PyTorch and Optax add
it to ``sqrt(v_hat)``; :class:`NeutralAdam` gives Keras the neutral rule (the two differ by a relative
``O(epsilon / sqrt(v))``, 20% for gradients near 1e-6).
"""

from __future__ import annotations

from typing import Any

from fedmodel.optimizers import SGD, Adam, OptimizerSpec
from fedmodel_tensorflow._compat import keras

__all__ = ["NeutralAdam", "keras_optimizer"]


class NeutralAdam(keras.optimizers.Adam):
    """Keras's Adam with ``epsilon`` added to ``sqrt(v_hat)``, as ``torch.optim.Adam`` and ``optax.adam``.

    Keras's step ``alpha * m / (sqrt(v) + eps')`` with ``alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`` is
    the neutral step exactly when ``eps' = eps * sqrt(1 - beta2^t)``, so each update runs Keras's own rule
    with that ``epsilon`` (``tests/tensorflow/test_backend.py`` checks the rule on tiny gradients).
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Keras's Adam update with the step's ``epsilon * sqrt(1 - beta2^t)``."""
        neutral = self.epsilon
        step = keras.ops.cast(self.iterations + 1, variable.dtype)
        self.epsilon = neutral * keras.ops.sqrt(1 - keras.ops.power(keras.ops.cast(self.beta_2, variable.dtype), step))
        try:
            super().update_step(gradient, variable, learning_rate)
        finally:
            self.epsilon = neutral


def keras_optimizer(spec: OptimizerSpec) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer for a neutral spec (weight decay and FedProx are added by the train step)."""
    if isinstance(spec, SGD):
        return keras.optimizers.SGD(learning_rate=spec.learning_rate, momentum=spec.momentum, nesterov=spec.nesterov)
    if isinstance(spec, Adam):
        return NeutralAdam(learning_rate=spec.learning_rate, beta_1=spec.beta1, beta_2=spec.beta2, epsilon=spec.epsilon)
    raise TypeError(f"fedmodel_tensorflow has no Keras optimizer for {type(spec).__name__}; use fedmodel.SGD or Adam")
