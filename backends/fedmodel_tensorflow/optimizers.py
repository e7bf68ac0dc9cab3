"""Neutral optimizer specs (``fedmodel.SGD``, ``fedmodel.Adam``) as native Keras optimizers.

Semantics follow the neutral specs (PyTorch's): SGD's ``weight_decay`` is added to the gradient (coupled
L2, as ``torch.optim.SGD``), not Keras' decoupled decay; FedProx's ``proximal_mu * (w - w0)`` is added to
the gradient (both by the train step in :mod:`fedmodel_tensorflow.backend`). Keras' SGD momentum
(``m = momentum*m - lr*g; w += m``) equals PyTorch's for a constant learning rate. Keras' Adam adds
``epsilon`` to ``sqrt(v)`` before bias correction (Kingma & Ba's "epsilon hat") where PyTorch and Optax add
it to ``sqrt(v_hat)``: the steps differ by a relative ``O(epsilon / sqrt(v))``.
"""

from __future__ import annotations

from fedmodel.optimizers import SGD, Adam, OptimizerSpec
from fedmodel_tensorflow._compat import keras

__all__ = ["keras_optimizer"]


def keras_optimizer(spec: OptimizerSpec) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer for a neutral spec (weight decay and FedProx are added by the train step)."""
    if isinstance(spec, SGD):
        return keras.optimizers.SGD(learning_rate=spec.learning_rate, momentum=spec.momentum, nesterov=spec.nesterov)
    if isinstance(spec, Adam):
        return keras.optimizers.Adam(
            learning_rate=spec.learning_rate, beta_1=spec.beta1, beta_2=spec.beta2, epsilon=spec.epsilon
        )
    raise TypeError(f"fedmodel_tensorflow has no Keras optimizer for {type(spec).__name__}; use fedmodel.SGD or Adam")
