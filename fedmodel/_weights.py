"""Framework-neutral weights: :class:`ModelWeights`, :func:`get_weights` and :func:`assign_weights`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedmodel._backend import Backend, backend_for
from fedmodel._errors import WeightsError

__all__ = ["ModelWeights", "assign_weights", "get_weights"]


@dataclass(frozen=True)
class ModelWeights:
    """The transmitted state of a model: trainable and non-trainable values as numpy arrays, with names.

    Names are stable paths (``dense/kernel``, ``fc.weight``); ``None`` names mean "positional" and
    skip the name check on assignment.

    >>> w = ModelWeights((np.ones((2, 2), np.float32),), (), trainable_names=("kernel",))
    >>> w.names, w.num_parameters
    (('kernel',), 4)
    """

    trainable: tuple[np.ndarray, ...]
    non_trainable: tuple[np.ndarray, ...] = ()
    trainable_names: tuple[str, ...] | None = None
    non_trainable_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "trainable", tuple(self.trainable))
        object.__setattr__(self, "non_trainable", tuple(self.non_trainable))
        for group in ("trainable", "non_trainable"):
            names = getattr(self, f"{group}_names")
            if names is not None:
                names = tuple(names)
                object.__setattr__(self, f"{group}_names", names)
                if len(names) != len(getattr(self, group)):
                    raise WeightsError(f"{len(getattr(self, group))} {group} arrays but {len(names)} {group} names")

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """Trainable then non-trainable arrays, in order."""
        return self.trainable + self.non_trainable

    @property
    def names(self) -> tuple[str, ...] | None:
        """Trainable then non-trainable names, or ``None`` when positional."""
        if self.trainable_names is None or self.non_trainable_names is None:
            if not self.non_trainable and self.trainable_names is not None:
                return self.trainable_names
            return None
        return self.trainable_names + self.non_trainable_names

    @property
    def num_parameters(self) -> int:
        """Total number of scalar values."""
        return sum(int(a.size) for a in self.arrays)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, array)`` pairs, trainable first; positional names are ``trainable/0``..."""
        names = self.names or tuple(
            [f"trainable/{i}" for i in range(len(self.trainable))]
            + [f"non_trainable/{i}" for i in range(len(self.non_trainable))]
        )
        return iter(zip(names, self.arrays, strict=True))

    def with_arrays(self, arrays: Sequence[np.ndarray]) -> ModelWeights:
        """The same names with new arrays (trainable first), e.g. after aggregation."""
        arrays = tuple(arrays)
        n = len(self.trainable)
        if len(arrays) != n + len(self.non_trainable):
            raise WeightsError(f"expected {n + len(self.non_trainable)} arrays, got {len(arrays)}")
        return ModelWeights(arrays[:n], arrays[n:], self.trainable_names, self.non_trainable_names)

    def copy(self) -> ModelWeights:
        """Independent, writable copies of every array."""
        return self.with_arrays([np.array(a, copy=True) for a in self.arrays])


def get_weights(model: Any, *, copy: bool = True, backend: Backend | None = None) -> ModelWeights:
    """Read a model's trainable and non-trainable variables as :class:`ModelWeights`.

    Args:
        model: any :class:`fedmodel.Model`.
        copy: ``True`` (default) returns independent arrays, safe to keep across rounds. ``False``
            returns read-only zero-copy views where the framework allows it (PyTorch and JAX on CPU):
            they are *live* and change when the model trains.
        backend: overrides :func:`fedmodel.backend_for`.

    Models of different frameworks exchange weights through :func:`fedmodel.layout.canonical`.
    """
    backend = backend or backend_for(model)
    groups = []
    for group in (model.trainable_variables, model.non_trainable_variables):
        variables = list(group)
        values = backend.read_variables(variables, copy=copy)
        if not copy:
            for v in values:
                if v.flags.writeable:
                    v.flags.writeable = False
        groups.append((tuple(values), tuple(backend.variable_names(model, variables))))
    (t, tn), (n, nn) = groups
    return ModelWeights(t, n, tn, nn)


def _validate(
    group: str,
    current: Sequence[np.ndarray],
    names: Sequence[str],
    values: Sequence[Any],
    given_names: Sequence[str] | None,
) -> list[np.ndarray]:
    """``values`` as arrays once each matches, by position, the name, shape and dtype of ``current``.

    ``current`` are the variables' values as the backend reads them: the core asks nothing of the
    variable objects themselves (they may be opaque handles).
    """
    if len(values) != len(current):
        raise WeightsError(f"{group}: the model has {len(current)} variables, the weights have {len(values)}")
    if given_names is not None and tuple(given_names) != tuple(names):
        for i, (want, got) in enumerate(zip(names, given_names, strict=True)):
            if want != got:
                raise WeightsError(f"{group}[{i}]: expected the variable named {want!r}, got {got!r}")
    checked = []
    for i, (now, name, value) in enumerate(zip(current, names, values, strict=True)):
        if not isinstance(value, np.ndarray) and not np.isscalar(value):
            raise WeightsError(f"{group} {name!r} (index {i}): expected a numpy array, got {type(value).__name__}")
        arr = np.asarray(value)
        now = np.asarray(now)
        if arr.shape != now.shape:
            raise WeightsError(f"{group} {name!r} (index {i}): expected shape {now.shape}, got {arr.shape}")
        # equal dtypes first (numpy's dtype.name is slow); by name, a byte-order difference is no mismatch
        if arr.dtype != now.dtype and arr.dtype.name != now.dtype.name:
            raise WeightsError(f"{group} {name!r} (index {i}): expected dtype {now.dtype.name}, got {arr.dtype.name}")
        checked.append(arr)
    return checked


def assign_weights(model: Any, weights: ModelWeights, *, backend: Backend | None = None) -> None:
    """Write ``weights`` into the model's trainable and non-trainable variables, all or nothing.

    Every count, name, shape and dtype is checked before the first write; nothing is cast. The shapes
    and dtypes expected are those of the values ``backend.read_variables(..., copy=False)`` returns (on
    an accelerator that read is a device-to-host copy).

    Raises:
        WeightsError: naming the variable, expected and actual; no variable was changed.
    """
    if not isinstance(weights, ModelWeights):
        raise WeightsError(f"expected fedmodel.ModelWeights, got {type(weights).__name__}")
    backend = backend or backend_for(model)
    plans = []
    for group, variables, values, given in (
        ("trainable", list(model.trainable_variables), weights.trainable, weights.trainable_names),
        ("non_trainable", list(model.non_trainable_variables), weights.non_trainable, weights.non_trainable_names),
    ):
        names = backend.variable_names(model, variables)
        current = backend.read_variables(variables, copy=False) if variables else []
        plans.append((variables, _validate(group, current, names, values, given)))
        del current  # nothing of the model's memory stays referenced while it is written
    for variables, arrays in plans:
        if variables:
            backend.write_variables(variables, arrays)
