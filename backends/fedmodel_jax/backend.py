"""The :class:`fedmodel.Backend` for JAX models: numpy reads and writes, and the Optax training step."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedmodel.backend_kit import BatchOutput, aligned_copy
from fedmodel.optimizers import OptimizerSpec
from fedmodel_jax.model import JaxModel, Leaves, Program, Variable, _draw
from fedmodel_jax.optimizers import JaxOptimizer

__all__ = ["BACKEND", "JaxBackend"]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_step(
    program: Program,
    tx: optax.GradientTransformation,
    trainable: Leaves,
    frozen: Leaves,
    state: Leaves,
    local: Leaves,
    key: jax.Array,
    count: jax.Array,
    opt_state: Any,
    anchor: Leaves | None,
    mu: jax.Array | None,
    x: Any,
    y: Any,
) -> tuple[jax.Array, Any, Leaves, Leaves, Leaves, jax.Array, Any]:
    """One step, pure: ``(loss, outputs, trainable, state, local, count, opt_state)`` after it."""
    count, rng = _draw(key, count, True)

    def objective(weights: Leaves) -> tuple[jax.Array, tuple[Any, Leaves]]:
        outputs, new_state = program.run(program.params(weights, frozen), state, x, True, rng)
        return program.batch_loss(outputs, y), (outputs, new_state)

    (loss, (outputs, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
    if anchor is not None and mu is not None:  # FedProx: the gradient of mu/2 ||w - w0||^2
        grads = [g + mu * (w - a) for g, w, a in zip(grads, trainable, anchor, strict=True)]
    updates, opt_state = tx.update(grads, opt_state, trainable)
    new_trainable = optax.apply_updates(trainable, updates)
    local = program.update_metrics(local, loss, outputs, y)
    return loss, outputs, new_trainable, new_state, local, count, opt_state


class JaxBackend:
    """Backend operations over :class:`~fedmodel_jax.Variable` boxes (a stateless singleton, :data:`BACKEND`)."""

    name = "jax"

    def canonical_layout(self, model: Any) -> Any:
        """The neutral :class:`fedmodel.layout.Layout` of ``model``'s weights (``fedmodel_jax.layout``)."""
        from fedmodel_jax.layout import canonical_layout

        return canonical_layout(model)

    def variable_names(self, model: Any, variables: Sequence[Variable]) -> list[str]:
        """Each box's key path (``params/0/kernel``)."""
        return [v.name for v in variables]

    def read_variables(self, variables: Sequence[Variable], *, copy: bool = True) -> list[np.ndarray]:
        """Host numpy arrays: independent copies, or with ``copy=False`` read-only views.

        On CPU a view shares the ``jax.Array``'s buffer (no copy). JAX arrays are immutable and a
        write replaces a box's array, so a view is a snapshot: it never changes, even as the model trains.
        """
        if copy:
            return [np.array(v.value, copy=True) for v in variables]
        return [np.asarray(v.value) for v in variables]

    def write_variables(self, variables: Sequence[Variable], values: Sequence[np.ndarray]) -> None:
        """Copy every (already validated) value onto its variable's device first, then swap the boxes' arrays.

        Each value is copied once, synchronously, into a private aligned host buffer
        (:func:`fedmodel.backend_kit.aligned_copy`) that ``jax.device_put`` adopts on CPU: the model never
        shares memory with, nor races, the caller's arrays, and non-native byte order is converted on the way.
        """
        new = [
            jax.device_put(aligned_copy(value, np.dtype(var.value.dtype)), var.value.sharding)
            for var, value in zip(variables, values, strict=True)
        ]
        for var, value in zip(variables, new, strict=True):
            var.value = value

    def to_native(self, model: Any, batch: Any) -> Any:
        """The batch ready for the jitted step: numpy leaves as private host copies, others as ``jax.Array``.

        The jitted step moves the host leaves to the device itself; the copies keep a caller who reuses
        its buffers from racing JAX's asynchronous dispatch. Dtypes stay as they are, so the batch still
        matches ``input_spec`` (``int64`` labels become ``int32`` inside the step when x64 is off).
        """

        def leaf(value: Any) -> Any:
            if isinstance(value, np.ndarray):
                return np.array(value, copy=True)
            return jnp.asarray(value)

        return jax.tree_util.tree_map(leaf, batch)

    def seed_training(self, model: Any, seed: int) -> None:
        """Make the model's dropout key a function of its own key and ``seed``, and restart its call count.

        JAX has no global generator: nothing of the user's changes, and no jitted step is compiled again.
        """
        if isinstance(model, JaxModel):
            model.seed_training(seed)

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> JaxOptimizer:
        """A fresh Optax optimizer over the trainable leaves, anchored there for FedProx."""
        return JaxOptimizer.create(spec, [v.value for v in model.trainable_variables])

    def train_step(self, model: Any, batch: Any, optimizer: JaxOptimizer) -> BatchOutput[Any]:
        """Gradient, FedProx term, Optax update and metrics in one jitted call, committed after it returns.

        Raises:
            TypeError: when ``model`` is not a :class:`~fedmodel_jax.JaxModel`.
        """
        if not isinstance(model, JaxModel):
            raise TypeError(f"the JAX backend trains fedmodel_jax.JaxModel, got {type(model).__name__}")
        x, y, n = model._split(batch)
        trainable, frozen, state, local = model._leaves()
        loss, outputs, trainable, state, local, count, opt_state = _train_step(
            model._program,
            optimizer.tx,
            trainable,
            frozen,
            state,
            local,
            model._key,
            model._count,
            optimizer.state,
            optimizer.anchor,
            optimizer.mu,
            x,
            y,
        )
        model._commit(trainable=trainable, state=state, local=local, count=count)
        optimizer.state = opt_state
        return BatchOutput(loss, outputs, n)


BACKEND = JaxBackend()
"""The JAX backend instance (``fedmodel.backend_for`` finds it through ``JaxModel.__fedmodel_backend__``)."""
JaxModel.__fedmodel_backend__ = BACKEND
