"""The pure, jitted functions behind a :class:`~fedmodel_jax.JaxModel`: forward, predict, train step.

Each takes the model's leaves as flat lists plus a hashable :class:`Program` (static), and returns
new leaves; the model writes them back into its boxes. Equal programs (two models from one factory)
share one compiled function per input shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import optax

__all__ = ["Program", "evaluate_for", "forward", "predict", "train_step"]

Leaves = list[jax.Array]


@dataclass(frozen=True)
class Program:
    """Everything static about a model: its functions, its pytree structures and its frozen mask.

    Attributes:
        apply: ``(params, state, x, training, rng) -> (outputs, new_state)``.
        loss: ``(outputs, y) -> scalar`` mean loss of the batch.
        update_metrics: ``(metric_state, loss, outputs, y) -> metric_state``.
        params_def, state_def, metrics_def: tree structures of params, state and metric state.
        trainable_mask: for each params leaf in flatten order, whether it is trainable.
    """

    apply: Callable[..., tuple[Any, Any]]
    loss: Callable[[Any, Any], jax.Array]
    update_metrics: Callable[[Any, jax.Array, Any, Any], Any]
    params_def: Any
    state_def: Any
    metrics_def: Any
    trainable_mask: tuple[bool, ...]
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # jit hashes its static arguments on every call: hash the fields (tree structures, modules) once
        fields = (self.apply, self.loss, self.update_metrics, self.params_def, self.state_def, self.metrics_def)
        object.__setattr__(self, "_hash", hash((*fields, self.trainable_mask)))

    def __hash__(self) -> int:
        return self._hash

    def params(self, trainable: Leaves, frozen: Leaves) -> Any:
        """The params pytree from its trainable and frozen leaves."""
        it_t, it_f = iter(trainable), iter(frozen)
        leaves = [next(it_t) if m else next(it_f) for m in self.trainable_mask]
        return jax.tree_util.tree_unflatten(self.params_def, leaves)

    def run(self, params: Any, state: Leaves, x: Any, training: bool, rng: jax.Array) -> tuple[Any, Leaves]:
        """Apply the model; returns the outputs and the new state leaves (the old ones unless training)."""
        outputs, new_state = self.apply(params, jax.tree_util.tree_unflatten(self.state_def, state), x, training, rng)
        return outputs, (self.state_def.flatten_up_to(new_state) if training else state)

    def metrics(self, metrics: Leaves, loss: jax.Array, outputs: Any, y: Any) -> Leaves:
        """The metric leaves after one batch."""
        tree = jax.tree_util.tree_unflatten(self.metrics_def, metrics)
        return self.metrics_def.flatten_up_to(self.update_metrics(tree, loss, outputs, y))  # type: ignore[no-any-return]


def _draw(key: jax.Array, count: jax.Array, training: bool) -> tuple[jax.Array, jax.Array]:
    """``(next count, key for this call)``: training call ``n`` draws ``fold_in(key, n)``; evaluation draws nothing.

    A model that ignores its ``rng`` pays nothing: XLA drops the unused ``fold_in`` (a ``split`` carried
    from call to call could not be dropped, and costs more than a small MLP's whole step on CPU).
    """
    if not training:
        return count, key
    return count + 1, jax.random.fold_in(key, count)


def _forward(
    program: Program,
    trainable: Leaves,
    frozen: Leaves,
    state: Leaves,
    metrics: Leaves,
    key: jax.Array,
    count: jax.Array,
    x: Any,
    y: Any,
) -> tuple[Any, ...]:
    """``(loss, outputs, metrics, state, count)`` in training mode (batch statistics and the call count move)."""
    count, rng = _draw(key, count, True)
    outputs, state = program.run(program.params(trainable, frozen), state, x, True, rng)
    loss = program.loss(outputs, y)
    return loss, outputs, program.metrics(metrics, loss, outputs, y), state, count


def _evaluate(program: Program, values: Leaves, key: jax.Array, x: Any, y: Any) -> tuple[Any, ...]:
    """``(loss, outputs, metrics)`` in evaluation mode, which changes no state and draws nothing.

    ``values`` are the trainable, frozen, state and metric leaves in one list (the model builds one list
    per call instead of four); the call count is not passed at all.
    """
    num_params = len(program.trainable_mask)
    num_trainable, end_state = sum(program.trainable_mask), num_params + program.state_def.num_leaves
    trainable, frozen = values[:num_trainable], values[num_trainable:num_params]
    outputs, _ = program.run(program.params(trainable, frozen), values[num_params:end_state], x, False, key)
    loss = program.loss(outputs, y)
    return loss, outputs, program.metrics(values[end_state:], loss, outputs, y)


def _predict(
    program: Program,
    training: bool,
    trainable: Leaves,
    frozen: Leaves,
    state: Leaves,
    key: jax.Array,
    count: jax.Array,
    x: Any,
) -> tuple[Any, ...]:
    """``(outputs,)``, then ``(state, count)`` when training."""
    count, rng = _draw(key, count, training)
    outputs, state = program.run(program.params(trainable, frozen), state, x, training, rng)
    return (outputs, state, count) if training else (outputs,)


def _train_step(
    program: Program,
    tx: optax.GradientTransformation,
    trainable: Leaves,
    frozen: Leaves,
    state: Leaves,
    metrics: Leaves,
    key: jax.Array,
    count: jax.Array,
    opt_state: Any,
    anchor: Leaves | None,
    mu: jax.Array | None,
    x: Any,
    y: Any,
) -> tuple[jax.Array, Any, Leaves, Leaves, Leaves, jax.Array, Any]:
    count, rng = _draw(key, count, True)

    def objective(weights: Leaves) -> tuple[jax.Array, tuple[Any, Leaves]]:
        outputs, new_state = program.run(program.params(weights, frozen), state, x, True, rng)
        return program.loss(outputs, y), (outputs, new_state)

    (loss, (outputs, state)), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
    if anchor is not None and mu is not None:  # FedProx: the gradient of mu/2 ||w - w0||^2
        grads = [g + mu * (w - a) for g, w, a in zip(grads, trainable, anchor, strict=True)]
    updates, opt_state = tx.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    return loss, outputs, trainable, state, program.metrics(metrics, loss, outputs, y), count, opt_state


forward = jax.jit(_forward, static_argnums=(0,))
_EVALUATE: dict[Program, Callable[..., tuple[Any, ...]]] = {}


def evaluate_for(program: Program) -> Callable[..., tuple[Any, ...]]:
    """``_evaluate`` jitted with ``program`` bound: ``fn(values, key, x, y)``.

    One jitted function per distinct program, so models of equal structure share compiled code, and
    a call hashes no static argument (the model keeps the function it got).
    """
    fn = _EVALUATE.get(program)
    if fn is None:
        if len(_EVALUATE) >= 256:  # bounded, like jit's own cache: models keep the function they got
            _EVALUATE.clear()
        fn = _EVALUATE[program] = jax.jit(functools.partial(_evaluate, program))
    return fn


predict = jax.jit(_predict, static_argnums=(0, 1))
train_step = jax.jit(_train_step, static_argnums=(0, 1))
