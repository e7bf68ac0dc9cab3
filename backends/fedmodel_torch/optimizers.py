"""Neutral optimizer specs (:mod:`fedmodel.optimizers`) as native ``torch.optim`` optimizers, plus FedProx.

>>> import torch, fedmodel
>>> w = torch.nn.Parameter(torch.ones(2))
>>> opt = make_optimizer([w], fedmodel.SGD(learning_rate=0.1, momentum=0.9))
>>> type(opt.native).__name__, opt.native.defaults["momentum"]
('SGD', 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fedmodel.optimizers import SGD, Adam, OptimizerSpec

__all__ = ["ClientOptimizer", "make_optimizer", "native_optimizer"]


def native_optimizer(params: Sequence[torch.Tensor], spec: OptimizerSpec) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer a neutral spec stands for (same hyperparameters, same update rule).

    Raises:
        TypeError: for a spec type this backend does not know.
    """
    params = list(params)
    if isinstance(spec, SGD):
        return torch.optim.SGD(
            params,
            lr=spec.learning_rate,
            momentum=spec.momentum,
            nesterov=spec.nesterov,
            weight_decay=spec.weight_decay,
        )
    if isinstance(spec, Adam):
        return torch.optim.Adam(params, lr=spec.learning_rate, betas=(spec.beta1, spec.beta2), eps=spec.epsilon)
    raise TypeError(f"the torch backend has no optimizer for {type(spec).__name__}")


@dataclass
class ClientOptimizer:
    """A native optimizer over a model's trainable parameters, with FedProx's anchor when ``proximal_mu > 0``.

    Attributes:
        native: the ``torch.optim.Optimizer`` (``None`` for a model with no trainable parameter).
        params: the parameters it updates.
        anchor: detached copies of ``params`` at creation (FedProx's ``w0``), or ``None``.
        proximal_mu: FedProx's ``mu``; ``mu * (w - w0)`` is added to each gradient before the step.
    """

    native: torch.optim.Optimizer | None
    params: list[torch.Tensor]
    anchor: list[torch.Tensor] | None = None
    proximal_mu: float = 0.0

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``), so no memory or graph is held between steps."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Add the proximal term to the gradients (if any), then take the native step."""
        if self.native is None:
            return
        if self.anchor is not None:
            with torch.no_grad():
                for p, w0 in zip(self.params, self.anchor, strict=True):
                    if p.grad is not None:
                        p.grad.add_(p - w0, alpha=self.proximal_mu)
        self.native.step()


def make_optimizer(params: Sequence[torch.Tensor], spec: OptimizerSpec) -> ClientOptimizer:
    """A fresh :class:`ClientOptimizer` for ``params``, anchored at their current values for FedProx."""
    params = list(params)
    native = native_optimizer(params, spec) if params else None
    anchor = [p.detach().clone() for p in params] if spec.proximal_mu > 0 else None
    return ClientOptimizer(native, params, anchor, float(spec.proximal_mu))
