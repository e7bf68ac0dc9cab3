"""Checks of training through the ``Backend``: ``make_optimizer`` + ``train_step``, and gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

import fedmodel
from fedmodel_conformance._core import (
    Case,
    CheckFailure,
    CheckSkipped,
    Snapshot,
    exclusive_groups,
    fresh,
    make_batch,
    register,
    repro,
    scalar,
    seed_for,
)

__all__: list[str] = []

LOWERS = "one optimizer step through Backend.make_optimizer + Backend.train_step lowers the loss on a fixed batch"
MAX_TRIES = 5  # stochastic training: the eval loss must drop within this many steps


@register(LOWERS)
def check_train_step_lowers_loss(case: Case) -> None:
    """Clause: ``train_step`` descends (with the case's optimizer) and returns that batch's ``BatchOutput``.

    Deterministic training compares the training-mode loss before (``train_step``'s own output) and
    after the step; stochastic training compares evaluation-mode losses over at most a few steps.
    """
    model, backend = fresh(case)
    batch = make_batch(case, 16, np.random.default_rng(seed_for("train_step_lowers_loss")))
    note = repro("train_step_lowers_loss", batch_size=16, optimizer=case.optimizer)
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
    out = backend.train_step(model, batch, optimizer)
    if not isinstance(out, fedmodel.BatchOutput):
        raise CheckFailure(LOWERS, "train_step's return value", "a fedmodel.BatchOutput", type(out).__name__, note)
    before = scalar(out.loss, LOWERS, "train_step(...).loss", note)
    after = scalar(model.forward_pass(batch, training=True).loss, LOWERS, "forward_pass(training=True).loss", note)
    if not after < before:
        raise CheckFailure(
            LOWERS, "training-mode loss on the same batch after one train_step", f"< {before}", after, note
        )


KEEPS_NON_TRAINABLE = (
    "training leaves non-trainable variables alone unless the model declares that training updates them "
    "(batch-norm statistics: Case.training_changes_non_trainable)"
)


@register(KEEPS_NON_TRAINABLE)
def check_training_keeps_non_trainable(case: Case) -> None:
    """Clause: ``train_step`` changes only trainable variables (and metrics) of a model with frozen state."""
    if case.training_changes_non_trainable:
        raise CheckSkipped("the case declares training_changes_non_trainable=True")
    model, backend = fresh(case)
    snap = Snapshot.take(backend, model, exclusive_groups(model)["non_trainable"])
    optimizer = backend.make_optimizer(model, case.optimizer)
    rng = np.random.default_rng(seed_for("training_keeps_non_trainable"))
    for _ in range(2):
        backend.train_step(model, make_batch(case, 8, rng), optimizer)
    snap.assert_unchanged(backend, KEEPS_NON_TRAINABLE, "two train_step calls", repro("training_keeps_non_trainable"))


GRADIENTS = (
    "the gradients train_step applies agree with central finite differences of the evaluation loss "
    "(g = (w0 - w1) / lr after one plain-SGD step)"
)
STEP, RTOL, ATOL = 1e-3, 0.05, 1e-3
COORDINATES = 3  # per trainable variable: the largest-gradient ones and a random one


def _loss(model: Any, batch: Any) -> float:
    return float(np.asarray(model.forward_pass(batch, training=False).loss, np.float64))


@register(GRADIENTS)
def check_gradients_match_finite_differences(case: Case) -> None:
    """Clause: ``train_step`` follows the true gradient of the loss (checked on a few coordinates)."""
    if case.stochastic_training:
        raise CheckSkipped("the case declares stochastic_training=True: finite differences need a deterministic loss")
    if case.training_changes_non_trainable:
        raise CheckSkipped("the case declares training_changes_non_trainable=True: training and eval losses differ")
    model, backend = fresh(case)
    rng = np.random.default_rng(seed_for("gradients_match_finite_differences"))
    batch = make_batch(case, 8, rng)
    lr = 1.0
    trainable = exclusive_groups(model)["trainable"]
    everything = fedmodel.get_weights(model, backend=backend)
    w0 = [np.asarray(a, np.float64) for a in backend.read_variables(trainable)]
    backend.train_step(model, batch, backend.make_optimizer(model, fedmodel.SGD(learning_rate=lr)))
    w1 = [np.asarray(a, np.float64) for a in backend.read_variables(trainable)]
    fedmodel.assign_weights(model, everything, backend=backend)
    names = Snapshot.take(backend, model, trainable).names
    for var, name, before, after in zip(trainable, names, w0, w1, strict=True):
        dtype = np.asarray(backend.read_variables([var])[0]).dtype
        if dtype.kind != "f" or before.size == 0:
            continue
        grad = ((before - after) / lr).ravel()
        picks = [*list(np.argsort(-np.abs(grad))[: COORDINATES - 1]), int(rng.integers(before.size))]
        for flat in dict.fromkeys(int(i) for i in picks):
            fd = _central_difference(model, backend, batch, var, before, flat, dtype)
            note = repro("gradients_match_finite_differences", batch_size=8, coordinate=flat, step=STEP)
            if abs(fd - grad[flat]) > ATOL + RTOL * max(abs(fd), abs(grad[flat])):
                raise CheckFailure(
                    GRADIENTS,
                    f"{name}, flat index {flat}",
                    f"{fd:.6g} (finite differences)",
                    f"{grad[flat]:.6g} (from train_step)",
                    note,
                )


def _central_difference(
    model: Any, backend: fedmodel.Backend, batch: Any, var: Any, base: np.ndarray, flat: int, dtype: np.dtype[Any]
) -> float:
    losses, moved = [], []
    for sign in (1.0, -1.0):
        value = base.copy()
        value.flat[flat] += sign * STEP
        cast = value.astype(dtype)
        moved.append(float(cast.flat[flat]))
        backend.write_variables([var], [cast])
        losses.append(_loss(model, batch))
    backend.write_variables([var], [base.astype(dtype)])
    return (losses[0] - losses[1]) / (moved[0] - moved[1])  # the step as stored, after rounding to dtype
