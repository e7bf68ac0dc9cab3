"""The :class:`fedmodel.Backend` for TensorFlow: ``tf.Variable`` reads and writes, batches, the train step.

Reads: ``copy=True`` (default) gives independent numpy arrays. ``copy=False`` gives read-only arrays that
share the buffer of a read of the variable, with no copy; unlike PyTorch's and JAX's views they are
*snapshots*, not live: TensorFlow copies the variable's buffer on its next write (copy on write), so a
``copy=False`` array keeps the value it had when read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fedmodel import tree as _tree
from fedmodel._buffers import AdoptedBuffers, aligned_copy
from fedmodel._contract import BatchOutput
from fedmodel._errors import BackendError
from fedmodel.optimizers import OptimizerSpec
from fedmodel_tensorflow._compat import tf
from fedmodel_tensorflow._util import unique
from fedmodel_tensorflow.model import KerasModel
from fedmodel_tensorflow.optimizers import KerasOptimizer
from fedmodel_tensorflow.optimizers import make_optimizer as _make_optimizer

__all__ = ["BACKEND", "TensorFlowBackend", "train_on_batches"]


def _snapshot(variable: Any) -> np.ndarray:
    """A zero-copy numpy view of one read of ``variable``; TensorFlow copies the variable's buffer
    before its next in-place write while the read is alive, so the view never changes."""
    value = variable.read_value() if hasattr(variable, "read_value") else tf.convert_to_tensor(variable)
    return value._numpy() if hasattr(value, "_numpy") else np.asarray(value)


def _as_keras_model(model: Any) -> KerasModel:
    if not isinstance(model, KerasModel):
        raise BackendError(
            f"the TensorFlow backend trains models made by fedmodel_tensorflow.from_keras_model, got "
            f"{type(model).__name__}"
        )
    return model


_BUFFERS = AdoptedBuffers()
"""The buffers handed to TensorFlow per variable (see :meth:`TensorFlowBackend.write_variables`)."""


def _flush_released_buffers() -> None:
    """TensorFlow drops its reference to an adopted numpy buffer released without the GIL (as by
    ``AssignVariableOp``) only at the next ``EagerTensor`` deallocation; creating and dropping a scalar
    tensor makes that happen, so buffers an earlier write released are seen as free."""
    tf.constant(0)


class TensorFlowBackend:
    """Framework operations on ``tf.Variable`` models (see the module docstring for ``copy=False``)."""

    name = "tensorflow"
    #: Reuse the buffer of an earlier write when nothing else holds it (see :meth:`write_variables`);
    #: ``False`` keeps no spare buffers (one model copy less memory, slower repeated writes).
    reuse_write_buffers: bool = True

    def canonical_layout(self, model: Any) -> Any:
        """The neutral :class:`fedmodel.layout.Layout` of ``model``'s weights (``fedmodel_tensorflow.layout``)."""
        from fedmodel_tensorflow.layout import canonical_layout

        return canonical_layout(model)

    def variable_names(self, model: Any, variables: Sequence[Any]) -> list[str]:
        """The model's names for its variables (from Keras paths); else each ``tf.Variable``'s own name."""
        lookup = getattr(model, "variable_name", None)
        names = []
        for var in variables:
            name = lookup(var) if lookup is not None else None
            names.append(name if name is not None else str(getattr(var, "name", "variable")).removesuffix(":0"))
        return unique(names)

    def read_variables(self, variables: Sequence[Any], *, copy: bool = True) -> list[np.ndarray]:
        """Each value as numpy: an independent copy, or with ``copy=False`` a read-only zero-copy snapshot."""
        if copy:  # numpy's copy of the snapshot is faster than TensorFlow's own .numpy() copy
            return [np.array(_snapshot(v), copy=True) for v in variables]
        out = []
        for var in variables:
            array = _snapshot(var).view()
            array.flags.writeable = False  # it shares the variable's buffer until the next write
            out.append(array)
        return out

    def write_variables(self, variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
        """Write each (already validated) value; no variable ever aliases a caller's array.

        A numeric array is copied once into a private, 64-byte-aligned buffer that TensorFlow adopts
        as the variable's new tensor without a second copy (``var.assign`` would copy twice: into a
        fresh tensor, then into the variable); earlier ``copy=False`` snapshots keep the old buffer,
        as with ``assign``. Other dtypes (bfloat16) go through ``assign``.

        With :attr:`reuse_write_buffers` (the default) each variable keeps the buffers of its last two
        writes, and a write copies into one of them instead of fresh memory (no page faults) when its
        reference counts show that only this pool holds it: every tensor that shares an adopted buffer
        (the variable's value, a held ``value()``, a ``copy=False`` snapshot) keeps one Python
        reference to the array until the last of them is gone. The trade: up to one spare copy of the
        written variables stays allocated while they live.
        """
        reuse = self.reuse_write_buffers
        if reuse:
            _flush_released_buffers()
        elif len(_BUFFERS):
            _BUFFERS.clear()
        for var, value in zip(variables, values, strict=True):
            if value.dtype.kind in "fiub" and hasattr(var, "handle"):
                buffer = _BUFFERS.copy(var, value) if reuse else aligned_copy(value)
                tf.raw_ops.AssignVariableOp(resource=var.handle, value=buffer)
            else:
                var.assign(value)

    def to_native(self, model: Any, batch: Any) -> Any:
        """Every numpy leaf of ``batch`` as a tensor of the same dtype; tensors pass through."""
        return _tree.map_structure(lambda a: a if isinstance(a, tf.Tensor) else tf.convert_to_tensor(a), batch)

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> KerasOptimizer:
        """A fresh native Keras optimizer for the model (FedProx anchored at the current weights)."""
        return _make_optimizer(_as_keras_model(model), spec)

    def train_step(self, model: Any, batch: Any, optimizer: KerasOptimizer) -> BatchOutput[Any]:
        """One optimizer step on a numpy or TensorFlow batch, in training mode (metrics updated)."""
        keras_model = _as_keras_model(model)
        if not isinstance(optimizer, KerasOptimizer):
            raise BackendError(f"expected an optimizer from make_optimizer, got {type(optimizer).__name__}")
        optimizer.check_live(keras_model)
        flat, num_examples = keras_model._flatten_batch(batch)
        loss, predictions = optimizer.trainer.function(flat)
        return BatchOutput(loss=loss, predictions=predictions, num_examples=num_examples)


BACKEND = TensorFlowBackend()
KerasModel.__fedmodel_backend__ = BACKEND


def train_on_batches(
    model: KerasModel, batches: Iterable[Any], optimizer: OptimizerSpec | KerasOptimizer
) -> dict[str, float]:
    """One pass of local training over ``batches`` (a ``tf.data.Dataset`` of batches, or any iterable of
    numpy or TensorFlow batches); returns ``{"num_examples": n, "loss": mean training loss}``."""
    opt = optimizer if isinstance(optimizer, KerasOptimizer) else BACKEND.make_optimizer(model, optimizer)
    total, count = 0.0, 0
    for batch in batches:
        out = BACKEND.train_step(model, batch, opt)
        total += float(out.loss) * out.num_examples
        count += out.num_examples
    return {"num_examples": count, "loss": total / count if count else float("nan")}
