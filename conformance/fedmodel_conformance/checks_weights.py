"""Checks of the weights through the core's ``get_weights``/``assign_weights`` and the backend's read/write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import fedmodel
from fedmodel_conformance._core import (
    Case,
    CheckFailure,
    CheckSkipped,
    Snapshot,
    all_variables,
    close,
    exclusive_groups,
    fresh,
    make_batch,
    perturbed,
    register,
    repro,
    seed_for,
)

__all__: list[str] = []

ROUND_TRIP = (
    "get_weights -> assign_weights -> get_weights is bit-identical (names, dtypes, shapes, bytes), "
    "get_weights(copy=False) reads the same values, and the arrays are independent copies, never writable "
    "aliases into the model"
)


def _weight_vars(model: Any) -> list[Any]:
    g = exclusive_groups(model)
    return g["trainable"] + g["non_trainable"]


def _bitwise_diff(a: fedmodel.ModelWeights, b: fedmodel.ModelWeights) -> str | None:
    if a.names != b.names:
        return f"names {a.names} became {b.names}"
    if len(a.arrays) != len(b.arrays):
        return f"{len(a.arrays)} arrays became {len(b.arrays)}"
    for (name, x), y in zip(a.items(), b.arrays, strict=True):
        if x.dtype != y.dtype or x.shape != y.shape:
            return f"{name!r}: {x.dtype}{list(x.shape)} became {y.dtype}{list(y.shape)}"
        if np.ascontiguousarray(x).tobytes() != np.ascontiguousarray(y).tobytes():
            return f"{name!r}: the bytes differ"
    return None


@register(ROUND_TRIP)
def check_weights_round_trip(case: Case) -> None:
    """Clause: weights survive a round trip exactly, and neither side aliases the other's memory."""
    model, backend = fresh(case)
    note = repro("weights_round_trip")
    for start in ("the initial weights", "perturbed weights"):
        if start == "perturbed weights":
            fedmodel.assign_weights(
                model,
                perturbed(fedmodel.get_weights(model, backend=backend), np.random.default_rng(0)),
                backend=backend,
            )
        first = fedmodel.get_weights(model, backend=backend)
        fedmodel.assign_weights(model, first, backend=backend)
        diff = _bitwise_diff(first, fedmodel.get_weights(model, backend=backend))
        if diff:
            raise CheckFailure(ROUND_TRIP, f"get -> assign -> get of {start}", "bit-identical weights", diff, note)
        diff = _bitwise_diff(first, fedmodel.get_weights(model, backend=backend, copy=False))
        if diff:
            where = f"get_weights(copy=False) (Backend.read_variables(copy=False)) of {start}"
            raise CheckFailure(ROUND_TRIP, where, "the values get_weights() reads", diff, note)
    snap = Snapshot.take(backend, model, _weight_vars(model))
    got = fedmodel.get_weights(model, backend=backend)
    for a in got.arrays:
        if a.flags.writeable:
            a[...] = np.ones((), a.dtype)
    snap.assert_unchanged(backend, ROUND_TRIP, "writing into the arrays get_weights returned", note)
    mine = perturbed(got, np.random.default_rng(1)).copy()
    fedmodel.assign_weights(model, mine, backend=backend)
    snap = Snapshot.take(backend, model, _weight_vars(model))
    for a in mine.arrays:
        a[...] = np.zeros((), a.dtype)
    snap.assert_unchanged(
        backend, ROUND_TRIP, "writing into the arrays given to assign_weights, after it returned", note
    )


PERTURBED = "different weights give different outputs: assigned weights reach forward_pass and predict_on_batch"


@register(PERTURBED)
def check_perturbed_weights_change_predictions(case: Case) -> None:
    """Clause: after ``assign_weights`` of perturbed weights the loss and the predictions change."""
    model, backend = fresh(case)
    batch = make_batch(case, 5, np.random.default_rng(seed_for("perturbed_weights_change_predictions")))
    x, _ = fedmodel.split_batch(batch)

    def outputs() -> dict[str, Any]:
        out = model.forward_pass(batch, training=False)
        pred = model.predict_on_batch(x, training=False)
        return {
            "forward_pass(...).loss": out.loss,
            "forward_pass(...).predictions": out.predictions,
            "predict_on_batch(x)": pred,
        }

    before = outputs()
    fedmodel.assign_weights(
        model, perturbed(fedmodel.get_weights(model, backend=backend), np.random.default_rng(2)), backend=backend
    )
    after = outputs()
    for where, value in before.items():
        if close(value, after[where], rtol=1e-6, atol=1e-7):
            raise CheckFailure(
                PERTURBED,
                where,
                "a different value after assigning perturbed weights",
                "unchanged",
                repro("perturbed_weights_change_predictions", batch_size=5),
            )


