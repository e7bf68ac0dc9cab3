"""Checks of evaluation mode: deterministic, the same through ``predict_on_batch``, independent of history."""

from __future__ import annotations

from typing import Any

import numpy as np

import fedmodel
from fedmodel import tree as _tree
from fedmodel_conformance._core import (
    TRAIN_SIZE,
    Case,
    CheckFailure,
    CheckSkipped,
    close,
    fresh,
    make_batch,
    register,
    repro,
    seed_for,
    training_size,
)

__all__: list[str] = []

DETERMINISTIC = "same weights + same batch + training=False give the same loss and predictions"


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(seed_for(name))


def _repeatable(model: Any, batch: Any) -> bool:
    """Whether two evaluations of ``batch`` agree (when not, ``eval_is_deterministic`` reports it)."""
    first, second = model.forward_pass(batch, training=False), model.forward_pass(batch, training=False)
    return close(first.loss, second.loss, 1e-6, 1e-7) and close(first.predictions, second.predictions, 1e-6, 1e-7)


def _skip_unless_repeatable(model: Any, batch: Any) -> None:
    if not _repeatable(model, batch):
        raise CheckSkipped("forward_pass(training=False) is not repeatable here: see eval_is_deterministic")


@register(DETERMINISTIC)
def check_eval_is_deterministic(case: Case) -> None:
    """Clause: evaluation mode is deterministic (``forward_pass`` and ``predict_on_batch``)."""
    model, _ = fresh(case)
    batch = make_batch(case, 5, _rng("eval_is_deterministic"))
    x, _ = fedmodel.split_batch(batch)
    note = repro("eval_is_deterministic", batch_size=5)
    first, second = model.forward_pass(batch, training=False), model.forward_pass(batch, training=False)
    for field in ("loss", "predictions"):
        a, b = getattr(first, field), getattr(second, field)
        if not close(a, b, rtol=1e-6, atol=1e-7):
            raise CheckFailure(
                DETERMINISTIC, f"forward_pass(training=False).{field}", "equal on both calls", "differ", note
            )
    if not close(model.predict_on_batch(x, training=False), model.predict_on_batch(x, training=False), 1e-6, 1e-7):
        raise CheckFailure(DETERMINISTIC, "predict_on_batch(x, training=False)", "equal on both calls", "differ", note)


PREDICT_MATCHES = "predict_on_batch(x, training=False) returns the predictions forward_pass(training=False) returns"


@register(PREDICT_MATCHES)
def check_predict_matches_forward(case: Case) -> None:
    """Clause: ``predict_on_batch`` is the same model as ``forward_pass``, without labels or metrics."""
    model, _ = fresh(case)
    batch = make_batch(case, 5, _rng("predict_matches_forward"))
    _skip_unless_repeatable(model, batch)
    x, _ = fedmodel.split_batch(batch)
    forward = model.forward_pass(batch, training=False).predictions
    predicted = model.predict_on_batch(x, training=False)
    if not close(forward, predicted, rtol=1e-5, atol=1e-6):
        raise CheckFailure(
            PREDICT_MATCHES,
            "predict_on_batch(x, training=False)",
            "the predictions of forward_pass((x, y), training=False)",
            "other values" if _same_structure(forward, predicted) else "another structure or shape",
            repro("predict_matches_forward", batch_size=5),
        )


def _same_structure(a: Any, b: Any) -> bool:
    la, _ = _tree.flatten(a)
    lb, _ = _tree.flatten(b)
    return len(la) == len(lb) and all(
        np.shape(np.asarray(p)) == np.shape(np.asarray(q)) for p, q in zip(la, lb, strict=True)
    )


HISTORY = (
    "evaluation depends on the weights alone: after training calls, forward_pass(training=False) and "
    "predict_on_batch give what a fresh model given the same weights gives"
)


@register(HISTORY)
def check_eval_independent_of_history(case: Case) -> None:
    """Clause: nothing of a training call (a mode, a traced constant) stays in evaluation afterwards."""
    trained, backend = fresh(case)
    rng = _rng("eval_independent_of_history")
    size = training_size(case, TRAIN_SIZE)
    optimizer = backend.make_optimizer(trained, case.optimizer)
    for _ in range(2):
        backend.train_step(trained, make_batch(case, size, rng), optimizer)
    trained.forward_pass(make_batch(case, size, rng), training=True)
    probe = make_batch(case, 5, rng)
    x, _ = fedmodel.split_batch(probe)
    other, _ = fresh(case)
    fedmodel.assign_weights(other, fedmodel.get_weights(trained, backend=backend), backend=backend)
    _skip_unless_repeatable(other, probe)
    note = repro("eval_independent_of_history", train_steps=2, batch_size=5)
    mine, theirs = trained.forward_pass(probe, training=False), other.forward_pass(probe, training=False)
    for field in ("loss", "predictions"):
        if not close(getattr(mine, field), getattr(theirs, field), rtol=1e-5, atol=1e-6):
            raise CheckFailure(
                HISTORY,
                f"forward_pass(training=False).{field} after two train_step calls and a forward_pass(training=True)",
                "what a fresh model given the same weights returns",
                "differs",
                note,
            )
    if not close(trained.predict_on_batch(x, training=False), other.predict_on_batch(x, training=False), 1e-5, 1e-6):
        raise CheckFailure(
            HISTORY,
            "predict_on_batch(x, training=False) after training calls",
            "what a fresh model given the same weights returns",
            "differs",
            note,
        )
