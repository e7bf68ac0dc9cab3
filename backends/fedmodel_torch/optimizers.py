"""Neutral optimizer specs (:mod:`fedmodel.optimizers`) as native ``torch.optim`` optimizers, plus FedProx.

>>> import torch, fedmodel
>>> w = torch.nn.Parameter(torch.ones(2))
>>> opt = make_optimizer([w], fedmodel.SGD(learning_rate=0.1, momentum=0.9))
>>> type(opt.native).__name__, opt.native.defaults["momentum"]
('SGD', 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence

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


class ClientOptimizer:
    """A native optimizer over a model's trainable parameters, with FedProx's anchor when ``proximal_mu > 0``.

    Attributes:
        params: the parameters it updates.
        anchor: detached copies of ``params`` at creation (FedProx's ``w0``), or ``None``.
        proximal_mu: FedProx's ``mu``; ``mu * (w - w0)`` is added to each gradient before the step.

    Made from a spec (:func:`make_optimizer`), a plain SGD (no momentum, weight decay or Nesterov) builds its
    ``torch.optim.SGD`` only when something asks for :attr:`native`: until then each step is the one that
    optimizer's step takes (:func:`plain_sgd_step`), so a client that only steps never pays for building it.
    """

    __slots__ = ("_native", "_plain_lr", "anchor", "params", "proximal_mu", "spec")

    def __init__(
        self,
        native: torch.optim.Optimizer | None,
        params: list[torch.Tensor],
        anchor: list[torch.Tensor] | None = None,
        proximal_mu: float = 0.0,
        *,
        spec: OptimizerSpec | None = None,
    ) -> None:
        self._native = native
        self.params, self.anchor, self.proximal_mu, self.spec = params, anchor, proximal_mu, spec
        self._plain_lr = _plain_lr(spec) if native is None and params else None

    @property
    def native(self) -> torch.optim.Optimizer | None:
        """The ``torch.optim`` optimizer (``None`` for a model with no trainable parameter); built on first use."""
        if self._native is None and self.params and self.spec is not None:
            self._native = native_optimizer(self.params, self.spec)
            self._plain_lr = None  # from now on every step is this optimizer's (whatever is done to it)
        return self._native

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``), so no memory or graph is held between steps."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Add the proximal term to the gradients (if any), then take the native step."""
        if not self.params:
            return
        if self.anchor is not None:
            with torch.no_grad():
                for p, w0 in zip(self.params, self.anchor, strict=True):
                    if p.grad is not None:
                        p.grad.add_(p - w0, alpha=self.proximal_mu)
        if self._plain_lr is not None and not _global_hooks() and _sgd_update(self.params, self._plain_lr):
            return
        native = self.native
        if native is not None and not plain_sgd_step(native):
            native.step()


def _plain_lr(spec: OptimizerSpec | None) -> float | None:
    """The learning rate of a spec whose ``torch.optim.SGD`` takes the plain step; ``None`` for any other."""
    if not isinstance(spec, SGD) or type(spec) is not SGD:  # exactly SGD (isinstance only narrows the type)
        return None
    if spec.momentum or spec.weight_decay or spec.nesterov:
        return None
    return spec.learning_rate if type(spec.learning_rate) is float else None


def _global_hooks() -> bool:
    """Whether a step hook is registered for every optimizer (``torch.optim.Optimizer.step`` would call it)."""
    return bool(_global_optimizer_pre_hooks or _global_optimizer_post_hooks)


def _sgd_update(params: Sequence[torch.Tensor], lr: float) -> bool:
    """``p -= lr * grad`` for each parameter with a gradient, as ``torch.optim.SGD``'s single-tensor path does it;
    ``False``, with nothing written, unless every parameter is on the CPU with a dense gradient (or none)."""
    for p in params:
        if p.device.type != "cpu" or (p.grad is not None and p.grad.layout != torch.strided):
            return False
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
    return True


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
        or _global_hooks()
        or len(optimizer.param_groups) != 1
    ):
        return False
    group = optimizer.param_groups[0]
    lr = group["lr"]
    if type(lr) is not float or group["momentum"] or group["weight_decay"] or group["maximize"]:
        return False
    if group["foreach"] or group["fused"] or group["differentiable"]:
        return False
    return _sgd_update(group["params"], lr)


def make_optimizer(params: Sequence[torch.Tensor], spec: OptimizerSpec) -> ClientOptimizer:
    """A fresh :class:`ClientOptimizer` for ``params``, anchored at their current values for FedProx."""
    params = list(params)
    native = native_optimizer(params, spec) if params and _plain_lr(spec) is None else None  # else built on demand
    anchor = [p.detach().clone() for p in params] if spec.proximal_mu > 0 else None
    return ClientOptimizer(native, params, anchor, float(spec.proximal_mu), spec=spec)
