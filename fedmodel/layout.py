"""Canonical, framework-neutral weight layouts, so one model can be trained by clients of several frameworks.

The same architecture stores its weights differently per framework: PyTorch's ``Linear.weight`` is
``(out, in)`` where Keras's ``Dense.kernel`` and Flax's ``Dense.kernel`` are ``(in, out)``; PyTorch's
convolution kernels are ``(out, in, h, w)`` where Keras and Flax use ``(h, w, in, out)``. A
:class:`Layout` declares, per variable, its canonical name and the axis permutation that turns the
native array into the canonical one. The canonical layout follows Keras/Flax: ``dense_0/kernel``
``(in, out)``, ``dense_0/bias``, ``conv_0/kernel`` ``(h, w, in, out)``, ``batch_norm_0/scale``,
``/bias``, ``/mean``, ``/var``.

>>> import numpy as np
>>> from fedmodel import ModelWeights
>>> torch_like = ModelWeights((np.zeros((3, 2), np.float32), np.zeros(3, np.float32)), (),
...                           ("0.weight", "0.bias"), ())
>>> layout = Layout((LayoutEntry("dense_0/kernel", "0.weight", (1, 0)), LayoutEntry("dense_0/bias", "0.bias")))
>>> canonical = layout.to_canonical(torch_like)
>>> canonical.trainable_names, canonical.trainable[1].shape
(('dense_0/bias', 'dense_0/kernel'), (2, 3))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedmodel._backend import Backend, backend_for
from fedmodel._errors import BackendError, WeightsError
from fedmodel._specs import shape_of
from fedmodel._weights import ModelWeights
from fedmodel.optimizers import OptimizerSpec

__all__ = [
    "CanonicalBackend",
    "CanonicalModel",
    "CanonicalVariable",
    "Layout",
    "LayoutEntry",
    "canonical",
    "inverse_permutation",
]


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """``dense_2`` sorts before ``dense_10``: digit runs compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def inverse_permutation(perm: Sequence[int]) -> tuple[int, ...]:
    """The permutation that undoes ``perm`` (``np.transpose(np.transpose(a, p), inverse(p)) == a``)."""
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


@dataclass(frozen=True)
class LayoutEntry:
    """One variable: its canonical name, its native name, and ``canonical = native.transpose(permutation)``."""

    canonical: str
    native: str
    permutation: tuple[int, ...] | None = None


def _group_names(weights: ModelWeights) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if weights.trainable_names is None or weights.non_trainable_names is None:
        raise WeightsError("a layout needs named weights (get them with fedmodel.get_weights)")
    return weights.trainable_names, weights.non_trainable_names


@dataclass(frozen=True)
class Layout:
    """A declared mapping between a model's native weights and the canonical layout of its architecture.

    Entries are matched by name in both directions, so the input order never matters; each variable
    stays in its group. Canonical weights are ordered by natural sort of their names within each group
    (the same order for every backend); native weights come back in the entries' order, which a backend
    declares in its own variable order.
    """

    entries: tuple[LayoutEntry, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        for attr in ("canonical", "native"):
            names = [getattr(e, attr) for e in self.entries]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"layout has duplicate {attr} names: {dupes}")

    def _convert(self, weights: ModelWeights, *, to_canonical: bool) -> ModelWeights:
        source = "native" if to_canonical else "canonical"
        target = "canonical" if to_canonical else "native"
        by_source = {getattr(e, source): e for e in self.entries}
        rank = {getattr(e, target): i for i, e in enumerate(self.entries)}
        groups: list[tuple[tuple[np.ndarray, ...], tuple[str, ...]]] = []
        seen: set[str] = set()
        names_by_group = _group_names(weights)
        for group, names, arrays in zip(
            ("trainable", "non_trainable"), names_by_group, (weights.trainable, weights.non_trainable), strict=True
        ):
            unknown = [n for n in names if n not in by_source]
            if unknown:
                raise WeightsError(
                    f"{group} variables {unknown} have no entry in the layout "
                    f"(known {source} names: {sorted(by_source)})"
                )
            converted: dict[str, np.ndarray] = {}
            for name, arr in zip(names, arrays, strict=True):
                entry = by_source[name]
                perm = entry.permutation
                if perm is not None:
                    if len(perm) != arr.ndim:
                        raise WeightsError(
                            f"{group} {name!r}: shape {arr.shape} cannot take the permutation {perm} declared "
                            f"for {entry.canonical!r}"
                        )
                    arr = np.ascontiguousarray(np.transpose(arr, perm if to_canonical else inverse_permutation(perm)))
                converted[getattr(entry, target)] = arr
            seen.update(converted)
            order = sorted(converted, key=_natural_key) if to_canonical else sorted(converted, key=rank.__getitem__)
            groups.append((tuple(converted[n] for n in order), tuple(order)))
        absent = [getattr(e, target) for e in self.entries if getattr(e, target) not in seen]
        if absent:
            raise WeightsError(f"the weights lack {absent}, which the layout declares")
        (t, tn), (n, nn) = groups
        return ModelWeights(t, n, tn, nn)

    def to_canonical(self, weights: ModelWeights) -> ModelWeights:
        """Native weights (as :func:`fedmodel.get_weights` returns them) in the canonical layout.

        Raises:
            WeightsError: a variable the layout does not declare, a declared one that is absent, or a
                shape that the declared permutation cannot explain.
        """
        return self._convert(weights, to_canonical=True)

    def from_canonical(self, weights: ModelWeights) -> ModelWeights:
        """Canonical weights back in the native layout (ready for :func:`fedmodel.assign_weights`)."""
        return self._convert(weights, to_canonical=False)


