"""Checks of training through the ``Backend``: ``make_optimizer`` + ``train_step`` against ``forward_pass``."""

from __future__ import annotations

from typing import Any

import numpy as np

import fedmodel
from fedmodel_conformance._core import (
    TRAIN_SIZE,
    Case,
    CheckFailure,
    CheckSkipped,
    Snapshot,
    close,
    exclusive_groups,
    fresh,
    make_batch,
    register,
    report_as_numpy,
    repro,
    scalar,
    seed_for,
    training_size,
)
from fedmodel_conformance._probe import PROBE, second_step_mismatch, steps_mismatch, trainable_values

__all__: list[str] = []

LOWERS = "one optimizer step through Backend.make_optimizer + Backend.train_step lowers the loss on a fixed batch"
MAX_TRIES = 5  # stochastic training: the eval loss must drop within this many steps


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(seed_for(name))


@register(LOWERS)
def check_train_step_lowers_loss(case: Case) -> None:
    """Clause: ``train_step`` descends with the case's optimizer.

    Deterministic training compares the training-mode loss of ``forward_pass`` before and after one
    step; stochastic training compares evaluation-mode losses over at most a few steps.
    """
    model, backend = fresh(case)
    size = training_size(case, TRAIN_SIZE)
    batch = make_batch(case, size, _rng("train_step_lowers_loss"))
    note = repro("train_step_lowers_loss", batch_size=size, optimizer=case.optimizer)
    optimizer = backend.make_optimizer(model, case.optimizer)
    if case.stochastic_training:
        before = scalar(model.forward_pass(batch, training=False).loss, LOWERS, "eval loss", note)
        after = before
        for _ in range(MAX_TRIES):
            backend.train_step(model, batch, optimizer)
            after = scalar(model.forward_pass(batch, training=False).loss, LOWERS, "eval loss", note)
            if after < before:
                return
        raise CheckFailure(LOWERS, f"evaluation loss after {MAX_TRIES} train_step calls", f"< {before}", after, note)
    before = scalar(model.forward_pass(batch, training=True).loss, LOWERS, "forward_pass(training=True).loss", note)
    backend.train_step(model, batch, optimizer)
    after = scalar(model.forward_pass(batch, training=True).loss, LOWERS, "forward_pass(training=True).loss", note)
    if not after < before:
        raise CheckFailure(
            LOWERS, "training-mode loss on the same batch after one train_step", f"< {before}", after, note
        )


AS_DECLARED = (
    "training changes non-trainable variables exactly as the case declares: train_step leaves them alone, unless the "
    "model declares that training updates them (batch-norm statistics: Case.training_changes_non_trainable), and then "
    "train_step moves them"
)


@register(AS_DECLARED)
def check_training_changes_non_trainable_as_declared(case: Case) -> None:
    """Clause: ``train_step`` changes non-trainable variables if and only if the case declares it does."""
    model, backend = fresh(case)
    snap = Snapshot.take(backend, model, exclusive_groups(model)["non_trainable"])
    optimizer = backend.make_optimizer(model, case.optimizer)
    rng = _rng("training_changes_non_trainable_as_declared")
    size = training_size(case, TRAIN_SIZE)
    note = repro("training_changes_non_trainable_as_declared", batch_size=size)
    for _ in range(2):
        backend.train_step(model, make_batch(case, size, rng), optimizer)
    if not case.training_changes_non_trainable:
        snap.assert_unchanged(backend, AS_DECLARED, "two train_step calls", note)
        return
    if not snap.variables:
        raise CheckFailure(
            AS_DECLARED, "non_trainable_variables", "statistics that training updates (as declared)", "none", note
        )
    if not snap.changed(backend):
        raise CheckFailure(
            AS_DECLARED,
            f"non-trainable variables {snap.names} during two train_step calls",
            "at least one changes (Case.training_changes_non_trainable=True): train_step runs in training mode",
            "none changed",
            note,
        )


MATCHES_FORWARD = (
    "train_step returns the BatchOutput of the batch at the weights before the step (the pre-step loss), and "
    "updates the metrics exactly as forward_pass(batch, training=True) does, once"
)


def _twins(case: Case) -> tuple[Any, Any, fedmodel.Backend]:
    first, backend = fresh(case)
    second, _ = fresh(case)
    fedmodel.assign_weights(second, fedmodel.get_weights(first, backend=backend), backend=backend)
    return first, second, backend


