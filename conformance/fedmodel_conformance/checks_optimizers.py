"""Checks of the optimizer specs' update rules over several steps, FedProx's anchor included.

Each step of the optimizer under test is compared with the rule its spec documents
(:mod:`fedmodel.optimizers`), computed here in float64 from the gradient the backend applies at the same
weights (read back by a plain-SGD probe on a second model, :mod:`fedmodel_conformance._probe`). The
tolerance of each coordinate is the rule's own sensitivity to the probe's rounding (recomputed with
the gradients nudged by their error bound), plus float rounding of the weights; for Adam also the
difference between adding epsilon to ``sqrt(v_hat)`` and to ``sqrt(v)`` (Keras's "epsilon hat").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

import fedmodel
from fedmodel_conformance._core import (
    TRAIN_SIZE,
    Case,
    CheckFailure,
    CheckSkipped,
    exclusive_groups,
    fresh,
    make_batch,
    perturbed,
    register,
    repro,
    seed_for,
    training_size,
)
from fedmodel_conformance._probe import (
    float_trainable,
    gradient,
    gradient_error,
    second_step_mismatch,
    trainable_values,
)

__all__: list[str] = []

STEPS = 3
RULE_SPECS: tuple[fedmodel.OptimizerSpec, ...] = (
    fedmodel.SGD(learning_rate=0.1, momentum=0.9),
    fedmodel.SGD(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
    fedmodel.Adam(learning_rate=0.01),
)
PROX_SPEC = fedmodel.SGD(learning_rate=0.1, proximal_mu=0.5)


@dataclass
class _State:
    """The reference optimizer's state (float64)."""

    t: int = 0
    first: list[np.ndarray] = field(default_factory=list)  # momentum buffer, or Adam's m
    second: list[np.ndarray] = field(default_factory=list)  # Adam's v


def _rule(
    spec: fedmodel.OptimizerSpec,
    w: list[np.ndarray],
    g: list[np.ndarray],
    state: _State,
    anchor: list[np.ndarray] | None,
    eps_hat: bool = False,
) -> tuple[list[np.ndarray], _State]:
    """One step of ``spec``'s documented rule: ``(w_new - w, the new state)``."""
    if spec.proximal_mu > 0:
        assert anchor is not None
        g = [gi + spec.proximal_mu * (wi - ai) for gi, wi, ai in zip(g, w, anchor, strict=True)]
    t = state.t + 1
    if isinstance(spec, fedmodel.SGD):
        if spec.weight_decay:
            g = [gi + spec.weight_decay * wi for gi, wi in zip(g, w, strict=True)]
        if not spec.momentum:
            return [-spec.learning_rate * gi for gi in g], replace(state, t=t)
        buf = list(g) if t == 1 else [spec.momentum * b + gi for b, gi in zip(state.first, g, strict=True)]
        step = [gi + spec.momentum * b for gi, b in zip(g, buf, strict=True)] if spec.nesterov else buf
        return [-spec.learning_rate * d for d in step], _State(t, buf)
    if isinstance(spec, fedmodel.Adam):
        m = [spec.beta1 * (state.first[i] if state.first else 0.0) + (1 - spec.beta1) * gi for i, gi in enumerate(g)]
        v = [
            spec.beta2 * (state.second[i] if state.second else 0.0) + (1 - spec.beta2) * gi**2 for i, gi in enumerate(g)
        ]
        eps = spec.epsilon / np.sqrt(1 - spec.beta2**t) if eps_hat else spec.epsilon
        delta = [
            -spec.learning_rate * (mi / (1 - spec.beta1**t)) / (np.sqrt(vi / (1 - spec.beta2**t)) + eps)
            for mi, vi in zip(m, v, strict=True)
        ]
        return delta, _State(t, m, v)
    raise CheckSkipped(f"the suite has no reference rule for {type(spec).__name__}")


@dataclass
class _Reference:
    """The rule followed from the observed weights, nominally and with the gradients nudged up and down."""

    spec: fedmodel.OptimizerSpec
    anchor: list[np.ndarray] | None
    states: list[_State] = field(default_factory=lambda: [_State(), _State(), _State(), _State()])

    def step(self, w: list[np.ndarray], g: list[np.ndarray], err: list[np.ndarray]) -> tuple[list, list]:
        """``(nominal update, tolerance from the gradients' error)`` of one step."""
        variants = (g, [a + e for a, e in zip(g, err, strict=True)], [a - e for a, e in zip(g, err, strict=True)], g)
        out = []
        for k, (grads, state) in enumerate(zip(variants, self.states, strict=True)):
            delta, self.states[k] = _rule(self.spec, w, grads, state, self.anchor, eps_hat=k == 3)
            out.append(delta)
        nominal = out[0]
        spread = [np.maximum.reduce([np.abs(o[i] - nominal[i]) for o in out[1:]]) for i in range(len(nominal))]
        return nominal, spread