class CanonicalVariable:
    """A native variable seen in canonical axes: ``shape`` is permuted, reads and writes go through the wrapper."""

    __slots__ = ("native", "permutation", "shape")

    def __init__(self, native: Any, permutation: tuple[int, ...] | None) -> None:
        self.native = native
        self.permutation = permutation
        shape = shape_of(native)
        self.shape = shape if permutation is None else tuple(shape[p] for p in permutation)

    @property
    def dtype(self) -> Any:
        """The native variable's dtype."""
        return self.native.dtype


def _unwrap(variable: Any) -> Any:
    return variable.native if isinstance(variable, CanonicalVariable) else variable


def _permutation(variable: Any) -> tuple[int, ...] | None:
    return variable.permutation if isinstance(variable, CanonicalVariable) else None


class CanonicalModel:
    """Any :class:`fedmodel.Model` presented in its architecture's canonical layout.

    Its weights carry canonical names, canonical axes and canonical order, so a model wrapped this way
    exchanges :class:`~fedmodel.ModelWeights` with a wrapped model of another framework: the simulation
    runner and the Flower integration need nothing else to mix frameworks in one federation. Every other
    member is the wrapped model's.

    Build it with :func:`canonical`.
    """

    def __init__(self, model: Any, layout: Layout, backend: Backend) -> None:
        self.model, self.layout, self.inner_backend = model, layout, backend
        by_native = {e.native: e for e in layout.entries}
        self._groups: list[tuple[tuple[int, ...], tuple[CanonicalVariable, ...], tuple[str, ...]]] = []
        for variables in (list(model.trainable_variables), list(model.non_trainable_variables)):
            native_names = backend.variable_names(model, variables)
            unknown = [n for n in native_names if n not in by_native]
            if unknown:
                raise WeightsError(f"variables {unknown} have no entry in the layout")
            canonical_names = [by_native[n].canonical for n in native_names]
            order = tuple(sorted(range(len(variables)), key=lambda i: _natural_key(canonical_names[i])))
            wrapped = tuple(CanonicalVariable(variables[i], by_native[native_names[i]].permutation) for i in order)
            self._groups.append((order, wrapped, tuple(canonical_names[i] for i in order)))
        self._names = {
            id(v): name for _, wrapped, names in self._groups for v, name in zip(wrapped, names, strict=True)
        }
        self.__fedmodel_backend__ = CanonicalBackend(backend)

    @property
    def trainable_variables(self) -> tuple[CanonicalVariable, ...]:
        """The wrapped model's trainable variables, in canonical order and axes."""
        return self._groups[0][1]

    @property
    def non_trainable_variables(self) -> tuple[CanonicalVariable, ...]:
        """The wrapped model's non-trainable variables, in canonical order and axes."""
        return self._groups[1][1]

    @property
    def local_variables(self) -> Any:
        """The wrapped model's local variables (never transmitted, so never converted)."""
        return self.model.local_variables

    @property
    def input_spec(self) -> Any:
        """The wrapped model's input spec."""
        return self.model.input_spec

    @property
    def federated_output_computation(self) -> Any:
        """The wrapped model's metric aggregator."""
        return self.model.federated_output_computation

    def forward_pass(self, batch_input: Any, training: bool = True) -> Any:
        """The wrapped model's forward pass."""
        return self.model.forward_pass(batch_input, training=training)

    def predict_on_batch(self, x: Any, training: bool = False) -> Any:
        """The wrapped model's predictions."""
        return self.model.predict_on_batch(x, training=training)

    def report_local_outputs(self) -> Any:
        """The wrapped model's unfinalized metrics."""
        return self.model.report_local_outputs()

    def reset_metrics(self) -> None:
        """Reset the wrapped model's metrics."""
        self.model.reset_metrics()

    def canonical_name(self, variable: CanonicalVariable) -> str:
        """The canonical name of one of this model's variables."""
        return self._names[id(variable)]


