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
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

from fedmodel.optimizers import SGD, Adam, OptimizerSpec

__all__ = ["ClientOptimizer", "make_optimizer", "native_optimizer", "plain_sgd_step"]


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
        if not plain_sgd_step(self.native):
            self.native.step()


def plain_sgd_step(optimizer: torch.optim.Optimizer) -> bool:
    """Take ``optimizer``'s step as ``torch.optim.SGD`` itself does (``p -= lr * grad``), when it is a plain SGD
    on the CPU; ``False``, with nothing written, for anything else (the caller then calls ``optimizer.step()``).

    Plain: one parameter group with a float learning rate, no momentum, weight decay, ``maximize``, ``foreach``,
    ``fused`` or ``differentiable``, dense gradients, CPU parameters, no step hook and no patched ``step``
    (an LR scheduler patches it). torch runs that configuration on its single-tensor path, one ``add_`` per
    parameter; its ``step()`` wraps those few microseconds of arithmetic in tens of microseconds of profiler,
    hook and compiler bookkeeping (and imports ``torch._dynamo`` on its first call), which for a small model is
    a large share of a client's time. A test compares the two bit for bit, so that a change in torch's SGD fails
    it rather than drifting.
    """
    if (
        type(optimizer) is not torch.optim.SGD
        or "step" in optimizer.__dict__
        or optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or _global_optimizer_pre_hooks
        or _global_optimizer_post_hooks
        or len(optimizer.param_groups) != 1
    ):
        return False
    group = optimizer.param_groups[0]
    lr = group["lr"]
    if type(lr) is not float or group["momentum"] or group["weight_decay"] or group["maximize"]:
        return False
    if group["foreach"] or group["fused"] or group["differentiable"]:
        return False
    params = group["params"]
    for p in params:
        if p.device.type != "cpu" or (p.grad is not None and p.grad.layout != torch.strided):
            return False
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
    return True


def make_optimizer(params: Sequence[torch.Tensor], spec: OptimizerSpec) -> ClientOptimizer:
    """A fresh :class:`ClientOptimizer` for ``params``, anchored at their current values for FedProx."""
    params = list(params)
    native = native_optimizer(params, spec) if params else None
    anchor = [p.detach().clone() for p in params] if spec.proximal_mu > 0 else None
    return ClientOptimizer(native, params, anchor, float(spec.proximal_mu))
