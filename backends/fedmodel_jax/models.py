"""Built-in models per the cross-backend conventions: ``mlp``, ``frozen_mlp`` (plain JAX), ``bn_mlp``, ``cnn_bn``.

Plain-JAX params are a tuple of :class:`Dense` layers, so trainable variables come layer by layer,
kernel ``(in, out)`` then bias: ``params/0/kernel``, ``params/0/bias``, ``params/1/kernel``...
Every model's spec is ``(x: (None, num_features) float32, y: (None,) int64)``, its outputs are
logits, its loss the mean sparse softmax cross-entropy, its metrics ``STANDARD_METRICS``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedmodel._specs import classification_spec
from fedmodel_jax.flax_model import from_flax
from fedmodel_jax.model import JaxModel, from_functions

__all__ = ["Dense", "bn_mlp", "cnn_bn", "cross_entropy", "frozen_mlp", "mlp", "mlp_apply"]


class Dense(NamedTuple):
    """One dense layer's params: ``kernel`` ``(in, out)`` then ``bias`` ``(out,)``."""

    kernel: jax.Array
    bias: jax.Array


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean sparse softmax cross-entropy of integer labels."""
    loss: jax.Array = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss


def mlp_apply(params: Sequence[Dense], state: Any, x: jax.Array, training: bool, rng: jax.Array) -> tuple[Any, Any]:
    """Logits of a ReLU MLP; stateless and deterministic (``training`` and ``rng`` unused)."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer.kernel + layer.bias)
    last = params[-1]
    return x @ last.kernel + last.bias, state


def _mlp_init(sizes: Sequence[int]) -> Any:
    def init(rng: jax.Array, x: Any) -> tuple[Dense, ...]:
        glorot = jax.nn.initializers.glorot_uniform()
        keys = jax.random.split(rng, len(sizes) - 1)
        return tuple(
            Dense(glorot(k, (n_in, n_out), jnp.float32), jnp.zeros((n_out,), jnp.float32))
            for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
        )

    return init


def mlp(num_features: int = 64, hidden: Sequence[int] = (32,), num_classes: int = 10, seed: int = 0) -> JaxModel:
    """A ReLU MLP (Glorot-uniform kernels, zero biases); ``hidden=()`` is softmax regression.

    >>> [v.name for v in mlp(num_features=4, hidden=(3,), num_classes=2).trainable_variables]
    ['params/0/kernel', 'params/0/bias', 'params/1/kernel', 'params/1/bias']
    """
    sizes = [num_features, *hidden, num_classes]
    return from_functions(
        _mlp_init(sizes), mlp_apply, cross_entropy, classification_spec(num_features, num_classes), seed=seed
    )


def frozen_mlp(num_features: int = 64, hidden: Sequence[int] = (32,), num_classes: int = 10, seed: int = 0) -> JaxModel:
    """:func:`mlp` with its first layer frozen (a pre-trained feature extractor): non-trainable, still sent.

    ``params/0/kernel`` and ``params/0/bias`` are the non-trainable variables; training never moves them.
    """
    if not hidden:
        raise ValueError("frozen_mlp needs at least one hidden layer (the frozen one)")
    sizes = [num_features, *hidden, num_classes]
    return from_functions(
        _mlp_init(sizes),
        mlp_apply,
        cross_entropy,
        classification_spec(num_features, num_classes),
        frozen="params/0",
        seed=seed,
    )


def bn_mlp(
    num_features: int = 64, hidden: int = 32, num_classes: int = 10, dropout: float = 0.25, seed: int = 0
) -> JaxModel:
    """A Flax MLP ``Dense -> BatchNorm -> ReLU -> Dropout -> Dense``.

    The batch statistics (``batch_stats/BatchNorm_0/mean``, ``.../var``) are non-trainable state
    that training updates; dropout makes training outputs random (reproducible from ``seed``).
    """
    module = _bn_mlp_class()(hidden=hidden, num_classes=num_classes, dropout=dropout)
    return from_flax(module, cross_entropy, classification_spec(num_features, num_classes), seed=seed)


def cnn_bn(
    num_features: int = 64,
    num_classes: int = 10,
    channels: tuple[int, int] = (8, 16),
    dropout: float = 0.25,
    seed: int = 0,
) -> JaxModel:
    """A small Flax CNN with BatchNorm and Dropout over square grey images given flat, ``x: (None, side * side)``.

    Two blocks ``Conv 3x3 (no bias) -> BatchNorm -> ReLU`` (max-pooling 2x2 after the first), global mean
    pooling, Dropout, Dense: the same architecture as the other backends' ``cnn_bn``. Non-trainable
    variables are the batch statistics ``batch_stats/BatchNorm_{0,1}/{mean,var}``.
    """
    side = round(num_features**0.5)
    if side * side != num_features:
        raise ValueError(f"num_features must be a square (side * side), got {num_features}")
    module = _cnn_bn_class()(side=side, channels=tuple(channels), num_classes=num_classes, dropout=dropout)
    return from_flax(module, cross_entropy, classification_spec(num_features, num_classes), seed=seed)


@functools.cache
def _cnn_bn_class() -> Any:
    """The linen module class of :func:`cnn_bn`, defined once."""
    import flax.linen as nn

    class SmallCNN(nn.Module):
        side: int
        channels: tuple[int, int]
        num_classes: int
        dropout: float

        @nn.compact
        def __call__(self, x: jax.Array, training: bool) -> jax.Array:
            h = x.reshape(-1, self.side, self.side, 1)
            for i, width in enumerate(self.channels):
                h = nn.Conv(width, (3, 3), padding="SAME", use_bias=False)(h)
                h = nn.relu(nn.BatchNorm(use_running_average=not training, momentum=0.9)(h))
                if i == 0:
                    h = nn.max_pool(h, (2, 2), strides=(2, 2))  # type: ignore[no-untyped-call]
            h = nn.Dropout(self.dropout, deterministic=not training)(h.mean(axis=(1, 2)))
            return nn.Dense(self.num_classes)(h)

    return SmallCNN


@functools.cache
def _bn_mlp_class() -> Any:
    """The linen module class of :func:`bn_mlp`, defined once (equal modules share compiled code)."""
    import flax.linen as nn

    class BNMLP(nn.Module):
        hidden: int
        num_classes: int
        dropout: float

        @nn.compact
        def __call__(self, x: jax.Array, training: bool) -> jax.Array:
            x = nn.Dense(self.hidden)(x)
            x = nn.BatchNorm(use_running_average=not training, momentum=0.9)(x)
            x = nn.Dropout(self.dropout, deterministic=not training)(nn.relu(x))
            return nn.Dense(self.num_classes)(x)

    return BNMLP