class CanonicalBackend:
    """The wrapped model's :class:`~fedmodel.Backend`, speaking canonical names and axes."""

    name = "canonical"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def variable_names(self, model: CanonicalModel, variables: Sequence[Any]) -> list[str]:
        """Canonical names of weights; local variables keep the wrapped backend's names."""
        return [
            model.canonical_name(v)
            if isinstance(v, CanonicalVariable)
            else self.inner.variable_names(model.model, [v])[0]
            for v in variables
        ]

    def read_variables(self, variables: Sequence[Any], *, copy: bool = True) -> list[np.ndarray]:
        """Native reads, permuted to canonical axes (a permuted array is always a fresh copy)."""
        views = self.inner.read_variables([_unwrap(v) for v in variables], copy=False)  # one copy below, not two
        out = []
        for v, view in zip(variables, views, strict=True):
            perm = _permutation(v)
            if perm is not None:
                out.append(np.array(np.transpose(view, perm), order="C"))  # always a fresh copy
            else:
                out.append(np.array(view, copy=True) if copy else view)
        return out

    def write_variables(self, variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
        """Permute back to native axes, then one native write of every variable."""
        native_values = []
        for v, value in zip(variables, values, strict=True):
            perm = _permutation(v)
            native_values.append(
                value if perm is None else np.ascontiguousarray(np.transpose(value, inverse_permutation(perm)))
            )
        self.inner.write_variables([_unwrap(v) for v in variables], native_values)

    def to_native(self, model: CanonicalModel, batch: Any) -> Any:
        """The wrapped backend's conversion."""
        return self.inner.to_native(model.model, batch)

    def make_optimizer(self, model: CanonicalModel, spec: OptimizerSpec) -> Any:
        """The wrapped backend's optimizer for the wrapped model."""
        return self.inner.make_optimizer(model.model, spec)

    def train_step(self, model: CanonicalModel, batch: Any, optimizer: Any) -> Any:
        """The wrapped backend's training step on the wrapped model."""
        return self.inner.train_step(model.model, batch, optimizer)


def canonical(model: Any, layout: Layout | None = None, *, backend: Backend | None = None) -> CanonicalModel:
    """``model`` in the canonical layout of its architecture, ready to federate with other frameworks.

    Args:
        model: any :class:`fedmodel.Model`.
        layout: the declared mapping; by default the backend's own ``canonical_layout(model)``
            (the torch, TensorFlow and JAX backends declare one for dense, convolution and batch-norm layers).
        backend: overrides :func:`fedmodel.backend_for`.

    Raises:
        WeightsError: a variable the layout does not declare.
        BackendError: no layout given and the backend declares none.
    """
    backend = backend or backend_for(model)
    if layout is None:
        declare = getattr(backend, "canonical_layout", None)
        if declare is None:
            raise BackendError(
                f"the {getattr(backend, 'name', type(backend).__name__)} backend declares no canonical layout"
            )
        layout = declare(model)
    return CanonicalModel(model, layout, backend)
