"""Framework-neutral client optimizer specs; each backend maps them to its native optimizer.

A spec is plain data; :meth:`fedmodel.Backend.make_optimizer` maps it to a native optimizer that
follows the update rule documented on its class, step for step (the conformance suite checks each rule
over several steps). Every rule starts from the gradient ``g`` of the batch's training-mode loss at the
weights ``w`` before the step. ``proximal_mu > 0`` adds FedProx's proximal term ``mu/2 ||w - w0||^2`` to
the local objective, so ``g += mu * (w - w0)`` before anything else, where ``w0`` is a copy of the
trainable weights when ``make_optimizer`` was called (the weights the server sent), so FedProx needs no
other hook (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020). An optimizer
shares no state with another one.

>>> SGD(learning_rate=0.1, momentum=0.9)
SGD(learning_rate=0.1, proximal_mu=0.0, momentum=0.9, nesterov=False, weight_decay=0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SGD", "Adam", "OptimizerSpec"]


@dataclass(frozen=True)
class OptimizerSpec:
    """Base of the neutral optimizer specs."""

    learning_rate: float
    proximal_mu: float = 0.0

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu}")


@dataclass(frozen=True)
class SGD(OptimizerSpec):
    """Stochastic gradient descent with PyTorch's semantics (``torch.optim.SGD``, ``dampening=0``).

    Per step, with ``lr = learning_rate`` and ``m = momentum``: ``g += weight_decay * w`` (coupled L2);
    then with ``m > 0`` the buffer ``b = g`` on the first step and ``b = m * b + g`` after, and the
    update direction ``d = g + m * b`` with ``nesterov`` else ``d = b``; without momentum ``d = g``;
    finally ``w -= lr * d``.
    """

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Adam(OptimizerSpec):
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam`` and ``optax.adam``.

    Per step ``t = 1, 2, ...``: ``m = beta1 * m + (1 - beta1) * g``, ``v = beta2 * v + (1 - beta2) * g**2``
    (both zero before the first step), ``m_hat = m / (1 - beta1**t)``, ``v_hat = v / (1 - beta2**t)``,
    ``w -= learning_rate * m_hat / (sqrt(v_hat) + epsilon)``. Adding ``epsilon`` to ``sqrt(v)`` before
    the bias correction instead (Kingma & Ba's "epsilon hat", as Keras does) differs only where
    ``sqrt(v_hat)`` is within a few ``epsilon`` of zero, and is accepted as the same rule.
    """

    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
