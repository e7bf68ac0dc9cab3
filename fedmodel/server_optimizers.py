"""Server optimizers applied to the averaged client delta (the pseudo-gradient), in the optax shape.

A server optimizer is a pair of pure functions: ``init(params) -> state`` and
``update(delta, state, params) -> (new_params, state)``, where ``delta = mean_k(w_k) - params`` is the
aggregated client change (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2 calls it
``Δ_t``). Note the sign: ``delta`` points *downhill*, so every rule adds it (SGD with learning rate 1 and no
momentum is plain FedAvg: the new weights are the client average).

Only the trainable floating-point variables go through the rule; every other variable (integer counters,
non-trainable statistics such as BatchNorm's running means, frozen layers) takes the aggregated value
``params + delta``. State is a small NamedTuple of float64 numpy arrays, one per trainable variable; use
:func:`state_to_arrays` / :func:`state_from_arrays` to checkpoint it.

>>> import numpy as np
>>> from fedmodel import ModelWeights
>>> opt = adam(learning_rate=0.1)
>>> params = ModelWeights((np.zeros(2, np.float32),))
>>> delta = ModelWeights((np.array([1.0, -1.0]),))
>>> state = opt.init(params)
>>> new, state = opt.update(delta, state, params)
>>> new.trainable[0].round(4)  # 0.1 * m / (sqrt(v) + tau), m = 0.1, v = 0.99 tau^2 + 0.01
array([ 0.099, -0.099], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from fedmodel._weights import ModelWeights
from fedmodel.validation import is_float

__all__ = [
    "AdaptiveState",
    "SGDState",
    "ServerOptimizer",
    "adagrad",
    "adam",
    "apply_rule",
    "sgd",
    "state_from_arrays",
    "state_to_arrays",
    "yogi",
]


class ServerOptimizer(NamedTuple):
    """An ``init`` / ``update`` pair, like ``optax.GradientTransformation`` (but returning new params)."""

    init: Callable[[ModelWeights], Any]
    update: Callable[[ModelWeights, Any, ModelWeights], tuple[ModelWeights, Any]]


class SGDState(NamedTuple):
    """Momentum buffer of :func:`sgd`, one float64 array per trainable variable."""

    momentum: tuple[np.ndarray, ...]


class AdaptiveState(NamedTuple):
    """First moment ``m`` and second moment ``v`` of :func:`adam`, :func:`yogi` and :func:`adagrad`."""

    m: tuple[np.ndarray, ...]
    v: tuple[np.ndarray, ...]


def apply_rule(
    params: ModelWeights, delta: ModelWeights, step: Callable[[int, np.ndarray], np.ndarray]
) -> ModelWeights:
    """New weights: ``params + step(i, delta_i)`` for trainable float variable ``i``, ``params + delta`` else.

    Arithmetic is float64; each result is cast back to the variable's dtype (a value beyond the dtype's range
    becomes inf, which :class:`fedmodel.server.ServerRound` refuses as a global model). Integer variables add
    modularly, undoing :func:`fedmodel.algorithms.delta` exactly.
    """
    out = []
    n = len(params.trainable)
    for i, (p, d) in enumerate(zip(params.arrays, delta.arrays, strict=True)):
        with np.errstate(over="ignore"):
            if not is_float(p):
                out.append(np.asarray(np.add(p, np.asarray(d), dtype=p.dtype, casting="unsafe")))
                continue
            d64 = np.asarray(d, np.float64)
            change = step(i, d64) if i < n else d64
            out.append((np.asarray(p, np.float64) + change).astype(p.dtype))
    return params.with_arrays(out)


def _zeros(params: ModelWeights, fill: float = 0.0) -> tuple[np.ndarray, ...]:
    return tuple(np.full(p.shape, fill, np.float64) for p in params.trainable)


def sgd(learning_rate: float = 1.0, momentum: float = 0.0, nesterov: bool = False) -> ServerOptimizer:
    """Server SGD with optional momentum: ``b = momentum * b + Δ; x += lr * b`` (FedAvgM with momentum > 0).

    ``learning_rate=1, momentum=0`` is FedAvg (McMahan et al., "Communication-Efficient Learning of Deep
    Networks from Decentralized Data", AISTATS 2017); momentum > 0 is FedAvgM (Hsu et al., "Measuring the
    Effects of Non-Identical Data Distribution for Federated Visual Classification", 2019).
    """
    if learning_rate <= 0 or momentum < 0:
        raise ValueError(f"need learning_rate > 0 and momentum >= 0, got {learning_rate}, {momentum}")

    def init(params: ModelWeights) -> SGDState:
        return SGDState(_zeros(params))

    def update(delta: ModelWeights, state: SGDState, params: ModelWeights) -> tuple[ModelWeights, SGDState]:
        buffers = list(state.momentum)

        def step(i: int, d: np.ndarray) -> np.ndarray:
            if not momentum:
                return learning_rate * d
            buffers[i] = momentum * buffers[i] + d
            return learning_rate * (d + momentum * buffers[i] if nesterov else buffers[i])

        return apply_rule(params, delta, step), SGDState(tuple(buffers))

    return ServerOptimizer(init, update)


def _adaptive(
    second_moment: Callable[[np.ndarray, np.ndarray], np.ndarray],
    learning_rate: float,
    beta1: float,
    tau: float,
) -> ServerOptimizer:
    """Algorithm 2 of Reddi et al. 2021 with ``second_moment(v_prev, Δ²) -> v``."""
    if learning_rate <= 0 or not 0 <= beta1 < 1 or tau <= 0:
        raise ValueError(f"need learning_rate > 0, 0 <= beta1 < 1, tau > 0; got {learning_rate}, {beta1}, {tau}")

    def init(params: ModelWeights) -> AdaptiveState:
        # Algorithm 2 initializes v_{-1} >= tau^2; we take the smallest allowed value.
        return AdaptiveState(_zeros(params), _zeros(params, tau * tau))

    def update(delta: ModelWeights, state: AdaptiveState, params: ModelWeights) -> tuple[ModelWeights, AdaptiveState]:
        m, v = list(state.m), list(state.v)

        def step(i: int, d: np.ndarray) -> np.ndarray:
            m[i] = beta1 * m[i] + (1 - beta1) * d
            v[i] = second_moment(v[i], d * d)
            return learning_rate * m[i] / (np.sqrt(v[i]) + tau)  # type: ignore[no-any-return]

        return apply_rule(params, delta, step), AdaptiveState(tuple(m), tuple(v))

    return ServerOptimizer(init, update)


def adam(learning_rate: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> ServerOptimizer:
    """FedAdam (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2).

    ``m = β1 m + (1-β1) Δ``; ``v = β2 v + (1-β2) Δ²``; ``x += η m / (√v + τ)``; no bias correction,
    ``v`` starts at ``τ²``. Defaults are the paper's ``β1 = 0.9``, ``β2 = 0.99``, ``τ = 1e-3``.
    """
    return _adaptive(lambda v, d2: beta2 * v + (1 - beta2) * d2, learning_rate, beta1, tau)


def yogi(learning_rate: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> ServerOptimizer:
    """FedYogi (Reddi et al. 2021, Algorithm 2): ``v = v - (1-β2) Δ² sign(v - Δ²)``, otherwise as FedAdam."""
    return _adaptive(lambda v, d2: v - (1 - beta2) * d2 * np.sign(v - d2), learning_rate, beta1, tau)


def adagrad(learning_rate: float = 0.1, beta1: float = 0.9, tau: float = 1e-3) -> ServerOptimizer:
    """FedAdagrad (Reddi et al. 2021, Algorithm 2): ``v = v + Δ²``, with the same momentum ``m`` as FedAdam."""
    return _adaptive(lambda v, d2: v + d2, learning_rate, beta1, tau)


def state_to_arrays(state: Any) -> dict[str, np.ndarray]:
    """A server-optimizer state (NamedTuple of tuples of arrays) as ``{"field/index": array}``.

    >>> state_to_arrays(SGDState((np.zeros(2),)))
    {'momentum/0': array([0., 0.])}
    """
    out: dict[str, np.ndarray] = {}
    for field, value in zip(state._fields, state, strict=True):
        for i, array in enumerate(value):
            out[f"{field}/{i}"] = np.ascontiguousarray(array)
    return out


def state_from_arrays(like: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The inverse of :func:`state_to_arrays`: a state shaped like ``like`` (e.g. ``opt.init(params)``).

    Raises:
        ValueError: when a key is missing or an array has another shape than in ``like``.
    """
    fields = []
    for field, value in zip(like._fields, like, strict=True):
        arrays_of_field = []
        for i, want in enumerate(value):
            key = f"{field}/{i}"
            if key not in arrays:
                raise ValueError(f"server optimizer state: missing {key!r} (have {sorted(arrays)})")
            got = np.asarray(arrays[key], np.float64)
            if got.shape != want.shape:
                raise ValueError(f"server optimizer state {key!r}: shape {got.shape}, expected {want.shape}")
            arrays_of_field.append(got.copy())
        fields.append(tuple(arrays_of_field))
    return type(like)(*fields)
