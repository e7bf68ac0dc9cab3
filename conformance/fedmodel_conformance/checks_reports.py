"""Checks of what the reports mean: the standard metrics' values, and the aggregator's streaming protocol."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

import fedmodel
from fedmodel import tree as _tree
from fedmodel.metrics import STANDARD_METRICS
from fedmodel_conformance._core import (
    Case,
    CheckFailure,
    CheckSkipped,
    close,
    fresh,
    make_batch,
    register,
    report_as_numpy,
    repro,
    seed_for,
)
from fedmodel_conformance._labels import label_kind, predicted_classes, true_classes, with_labels

__all__: list[str] = []

STANDARD = (
    "the standard metrics count what they say, for every label shape the spec allows: num_examples and the counts "
    "of loss and accuracy equal the examples seen; accuracy counts the examples whose predicted class (argmax of the "
    "predictions) is the label, so it lies in [0, 1]; a model with real-valued labels reports no accuracy"
)


def _scalar(report: Mapping[str, Any], key: str, index: int | None, where: str, note: str) -> float:
    value = report[key] if index is None else report[key][index]
    arr = np.asarray(value)
    if arr.size != 1:
        part = key if index is None else f"{key}[{index}]"
        raise CheckFailure(STANDARD, f"{where}: {part!r}", "a single number", f"shape {arr.shape}", note)
    return float(arr.reshape(()))


def _counts(report: Mapping[str, Any], where: str, note: str) -> dict[str, float]:
    """The standard entries of ``report`` as numbers: ``examples``, ``loss_total``, ``loss_count``, ...."""
    out: dict[str, float] = {}
    if "num_examples" in report:
        out["examples"] = _scalar(report, "num_examples", None, where, note)
    for key in ("loss", "accuracy"):
        if key in report:
            pair = report[key]
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise CheckFailure(STANDARD, f"{where}: {key!r}", "a (total, count) pair", repr(pair), note)
            out[f"{key}_total"] = _scalar(report, key, 0, where, note)
            out[f"{key}_count"] = _scalar(report, key, 1, where, note)
    return out


@register(STANDARD)
def check_standard_metrics_sane(case: Case) -> None:
    """Clause: ``num_examples``, ``loss`` and ``accuracy``, where reported, hold what STANDARD_METRICS defines.

    A fresh model evaluates a random batch; a second fresh model evaluates the same inputs labelled
    with the first one's predicted classes. Each report must count the batch's examples once, and
    ``accuracy``'s total must equal the number of examples whose label is the argmax of the predictions
    that call returned (all of them the second time, for a factory that builds equal models), when
    evaluation is repeatable.
    """
    model, _ = fresh(case)
    if not set(STANDARD_METRICS) & set(report_as_numpy(model.report_local_outputs())):
        raise CheckSkipped(f"the model reports none of the standard metrics {STANDARD_METRICS}")
    batch = make_batch(case, 5, np.random.default_rng(seed_for("standard_metrics_sane")))
    note = repro("standard_metrics_sane", batch_size=5)
    what = "a random batch of 5"
    out = model.forward_pass(batch, training=False)
    counts = _counts(report_as_numpy(model.report_local_outputs()), f"the report after {what}", note)
    repeatable = close(out.predictions, model.forward_pass(batch, training=False).predictions, 1e-6, 1e-7)
    _check_step(counts, batch, out.predictions, what, note, repeatable)
    _, y = fedmodel.split_batch(batch)
    if "accuracy_total" in counts and label_kind(y, out.predictions) == "regression":
        raise CheckFailure(
            STANDARD,
            "report_local_outputs()['accuracy']",
            "no accuracy for a model whose labels are real values shaped like its predictions (a regression)",
            "an accuracy is reported",
            note,
        )
    relabelled = with_labels(batch, out.predictions)
    if relabelled is None:
        return
    other, _ = fresh(case)  # fresh, not given the weights: a model whose metrics are weights stays fresh
    what = "the same 5 inputs labelled with the model's predicted classes"
    out = other.forward_pass(relabelled[0], training=False)
    counts = _counts(report_as_numpy(other.report_local_outputs()), f"the report after {what}", note)
    _check_step(counts, relabelled[0], out.predictions, what, note, repeatable)


def _check_step(counts: dict[str, float], batch: Any, predictions: Any, what: str, note: str, exact: bool) -> None:
    """The report of a fresh model after one batch of 5: counts, a finite loss, and the correct predictions."""
    for key in ("examples", "loss_count", "accuracy_count"):
        if key in counts and counts[key] != 5:
            name = {"examples": "num_examples", "loss_count": "loss[1]", "accuracy_count": "accuracy[1]"}[key]
            raise CheckFailure(STANDARD, f"{name!r} after {what}", "5 (the examples seen)", counts[key], note)
    if "loss_total" in counts and not np.isfinite(counts["loss_total"]):
        raise CheckFailure(STANDARD, f"'loss[0]' after {what}", "a finite sum of losses", counts["loss_total"], note)
    if "accuracy_total" not in counts:
        return
    correct = counts["accuracy_total"]
    _, y = fedmodel.split_batch(batch)
    kind = label_kind(y, predictions)
    if exact and kind in ("classes", "one_hot"):
        hits = int(np.sum(predicted_classes(predictions) == true_classes(y, kind)))
        if correct != hits:
            raise CheckFailure(
                STANDARD,
                f"'accuracy[0]' (correct predictions) after {what}",
                f"{hits} (examples whose label is the argmax of the predictions forward_pass returned)",
                correct,
                note,
            )
    elif not 0 <= correct <= 5:
        raise CheckFailure(STANDARD, f"'accuracy[0]' after {what}", "between 0 and 5", correct, note)


STREAMING = (
    "federated_output_computation is a streaming fedmodel.Aggregator: calling it on reports equals "
    "finalize(accumulate(... accumulate(init(), first) ..., last)), keeps no state between calls, and leaves the "
    "reports unchanged"
)


@register(STREAMING)
def check_aggregator_is_streaming(case: Case) -> None:
    """Clause: the aggregator's ``__call__`` is its ``init``/``accumulate``/``finalize``, and it is stateless."""
    models = [fresh(case)[0] for _ in range(2)]
    rng = np.random.default_rng(seed_for("aggregator_is_streaming"))
    for model, size in zip(models, (3, 5), strict=True):
        model.forward_pass(make_batch(case, size, rng), training=False)
    reports = [report_as_numpy(m.report_local_outputs()) for m in models]
    if not reports[0]:
        raise CheckSkipped("the model reports no metrics (report_local_outputs() is empty)")
    kept = copy.deepcopy(reports)
    agg = models[0].federated_output_computation
    if not isinstance(agg, fedmodel.Aggregator):
        raise CheckSkipped("federated_output_computation is not a fedmodel.Aggregator: see protocol")
    note = repro("aggregator_is_streaming", client_batch_sizes=(3, 5))
    called = dict(agg(reports))
    if not _same_leaves(reports, kept):
        raise CheckFailure(STREAMING, "federated_output_computation(reports)", "the reports unchanged", "changed", note)
    state = agg.init()
    for report in reports:
        state = agg.accumulate(state, report)
    streamed = dict(agg.finalize(state))
    again = dict(agg(kept))
    for where, got in (("init/accumulate/finalize", streamed), ("a second call on the same reports", again)):
        if sorted(got) != sorted(called) or not all(close(called[k], got[k], 1e-12, 0) for k in called):
            raise CheckFailure(STREAMING, where, f"{called} (the first call)", got, note)


def _same_leaves(a: Any, b: Any) -> bool:
    la, ta = _tree.flatten(a)
    lb, tb = _tree.flatten(b)
    return ta == tb and all(
        np.array_equal(np.asarray(p), np.asarray(q), equal_nan=True) for p, q in zip(la, lb, strict=True)
    )
