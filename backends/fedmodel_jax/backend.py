"""The :class:`fedmodel.Backend` for JAX models: numpy reads and writes, Optax steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedmodel._buffers import AdoptedBuffers
from fedmodel._contract import BatchOutput
from fedmodel.optimizers import OptimizerSpec
from fedmodel_jax.model import JaxModel, Variable
from fedmodel_jax.optimizers import JaxOptimizer

__all__ = ["BACKEND", "JaxBackend"]

_BUFFERS = AdoptedBuffers()
"""The host buffers handed to XLA's CPU client per variable (see :meth:`JaxBackend.write_variables`)."""


def _placed(value: np.ndarray, like: jax.Array, owner: Variable) -> jax.Array:
    """``value`` as a new ``jax.Array`` with ``like``'s placement, never sharing memory with the caller's ``value``.

    On CPU the value is copied once into an aligned buffer (one ``owner`` used before when it is free),
    which ``jax.device_put`` adopts as is.
    """
    if all(device.platform == "cpu" for device in like.devices()):
        value = _BUFFERS.copy(owner, np.asarray(value), np.dtype(like.dtype))
    placed: jax.Array = jax.device_put(value, like.sharding)
    return placed


def _flush_released_buffers() -> None:
    """XLA's CPU client drops its references to adopted host buffers of deleted arrays lazily, at its next
    entry from Python; a scalar ``device_put`` (about 30 us) makes that happen before the pool looks."""
    jax.device_put(np.float32(0))


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

        The model never aliases the caller's numpy buffers: on CPU the value is copied once and
        ``jax.device_put`` adopts that private copy without another; elsewhere the transfer is the copy.
        On CPU the copy lands in the buffer the variable held one write ago when nothing else holds it
        any more (:class:`fedmodel._buffers.AdoptedBuffers`: no page faults of fresh memory; the price is
        up to one spare copy of each written variable).
        """
        _flush_released_buffers()
        new = [_placed(value, var.value, var) for var, value in zip(variables, values, strict=True)]
        for var, value in zip(variables, new, strict=True):
            var.value = value

    def to_native(self, model: Any, batch: Any) -> Any:
        """The batch ready for the jitted step: numpy leaves as private host copies, others as ``jax.Array``.

        The jitted step moves every host leaf to the device in one dispatch, which costs far less than a
        ``jax.device_put`` per leaf (about 35 µs each on CPU); the copies keep a caller who reuses its
        buffers from racing JAX's asynchronous dispatch. Dtypes stay as they are, so the batch still
        matches ``input_spec`` (``int64`` labels become ``int32`` inside the step when x64 is off).
        """

        if type(batch) is tuple and len(batch) == 2 and type(batch[0]) is type(batch[1]) is np.ndarray:
            return batch[0].copy(), batch[1].copy()  # the common case, without a tree walk

        def leaf(value: Any) -> Any:
            if isinstance(value, np.ndarray):
                return np.array(value, copy=True)
            return jnp.asarray(value)

        return jax.tree_util.tree_map(leaf, batch)

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> JaxOptimizer:
        """A fresh Optax optimizer over the trainable leaves, anchored there for FedProx."""
        return JaxOptimizer.create(spec, [v.value for v in model.trainable_variables])

    def train_step(self, model: Any, batch: Any, optimizer: JaxOptimizer) -> BatchOutput[Any]:
        """Gradient, FedProx term, Optax update and metrics in one jitted call.

        Raises:
            TypeError: when ``model`` is not a :class:`~fedmodel_jax.JaxModel`.
        """
        if not isinstance(model, JaxModel):
            raise TypeError(f"the JAX backend trains fedmodel_jax.JaxModel, got {type(model).__name__}")
        return model._train_step(batch, optimizer)


BACKEND = JaxBackend()
"""The JAX backend instance (``fedmodel.backend_for`` finds it through ``JaxModel.__fedmodel_backend__``)."""
JaxModel.__fedmodel_backend__ = BACKEND
