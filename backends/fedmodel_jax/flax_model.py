"""Flax (``flax.linen``) modules as :class:`~fedmodel_jax.JaxModel`: params are weights, other collections state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from fedmodel._batch import split_batch
from fedmodel_jax.metrics import JaxMetrics
from fedmodel_jax.model import Frozen, JaxModel, sample_input

__all__ = ["from_flax"]


class _FlaxApply:
    """``apply(params, state, x, training, rng)`` over a linen module.

    Equal (and hashing equally) when the modules are equal, so models built from equal module
    configurations share compiled code; a module with unhashable attributes compares by identity.
    """

    def __init__(
        self, module: Any, training_kwarg: str | None, mutable: tuple[str, ...], rng_names: tuple[str, ...]
    ) -> None:
        self.module, self.training_kwarg, self.mutable, self.rng_names = module, training_kwarg, mutable, rng_names
        try:
            hash(module)
            identity: Any = module
        except TypeError:  # e.g. nn.Sequential holds a list; self.module keeps the object (and its id) alive
            identity = ("id", id(module))
        self._key = (type(module), identity, training_kwarg, mutable, rng_names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FlaxApply) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __call__(self, params: Any, state: Any, x: Any, training: bool, rng: jax.Array) -> tuple[Any, Any]:
        kwargs = {self.training_kwarg: training} if self.training_kwarg else {}
        keys: Sequence[jax.Array] = [rng]
        if len(self.rng_names) > 1:
            keys = list(jax.random.split(rng, len(self.rng_names)))
        rngs = dict(zip(self.rng_names, keys, strict=False))
        variables = {"params": params, **state}
        if training and self.mutable:
            outputs, new_state = self.module.apply(variables, x, rngs=rngs, mutable=list(self.mutable), **kwargs)
            return outputs, {**state, **new_state}
        return self.module.apply(variables, x, rngs=rngs, **kwargs), state


def from_flax(
    module: Any,
    loss: Callable[[Any, Any], Any],
    input_spec: Any,
    *,
    frozen: Frozen = None,
    metrics: JaxMetrics | None = None,
    seed: int = 0,
    training_kwarg: str | None = "training",
    rng_names: Sequence[str] = ("dropout",),
) -> JaxModel:
    """A model from a ``flax.linen`` module called as ``module(x, training=...)``.

    ``params`` are the weights; every other collection the module creates (``batch_stats``) is
    non-trainable state, updated by training calls. Names are ``params/Dense_0/kernel`` and
    ``batch_stats/BatchNorm_0/mean`` (dicts flatten by sorted key, so ``bias`` before ``kernel``).

    Args:
        module: the linen module.
        loss: ``loss(outputs, y) -> scalar`` mean loss.
        input_spec: ``(x_spec, y_spec)`` of :class:`fedmodel.TensorSpec`.
        frozen: params to keep out of training, by name prefix (``"params/Dense_0"``) or predicate.
        metrics: defaults to :func:`fedmodel_jax.metrics.standard_metrics`, with ``accuracy`` only when the
            labels are one integer array.
        seed: seeds the initialization and the model's dropout key.
        training_kwarg: the keyword of ``__call__`` that switches training (``None``: the module has none).
        rng_names: the RNG streams the module draws from in training (``"dropout"``).
    """
    init_key, model_key = jax.random.split(jax.random.PRNGKey(seed))
    kwargs = {training_kwarg: False} if training_kwarg else {}
    keys = dict(zip(("params", *rng_names), jax.random.split(init_key, 1 + len(rng_names)), strict=True))
    variables = dict(module.init(keys, sample_input(split_batch(input_spec)[0]), **kwargs))
    params = variables.pop("params", {})
    apply = _FlaxApply(module, training_kwarg, tuple(sorted(variables)), tuple(rng_names))
    return JaxModel(
        apply,
        params,
        loss,
        input_spec,
        state=variables,
        frozen=frozen,
        metrics=metrics,
        seed=model_key,
        state_prefix="",
    )
