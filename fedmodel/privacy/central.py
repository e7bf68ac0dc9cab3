"""Central (server-side) differential privacy: DP-FedAvg's clipped, noised, fixed-denominator mean.

:class:`DPMean` is a weights aggregator (``init`` / ``accumulate`` / ``finalize``) implementing the
aggregation of DP-FedAvg (McMahan, Ramage, Talwar & Zhang, "Learning Differentially Private Recurrent
Language Models", ICLR 2018), with optional adaptive clipping (Andrew, Thakkar, McMahan & Ramaswamy,
"Differentially Private Learning with Adaptive Clipping", NeurIPS 2021):

1. each client's change ``Δ_k = update_k - template`` (``template`` = the server's current weights) is
   scaled to an L2 norm of at most ``C`` (:mod:`fedmodel.privacy.clipping`);
2. the clipped changes are summed, Gaussian noise of standard deviation ``z_Δ * C`` is added, and the
   sum is divided by the **fixed** expected number of clients per round ``m`` (not the number that
   replied: a data-dependent denominator would itself leak), so the noise on the mean has standard
   deviation ``z_Δ * C / m``;
3. the result is ``template + noised mean``, cast back to each variable's dtype.

One client changes the sum by at most ``C`` (add/remove one client), so with clients sampled as the
accountant assumes (:mod:`fedmodel.privacy.accounting`), every round is a subsampled Gaussian mechanism
with noise multiplier ``z``. **The client's example count is ignored** (each client counts once): it
is reported by the client and unbounded, and weighting by it would let one client move the sum by
``weight * C``, breaking the sensitivity bound the guarantee rests on; it would also be released
without noise.

With adaptive clipping, ``C`` follows the target quantile of the clients' update norms: each round
also sums the indicators ``b_k = [||Δ_k|| <= C] - 1/2`` (sensitivity 1/2), adds noise of standard
deviation ``sigma_b``, estimates the unclipped fraction ``b̄ = (Σ b_k + noise) / m + 1/2`` (clamped to
[0, 1]) and sets ``C ← C exp(-η (b̄ - gamma))``. Both releases together are equivalent to one Gaussian
mechanism with multiplier ``z`` when ``z_Δ = (z^-2 - (2 sigma_b)^-2)^-1/2`` (Andrew et al., Theorem 1), so
``noise_multiplier`` is always the **effective** ``z`` to account, and the noise on the values is
slightly larger.

Integer, boolean and other non-float variables (counters such as ``num_batches_tracked``) keep the
server's value: taking them from clients would release client data without noise.

The running sum cannot overflow: every clipped change has norm ``<= C <= 1e100``
(:data:`~fedmodel.privacy.clipping.MAX_CLIP`), so after ``K`` clients every coordinate is within
``K * C``, finite in float64 for any ``K < 2**63``. Memory: one float64 accumulator per float variable
(one model), plus temporaries of one variable's size. An update that is invalid (mis-shaped, NaN,
bad weight) or whose change norm overflows float64 is refused with :class:`~fedmodel.AggregationError`
and the state is left as it was: a refused client counts as absent, which the add/remove analysis
already covers.

The state carried between rounds (:class:`DPCarry`: the round index, which keys the seeded noise, and
the current clip norm) comes from ``initial_carry`` and ``next_carry``; a server keeps it with its
weights (``ServerState.aggregator_state``).

>>> import numpy as np
>>> from fedmodel import ModelWeights
>>> from fedmodel.privacy import DPMean, SeededNoise
>>> dp = DPMean(clip=1.0, noise_multiplier=0.0, expected_clients=2, noise=SeededNoise(0))
>>> server = ModelWeights((np.zeros(2, np.float32),))
>>> ups = [ModelWeights((np.array([3.0, 4.0], np.float32),)), ModelWeights((np.array([0.2, 0.0], np.float32),))]
>>> new, carry = dp.aggregate(server, ups)
>>> new.trainable[0].tolist(), carry  # ((0.6, 0.8) + (0.2, 0)) / 2
([0.4000000059604645, 0.4000000059604645], DPCarry(round=1, clip_norm=1.0))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights
from fedmodel.privacy.clipping import MAX_CLIP, MIN_CLIP, clip_factor, clipped_change, is_float
from fedmodel.privacy.noise import NoiseSource
from fedmodel.validation import check_client_update

__all__ = ["AdaptiveClipping", "DPCarry", "DPMean", "DPState", "adaptive_noise_multiplier"]

_VALUES, _COUNT = 0, 1  # the two noise streams of a round: (round, _VALUES, variable) and (round, _COUNT)


class DPCarry(NamedTuple):
    """What :class:`DPMean` keeps between rounds: the round index (keys the noise) and the clip norm."""

    round: int
    clip_norm: float


@dataclass(frozen=True)
class AdaptiveClipping:
    """Settings of the adaptive clip norm (Andrew et al. 2021, geometric update).

    Args:
        initial_norm: the clip norm of the first round.
        target_quantile: the fraction ``gamma`` of clients whose update should be unclipped.
        learning_rate: ``η``: the norm changes by a factor within ``[exp(-η), exp(η)]`` per round.
        count_stddev: ``sigma_b``, the noise on the count of unclipped clients; ``None`` means
            ``0.05 * expected_clients`` (TensorFlow Federated's default), or 0 when ``noise_multiplier == 0``.
    """

    initial_norm: float = 0.1
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_stddev: float | None = None

    def __post_init__(self) -> None:
        if not MIN_CLIP <= self.initial_norm <= MAX_CLIP:
            raise ValueError(f"initial_norm must be in [{MIN_CLIP}, {MAX_CLIP}], got {self.initial_norm}")
        if not 0.0 <= self.target_quantile <= 1.0:
            raise ValueError(f"target_quantile must be in [0, 1], got {self.target_quantile}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise ValueError(f"learning_rate must be finite and >= 0, got {self.learning_rate}")
        if self.count_stddev is not None and not (math.isfinite(self.count_stddev) and self.count_stddev >= 0):
            raise ValueError(f"count_stddev must be finite and >= 0, got {self.count_stddev}")


def adaptive_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
    """``z_Δ``, the multiplier of the noise on the values, so the round's effective multiplier is ``z``.

    Andrew et al. 2021, Theorem 1: the value sum (sensitivity ``C``, noise ``z_Δ C``) and the unclipped
    count (sensitivity 1/2, noise ``sigma_b``) together are one Gaussian mechanism of multiplier
    ``(z_Δ^-2 + (2 sigma_b)^-2)^-1/2``; solved for ``z_Δ``.

    >>> round(adaptive_noise_multiplier(1.0, 5.0), 6)  # 100 clients, TFF's default sigma_b = 0.05 * 100
    1.005038

    Raises:
        ValueError: when ``2 sigma_b <= z`` (the count alone would spend more than the budget).
    """
    if noise_multiplier == 0:
        return 0.0
    if not 2 * count_stddev > noise_multiplier:
        raise ValueError(
            f"count_stddev = {count_stddev:.6g} is too small for noise_multiplier = {noise_multiplier:.6g}: "
            f"2 * count_stddev must exceed it (raise count_stddev or expected_clients)"
        )
    return float((noise_multiplier**-2 - (2 * count_stddev) ** -2) ** -0.5)


@dataclass
class DPState:
    """One round of :class:`DPMean`: the template, the carry, the clipped sums and counts.

    ``count`` accepted clients, of which ``unclipped`` had a change norm ``<= clip_norm``; after
    :meth:`DPMean.finalize`, ``next`` holds the carry of the next round.
    """

    template: ModelWeights
    carry: DPCarry
    sums: list[np.ndarray | None]
    count: int = 0
    unclipped: int = 0
    next: DPCarry | None = field(default=None)

    @property
    def clip_norm(self) -> float:
        """The clip norm of this round."""
        return self.carry.clip_norm


@dataclass(frozen=True, kw_only=True)
class DPMean:
    """DP-FedAvg's aggregator: clip each change to ``C``, sum, add ``N(0, (z_Δ C)^2)``, divide by ``m``.

    Args:
        clip: the clip norm ``C`` (fixed), or :class:`AdaptiveClipping` settings.
        noise_multiplier: ``z``, the effective noise multiplier the accountant uses (``0`` = no noise,
            no privacy: clipping only).
        expected_clients: ``m``, the fixed denominator: the expected number of clients per round
            (``q * N`` for Poisson sampling, the sample size for fixed-size sampling).
        noise: where the noise comes from: :class:`~fedmodel.privacy.SecureNoise` to protect data,
            :class:`~fedmodel.privacy.SeededNoise` for reproducible experiments (no protection).
    """

    clip: float | AdaptiveClipping
    noise_multiplier: float
    expected_clients: float
    noise: NoiseSource

    releases_empty_rounds: ClassVar[bool] = True
    """A round with no client still releases the template plus noise, as the mechanism the accountant
    analyses prescribes (:class:`fedmodel.server.ServerRound` finishes such a round through ``finalize``)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ValueError(f"noise_multiplier must be finite and >= 0, got {self.noise_multiplier}")
        if not (math.isfinite(self.expected_clients) and self.expected_clients > 0):
            raise ValueError(f"expected_clients must be finite and > 0, got {self.expected_clients}")
        if not isinstance(self.clip, AdaptiveClipping) and not 0 < self.clip <= MAX_CLIP:
            raise ValueError(f"clip must be in (0, {MAX_CLIP}], got {self.clip}")
        if not isinstance(self.noise, NoiseSource):
            raise TypeError(
                f"noise must be a NoiseSource (SeededNoise or SecureNoise), got {type(self.noise).__name__}"
            )
        if isinstance(self.clip, AdaptiveClipping):  # an impossible split of the budget fails here, not in a round
            adaptive_noise_multiplier(self.noise_multiplier, self.count_stddev)

    @property
    def count_stddev(self) -> float:
        """``sigma_b``, the noise on the count of unclipped clients (0 with a fixed clip)."""
        if not isinstance(self.clip, AdaptiveClipping) or self.noise_multiplier == 0:
            return 0.0
        given = self.clip.count_stddev
        return 0.05 * self.expected_clients if given is None else given

    @property
    def value_noise_multiplier(self) -> float:
        """``z_Δ``: the noise on the values is ``z_Δ * C``; equals ``noise_multiplier`` with a fixed clip."""
        if not isinstance(self.clip, AdaptiveClipping):
            return self.noise_multiplier
        return adaptive_noise_multiplier(self.noise_multiplier, self.count_stddev)

    def initial_carry(self, template: ModelWeights) -> DPCarry:
        """Round 0 with the fixed clip norm or the adaptive ``initial_norm``."""
        clip = self.clip.initial_norm if isinstance(self.clip, AdaptiveClipping) else self.clip
        return DPCarry(0, float(clip))

    def init(self, template: ModelWeights, carry: DPCarry) -> DPState:
        """One float64 accumulator per float variable; ``template`` is the server's current weights.

        ``carry`` is required (``initial_carry`` in round 0, then ``next_carry``): without it every round
        would be round 0, and seeded noise would repeat.
        """
        if not (isinstance(carry, DPCarry) and carry.round >= 0 and MIN_CLIP <= carry.clip_norm <= MAX_CLIP):
            raise AggregationError(f"invalid carry {carry!r}: expected DPCarry(round >= 0, clip_norm in range)")
        sums = [np.zeros(a.shape, np.float64) if is_float(a) else None for a in template.arrays]
        return DPState(template, carry, sums)

    def accumulate(self, state: DPState, update: ModelWeights, weight: float) -> DPState:
        """Validate ``update``, clip its change and add it to the sums; ``weight`` is checked, then ignored.

        Raises:
            AggregationError: for an invalid update or one whose change norm overflows; ``state`` unchanged.
        """
        if state.next is not None:
            raise AggregationError("this round was already finalized: start the next one with init()")
        client = f"client {state.count}"
        check_client_update(state.template, update, weight, client=client)
        norm, scale = clip_factor(state.template, update, state.carry.clip_norm, client=client)
        for acc, origin, value in zip(state.sums, state.template.arrays, update.arrays, strict=True):
            if acc is not None:
                acc += clipped_change(origin, value, scale)
        state.count += 1
        state.unclipped += int(norm <= state.carry.clip_norm)
        return state

    def from_sum(self, state: DPState, sums: Sequence[np.ndarray | None], count: int, unclipped: int) -> DPState:
        """A fresh round's state filled with sums made elsewhere: secure aggregation, where each client clips.

        Under secure aggregation (:class:`fedmodel.integrations.flower.SecAggPlusStrategy`) each client
        clips its own change to the round's clip norm and the protocol reveals only ``sums`` (one float64 array
        per float variable, ``None`` for the others), their ``count`` and how many were ``unclipped``;
        :meth:`finalize` then adds the noise and divides by ``expected_clients`` as for sums accumulated here.
        The server cannot check that each client clipped: the guarantee then trusts the clients' code.

        Raises:
            AggregationError: when ``state`` is not fresh, or the sums do not fit its template or are not finite.
        """
        if state.next is not None or state.count:
            raise AggregationError("from_sum needs a fresh round (init), with nothing accumulated")
        if not (0 <= unclipped <= count) or len(sums) != len(state.sums):
            raise AggregationError(f"{len(sums)} sums of {count} clients ({unclipped} unclipped) do not fit the round")
        filled: list[np.ndarray | None] = []
        for i, (total, acc) in enumerate(zip(sums, state.sums, strict=True)):
            if (total is None) != (acc is None) or (total is not None and acc is not None and total.shape != acc.shape):
                raise AggregationError(f"sum #{i}: does not match the template's variable {i}")
            value = None if total is None else np.array(total, np.float64)
            if value is not None and not np.isfinite(value).all():
                raise AggregationError(f"sum #{i}: not finite")
            filled.append(value)
        state.sums, state.count, state.unclipped = filled, int(count), int(unclipped)
        return state

    def finalize(self, state: DPState) -> ModelWeights:
        """``template + (Σ clipped + N(0, (z_Δ C)^2)) / m``, each variable cast back to its dtype.

        Draws the round's noise once: a second call raises (each round's result is released once).
        With no client at all the result is the template plus noise, as the mechanism prescribes.

        Raises:
            AggregationError: when the round was already finalized, or a noised value does not fit its
                variable's dtype (float16 near its limits); ``state`` is then unchanged.
        """
        if state.next is not None:
            raise AggregationError("this round was already finalized: its noise is drawn once")
        std = self.value_noise_multiplier * state.carry.clip_norm
        names = state.template.names or tuple(f"#{i}" for i in range(len(state.sums)))
        out = []
        for i, (name, acc, origin) in enumerate(zip(names, state.sums, state.template.arrays, strict=True)):
            if acc is None:
                out.append(np.array(origin, copy=True))
                continue
            noised = self.noise.normal(acc.shape, std, (state.carry.round, _VALUES, i))
            noised += acc
            noised /= self.expected_clients
            noised += np.asarray(origin, np.float64)
            with np.errstate(over="ignore"):
                result = noised.astype(origin.dtype)
            if not np.isfinite(result).all():
                raise AggregationError(f"{name!r}: the noised mean does not fit dtype {origin.dtype}")
            out.append(result)
        state.next = DPCarry(state.carry.round + 1, self._next_clip(state))
        return state.template.with_arrays(out)

    def next_carry(self, state: DPState) -> DPCarry:
        """The carry of the next round (the adapted clip norm); only after :meth:`finalize`."""
        if state.next is None:
            raise AggregationError("finalize the round before asking for the next carry")
        return state.next

    def aggregate(
        self, server: ModelWeights, updates: Iterable[ModelWeights], carry: DPCarry | None = None
    ) -> tuple[ModelWeights, DPCarry]:
        """One round over ``updates`` around the ``server`` weights: the new weights and the next carry."""
        state = self.init(server, self.initial_carry(server) if carry is None else carry)
        for update in updates:
            state = self.accumulate(state, update, 1.0)
        return self.finalize(state), self.next_carry(state)

    def _next_clip(self, state: DPState) -> float:
        if not isinstance(self.clip, AdaptiveClipping):
            return state.carry.clip_norm
        shifted = state.unclipped - 0.5 * state.count  # Σ ([||Δ_k|| <= C] - 1/2)
        if self.count_stddev > 0:
            shifted += float(self.noise.normal((), self.count_stddev, (state.carry.round, _COUNT)))
        fraction = min(1.0, max(0.0, shifted / self.expected_clients + 0.5))
        factor = math.exp(-self.clip.learning_rate * (fraction - self.clip.target_quantile))
        return min(MAX_CLIP, max(MIN_CLIP, state.carry.clip_norm * factor))
