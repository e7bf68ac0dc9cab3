"""The :class:`Backend` protocol and :func:`backend_for`, which finds one without importing a framework.

A backend supplies the few framework operations a neutral algorithm needs and the model contract
does not carry: names and numpy reads of variables, a validated write, moving a numpy batch in, and
one optimizer step.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from fedmodel._errors import BackendError

if TYPE_CHECKING:
    from fedmodel._contract import BatchOutput, Model
    from fedmodel.optimizers import OptimizerSpec

__all__ = ["Backend", "backend_for", "register_backend", "unregister_backend"]


@runtime_checkable
class Backend(Protocol):
    """Framework operations for neutral algorithms (one instance per framework).

    The core validates every count, name, shape and dtype before it calls :meth:`write_variables`,
    so a backend only moves bytes.
    """

    name: str

    def variable_names(self, model: Model[Any], variables: Sequence[Any]) -> list[str]:
        """A stable, unique name for each variable (``dense/kernel``, ``fc.weight``)."""
        ...

    def read_variables(self, variables: Sequence[Any], *, copy: bool = True) -> list[np.ndarray]:
        """Each variable's value as a host numpy array; with ``copy=False`` a view where possible."""
        ...

    def write_variables(self, variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
        """Write already-validated numpy values into the variables (same shapes and dtypes)."""
        ...

    def to_native(self, model: Model[Any], batch: Any) -> Any:
        """A numpy batch as the framework's tensors, on the model's device."""
        ...

    def make_optimizer(self, model: Model[Any], spec: OptimizerSpec) -> Any:
        """A fresh native optimizer (and its state) for ``model``'s trainable variables.

        With ``spec.proximal_mu > 0`` the optimizer anchors FedProx's proximal term at the current
        trainable weights.
        """
        ...

    def train_step(self, model: Model[Any], batch: Any, optimizer: Any) -> BatchOutput[Any]:
        """One optimizer step on one batch, in training mode; returns that batch's output."""
        ...


_BY_MODEL_TYPE: dict[type, Backend] = {}
# framework module -> (attribute path of its variable/tensor types, our backend "module:attr")
_KNOWN: dict[str, tuple[tuple[str, ...], str]] = {
    "torch": (("Tensor",), "fedmodel_torch:BACKEND"),
    "tensorflow": (("Variable", "Tensor"), "fedmodel_tensorflow:BACKEND"),
    "keras": (("Variable",), "fedmodel_tensorflow:BACKEND"),
    "jax": (("Array",), "fedmodel_jax:BACKEND"),
}
_BY_VARIABLE_TYPE: dict[type, Backend] = {}


def register_backend(model_type: type, backend: Backend) -> None:
    """Use ``backend`` for every model whose type is ``model_type`` or a subclass (wins over all else)."""
    _BY_MODEL_TYPE[model_type] = backend


def unregister_backend(model_type: type) -> None:
    """Undo :func:`register_backend`."""
    _BY_MODEL_TYPE.pop(model_type, None)


def _load(target: str) -> Backend:
    module, attr = target.split(":")
    try:
        backend: Backend = getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        raise BackendError(f"the backend {module!r} is not installed ({exc}); pip install 'fedmodel[...]'") from exc
    return backend


def _by_variable(variable: Any) -> Backend | None:
    vtype = type(variable)
    if vtype in _BY_VARIABLE_TYPE:
        return _BY_VARIABLE_TYPE[vtype]
    for framework, (attrs, target) in _KNOWN.items():
        module = sys.modules.get(framework)  # a framework can own it only if already imported
        if module is None:
            continue
        for attr in attrs:
            cls = getattr(module, attr, None)
            if isinstance(cls, type) and issubclass(vtype, cls):
                backend = _load(target)
                _BY_VARIABLE_TYPE[vtype] = backend
                return backend
    return None


def backend_for(model: Any) -> Backend:
    """The :class:`Backend` for ``model``, found without importing any framework.

    Order: an explicit :func:`register_backend` entry (third parties win); the model's
    ``__fedmodel_backend__`` attribute (a backend, or a zero-argument callable returning one); then the
    type of its first variable, matched against frameworks that are already imported.

    Raises:
        BackendError: when nothing claims the model.
    """
    for cls in type(model).__mro__:
        if cls in _BY_MODEL_TYPE:
            return _BY_MODEL_TYPE[cls]
    hook = getattr(model, "__fedmodel_backend__", None)
    if hook is not None:
        return hook() if callable(hook) and not isinstance(hook, Backend) else hook  # type: ignore[no-any-return]
    for group in ("trainable_variables", "non_trainable_variables"):
        variables: Sequence[Any] = getattr(model, group, ())
        if len(variables):
            found = _by_variable(variables[0])
            if found is not None:
                return found
    raise BackendError(
        f"no fedmodel backend for {type(model).__qualname__}: register one with "
        "fedmodel.register_backend(ModelType, backend) or give the class a __fedmodel_backend__ attribute"
    )
