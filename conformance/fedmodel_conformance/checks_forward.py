"""Checks of ``input_spec``, ``forward_pass``, ``predict_on_batch`` and ``Backend.to_native``."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import fedmodel
from fedmodel import tree as _tree
from fedmodel_conformance._core import (
    TRAIN_SIZE,
    Case,
    CheckFailure,
    Snapshot,
    all_variables,
    close,
    concat_batches,
    exclusive_groups,
    fresh,
    make_batch,
    register,
    repro,
    scale_floats,
    seed_for,
    training_size,
)

__all__: list[str] = []


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(seed_for(name))


def _rebuild(like: Any, x: Any, y: Any) -> Any:
    """A batch in the same convention (pair or mapping) as ``like``."""
    return {"x": x, "y": y} if isinstance(like, Mapping) else (x, y)


def _other_convention(batch: Any) -> Any:
    x, y = fedmodel.split_batch(batch)
    return (x, y) if isinstance(batch, Mapping) else {"x": x, "y": y}


ACCEPTS = "forward_pass accepts every batch compatible with input_spec (any batch size, as a pair or a mapping)"


@register(ACCEPTS)
def check_input_spec_accepts_generated_batch(case: Case) -> None:
    """Clause: a batch generated from ``input_spec`` runs through forward_pass and predict_on_batch."""
    model, _ = fresh(case)
    rng = _rng("input_spec_accepts_generated_batch")
    for size in (1, 3, 8):
        batch = make_batch(case, size, rng)
        note = repro("input_spec_accepts_generated_batch", batch_size=size)
        try:
            fedmodel.check_batch(model.input_spec, batch)
        except fedmodel.SpecError as exc:
            raise CheckFailure(ACCEPTS, "the case's make_batch", "a batch matching input_spec", str(exc), note) from exc
        for form, b in (("as generated", batch), ("in the other convention", _other_convention(batch))):
            for training in (False, True) if size >= case.min_training_batch_size else (False,):
                try:
                    model.forward_pass(b, training=training)
                except Exception as exc:
                    raise CheckFailure(
                        ACCEPTS,
                        f"forward_pass(batch {form}, training={training})",
                        "the batch is accepted",
                        f"{type(exc).__name__}: {exc}",
                        note,
                    ) from exc
        try:
            model.predict_on_batch(fedmodel.split_batch(batch)[0], training=False)
        except Exception as exc:
            raise CheckFailure(
                ACCEPTS, "predict_on_batch(x)", "x is accepted", f"{type(exc).__name__}: {exc}", note
            ) from exc


REJECTS = "forward_pass rejects a batch incompatible with input_spec with fedmodel.SpecError, changing no variable"


def _wrong_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    swaps = {"float32": "float64", "float64": "float32", "float16": "float32", "int64": "int32", "int32": "int64"}
    return np.dtype(swaps.get(dtype.name, "float32" if dtype.kind != "f" else "float64"))


def _violations(model: Any, batch: Any) -> list[tuple[str, Any]]:
    """``(description, bad batch)`` pairs: a wrong dtype per side, a wrong fixed dimension, a wrong rank, a
    missing key."""
    spec_x, spec_y = fedmodel.split_batch(model.input_spec)
    x, y = fedmodel.split_batch(batch)
    is_spec: Callable[[Any], bool] = lambda s: isinstance(s, fedmodel.TensorSpec)  # noqa: E731
    spec_paths, spec_leaves, _ = _tree.flatten_with_paths({"x": spec_x, "y": spec_y}, is_leaf=is_spec)
    paths, leaves, treedef = _tree.flatten_with_paths({"x": x, "y": y})
    by_path = dict(zip(spec_paths, spec_leaves, strict=True))

    def with_leaf(i: int, value: Any) -> Any:
        new = [np.asarray(v) for v in leaves]
        new[i] = value
        tree = _tree.unflatten(treedef, new)
        return _rebuild(batch, tree["x"], tree["y"])

    out: list[tuple[str, Any]] = []
    for side in ("x", "y"):
        i = next(k for k, p in enumerate(paths) if p == side or p.startswith(side + "/"))
        arr = np.asarray(leaves[i])
        wrong = _wrong_dtype(arr.dtype)
        out.append((f"{paths[i]!r} as {wrong.name} instead of {arr.dtype.name}", with_leaf(i, arr.astype(wrong))))
    fixed = [(i, a) for i, p in enumerate(paths) for a, d in enumerate(by_path[p].shape) if d is not None]
    if fixed:
        i, axis = fixed[0]
        arr = np.asarray(leaves[i])
        longer = np.concatenate([arr, np.take(arr, [0], axis=axis)], axis=axis)
        out.append((f"{paths[i]!r} with dimension {axis} = {longer.shape[axis]}", with_leaf(i, longer)))
    arr = np.asarray(leaves[0])
    out.append((f"{paths[0]!r} with an extra trailing axis", with_leaf(0, arr[..., None])))
    out.append(("the key 'y' missing", {"x": x}))
    if isinstance(x, Mapping) and len(x) > 1:
        first = sorted(x)[0]
        out.append((f"the key 'x/{first}' missing", _rebuild(batch, {k: v for k, v in x.items() if k != first}, y)))
    return out


@register(REJECTS)
def check_input_spec_rejects_incompatible_batch(case: Case) -> None:
    """Clause: wrong dtype, wrong fixed dimension, wrong rank or a missing key raise ``SpecError``, changing nothing."""
    model, backend = fresh(case)
    size = training_size(case, 3)
    batch = make_batch(case, size, _rng("input_spec_rejects_incompatible_batch"))
    snap = Snapshot.take(backend, model, all_variables(model))
    for what, bad in _violations(model, batch):
        note = repro("input_spec_rejects_incompatible_batch", batch_size=size, violation=what)
        for training in (False, True):
            try:
                model.forward_pass(bad, training=training)
            except fedmodel.SpecError:
                pass
            except Exception as exc:
                raise CheckFailure(
                    REJECTS,
                    f"forward_pass(batch with {what}, training={training})",
                    "fedmodel.SpecError",
                    f"{type(exc).__name__}: {exc}",
                    note,
                ) from exc
            else:
                raise CheckFailure(
                    REJECTS,
                    f"forward_pass(batch with {what}, training={training})",
                    "fedmodel.SpecError",
                    "the batch was accepted",
                    note,
                )
            snap.assert_unchanged(backend, REJECTS, f"the rejected forward_pass (batch with {what})", note)


KEEPS_TRAINABLE = "forward_pass never changes trainable variables (in either mode)"


@register(KEEPS_TRAINABLE)
def check_forward_keeps_trainable(case: Case) -> None:
    """Clause: ``forward_pass`` never changes trainable variables, with ``training=True`` or ``False``."""
    model, backend = fresh(case)
    size = training_size(case, TRAIN_SIZE)
    batch = make_batch(case, size, _rng("forward_keeps_trainable"))
    snap = Snapshot.take(backend, model, exclusive_groups(model)["trainable"])
    for training in (True, True, False):
        model.forward_pass(batch, training=training)
        snap.assert_unchanged(
            backend,
            KEEPS_TRAINABLE,
            f"forward_pass(training={training})",
            repro("forward_keeps_trainable", batch_size=size),
        )


EVAL_NO_WEIGHT = "forward_pass(training=False) changes no weight: neither trainable nor non-trainable variables"


@register(EVAL_NO_WEIGHT)
def check_eval_moves_no_weight(case: Case) -> None:
    """Clause: non-trainable variables may change only when ``training=True``."""
    model, backend = fresh(case)
    g = exclusive_groups(model)
    snap = Snapshot.take(backend, model, g["trainable"] + g["non_trainable"])
    rng = _rng("eval_moves_no_weight")
    for size in (5, 3):
        model.forward_pass(make_batch(case, size, rng), training=False)
        snap.assert_unchanged(
            backend, EVAL_NO_WEIGHT, "forward_pass(training=False)", repro("eval_moves_no_weight", batch_size=size)
        )


FINITE = "loss is a finite scalar for a finite batch (also for inputs of large magnitude)"


@register(FINITE)
def check_loss_is_finite_scalar(case: Case) -> None:
    """Clause: ``loss`` is a 0-d floating value, finite for any finite batch (here: inputs scaled by 1, 1e4)."""
    model, _ = fresh(case)
    rng = _rng("loss_is_finite_scalar")
    for size, scale in ((5, 1.0), (training_size(case, TRAIN_SIZE), 1e4)):
        batch = scale_floats(make_batch(case, size, rng), scale)
        for training in (False, True) if size >= case.min_training_batch_size else (False,):
            note = repro("loss_is_finite_scalar", batch_size=size, float_inputs_scaled_by=scale, training=training)
            loss = np.asarray(model.forward_pass(batch, training=training).loss)
            where = f"forward_pass(...).loss (training={training}, float inputs x{scale:g})"
            if loss.shape != () or loss.dtype.kind != "f":
                raise CheckFailure(FINITE, where, "a 0-d floating-point value", f"{loss.dtype}{list(loss.shape)}", note)
            if not np.isfinite(loss):
                raise CheckFailure(FINITE, where, "a finite loss", float(loss), note)


EXAMPLE_MEAN = (
    "loss is the mean over the batch's examples: a batch's loss equals the example-weighted mean of the losses of "
    "its parts (a regularization term, a function of the weights alone, adds the same to all three)"
)
MEAN_RTOL = 1e-4  # float32 losses of 3, 5 and 8 examples: only the last digits may differ


@register(EXAMPLE_MEAN)
def check_loss_is_example_mean(case: Case) -> None:
    """Clause: ``forward_pass(training=False).loss`` is a mean over examples, not a sum or a mean of means.

    For parts of 3 and 5 examples, ``loss(all 8) == (3 * loss(first 3) + 5 * loss(last 5)) / 8``; a sum of
    per-example losses, a mean over classes or over some other axis breaks it.
    """
    model, _ = fresh(case)
    rng = _rng("loss_is_example_mean")
    first, second = make_batch(case, 3, rng), make_batch(case, 5, rng)
    note = repro("loss_is_example_mean", part_sizes=(3, 5))

    def loss(batch: Any, what: str) -> float:
        value = np.asarray(model.forward_pass(batch, training=False).loss, np.float64)
        if value.size != 1:
            raise CheckFailure(EXAMPLE_MEAN, f"forward_pass({what}).loss", "a scalar", f"shape {value.shape}", note)
        return float(value.reshape(()))

    a, b = loss(first, "first 3 examples"), loss(second, "last 5 examples")
    whole = loss(concat_batches(first, second), "all 8 examples")
    want = (3 * a + 5 * b) / 8
    if not abs(whole - want) <= MEAN_RTOL * max(abs(a), abs(b), abs(whole)) + 1e-6:
        raise CheckFailure(
            EXAMPLE_MEAN,
            "forward_pass(training=False).loss of a batch of 8 and of its parts of 3 and 5",
            f"{want:.6g} = (3 * {a:.6g} + 5 * {b:.6g}) / 8",
            f"{whole:.6g}"
            + (" (the sum of the parts: a sum, not a mean?)" if abs(whole - (a + b)) < abs(whole - want) else ""),
            note,
        )


NUM_EXAMPLES = "num_examples is an int equal to the batch's leading dimension"


@register(NUM_EXAMPLES)
def check_num_examples_is_batch_size(case: Case) -> None:
    """Clause: ``BatchOutput.num_examples`` equals the number of examples in the batch."""
    model, _ = fresh(case)
    rng = _rng("num_examples_is_batch_size")
    for size in (1, 5):
        batch = make_batch(case, size, rng)
        for training in (False, True) if size >= case.min_training_batch_size else (False,):
            n = model.forward_pass(batch, training=training).num_examples
            note = repro("num_examples_is_batch_size", batch_size=size, training=training)
            try:
                got = operator.index(n)
            except TypeError:
                raise CheckFailure(NUM_EXAMPLES, "num_examples", "an int", type(n).__name__, note) from None
            if got != size:
                raise CheckFailure(NUM_EXAMPLES, f"num_examples (training={training})", size, got, note)


BATCH_DIM = "predictions (of forward_pass and predict_on_batch) have the batch size as leading dimension"


@register(BATCH_DIM)
def check_predictions_have_batch_dim(case: Case) -> None:
    """Clause: every leaf of the predictions has leading dimension = batch size (also for a batch of one)."""
    model, _ = fresh(case)
    rng = _rng("predictions_have_batch_dim")
    for size in (1, 5):
        batch = make_batch(case, size, rng)
        x, _ = fedmodel.split_batch(batch)
        outputs = {
            "forward_pass(training=False).predictions": model.forward_pass(batch, training=False).predictions,
            "predict_on_batch(x)": model.predict_on_batch(x, training=False),
        }
        for where, preds in outputs.items():
            paths, leaves, _ = _tree.flatten_with_paths(preds)
            for path, leaf in zip(paths, leaves, strict=True):
                shape = np.shape(np.asarray(leaf))
                if not shape or shape[0] != size:
                    raise CheckFailure(
                        BATCH_DIM,
                        f"{where} at {path!r}",
                        f"shape ({size}, ...)",
                        f"shape {shape}",
                        repro("predictions_have_batch_dim", batch_size=size),
                    )


PREDICT = (
    "predict_on_batch(training=False) changes no variable at all, metrics included; "
    "with training=True it never changes metrics"
)


@register(PREDICT)
def check_predict_changes_nothing(case: Case) -> None:
    """Clause: ``predict_on_batch`` can be exported for inference: it touches no state in eval mode."""
    model, backend = fresh(case)
    batch = make_batch(case, 5, _rng("predict_changes_nothing"))
    x, _ = fedmodel.split_batch(batch)
    model.forward_pass(batch, training=False)  # metrics are not at their initial values
    note = repro("predict_changes_nothing", batch_size=5)
    snap = Snapshot.take(backend, model, all_variables(model))
    model.predict_on_batch(x, training=False)
    snap.assert_unchanged(backend, PREDICT, "predict_on_batch(x, training=False)", note)
    local = Snapshot.take(backend, model, exclusive_groups(model)["local"])
    model.predict_on_batch(x, training=True)
    local.assert_unchanged(backend, PREDICT, "predict_on_batch(x, training=True) (metrics)", note)


TO_NATIVE = "Backend.to_native turns a numpy batch into a native batch that forward_pass treats like the numpy one"


@register(TO_NATIVE)
def check_backend_to_native(case: Case) -> None:
    """Clause: a batch moved in with ``to_native`` gives the same loss, count and predictions as numpy."""
    model, backend = fresh(case)
    batch = make_batch(case, 5, _rng("backend_to_native"))
    note = repro("backend_to_native", batch_size=5)
    native = backend.to_native(model, batch)
    try:
        out_native = model.forward_pass(native, training=False)
    except Exception as exc:
        raise CheckFailure(
            TO_NATIVE, "forward_pass(to_native(batch))", "accepted", f"{type(exc).__name__}: {exc}", note
        ) from exc
    out = model.forward_pass(batch, training=False)
    if not close(out_native.loss, out.loss) or operator.index(out_native.num_examples) != operator.index(
        out.num_examples
    ):
        raise CheckFailure(
            TO_NATIVE,
            "forward_pass(to_native(batch))",
            f"loss {float(np.asarray(out.loss))}, {out.num_examples} examples",
            f"loss {float(np.asarray(out_native.loss))}, {out_native.num_examples} examples",
            note,
        )
    native_x, _ = fedmodel.split_batch(native)
    x, _ = fedmodel.split_batch(batch)
    if not close(model.predict_on_batch(native_x, training=False), model.predict_on_batch(x, training=False)):
        raise CheckFailure(TO_NATIVE, "predict_on_batch(native x)", "the predictions of the numpy x", "differ", note)
