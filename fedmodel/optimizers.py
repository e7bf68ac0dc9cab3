"""Framework-neutral client optimizer specs; each backend maps them to its native optimizer.

A spec is plain data. ``proximal_mu > 0`` adds FedProx's proximal term ``mu/2 ||w - w0||^2`` to the
local objective, anchored at the trainable weights the optimizer was created with (the weights the
server sent), so FedProx needs no other hook (Li et al., "Federated Optimization in Heterogeneous
Networks", MLSys 2020).

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
    """Stochastic gradient descent, PyTorch's semantics: ``v = m v + g; w -= lr v`` (torch.optim.SGD)."""

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Adam(OptimizerSpec):
    """Adam (Kingma & Ba 2015); ``epsilon`` is added to ``sqrt(v_hat)`` as in torch.optim and Optax."""

    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
