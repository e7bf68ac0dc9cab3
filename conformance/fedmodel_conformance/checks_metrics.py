"""Checks of the metrics: accumulation over batches, pure reports, reset, and federated aggregation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    concat_batches,
    exclusive_groups,
    fresh,
    make_batch,
    register,
    report_as_numpy,
    repro,
    seed_for,
    training_size,
)
from fedmodel_conformance._labels import with_labels

__all__: list[str] = []

RTOL = 1e-4  # float32 frameworks sum per-batch losses in float32: only the last digits may differ


def _same_weights(case: Case, count: int) -> tuple[list[Any], fedmodel.Backend]:
    """``count`` fresh models holding the first one's weights (a factory need not be seeded)."""
    first, backend = fresh(case)
    models = [first]
    weights = fedmodel.get_weights(first, backend=backend)
    for _ in range(count - 1):
        model, _ = fresh(case)
        fedmodel.assign_weights(model, weights, backend=backend)
        models.append(model)
    return models, backend


def _finalized(model: Any, reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return dict(model.federated_output_computation(reports))


def _compare(clause: str, where: str, want: Mapping[str, Any], got: Mapping[str, Any], note: str) -> None:
    if sorted(want) != sorted(got):
        raise CheckFailure(clause, where, f"metrics {sorted(want)}", f"metrics {sorted(got)}", note)
    for name in want:
        if not close(want[name], got[name], rtol=RTOL, atol=1e-6):
            raise CheckFailure(clause, f"{where}: metric {name!r}", want[name], got[name], note)


COUNTED = "metrics count every batch: k batches through forward_pass give the metrics of one batch holding them all"


@register(COUNTED)
def check_metrics_count_every_batch(case: Case) -> None:
    """Clause: local variables accumulate over calls (two batches = their concatenation, once finalized)."""
    (many, one), _ = _same_weights(case, 2)
    rng = np.random.default_rng(seed_for("metrics_count_every_batch"))
    batches = [make_batch(case, size, rng) for size in (3, 5)]
    note = repro("metrics_count_every_batch", batch_sizes=(3, 5))
    for b in batches:
        many.forward_pass(b, training=False)
    one.forward_pass(concat_batches(*batches), training=False)
    report = report_as_numpy(many.report_local_outputs())
    if not report:
        raise CheckSkipped("the model reports no metrics (report_local_outputs() is empty)")
    _compare(
        COUNTED,
        "finalized metrics after 2 batches vs after their concatenation",
        _finalized(one, [report_as_numpy(one.report_local_outputs())]),
        _finalized(many, [report]),
        note,
    )


PURE = (
    "report_local_outputs is pure: calling it twice changes no variable and returns equal values (as numpy), and a "
    "report is a snapshot that later batches do not change"
)


def _same_report(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return sorted(a) == sorted(b) and all(close(a[k], b[k], 0, 0) for k in a)


@register(PURE)
def check_report_is_pure(case: Case) -> None:
    """Clause: reading the metrics neither resets nor moves anything, and what was read stays as it was."""
    model, backend = fresh(case)
    rng = np.random.default_rng(seed_for("report_is_pure"))
    model.forward_pass(make_batch(case, 5, rng), training=False)
    note = repro("report_is_pure", batch_size=5)
    snap = Snapshot.take(backend, model, all_variables(model))
    try:
        raw = model.report_local_outputs()
        first = report_as_numpy(raw)
    except Exception as exc:
        raise CheckFailure(PURE, "report_local_outputs()", "values convertible to numpy", repr(exc), note) from exc
    snap.assert_unchanged(backend, PURE, "report_local_outputs()", note)
    second = report_as_numpy(model.report_local_outputs())
    if not _same_report(first, second):
        raise CheckFailure(PURE, "report_local_outputs() called twice", first, second, note)
    model.forward_pass(make_batch(case, 3, rng), training=False)
    if not _same_report(first, report_as_numpy(raw)):
        raise CheckFailure(
            PURE,
            "a report read before another forward_pass",
            f"{first} (a snapshot)",
            f"{report_as_numpy(raw)} (it follows the metrics: return copies)",
            note,
        )


RESET = "reset_metrics returns every local variable to its initial value, and changes no weight"


def _moved(weights: fedmodel.ModelWeights, rng: np.random.Generator) -> fedmodel.ModelWeights:
    """The weights with every floating trainable value moved a little (so a reset of weights would show)."""
    n = len(weights.trainable)
    out = [
        (a + 0.1 * rng.standard_normal(a.shape)).astype(a.dtype) if i < n and a.dtype.kind == "f" else a
        for i, a in enumerate(weights.arrays)
    ]
    return weights.with_arrays(out)


def moving_batches(case: Case, model: Any, rng: np.random.Generator) -> list[tuple[str, Any, bool]]:
    """``(description, batch, training)`` of batches built to move every metric of ``model``.

    A random batch, then the same inputs labelled with the model's own predictions (so a count of
    correct predictions moves even on a near-uniform model), in evaluation and in training mode.
    """
    first = make_batch(case, 5, rng)
    out: list[tuple[str, Any, bool]] = [("a random batch of 5", first, False)]
    x, _ = fedmodel.split_batch(first)
    relabelled = with_labels(first, model.predict_on_batch(x, training=False))
    if relabelled is not None:
        out.append(("the same inputs labelled with the model's predictions", relabelled[0], False))
    size = training_size(case, 3)
    out.append((f"a random batch of {size} in training mode", make_batch(case, size, rng), True))
    return out


@register(RESET)
def check_reset_metrics_restores_initial(case: Case) -> None:
    """Clause: after batches built to move every metric, ``reset_metrics()`` restores every local variable.

    The batches are a random one, one labelled with the model's own predictions (every example
    correct), and one in training mode; then the local variables and the report must be as after
    ``__init__``.
    """
    model, backend = fresh(case)
    rng = np.random.default_rng(seed_for("reset_metrics_restores_initial"))
    fedmodel.assign_weights(model, _moved(fedmodel.get_weights(model, backend=backend), rng), backend=backend)
    initial = Snapshot.take(backend, model, exclusive_groups(model)["local"])
    initial_report = report_as_numpy(model.report_local_outputs())
    batches = moving_batches(case, model, rng)
    for _, batch, training in batches:
        model.forward_pass(batch, training=training)
    g = exclusive_groups(model)
    weights = Snapshot.take(backend, model, g["trainable"] + g["non_trainable"])
    model.reset_metrics()
    note = repro("reset_metrics_restores_initial", batches=[what for what, _, _ in batches])
    initial.assert_unchanged(backend, RESET, f"{len(batches)} forward_pass calls then reset_metrics()", note)
    weights.assert_unchanged(backend, RESET, "reset_metrics() (it must change local variables only)", note)
    _compare(
        RESET,
        "report_local_outputs() after reset_metrics()",
        initial_report,
        report_as_numpy(model.report_local_outputs()),
        note,
    )


AGGREGATION = (
    "two clients' metrics aggregated with federated_output_computation equal one client's metrics over the "
    "union of their batches (to float tolerance)"
)


@register(AGGREGATION)
def check_aggregation_matches_union(case: Case) -> None:
    """Clause: sum-then-finalize is exact: clients of 3 and 5 examples aggregate to one client of 8."""
    (a, b, union), _ = _same_weights(case, 3)
    rng = np.random.default_rng(seed_for("aggregation_matches_union"))
    batch_a, batch_b = make_batch(case, 3, rng), make_batch(case, 5, rng)
    a.forward_pass(batch_a, training=False)
    b.forward_pass(batch_b, training=False)
    union.forward_pass(concat_batches(batch_a, batch_b), training=False)
    reports = [report_as_numpy(m.report_local_outputs()) for m in (a, b)]
    if not reports[0]:
        raise CheckSkipped("the model reports no metrics (report_local_outputs() is empty)")
    _compare(
        AGGREGATION,
        "federated_output_computation([client of 3, client of 5]) vs one client of all 8",
        _finalized(union, [report_as_numpy(union.report_local_outputs())]),
        _finalized(a, reports),
        repro("aggregation_matches_union", client_batch_sizes=(3, 5)),
    )