@register(MATCHES_FORWARD)
def check_train_step_matches_forward_pass(case: Case) -> None:
    """Clause: ``train_step`` is ``forward_pass(training=True)`` (output and metrics) followed by a step.

    Two models with the same weights take the same batch, one through ``train_step``, the other
    through ``forward_pass(training=True)``: the outputs and the unfinalized reports must agree (for
    stochastic training, only the example counts and the report's structure).
    """
    stepped, forwarded, backend = _twins(case)
    size = training_size(case, TRAIN_SIZE)
    batch = make_batch(case, size, _rng("train_step_matches_forward_pass"))
    note = repro("train_step_matches_forward_pass", batch_size=size)
    out = backend.train_step(stepped, batch, backend.make_optimizer(stepped, PROBE))
    if not isinstance(out, fedmodel.BatchOutput):
        raise CheckFailure(MATCHES_FORWARD, "train_step's return value", "a fedmodel.BatchOutput", type(out), note)
    ref = forwarded.forward_pass(batch, training=True)
    if out.num_examples != ref.num_examples:
        raise CheckFailure(MATCHES_FORWARD, "train_step(...).num_examples", ref.num_examples, out.num_examples, note)
    got, want = report_as_numpy(stepped.report_local_outputs()), report_as_numpy(forwarded.report_local_outputs())
    if sorted(got) != sorted(want):
        raise CheckFailure(MATCHES_FORWARD, "the metrics after train_step", sorted(want), sorted(got), note)
    exact = not case.stochastic_training
    for name in want:
        if (exact or name == "num_examples") and not close(want[name], got[name], rtol=1e-5, atol=1e-6):
            raise CheckFailure(
                MATCHES_FORWARD,
                f"metric {name!r} after one train_step (unfinalized)",
                f"{want[name]} (after forward_pass(training=True) of the same batch)",
                got[name],
                note,
            )
    if not exact:
        return
    a, b = scalar(out.loss, MATCHES_FORWARD, "train_step(...).loss", note), scalar(ref.loss, MATCHES_FORWARD, "", note)
    if not abs(a - b) <= 1e-5 * max(abs(a), abs(b)) + 1e-7:
        after = float(np.asarray(stepped.forward_pass(batch, training=True).loss))
        hint = " (the loss after the step)" if abs(a - after) < abs(a - b) else ""
        raise CheckFailure(
            MATCHES_FORWARD,
            "train_step(...).loss",
            f"{b:.7g} (forward_pass(training=True) at the weights before the step)",
            f"{a:.7g}{hint}",
            note,
        )
    if not close(out.predictions, ref.predictions, rtol=1e-5, atol=1e-6):
        raise CheckFailure(
            MATCHES_FORWARD,
            "train_step(...).predictions",
            "forward_pass(training=True) predictions",
            "differ",
            note,
        )


INDEPENDENT_STEPS = (
    "train_step leaves nothing behind for the next step but the optimizer's documented state: a second plain-SGD step "
    "equals one step of a fresh optimizer from the same weights (gradients are not accumulated across steps)"
)


def _trainable(backend: fedmodel.Backend, model: Any) -> list[np.ndarray]:
    return trainable_values(backend, model)


def _assert_steps_equal(
    clause: str, where: str, want: list[np.ndarray], got: list[np.ndarray], start: list[np.ndarray], note: str
) -> None:
    """``got`` equals ``want`` to within a thousandth of the step taken from ``start`` (plus float32 rounding)."""
    problem = steps_mismatch(want, got, start)
    if problem:
        raise CheckFailure(clause, where, "the same weights", problem, note)


@register(INDEPENDENT_STEPS)
def check_sgd_steps_are_independent(case: Case) -> None:
    """Clause: step 2 of ``SGD(lr)`` on batch B equals a fresh ``SGD(lr)`` step on B from step 1's weights."""
    if case.stochastic_training:
        raise CheckSkipped("the case declares stochastic_training=True: two steps cannot be compared exactly")
    stepped, backend = fresh(case)
    other, _ = fresh(case)
    size = training_size(case, TRAIN_SIZE)
    rng = _rng("sgd_steps_are_independent")
    problem = second_step_mismatch(backend, stepped, other, [make_batch(case, size, rng) for _ in range(2)])
    if problem:
        raise CheckFailure(
            INDEPENDENT_STEPS,
            "the second SGD step vs one fresh SGD step from the same weights",
            "the same weights",
            problem,
            repro("sgd_steps_are_independent", batch_size=size, optimizer=PROBE),
        )


NO_SHARED_STATE = (
    "make_optimizer returns an optimizer with fresh state that shares none with any other: a new optimizer for the "
    "same model starts over, and two models' optimizers stepped in turn each follow their own trajectory"
)
SHARED_STATE_SPEC = fedmodel.SGD(learning_rate=0.1, momentum=0.9)  # a spec the update-rule check uses too


@register(NO_SHARED_STATE)
def check_optimizers_share_no_state(case: Case) -> None:
    """Clause: momentum (any optimizer state) never leaks from one optimizer to another.

    One model takes two momentum steps, is given its first weights back and takes the same two steps
    with a new optimizer; two more models take the same steps, alternating. All four runs must agree.
    """
    if case.stochastic_training:
        raise CheckSkipped("the case declares stochastic_training=True: trajectories cannot be compared exactly")
    model, backend = fresh(case)
    start = fedmodel.get_weights(model, backend=backend)
    size = training_size(case, TRAIN_SIZE)
    rng = _rng("optimizers_share_no_state")
    batches = [make_batch(case, size, rng) for _ in range(2)]
    note = repro("optimizers_share_no_state", batch_size=size, optimizer=SHARED_STATE_SPEC)
    first = backend.make_optimizer(model, SHARED_STATE_SPEC)
    alone = []
    for batch in batches:
        backend.train_step(model, batch, first)
        alone.append(_trainable(backend, model))
    initial = [np.asarray(a, np.float64) for a in start.trainable]
    fedmodel.assign_weights(model, start, backend=backend)
    again = backend.make_optimizer(model, SHARED_STATE_SPEC)
    for step, batch in enumerate(batches):
        backend.train_step(model, batch, again)
        where = f"step {step + 1} of a new optimizer for the same model, from the same weights"
        _assert_steps_equal(NO_SHARED_STATE, where, alone[step], _trainable(backend, model), initial, note)
    pair = [fresh(case)[0] for _ in range(2)]
    for other in pair:
        fedmodel.assign_weights(other, start, backend=backend)
    optimizers = [backend.make_optimizer(m, SHARED_STATE_SPEC) for m in pair]
    for step, batch in enumerate(batches):
        for k, (other, optimizer) in enumerate(zip(pair, optimizers, strict=True)):
            backend.train_step(other, batch, optimizer)
            where = f"step {step + 1} of model {k + 1} of two trained in turn"
            _assert_steps_equal(NO_SHARED_STATE, where, alone[step], _trainable(backend, other), initial, note)
