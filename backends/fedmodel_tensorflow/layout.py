"""The canonical layout of a :class:`KerasModel`: Keras layers to fedmodel's neutral names.

Keras already stores kernels in the canonical axes (dense ``(in, out)``, convolution
``(*window, in, out)``), so only names change: ``Dense`` ``i`` (in layer order) gives ``dense_i/kernel``
and ``dense_i/bias``, ``Conv1D/2D/3D`` give ``conv_i/...``, ``BatchNormalization`` gives
``batch_norm_i/scale``, ``/bias``, ``/mean``, ``/var`` (Keras's gamma, beta, moving mean and moving
variance). Any other weight keeps its fedmodel name.

>>> from fedmodel_tensorflow import models
>>> [e.canonical for e in canonical_layout(models.mlp(hidden=(8,))).entries]
['dense_0/kernel', 'dense_0/bias', 'dense_1/kernel', 'dense_1/bias']
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fedmodel.layout import Layout, LayoutEntry
from fedmodel_tensorflow._compat import keras
from fedmodel_tensorflow.model import KerasModel

__all__ = ["canonical_layout"]

_BN_NAMES = {"gamma": "scale", "beta": "bias", "moving_mean": "mean", "moving_variance": "var"}


def _kind(layer: Any) -> str | None:
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        return "conv"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "batch_norm"
    return None


def _layers(container: Any) -> Iterator[Any]:
    """Every layer of a model in order, nested models' layers included (a layer that is not a model is a leaf:
    its weights, sub-layers' included, keep their fedmodel names unless the layer is dense, conv or batch norm)."""
    for layer in container.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def canonical_layout(model: KerasModel) -> Layout:
    """The :class:`fedmodel.layout.Layout` of ``model``'s weights, declared from its layers in order."""
    counters: dict[str, int] = {}
    entries: list[LayoutEntry] = []
    seen: set[str] = set()
    for layer in _layers(model.keras_model):
        kind = _kind(layer)
        index = None
        if kind is not None and layer.weights:
            counters[kind] = counters.get(kind, -1) + 1
            index = counters[kind]
        for weight in layer.weights:
            native = model.variable_name(weight.value)
            if native is None or native in seen:
                continue
            seen.add(native)
            leaf = weight.path.rsplit("/", 1)[-1]
            if kind is None or index is None:
                entries.append(LayoutEntry(native, native))
            else:
                entries.append(LayoutEntry(f"{kind}_{index}/{_BN_NAMES.get(leaf, leaf)}", native))
    return Layout(tuple(entries))
