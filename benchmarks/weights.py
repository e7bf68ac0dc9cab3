"""Bench 1: the weight round trip ``get_weights`` + ``assign_weights`` vs the memory-bandwidth floor.

The floor is the same bytes moved by plain numpy the way the round trip must move them: one copy
into new arrays (what ``get_weights`` returns: independent copies) and one ``np.copyto`` into
preallocated arrays (what ``assign_weights`` does into the model's existing memory). Bar: ratio <= 1.5.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

import fedmodel
from benchmarks import _backends
from benchmarks._harness import Result, Sizes, UnavailableError, measure

__all__ = ["BAR", "run"]

BAR = 1.5


def run(sizes: Sizes, backends: tuple[str, ...] = _backends.BACKENDS) -> Iterator[Result | tuple[str, str]]:
    """One row per backend (a ``sizes.weights_params``-parameter float32 model), or ``(backend, why skipped)``."""
    for name in backends:
        try:
            model = _backends.big_mlp(name, sizes.weights_params)
        except UnavailableError as exc:
            yield name, str(exc)
            continue
        yield _measure(name, model, sizes.repeat)
        del model


def _measure(name: str, model: object, repeat: int) -> Result:
    backend = fedmodel.backend_for(model)
    weights = fedmodel.get_weights(model)
    sources = [np.array(a, copy=True) for a in weights.arrays]
    targets = [np.empty_like(a) for a in weights.arrays]
    nbytes = sum(a.nbytes for a in sources)

    def round_trip() -> None:
        fedmodel.assign_weights(model, fedmodel.get_weights(model, backend=backend), backend=backend)

    def floor() -> None:
        copies = [a.copy() for a in sources]
        for dst, src in zip(targets, copies, strict=True):
            np.copyto(dst, src)

    timing = measure({"fedmodel": round_trip, "numpy": floor}, repeat)
    params = sum(a.size for a in sources)
    note = f"{params / 1e6:.1f}M params, {len(sources)} arrays, {nbytes / 2**20:.0f} MiB"
    return timing.result("weights round trip", name, "fedmodel", "numpy", BAR, note)