@dataclass(frozen=True)
class _Bench:
    """The model under test, a second model for the probes, their backend, and the check's name and clause."""

    case: Case
    clause: str
    name: str
    model: Any
    probe: Any
    backend: fedmodel.Backend


def _bench(case: Case, clause: str, name: str) -> _Bench:
    if case.stochastic_training:
        raise CheckSkipped("the case declares stochastic_training=True: a step cannot be predicted exactly")
    model, backend = fresh(case)
    if not any(float_trainable(backend, model)):
        raise CheckSkipped("the model has no floating-point trainable variable")
    probe = fresh(case)[0]
    size = training_size(case, TRAIN_SIZE)
    rng = np.random.default_rng(seed_for(name))
    start = fedmodel.get_weights(model, backend=backend)
    if second_step_mismatch(backend, model, probe, [make_batch(case, size, rng) for _ in range(2)]):
        raise CheckSkipped("plain SGD steps are not independent (gradients left over?): see sgd_steps_are_independent")
    fedmodel.assign_weights(model, start, backend=backend)
    return _Bench(case, clause, name, model, probe, backend)


def _follow(bench: _Bench, spec: fedmodel.OptimizerSpec, start: fedmodel.ModelWeights) -> None:
    """Train the model from ``start`` with ``spec`` for ``STEPS`` steps, comparing each step with the rule."""
    case, clause, name, model, probe, backend = (
        bench.case,
        bench.clause,
        bench.name,
        bench.model,
        bench.probe,
        bench.backend,
    )
    trainable = exclusive_groups(model)["trainable"]
    floats = float_trainable(backend, model)
    size = training_size(case, TRAIN_SIZE)
    rng = np.random.default_rng(seed_for(name))
    fedmodel.assign_weights(model, start, backend=backend)
    dtypes = [np.asarray(a).dtype for a in backend.read_variables(trainable)]
    names = backend.variable_names(model, trainable)
    w = trainable_values(backend, model)
    optimizer = backend.make_optimizer(model, spec)
    reference = _Reference(spec, [a.copy() for a in w] if spec.proximal_mu > 0 else None)
    for step in range(1, STEPS + 1):
        batch = make_batch(case, size, rng)
        now = fedmodel.get_weights(model, backend=backend)
        g = gradient(backend, probe, now, batch)
        backend.train_step(model, batch, optimizer)
        after = trainable_values(backend, model)
        want, spread = reference.step(w, g, gradient_error(w, g, dtypes))
        for i, is_float in enumerate(floats):
            if not is_float:
                continue
            got = after[i] - w[i]
            eps = float(np.finfo(dtypes[i]).eps)
            tol = spread[i] + 1e-4 * np.abs(want[i]) + 1e-6 * np.abs(want[i]).max() + 2 * eps * np.abs(after[i])
            bad = np.abs(got - want[i]) > tol
            if bad.any():
                j = int(np.argmax(np.abs(got - want[i]) - tol))
                raise CheckFailure(
                    clause,
                    f"step {step} of {spec}, trainable {names[i]!r} at flat index {j} "
                    f"({int(bad.sum())} coordinates off)",
                    f"a change of {want[i].flat[j]:.6g} (the documented rule, from the gradient {g[i].flat[j]:.6g})",
                    f"{got.flat[j]:.6g}",
                    repro(name, batch_size=size, optimizer=spec, steps=STEPS),
                )
        w = after


RULES = (
    "each optimizer follows the update rule its spec documents, step after step: SGD with momentum, with Nesterov "
    "momentum and coupled weight decay, and Adam (fedmodel.optimizers)"
)


@register(RULES)
def check_optimizer_update_rules(case: Case) -> None:
    """Clause: ``make_optimizer(spec)`` steps as ``spec`` says: three steps of each of three specs."""
    bench = _bench(case, RULES, "optimizer_update_rules")
    start = fedmodel.get_weights(bench.model, backend=bench.backend)
    for spec in RULE_SPECS:
        _follow(bench, spec, start)


ANCHOR = (
    "FedProx (proximal_mu > 0) adds mu * (w - w0) to the gradient, where w0 is a copy of the trainable weights when "
    "make_optimizer was called (the weights assigned last, not those the model was built with)"
)


@register(ANCHOR)
def check_fedprox_anchor(case: Case) -> None:
    """Clause: FedProx pulls toward the weights assigned before ``make_optimizer``, over three SGD steps."""
    bench = _bench(case, ANCHOR, "fedprox_anchor")
    weights = fedmodel.get_weights(bench.model, backend=bench.backend)
    _follow(bench, PROX_SPEC, perturbed(weights, np.random.default_rng(seed_for("fedprox_anchor"))))
