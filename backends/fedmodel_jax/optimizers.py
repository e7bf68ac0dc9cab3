"""Neutral optimizer specs (:mod:`fedmodel.optimizers`) mapped to Optax.

One Optax transformation per spec, cached: a spec seen again (every round of a federated run) gets
the very same transformation, so the jitted train step is not compiled again.

>>> import fedmodel
>>> to_optax(fedmodel.SGD(0.1)) is to_optax(fedmodel.SGD(0.1))
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from fedmodel.optimizers import SGD, Adam, OptimizerSpec

__all__ = ["JaxOptimizer", "to_optax"]


@functools.lru_cache(maxsize=64)
def to_optax(spec: OptimizerSpec) -> optax.GradientTransformation:
    """The Optax transformation of a neutral spec (without the FedProx term, which the step adds).

    ``SGD`` follows PyTorch: weight decay is added to the gradient before momentum
    (``optax.add_decayed_weights`` then ``optax.sgd``), and Optax's ``trace`` is PyTorch's momentum
    buffer. ``Adam`` is ``optax.adam`` (``epsilon`` added to ``sqrt(v_hat)``, as in PyTorch).

    Raises:
        TypeError: for a spec this backend does not know.
    """
    if isinstance(spec, SGD):
        sgd = optax.sgd(spec.learning_rate, momentum=spec.momentum or None, nesterov=spec.nesterov)
        if spec.weight_decay:
            return optax.chain(optax.add_decayed_weights(spec.weight_decay), sgd)
        return sgd
    if isinstance(spec, Adam):
        return optax.adam(spec.learning_rate, b1=spec.beta1, b2=spec.beta2, eps=spec.epsilon)
    raise TypeError(f"fedmodel_jax has no Optax mapping for {type(spec).__name__}")


@dataclass
class JaxOptimizer:
    """A client optimizer: the Optax transformation, its state, and FedProx's anchor.

    Attributes:
        spec: the neutral spec it was made from.
        tx: the Optax transformation (shared by every optimizer of an equal spec).
        state: the Optax state over the model's trainable leaves; replaced after each step.
        anchor: the trainable leaves at creation when ``spec.proximal_mu > 0``, else ``None``.
        mu: FedProx's coefficient, passed to the jitted step as data (no recompilation per value); ``None``
            without an anchor.
    """

    spec: OptimizerSpec
    tx: optax.GradientTransformation
    state: Any
    anchor: list[jax.Array] | None
    mu: jax.Array | None

    @classmethod
    def create(cls, spec: OptimizerSpec, trainable: list[jax.Array]) -> JaxOptimizer:
        """A fresh optimizer for the given trainable leaves, anchored at them for FedProx."""
        tx = to_optax(spec)
        anchor = list(trainable) if spec.proximal_mu > 0 else None  # jax arrays are immutable: no copy needed
        # without an anchor, ``mu`` is None: the step does not read it, and None is no argument to dispatch
        mu = jnp.asarray(spec.proximal_mu, jnp.float32) if anchor is not None else None
        return cls(spec, tx, tx.init(list(trainable)), anchor, mu)
