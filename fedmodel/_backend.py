"""The :class:`Backend` protocol, :func:`backend_for` (finds one without importing a framework) and the
``fedmodel.backends`` entry-point group (finds one by name).

A backend supplies the few framework operations a neutral algorithm needs and the model contract
does not carry: names and numpy reads of variables, a validated write, moving a numpy batch in, and
one optimizer step.

A package registers a backend under a name in the entry-point group :data:`ENTRY_POINT_GROUP`; the
entry point names an object (usually the package itself) whose ``BACKEND`` attribute is the
:class:`Backend` and whose optional ``models.mlp(num_features=, num_classes=, seed=)`` builds the model
that ``fedmodel train --backend NAME`` trains::

    [project.entry-points."fedmodel.backends"]
    mybackend = "mybackend_package"

fedmodel's own backends register the same way (``torch``, ``tensorflow``, ``jax``); they are also known
by name in a source checkout that was never installed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from fedmodel._errors import BackendError

if TYPE_CHECKING:
    from fedmodel._contract import BatchOutput, Model
    from fedmodel.optimizers import OptimizerSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "backend_for",
    "backend_names",
    "backend_package",
    "load_backend",
    "register_backend",
    "unregister_backend",
]

ENTRY_POINT_GROUP = "fedmodel.backends"
"""The entry-point group through which an installed package registers a backend under a name."""


@runtime_checkable
class Backend(Protocol):
    """Framework operations for neutral algorithms (one instance per framework).

    The core reads and writes weights only through these methods: it learns each variable's shape and
    dtype from what :meth:`read_variables` returns, and validates every count, name, shape and dtype
    before it calls :meth:`write_variables`, so a backend only moves bytes. A variable may be any
    object the backend understands (a tensor, a box, an opaque handle); the model and the suite compare
    variables by identity, so each group property returns the same objects on every read.

    Optional members, found with ``getattr(backend, NAME, None)`` and not part of this protocol (a backend
    without them is still a ``Backend``):

    * ``canonical_layout(model) -> fedmodel.layout.Layout``: the neutral layout of the model's weights
      (:func:`fedmodel.layout.canonical`).
    * ``seed_training(model, seed: int) -> None``: from this call on, the model's training randomness
      (dropout masks, any random op of :meth:`train_step`) is a function of ``seed`` and of the steps taken
      since, and no random state the user owns (the framework's global generator, numpy's, Python's
      ``random``) changes. The client update calls it with the client's seed right after assigning the
      server's weights. A backend whose training steps draw random numbers needs it for a run to be
      reproducible: without it an update depends on what the model drew before, so runs agree at best
      within one process, and a run on worker processes differs from the serial one. A backend with no
      randomness (the numpy reference backend) leaves it out.
    """

    name: str

    def variable_names(self, model: Model[Any], variables: Sequence[Any]) -> list[str]:
        """A stable, unique name for each variable (``dense/kernel``, ``fc.weight``).

        Clause: distinct variables get distinct non-empty names, the same on every call.
        """
        ...

    def read_variables(self, variables: Sequence[Any], *, copy: bool = True) -> list[np.ndarray]:
        """Each variable's value as a host numpy array; with ``copy=False`` a view where possible.

        Clause: the arrays have the variables' shapes and dtypes (the core takes both from here); with
        ``copy=True`` they are independent of the model.
        """
        ...

    def write_variables(self, variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
        """Write already-validated numpy values into the variables (same shapes and dtypes).

        Clause: the values are copied (a later change to the caller's arrays never reaches the model).
        """
        ...

    def to_native(self, model: Model[Any], batch: Any) -> Any:
        """A numpy batch as the framework's tensors, on the model's device.

        Clause: ``forward_pass`` of the native batch gives what it gives for the numpy batch.
        """
        ...

    def make_optimizer(self, model: Model[Any], spec: OptimizerSpec) -> Any:
        """A fresh native optimizer (and its state) for ``model``'s trainable variables.

        Clause: the optimizer follows the update rule its spec documents (:mod:`fedmodel.optimizers`);
        it starts from fresh state and shares none with any other optimizer, earlier or later, of this
        or another model; with ``spec.proximal_mu > 0`` it anchors FedProx's proximal term at a copy of
        the trainable weights as they are when ``make_optimizer`` is called.
        """
        ...

    def train_step(self, model: Model[Any], batch: Any, optimizer: Any) -> BatchOutput[Any]:
        """One optimizer step on one batch, in training mode; returns that batch's output.

        Clause: the step applies the gradient of ``forward_pass(batch, training=True).loss`` at the
        weights before the step (no gradient is left over from an earlier step); it returns the
        ``BatchOutput`` of the batch at those pre-step weights (the pre-step loss); it updates the
        metrics exactly as ``forward_pass(batch, training=True)`` would, once; it updates
        non-trainable state (batch-norm statistics) as training mode does, and nothing else but
        the trainable variables.
        """
        ...


_BY_MODEL_TYPE: dict[type, Backend] = {}
# framework module -> (attribute path of its variable/tensor types, the name of our backend for it)
_KNOWN: dict[str, tuple[tuple[str, ...], str]] = {
    "torch": (("Tensor",), "torch"),
    "tensorflow": (("Variable", "Tensor"), "tensorflow"),
    "keras": (("Variable",), "tensorflow"),
    "jax": (("Array",), "jax"),
}
# fedmodel's own backends, registered as entry points by pyproject.toml and known here for a source checkout
_OWN: dict[str, str] = {"torch": "fedmodel_torch", "tensorflow": "fedmodel_tensorflow", "jax": "fedmodel_jax"}
_BY_VARIABLE_TYPE: dict[type, Backend] = {}


def register_backend(model_type: type, backend: Backend) -> None:
    """Use ``backend`` for every model whose type is ``model_type`` or a subclass (wins over all else)."""
    _BY_MODEL_TYPE[model_type] = backend


def unregister_backend(model_type: type) -> None:
    """Undo :func:`register_backend`."""
    _BY_MODEL_TYPE.pop(model_type, None)


def _entry_points() -> dict[str, Callable[[], Any]]:
    """Name -> loader of every backend registered in :data:`ENTRY_POINT_GROUP` (the first of a name wins)."""
    from importlib.metadata import entry_points  # only when a backend is looked up by name

    found: dict[str, Callable[[], Any]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.load)
    return found


def backend_names() -> list[str]:
    """The names of every backend installed through the ``fedmodel.backends`` entry points (and our own)."""
    return sorted({*_OWN, *_entry_points()})


def backend_package(name: str) -> Any:
    """The object the entry point ``name`` names (usually the backend's package), imported.

    Raises:
        BackendError: no backend of that name is installed, or importing it failed.
    """
    loaders = _entry_points()
    if name not in loaders and name not in _OWN:
        raise BackendError(f"no fedmodel backend named {name!r}; installed: {backend_names()}")
    try:
        return loaders[name]() if name in loaders else importlib.import_module(_OWN[name])
    except ImportError as exc:
        raise BackendError(
            f"the backend {name!r} is not installed ({exc}); pip install 'fedmodel[{name}]' or the package "
            "that provides it"
        ) from exc


def load_backend(name: str) -> Backend:
    """The :class:`Backend` registered under ``name`` (the ``BACKEND`` attribute of its entry point).

    >>> load_backend("nope")
    Traceback (most recent call last):
    ...
    fedmodel._errors.BackendError: no fedmodel backend named 'nope'; installed: [...]

    Raises:
        BackendError: no such backend, or its entry point has no ``BACKEND``.
    """
    package = backend_package(name)
    backend = getattr(package, "BACKEND", None)
    if backend is None:
        raise BackendError(f"the entry point of backend {name!r} ({package!r}) has no BACKEND attribute")
    return backend  # type: ignore[no-any-return]


def _by_variable(variable: Any) -> Backend | None:
    vtype = type(variable)
    if vtype in _BY_VARIABLE_TYPE:
        return _BY_VARIABLE_TYPE[vtype]
    for framework, (attrs, name) in _KNOWN.items():
        module = sys.modules.get(framework)  # a framework can own it only if already imported
        if module is None:
            continue
        for attr in attrs:
            cls = getattr(module, attr, None)
            if isinstance(cls, type) and issubclass(vtype, cls):
                backend = load_backend(name)
                _BY_VARIABLE_TYPE[vtype] = backend
                return backend
    return None


def backend_for(model: Any) -> Backend:
    """The :class:`Backend` for ``model``, found without importing any framework.

    Order: an explicit :func:`register_backend` entry (third parties win); the model's
    ``__fedmodel_backend__`` attribute (a backend, the name of an installed backend, or a zero-argument
    callable returning a backend); then the type of its first variable, matched against frameworks that
    are already imported.

    Raises:
        BackendError: when nothing claims the model.
    """
    for cls in type(model).__mro__:
        if cls in _BY_MODEL_TYPE:
            return _BY_MODEL_TYPE[cls]
    hook = getattr(model, "__fedmodel_backend__", None)
    if isinstance(hook, str):
        return load_backend(hook)
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
        "fedmodel.register_backend(ModelType, backend), give the class a __fedmodel_backend__ attribute (a "
        "Backend or the name of an installed one)"
    )
