"""The check that a call which raises leaves no partial state: compute, then commit.

How the suite makes a call fail, portably: it cannot know what makes a third party's computation fail
(a batch that passes the spec but breaks inside the computation does not exist for a correct model with
a complete spec), so it uses the batches that every wrapper must refuse (the values outside a bounded
spec's range, x and y of different lengths, a wrong dtype) and, where the case declares one,
``Case.failing_batch``: a batch matching the spec that the model's own computation raises on (a
user-declared metric that rejects some inputs, a loss that refuses a NaN, ...). A failure the suite
cannot provoke (an out-of-memory error half-way through a step) is out of its reach.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

import fedmodel
from fedmodel import tree as _tree
from fedmodel_conformance._core import (
    Case,
    CheckFailure,
    Snapshot,
    all_variables,
    fresh,
    make_batch,
    register,
    report_as_numpy,
    repro,
    seed_for,
    training_size,
)
from fedmodel_conformance._probe import steps_mismatch, trainable_values

__all__: list[str] = []

FAILED_CALL = (
    "a forward_pass, predict_on_batch or train_step that raises changes nothing: no variable (trainable or "
    "non-trainable, statistics included), no metric (report_local_outputs) and no optimizer state; a batch the spec "
    "refuses (a value outside a bounded spec's range, x and y of different lengths, a wrong dtype) raises SpecError "
    "in forward_pass and train_step"
)


def _is_spec(s: Any) -> bool:
    return isinstance(s, fedmodel.TensorSpec)


def _rebuild(like: Any, x: Any, y: Any) -> Any:
    return {"x": x, "y": y} if isinstance(like, Mapping) else (x, y)


def _out_of_range(model: Any, batch: Any) -> list[tuple[str, Any]]:
    """For each bounded leaf of ``y`` (then ``x``), the batch with its last example just outside each bound."""
    spec_x, spec_y = fedmodel.split_batch(model.input_spec)
    x, y = fedmodel.split_batch(batch)
    spec_paths, spec_leaves, _ = _tree.flatten_with_paths({"y": spec_y, "x": spec_x}, is_leaf=_is_spec)
    paths, leaves, treedef = _tree.flatten_with_paths({"y": y, "x": x})
    by_path = dict(zip(spec_paths, spec_leaves, strict=True))
    out: list[tuple[str, Any]] = []
    for i, path in enumerate(paths):
        spec = by_path.get(path)
        if spec is None or not spec.bounded:
            continue
        arr = np.asarray(leaves[i])
        for bound, step, name in ((spec.maximum, 1, "above its maximum"), (spec.minimum, -1, "below its minimum")):
            if bound is None or arr.ndim == 0 or len(arr) == 0:
                continue
            if arr.dtype.kind in "iu":
                info = np.iinfo(arr.dtype)
                value: Any = int(np.floor(bound)) + 1 if step > 0 else int(np.ceil(bound)) - 1
                if not info.min <= value <= info.max:
                    continue
            elif arr.dtype.kind == "f":
                value = bound + step * max(1.0, abs(bound))
            else:
                continue
            bad = arr.copy()
            bad[-1] = value
            new = [np.asarray(v) for v in leaves]
            new[i] = bad
            tree = _tree.unflatten(treedef, new)
            out.append((f"{path!r} of the last example {name} ({value!r})", _rebuild(batch, tree["x"], tree["y"])))
    return out


def _longer_inputs(batch: Any) -> tuple[str, Any]:
    """The batch with every leaf of ``x`` one example longer than ``y`` (its first example repeated)."""
    x, y = fedmodel.split_batch(batch)
    x_long = _tree.map_structure(lambda a: np.concatenate([np.asarray(a), np.asarray(a)[:1]]), x)
    return "x and y of different lengths (x one example more)", _rebuild(batch, x_long, y)


_DTYPE_SWAPS = {"float32": "float64", "float64": "float32", "float16": "float32", "int64": "int32", "int32": "int64"}


def _wrong_dtype_x(batch: Any) -> tuple[str, Any, Any]:
    """The batch with the first leaf of ``x`` in another dtype, and that ``x`` alone."""
    x, y = fedmodel.split_batch(batch)
    paths, leaves, treedef = _tree.flatten_with_paths(x)
    arr = np.asarray(leaves[0])
    wrong = np.dtype(_DTYPE_SWAPS.get(arr.dtype.name, "float32" if arr.dtype.kind != "f" else "float64"))
    new = [np.asarray(v) for v in leaves]
    new[0] = arr.astype(wrong)
    bad_x = _tree.unflatten(treedef, new)
    where = "x" if paths[0] in ("", ".", "<root>") else f"x/{paths[0]}"
    return f"{where!r} as {wrong.name} instead of {arr.dtype.name}", _rebuild(batch, bad_x, y), bad_x


def _report_changes(want: Mapping[str, Any], got: Mapping[str, Any]) -> str | None:
    """How report ``got`` differs from ``want`` (bitwise), or ``None``."""
    if sorted(want) != sorted(got):
        return f"the report's keys are {sorted(got)}, not {sorted(want)}"
    for key in want:
        old, _ = _tree.flatten(want[key])
        new, _ = _tree.flatten(got[key])
        if len(old) != len(new):
            return f"report[{key!r}] has another structure"
        for a, b in zip(old, new, strict=True):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape:
                return f"report[{key!r}] has shape {b.shape}, not {a.shape}"
            if a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
                return f"report[{key!r}] holds {b.tolist()}, not {a.tolist()}"
    return None


@register(FAILED_CALL)
def check_failed_call_changes_nothing(case: Case) -> None:
    """Clause: a call that raises leaves every variable, metric and the optimizer's state as they were.

    A model takes one training step and one evaluation (so metrics and optimizer state are not at their
    initial values). Then it is given, through ``forward_pass`` (both modes), ``train_step`` and
    ``predict_on_batch``: batches the spec refuses (each value of a bounded spec just outside each bound
    in the last example, ``x`` one example longer than ``y``, ``x`` in a wrong dtype) and the case's
    ``failing_batch`` when it declares one. A value out of range and mismatched lengths must raise
    ``SpecError`` from ``forward_pass`` and ``train_step``; the failing batch must raise from both (whether
    a wrong dtype is refused is the clause of ``input_spec_rejects_incompatible_batch``, and
    ``predict_on_batch`` may accept what it can read). After every raise, all variables and
    ``report_local_outputs()`` must be bit-identical to before (the report is read twice before the call,
    so that one which changes state when read, a failure of ``report_is_pure``, is compared in that
    state). Then, unless training is stochastic, a
    valid step with the same optimizer must equal the same step of a twin given the same initial
    weights whose optimizer saw no failed call (an optimizer that counted a failed step, or moved its
    momentum, differs).
    """
    model, backend = fresh(case)
    rng = np.random.default_rng(seed_for("failed_call_changes_nothing"))
    size = training_size(case, 4)
    first, second = make_batch(case, size, rng), make_batch(case, size, rng)
    start = fedmodel.get_weights(model, backend=backend)
    optimizer = backend.make_optimizer(model, case.optimizer)
    backend.train_step(model, first, optimizer)
    model.forward_pass(first, training=False)

    dtype_what, dtype_batch, dtype_x = _wrong_dtype_x(first)
    # (description, batch, x for predict_on_batch or None, the error forward_pass and train_step must raise)
    provocations: list[tuple[str, Any, Any, type[BaseException] | None]] = [
        (what, bad, None, fedmodel.SpecError) for what, bad in _out_of_range(model, first)
    ]
    provocations.append((*_longer_inputs(first), None, fedmodel.SpecError))
    provocations.append((dtype_what, dtype_batch, dtype_x, None))
    if case.failing_batch is not None:
        failing = case.failing_batch(size, np.random.default_rng(seed_for("failing_batch")))
        provocations.append(("the case's failing_batch", failing, fedmodel.split_batch(failing)[0], Exception))

    accepted = False  # a call the check does not require to fail returned normally: the twin no longer applies
    for what, bad, bad_x, error in provocations:
        note = repro("failed_call_changes_nothing", batch_size=size, batch=what)
        calls: list[tuple[str, Callable[[], Any], type[BaseException] | None]] = [
            (
                f"forward_pass(batch with {what}, training=False)",
                partial(model.forward_pass, bad, training=False),
                error,
            ),
            (f"forward_pass(batch with {what}, training=True)", partial(model.forward_pass, bad, training=True), error),
            (f"train_step(batch with {what})", partial(backend.train_step, model, bad, optimizer), error),
        ]
        if bad_x is not None:
            for training in (False, True):
                where = f"predict_on_batch(x with {what}, training={training})"
                calls.append((where, partial(model.predict_on_batch, bad_x, training=training), None))
        for where, call, required in calls:
            model.report_local_outputs()  # a report that changes state (report_is_pure's clause) has done so now
            report = report_as_numpy(model.report_local_outputs())
            snap = Snapshot.take(backend, model, all_variables(model))
            try:
                call()
            except Exception as exc:
                if required is not None and not isinstance(exc, required):
                    raise CheckFailure(
                        FAILED_CALL, where, f"fedmodel.{required.__name__}", f"{type(exc).__name__}: {exc}", note
                    ) from exc
                snap.assert_unchanged(backend, FAILED_CALL, f"the failed {where}", note)
                changed = _report_changes(report, report_as_numpy(model.report_local_outputs()))
                if changed:
                    raise CheckFailure(
                        FAILED_CALL, f"report_local_outputs() after the failed {where}", "no change", changed, note
                    ) from exc
            else:
                accepted = accepted or not where.startswith("predict_on_batch")
                if required is not None:
                    expected = (
                        "fedmodel.SpecError"
                        if required is fedmodel.SpecError
                        else "an exception (the case's failing_batch)"
                    )
                    raise CheckFailure(FAILED_CALL, where, expected, "the call returned normally", note)

    if accepted or case.stochastic_training:
        return  # a twin's step cannot be compared: the model took a batch it accepted, or training is random
    note = repro("failed_call_changes_nothing", batch_size=size, optimizer=case.optimizer)
    twin, _ = fresh(case)
    fedmodel.assign_weights(twin, start, backend=backend)
    twin_optimizer = backend.make_optimizer(twin, case.optimizer)
    backend.train_step(twin, first, twin_optimizer)
    middle = trainable_values(backend, twin)
    backend.train_step(twin, second, twin_optimizer)
    backend.train_step(model, second, optimizer)
    problem = steps_mismatch(trainable_values(backend, twin), trainable_values(backend, model), middle)
    if problem:
        raise CheckFailure(
            FAILED_CALL,
            "the next valid train_step with the optimizer that saw the failed train_step calls",
            "the step of a twin whose optimizer saw no failed call",
            problem,
            note,
        )
