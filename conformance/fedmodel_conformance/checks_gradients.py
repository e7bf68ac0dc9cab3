"""The gradient check: the step ``train_step`` takes against central differences of the training loss.

Fair to every correct model by construction:

* the gradient is read back from one plain-SGD step (:mod:`fedmodel_conformance._probe`), and every
  difference is taken in float64 (the model computes in its own precision);
* for each trainable variable two directions (the other variables stay put): the reported gradient's
  direction in that variable plus half a random direction, so the loss changes fast along it and
  the step ``h`` can be small (few ReLU kinks within reach); and a random direction with a small share
  of the gradient's (:func:`_random_direction`), along which an error of the gradient orthogonal to the
  gradient itself weighs as much as the gradient does (in a large variable the first direction sees
  such an error diluted by the square root of its size); ``h`` is chosen from the loss's rounding so
  that it costs a few percent at most;
* central differences at ``h`` and ``h/2``, with the loss at the point: the line counts as smooth when
  the two estimates agree and the second differences keep their smooth ratio (a kink anywhere within
  ``h`` breaks one or the other), both to within the losses' rounding;
* at a point where the line is not smooth (a kink close by), the check moves to another point (the
  weights nudged at random) and tries again; only a smooth point decides, and it fails the model only
  when the estimate and the gradient differ by more than rounding allows plus ``RTOL``. The first
  direction of every variable must be decided within ``MAX_POINTS`` points (else the check is a skip).
  The second is fixed per variable (drawn from its own generator, so it changes nothing about the
  first); its derivative is smaller, its step larger, and several kinks within reach can pass for a
  smooth line, so it fails the model only when it disagrees at two smooth points (a wrong gradient
  disagrees everywhere, a kink at one point only), and is left undecided (not a skip) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    register,
    repro,
    seed_for,
    training_size,
)
from fedmodel_conformance._probe import float_trainable, gradient

__all__: list[str] = []

GRADIENTS = (
    "the gradient train_step applies is the gradient of forward_pass(batch, training=True).loss: it agrees with "
    "central finite differences along random directions, at points where the loss is smooth"
)
RTOL = 0.01  # besides rounding: the estimate and the gradient may differ by 1 %
MAX_POINTS = 5  # points tried per variable before the check gives up on deciding it
ROUNDING = 4  # a loss is trusted to this many units in the last place of its precision, times its size
SMOOTH = 13  # how far (in rounding units over h) the smoothness statistics may go: their own worst-case noise
BUDGET = 0.05  # h is chosen so that SMOOTH + 3 rounding units cost at most this share of the derivative


@dataclass(frozen=True)
class Estimate:
    """Central differences along one direction next to the gradient's value, and how to judge them."""

    finite_difference: float
    from_gradient: float
    roughness: float  # the smoothness statistics: disagreement of h and h/2, departure of second differences
    rounding: float  # one unit of the losses' rounding, over h

    @property
    def smooth(self) -> bool:
        """Whether the line is smooth within ``h`` (no kink or noise beyond the rounding's worst case)."""
        return self.roughness <= SMOOTH * self.rounding

    @property
    def tolerance(self) -> float:
        """How far the estimate and the gradient may differ at a smooth point."""
        return (SMOOTH + 3) * self.rounding + RTOL * max(abs(self.finite_difference), abs(self.from_gradient))

    @property
    def agrees(self) -> bool:
        """Whether the two derivatives agree within :attr:`tolerance`."""
        return abs(self.finite_difference - self.from_gradient) <= self.tolerance


def _eps(values: list[np.ndarray], loss_dtype: np.dtype[Any]) -> float:
    """Machine epsilon of the coarsest precision among the loss and the floating trainable variables."""
    dtypes = [loss_dtype] + [v.dtype for v in values if v.dtype.kind == "f"]
    return max(float(np.finfo(d).eps) if d.kind == "f" else float(np.finfo(np.float32).eps) for d in dtypes)


