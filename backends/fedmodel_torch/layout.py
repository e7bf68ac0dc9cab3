"""The canonical layout of a :class:`TorchModel`: torch's names and axes to fedmodel's neutral ones.

``nn.Linear`` ``i`` (in module order) becomes ``dense_i/kernel`` ``(in, out)`` (torch stores
``(out, in)``) and ``dense_i/bias``; ``nn.Conv1d``/``nn.Conv2d`` become ``conv_i/kernel`` with the
spatial axes first and ``(in, out)`` last, as Keras and Flax store them; BatchNorm becomes
``batch_norm_i/scale``, ``/bias``, ``/mean``, ``/var`` and ``/num_batches_tracked`` (which Keras and
Flax do not have, so such a model only exchanges weights with other torch clients). Any other
parameter keeps its torch name.

>>> from fedmodel_torch import models
>>> [e.canonical for e in canonical_layout(models.mlp(hidden=(8,))).entries]
['dense_0/kernel', 'dense_0/bias', 'dense_1/kernel', 'dense_1/bias']
"""

from __future__ import annotations

from torch import nn

from fedmodel.layout import Layout, LayoutEntry
from fedmodel_torch.model import TorchModel

__all__ = ["canonical_layout"]

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # torch's public batch norms

_BN_NAMES = {
    "weight": "scale",
    "bias": "bias",
    "running_mean": "mean",
    "running_var": "var",
    "num_batches_tracked": "num_batches_tracked",
}


def _entries_of(prefix: str, module: nn.Module, counters: dict[str, int]) -> list[LayoutEntry]:
    def native(local: str) -> str:
        return f"{prefix}.{local}" if prefix else local

    def next_index(kind: str) -> int:
        counters[kind] = counters.get(kind, -1) + 1
        return counters[kind]

    if isinstance(module, nn.Linear):
        i = next_index("dense")
        out = [LayoutEntry(f"dense_{i}/kernel", native("weight"), (1, 0))]
        return out + ([LayoutEntry(f"dense_{i}/bias", native("bias"))] if module.bias is not None else [])
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        i = next_index("conv")
        spatial = module.weight.ndim - 2
        perm = (*range(2, 2 + spatial), 1, 0)  # (out, in, *k) -> (*k, in, out)
        out = [LayoutEntry(f"conv_{i}/kernel", native("weight"), perm)]
        return out + ([LayoutEntry(f"conv_{i}/bias", native("bias"))] if module.bias is not None else [])
    if isinstance(module, _BATCH_NORMS):
        i = next_index("batch_norm")
        names = [n for n, _ in module.named_parameters(recurse=False)] + [
            n for n, b in module.named_buffers(recurse=False) if b is not None
        ]
        return [LayoutEntry(f"batch_norm_{i}/{_BN_NAMES[n]}", native(n)) for n in names if n in _BN_NAMES]
    own = [n for n, _ in module.named_parameters(recurse=False)] + [n for n, _ in module.named_buffers(recurse=False)]
    return [LayoutEntry(native(n), native(n)) for n in own]


def canonical_layout(model: TorchModel) -> Layout:
    """The :class:`fedmodel.layout.Layout` of ``model``'s weights, declared from its modules in order."""
    counters: dict[str, int] = {}
    entries: list[LayoutEntry] = []
    for prefix, module in model.module.named_modules():
        entries.extend(_entries_of(prefix, module, counters))
    trainable, non_trainable, _ = model.named_variables()
    sent = {name for name, _ in trainable + non_trainable}
    return Layout(tuple(e for e in entries if e.native in sent))
