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

import numpy as np

from fedmodel._errors import WeightsError
from fedmodel._weights import ModelWeights

__all__ = ["Layout", "LayoutEntry", "inverse_permutation"]


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