class _Line:
    """The training loss at the point, and along ``w + t d`` in one variable (written alone, then restored)."""

    def __init__(self, backend: fedmodel.Backend, model: Any, batch: Any, values: list[np.ndarray]) -> None:
        self.backend, self.model, self.batch = backend, model, batch
        self.variables = exclusive_groups(model)["trainable"]
        self.values = values  # in the variables' own dtypes
        loss = np.asarray(model.forward_pass(batch, training=True).loss)
        self.at_point, self.loss_dtype = float(loss.astype(np.float64).reshape(-1)[0]), loss.dtype

    def _loss(self) -> float:
        return float(np.asarray(self.model.forward_pass(self.batch, training=True).loss, np.float64))

    def moved(self, index: int, direction: np.ndarray, t: float) -> np.ndarray:
        """The variable's value at ``t``, as stored (rounded to its dtype)."""
        base = self.values[index]
        return (base.astype(np.float64) + t * direction).astype(base.dtype)

    def losses(self, index: int, direction: np.ndarray, steps: list[float]) -> dict[float, float]:
        """The loss at each ``t`` of ``steps``; the variable holds its value at the point again afterwards."""
        out = {}
        for t in steps:
            self.backend.write_variables([self.variables[index]], [self.moved(index, direction, t)])
            out[t] = self._loss()
        self.backend.write_variables([self.variables[index]], [self.values[index]])
        return out


def _rms(value: np.ndarray) -> float:
    return max(float(np.sqrt(np.mean(np.square(value.astype(np.float64))))) if value.size else 0.0, 0.05)


def _estimate(line: _Line, index: int, direction: np.ndarray, grad: np.ndarray, eps: float) -> Estimate:
    base = line.values[index].astype(np.float64)
    along = float(np.dot(grad.ravel(), direction.ravel()))
    l0 = line.at_point
    noise = ROUNDING * eps * max(abs(l0), 1e-3)
    rms = _rms(base)
    # the step that makes the rounding cost BUDGET of the derivative, kept where the weights can resolve it
    h = float(np.clip((SMOOTH + 3) * noise / (BUDGET * max(abs(along), 1e-30)), 64 * eps * rms, 0.01 * rms))
    dd = float(np.dot(direction.ravel(), direction.ravel()))
    # the steps as stored (rounded to the variable's dtype), projected on the direction
    step = {
        t: float(np.dot(line.moved(index, direction, t).astype(np.float64).ravel() - base.ravel(), direction.ravel()))
        / dd
        for t in (h, -h, h / 2, -h / 2)
    }
    loss = line.losses(index, direction, list(step))
    central = {t: (loss[t] - loss[-t]) / (step[t] - step[-t]) for t in (h, h / 2)}
    second = {t: (loss[t] + loss[-t] - 2 * l0) / ((step[t] - step[-t]) / 2) for t in (h, h / 2)}  # t * curvature
    roughness = abs(central[h] - central[h / 2]) + abs(second[h] - 2 * second[h / 2]) / 2
    return Estimate(central[h / 2], along, roughness, noise / (step[h] - step[-h]) * 2)


def _direction(rng: np.random.Generator, grad: np.ndarray) -> np.ndarray:
    """The gradient's direction plus half a random one, scaled to one unit per coordinate on average."""
    r = rng.standard_normal(grad.shape)
    r /= np.sqrt(np.mean(r * r))
    norm = float(np.sqrt(np.mean(grad * grad)))
    return grad / norm + 0.5 * r if norm > 0 else 0.5 * r