BAD_ASSIGN = (
    "assign_weights with a wrong count, name, shape or dtype raises fedmodel.WeightsError and changes nothing; "
    "valid values in any numpy layout are assigned exactly, or refused with WeightsError, all or nothing"
)


def _bad_variants(good: fedmodel.ModelWeights) -> list[tuple[str, Callable[[], fedmodel.ModelWeights]]]:
    """``(description, builder)`` of invalid weights; every other value is valid *and different*."""
    arrays = list(good.arrays)
    last, name = arrays[-1], (good.names or ("<last>",) * len(arrays))[-1]
    n = len(good.trainable)

    def replace_last(value: np.ndarray) -> fedmodel.ModelWeights:
        return good.with_arrays([*arrays[:-1], value])

    def split(arrs: list[np.ndarray], names: tuple[str, ...] | None = None) -> fedmodel.ModelWeights:
        k = min(n, len(arrs))
        tn = good.trainable_names if names is None else names[:k]
        nn = good.non_trainable_names if names is None else names[k:]
        return fedmodel.ModelWeights(tuple(arrs[:k]), tuple(arrs[k:]), tn, nn)

    wrong_dtype = np.dtype("float32" if last.dtype != np.float32 else "float64")
    variants: list[tuple[str, Callable[[], fedmodel.ModelWeights]]] = [
        (f"{name!r} with shape {(*last.shape, 2)}", lambda: replace_last(np.zeros((*last.shape, 2), last.dtype))),
        (f"{name!r} as {wrong_dtype.name}", lambda: replace_last(last.astype(wrong_dtype))),
        (
            "one array too few",
            lambda: (
                fedmodel.ModelWeights(good.trainable, good.non_trainable[:-1])
                if good.non_trainable
                else fedmodel.ModelWeights(good.trainable[:-1], ())
            ),
        ),
        ("one trainable array too many", lambda: fedmodel.ModelWeights((*good.trainable, last), good.non_trainable)),
    ]
    if good.names is not None:
        renamed = (*good.names[:-1], name + "_renamed")
        variants.append((f"{name!r} named {renamed[-1]!r}", lambda: split(arrays, renamed)))
    return variants


def _layouts(last: np.ndarray) -> list[tuple[str, np.ndarray]]:
    readonly = np.array(last, copy=True)
    readonly.flags.writeable = False
    out = [("read-only", readonly)]
    if last.ndim:
        out.append(("non-contiguous", np.stack([last, last], axis=-1)[..., 0]))
    if last.dtype.itemsize > 1:
        out.append(("non-native byte order", last.astype(last.dtype.newbyteorder())))
    return out


@register(BAD_ASSIGN)
def check_bad_assign_changes_nothing(case: Case) -> None:
    """Clause: a refused assignment is atomic; the bad value comes last so a partial write would show."""
    model, backend = fresh(case)
    good = fedmodel.get_weights(model, backend=backend)
    if not good.arrays:
        raise CheckSkipped("the model has no weights")
    different = perturbed(good, np.random.default_rng(3))
    fedmodel.assign_weights(model, different, backend=backend)
    expected = fedmodel.get_weights(model, backend=backend)  # what assigning `different` normally gives
    fedmodel.assign_weights(model, good, backend=backend)
    snap = Snapshot.take(backend, model, all_variables(model))
    for what, build in _bad_variants(different):
        note = repro("bad_assign_changes_nothing", weights=what)
        try:
            fedmodel.assign_weights(model, build(), backend=backend)
        except fedmodel.WeightsError:
            pass
        except Exception as exc:
            raise CheckFailure(BAD_ASSIGN, f"weights with {what}", "fedmodel.WeightsError", repr(exc), note) from exc
        else:
            raise CheckFailure(BAD_ASSIGN, f"weights with {what}", "fedmodel.WeightsError", "assigned", note)
        snap.assert_unchanged(backend, BAD_ASSIGN, f"the refused assign_weights (weights with {what})", note)
    for layout, value in _layouts(different.arrays[-1]):
        weights = different.with_arrays([*different.arrays[:-1], value])
        note = repro("bad_assign_changes_nothing", last_value_layout=layout)
        try:
            fedmodel.assign_weights(model, weights, backend=backend)
        except fedmodel.WeightsError:
            snap.assert_unchanged(backend, BAD_ASSIGN, f"the refused assign_weights (last value {layout})", note)
            continue
        except Exception as exc:
            raise CheckFailure(
                BAD_ASSIGN,
                f"weights whose last value is {layout}",
                "assigned, or WeightsError changing nothing",
                repr(exc),
                note,
            ) from exc
        now = fedmodel.get_weights(model, backend=backend)
        for (name, want), got in zip(expected.items(), now.arrays, strict=True):
            if not np.array_equal(want, got):
                raise CheckFailure(BAD_ASSIGN, f"{name!r} after assigning a {layout} value", want, got, note)
        fedmodel.assign_weights(model, good, backend=backend)
