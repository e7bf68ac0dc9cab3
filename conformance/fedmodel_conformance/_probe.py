"""The gradient a backend applies, read back from one plain-SGD step: ``g = (w_before - w_after) / lr``.

The probe's spec is the one other checks train with (``SGD(0.1)``), so a compiling backend compiles no
extra step for it. Its rounding error (``w`` and ``w - lr g`` stored in the variable's precision) is
bounded by :func:`gradient_error`, which the checks fold into their tolerances.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import fedmodel
from fedmodel_conformance._core import exclusive_groups

__all__ = [
    "PROBE",
    "float_trainable",
    "gradient",
    "gradient_error",
    "second_step_mismatch",
    "steps_mismatch",
    "trainable_values",
]

PROBE = fedmodel.SGD(learning_rate=0.1)
"""The spec of every probe step."""


def trainable_values(backend: fedmodel.Backend, model: Any) -> list[np.ndarray]:
    """The trainable variables' values as float64 arrays, once each, in the model's order."""
    return [np.asarray(a, np.float64) for a in backend.read_variables(exclusive_groups(model)["trainable"])]


def float_trainable(backend: fedmodel.Backend, model: Any) -> list[bool]:
    """For each (exclusive) trainable variable, whether it is floating-point and not empty."""
    values = backend.read_variables(exclusive_groups(model)["trainable"])
    return [np.asarray(a).dtype.kind == "f" and np.asarray(a).size > 0 for a in values]


def gradient(backend: fedmodel.Backend, model: Any, weights: fedmodel.ModelWeights, batch: Any) -> list[np.ndarray]:
    """The gradient ``train_step`` applies at ``weights`` on ``batch`` (float64, per trainable variable).

    ``model`` is left holding the weights after the probe's step.
    """
    fedmodel.assign_weights(model, weights, backend=backend)
    before = trainable_values(backend, model)
    backend.train_step(model, batch, backend.make_optimizer(model, PROBE))
    after = trainable_values(backend, model)
    return [(b - a) / PROBE.learning_rate for b, a in zip(before, after, strict=True)]


def gradient_error(w: list[np.ndarray], g: list[np.ndarray], dtypes: list[np.dtype[Any]]) -> list[np.ndarray]:
    """A bound on each coordinate's error in :func:`gradient`: the rounding of ``w`` and ``w - lr g``, over ``lr``."""
    out = []
    for wi, gi, dt in zip(w, g, dtypes, strict=True):
        eps = float(np.finfo(dt).eps) if dt.kind == "f" else 0.0
        out.append(2 * eps * (2 * np.abs(wi) / PROBE.learning_rate + np.abs(gi)) + 1e-6 * np.abs(gi))
    return out


def steps_mismatch(want: list[np.ndarray], got: list[np.ndarray], start: list[np.ndarray]) -> str | None:
    """Where ``got`` differs from ``want`` by more than a thousandth of the way from ``start`` (plus rounding)."""
    for i, (w, g, s) in enumerate(zip(want, got, start, strict=True)):
        tol = 1e-3 * np.abs(w - s).max(initial=0.0) + 4e-7 * np.abs(s).max(initial=1.0)
        diff = float(np.abs(w - g).max(initial=0.0))
        if diff > tol:
            return f"trainable variable {i}: max difference {diff:.3g} (allowed {tol:.2g})"
    return None


def second_step_mismatch(backend: fedmodel.Backend, model: Any, other: Any, batches: list[Any]) -> str | None:
    """Two ``PROBE`` steps on ``model`` against one fresh ``PROBE`` step on ``other`` from the first step's weights.

    ``None`` when the second step equals the fresh one (nothing of the first step leaks into it).
    """
    optimizer = backend.make_optimizer(model, PROBE)
    backend.train_step(model, batches[0], optimizer)
    middle = fedmodel.get_weights(model, backend=backend)
    start = trainable_values(backend, model)
    backend.train_step(model, batches[1], optimizer)
    fedmodel.assign_weights(other, middle, backend=backend)
    backend.train_step(other, batches[1], backend.make_optimizer(other, PROBE))
    return steps_mismatch(trainable_values(backend, other), trainable_values(backend, model), start)