def _random_direction(r: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The fixed random direction ``r`` (one unit per coordinate on average) plus a share of the gradient's.

    The share, ``2 / sqrt(size)`` of the gradient's unit direction, keeps the derivative along the line
    away from zero (about ``sqrt(size) * rms(g) * (2 + N(0, 1))``), so the step stays small, while an
    error ``e`` orthogonal to the gradient moves it by about ``sqrt(size) * rms(e)``: the same order.
    """
    norm = float(np.sqrt(np.mean(grad * grad)))
    return r + 2.0 / np.sqrt(grad.size) * grad / norm if norm > 0 else r


def _nudged(weights: fedmodel.ModelWeights, floats: list[bool], rng: np.random.Generator) -> fedmodel.ModelWeights:
    """Another point: every floating trainable value moved by 5 % of its variable's scale, at random."""
    out = list(weights.arrays)
    for i, is_float in enumerate(floats):
        if is_float:
            a = np.asarray(out[i])
            out[i] = (a + 0.05 * _rms(a) * rng.standard_normal(a.shape)).astype(a.dtype)
    return weights.with_arrays(out)


@register(GRADIENTS)
def check_gradients_match_finite_differences(case: Case) -> None:
    """Clause: ``train_step`` follows the true gradient of the training loss (two directions per variable).

    See the module docstring for how the error bound is measured and why a correct model never fails.
    """
    if case.stochastic_training:
        raise CheckSkipped("the case declares stochastic_training=True: finite differences need a deterministic loss")
    model, backend = fresh(case)
    rng = np.random.default_rng(seed_for("gradients_match_finite_differences"))
    size = training_size(case, TRAIN_SIZE)
    batch = make_batch(case, size, rng)
    floats = float_trainable(backend, model)
    if not any(floats):
        raise CheckSkipped("the model has no floating-point trainable variable")
    names = backend.variable_names(model, exclusive_groups(model)["trainable"])
    start = fedmodel.get_weights(model, backend=backend)
    pending = [(i, k) for i, f in enumerate(floats) if f for k in (0, 1)]  # (variable, direction)
    second = np.random.default_rng([seed_for("gradients_match_finite_differences"), 1])  # the second directions
    fixed = {i: second.standard_normal(np.shape(start.trainable[i])) for i, f in enumerate(floats) if f}
    fixed = {i: r / np.sqrt(np.mean(r * r)) for i, r in fixed.items()}
    strikes: dict[int, Estimate] = {}  # second directions that disagreed once: a second disagreement fails
    undecided: dict[tuple[int, int], Estimate] = {}
    for point in range(MAX_POINTS):
        weights = start if point == 0 else _nudged(start, floats, rng)
        grads = gradient(backend, model, weights, batch)
        fedmodel.assign_weights(model, weights, backend=backend)
        values = [np.asarray(a) for a in backend.read_variables(exclusive_groups(model)["trainable"])]
        line = _Line(backend, model, batch, values)
        eps = _eps(values, line.loss_dtype)
        for i, k in list(pending):
            direction = _direction(rng, grads[i]) if k == 0 else _random_direction(fixed[i], grads[i])
            est = _estimate(line, i, direction, grads[i], eps)
            if not est.smooth:
                undecided[i, k] = est  # a kink too close: try another point
                continue
            undecided.pop((i, k), None)
            if k == 1 and not est.agrees and i not in strikes:
                strikes[i] = est  # kinks within reach can mimic a smooth line: confirm at another point
                continue
            pending.remove((i, k))
            if not est.agrees:
                along = "its gradient plus a random direction" if k == 0 else "a fixed random direction"
                again = " (disagreeing at two points)" if k == 1 else ""
                raise CheckFailure(
                    GRADIENTS,
                    f"trainable {names[i]!r}, along {along}{again}"
                    + (f" (at a point moved {point} time(s) off a kink)" if point and k == 0 else ""),
                    f"{est.finite_difference:.6g} (central differences, within {est.tolerance:.2g})",
                    f"{est.from_gradient:.6g} (the gradient train_step applied)",
                    repro("gradients_match_finite_differences", batch_size=size, point=point, direction=k + 1),
                )
            strikes.pop(i, None)
        if not any(k == 0 for _, k in pending):  # the first directions are decided: only a strike goes on
            pending = [(i, k) for i, k in pending if k == 1 and i in strikes]
        if not pending:
            break
    fedmodel.assign_weights(model, start, backend=backend)
    worst = ", ".join(f"{names[i]!r} (roughness {e.roughness:.2g})" for (i, k), e in undecided.items() if k == 0)
    if worst:
        raise CheckSkipped(f"no point smooth enough to decide the gradient of {worst} in {MAX_POINTS} tries")
