"""The canonical layout of a :class:`JaxModel`: pytree key paths to fedmodel's neutral names.

JAX and Flax already store kernels as Keras does (dense ``(in, out)``, convolution ``(h, w, in, out)``),
so only names change. Variables are grouped by their parent path without the collection
(``params/Dense_0/kernel`` and ``batch_stats/BatchNorm_0/mean`` belong to ``Dense_0`` and
``BatchNorm_0``); a group with a 2-D ``kernel`` is ``dense_i``, one with a higher-rank ``kernel`` is
``conv_i``, one with ``scale`` and ``mean`` is ``batch_norm_i`` (numbered per kind in natural order of
the group names); any other variable, and every variable of a recurrent cell (``OptimizedLSTMCell_0/hi``),
keeps its own name.

>>> from fedmodel_jax import models
>>> [e.canonical for e in canonical_layout(models.mlp(hidden=(8,))).entries]
['dense_0/kernel', 'dense_0/bias', 'dense_1/kernel', 'dense_1/bias']
"""

from __future__ import annotations

import re

from fedmodel.layout import Layout, LayoutEntry
from fedmodel_jax.model import JaxModel

__all__ = ["canonical_layout"]


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def _recurrent(parent: str) -> bool:
    """Whether a group belongs to a recurrent cell (``OptimizedLSTMCell_0/hi``, ``RNN_0/...``, ``GRUCell_0/...``)."""
    return any(p.startswith(("RNN", "LSTM", "GRU")) or "LSTMCell" in p or "GRUCell" in p for p in parent.split("/"))


def canonical_layout(model: JaxModel) -> Layout:
    """The :class:`fedmodel.layout.Layout` of ``model``'s weights, inferred from key paths and ranks."""
    variables = [*model.trainable_variables, *model.non_trainable_variables]
    groups: dict[str, dict[str, tuple[str, int]]] = {}
    for var in variables:
        parts = var.name.split("/")
        parent, leaf = "/".join(parts[1:-1]), parts[-1]
        groups.setdefault(parent, {})[leaf] = (var.name, len(var.shape))
    kinds: dict[str, str] = {}
    for parent, leaves in groups.items():
        if _recurrent(parent):
            continue  # recurrent cells' gates keep their own names (the canonical layout has no RNN entries)
        if "kernel" in leaves:
            kinds[parent] = "dense" if leaves["kernel"][1] == 2 else "conv"
        elif "scale" in leaves and "mean" in leaves:
            kinds[parent] = "batch_norm"
    index: dict[str, int] = {}
    for kind in ("dense", "conv", "batch_norm"):
        members = sorted((p for p, k in kinds.items() if k == kind), key=_natural)
        index.update({p: i for i, p in enumerate(members)})
    entries = []
    for var in variables:
        parts = var.name.split("/")
        parent, leaf = "/".join(parts[1:-1]), parts[-1]
        canonical = f"{kinds[parent]}_{index[parent]}/{leaf}" if parent in kinds else var.name
        entries.append(LayoutEntry(canonical, var.name))
    return Layout(tuple(entries))
