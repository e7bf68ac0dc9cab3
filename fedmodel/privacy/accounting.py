"""Privacy accounting with Google's ``dp-accounting`` (the accountant of TensorFlow Privacy and TFF).

Every round of :class:`~fedmodel.privacy.DPMean` is a sampled Gaussian mechanism on the clients (one
client = one record: client-level privacy); ``rounds`` rounds compose. Two sampling schemes, as the
server must actually sample:

* :class:`PoissonSampling` ``(rate)``: each client joins each round independently with probability
  ``q``; neighbouring federations differ by **adding or removing one client**. RDP (Mironov 2017;
  Mironov, Talwar & Zhang 2019) or PLD (privacy loss distributions, Koskela et al. 2020; Doroshenko et
  al. 2022), the latter tighter.
* :class:`FixedSizeSampling` ``(clients_per_round, num_clients)``: exactly ``m`` of ``N`` clients,
  uniformly without replacement; neighbours differ by **replacing one client**, so one client moves the
  sum by up to ``2C`` and the mechanism's multiplier is ``z / 2`` (RDP of Wang, Balle & Kasiviswanathan,
  AISTATS 2019, Theorem 27). dp-accounting 0.6 has no PLD analysis of this scheme: ``"pld"`` raises.

Epsilons are those of ``dp_accounting`` itself (RDP converted with its default, tighter conversion;
PLD with its default pessimistic discretization 1e-4), cached per parameter set. ``dp_accounting`` is
imported on first use only: ``import fedmodel`` never loads it. Install it with ``fedmodel[privacy]``.

>>> round(epsilon(1.1, 100, 1e-5, PoissonSampling(0.01)), 4)
0.9561
>>> PrivacyBudget(2.0, 1e-5, 1.1, PoissonSampling(0.01)).allows(100)
True
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

__all__ = [
    "Accountant",
    "FixedSizeSampling",
    "PoissonSampling",
    "PrivacyBudget",
    "Sampling",
    "default_delta",
    "epsilon",
    "local_epsilon",
    "noise_multiplier_for",
    "rdp_curve",
    "round_event",
    "run_budget",
]

Accountant = Literal["rdp", "pld"]
"""``"rdp"``: Rényi DP (fast, what TFF reports); ``"pld"``: privacy loss distributions (tighter, slower)."""


@dataclass(frozen=True)
class PoissonSampling:
    """Each client takes part in each round independently with probability ``rate`` (``0 < q <= 1``)."""

    rate: float

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise ValueError(f"the sampling rate must be in (0, 1], got {self.rate}")


@dataclass(frozen=True)
class FixedSizeSampling:
    """Exactly ``clients_per_round`` of ``num_clients`` clients per round, uniformly without replacement."""

    clients_per_round: int
    num_clients: int

    def __post_init__(self) -> None:
        if not 0 < self.clients_per_round <= self.num_clients:
            raise ValueError(
                f"need 0 < clients_per_round <= num_clients, got {self.clients_per_round} of {self.num_clients}"
            )


Sampling = PoissonSampling | FixedSizeSampling


def _dp() -> Any:
    try:
        import dp_accounting
    except ImportError as exc:  # pragma: no cover - CI installs it with fedmodel[all]
        raise ImportError("privacy accounting needs dp-accounting: pip install 'fedmodel[privacy]'") from exc
    return dp_accounting


def _quietly(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """Run ``fn`` without dp-accounting's numerical chatter: its absl warnings ("failed to converge ...
    excluding this order", after which the epsilon is still the bound over the other orders) and numpy's
    divide-by-zero at ``z = 0`` (where the epsilon is rightly infinite) would reach a user's terminal."""

    @functools.wraps(fn)
    def quiet(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(max(level, logging.ERROR))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return fn(*args, **kwargs)
        finally:
            absl.setLevel(level)

    return quiet


def _check(noise_multiplier: float, delta: float, rounds: int) -> None:
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ValueError(f"noise_multiplier must be finite and >= 0, got {noise_multiplier}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")


def default_delta(num_clients: int) -> float:
    """The largest power of ten strictly below ``1 / num_clients``: a delta that allows no client's data
    to be published whole (the customary rule, as in TensorFlow Privacy's tutorials).

    >>> default_delta(20), default_delta(700), default_delta(1000)
    (0.01, 0.001, 0.0001)
    """
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    return float(10.0 ** -(math.floor(math.log10(num_clients)) + 1))


def round_event(noise_multiplier: float, sampling: Sampling) -> Any:
    """The ``dp_accounting.DpEvent`` of one round: a sampled Gaussian of multiplier ``z`` (``z / 2``
    for fixed-size sampling, whose replace-one neighbours move the sum by ``2C``)."""
    dp = _dp()
    if isinstance(sampling, PoissonSampling):
        return dp.PoissonSampledDpEvent(sampling.rate, dp.GaussianDpEvent(noise_multiplier))
    if isinstance(sampling, FixedSizeSampling):
        return dp.SampledWithoutReplacementDpEvent(
            sampling.num_clients, sampling.clients_per_round, dp.GaussianDpEvent(noise_multiplier / 2)
        )
    raise TypeError(f"sampling must be PoissonSampling or FixedSizeSampling, got {type(sampling).__name__}")


def _accountant(sampling: Sampling, accountant: Accountant) -> Any:
    dp = _dp()
    relation = dp.NeighboringRelation
    if accountant == "rdp":
        from dp_accounting import rdp

        fixed = isinstance(sampling, FixedSizeSampling)
        return rdp.RdpAccountant(neighboring_relation=relation.REPLACE_ONE if fixed else relation.ADD_OR_REMOVE_ONE)
    if accountant == "pld":
        if isinstance(sampling, FixedSizeSampling):
            raise ValueError("dp-accounting has no PLD analysis of fixed-size sampling: use accountant='rdp'")
        from dp_accounting import pld

        return pld.PLDAccountant(relation.ADD_OR_REMOVE_ONE)
    raise ValueError(f"accountant must be 'rdp' or 'pld', got {accountant!r}")


@functools.lru_cache(maxsize=256)
def _one_round_rdp(noise_multiplier: float, sampling: Sampling) -> tuple[Any, Any]:
    acc = _accountant(sampling, "rdp")
    acc.compose(round_event(noise_multiplier, sampling), 1)
    return acc.orders, acc.rdp


@_quietly
def rdp_curve(noise_multiplier: float, rounds: int, sampling: Sampling) -> tuple[Any, Any]:
    """``(orders, rdp)``: the Rényi DP of ``rounds`` rounds at dp-accounting's default orders (numpy arrays).

    RDP composes by addition, so this is ``rounds`` times one round's curve (computed once, cached):
    exactly what ``RdpAccountant.compose(event, rounds)`` holds. For conversions of your own.
    """
    _check(noise_multiplier, 0.5, rounds)
    orders, one = _one_round_rdp(float(noise_multiplier), sampling)
    return orders, int(rounds) * one


@functools.lru_cache(maxsize=4096)
def _epsilon(noise_multiplier: float, rounds: int, delta: float, sampling: Sampling, accountant: Accountant) -> float:
    acc = _accountant(sampling, accountant)
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    if accountant == "rdp":
        from dp_accounting.rdp import rdp_privacy_accountant

        return float(rdp_privacy_accountant.compute_epsilon(*rdp_curve(noise_multiplier, rounds, sampling), delta)[0])
    acc.compose(round_event(noise_multiplier, sampling), rounds)
    return float(acc.get_epsilon(delta))


@_quietly
def epsilon(
    noise_multiplier: float, rounds: int, delta: float, sampling: Sampling, *, accountant: Accountant = "rdp"
) -> float:
    """Epsilon at ``delta`` after ``rounds`` rounds with noise multiplier ``z`` (``inf`` when ``z == 0``).

    Args:
        noise_multiplier: the effective ``z`` (:attr:`DPMean.noise_multiplier`, adaptive clipping included).
        rounds: rounds completed (0 gives 0).
        delta: the target delta, in (0, 1); customarily below ``1 / num_clients``.
        sampling: how clients were sampled (:class:`PoissonSampling` or :class:`FixedSizeSampling`).
        accountant: ``"rdp"`` or ``"pld"``.
    """
    _check(noise_multiplier, delta, rounds)
    _accountant(sampling, accountant)  # a bad combination fails even for 0 rounds
    return _epsilon(float(noise_multiplier), int(rounds), float(delta), sampling, accountant)


@_quietly
def noise_multiplier_for(
    target_epsilon: float, rounds: int, delta: float, sampling: Sampling, *, accountant: Accountant = "rdp"
) -> float:
    """The smallest noise multiplier (within 1e-6) whose epsilon after ``rounds`` rounds is ``<= target_epsilon``.

    Uses ``dp_accounting.calibrate_dp_mechanism`` (Brent's method on the accountant's epsilon).

    >>> z = noise_multiplier_for(1.0, 100, 1e-5, PoissonSampling(0.01))
    >>> round(z, 3), epsilon(z, 100, 1e-5, PoissonSampling(0.01)) <= 1.0
    (1.08, True)
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"target_epsilon must be finite and > 0, got {target_epsilon}")
    _check(0.0, delta, rounds)
    if rounds == 0:
        return 0.0
    _accountant(sampling, accountant)
    dp = _dp()
    return float(
        dp.calibrate_dp_mechanism(
            lambda: _accountant(sampling, accountant),
            lambda z: dp.SelfComposedDpEvent(round_event(z, sampling), rounds),
            target_epsilon,
            delta,
        )
    )


@dataclass(frozen=True)
class PrivacyBudget:
    """A run's privacy budget: whether one more round keeps epsilon within ``target_epsilon``.

    A server asks :meth:`allows` before each round and stops when it says no, so the run ends *before*
    the budget is exceeded. Stateless: the rounds completed are the server's (``ServerState.round``),
    so a resumed run gets the same answer.

    >>> budget = PrivacyBudget(1.0, 1e-5, 1.1, PoissonSampling(0.05))
    >>> n = budget.max_rounds()
    >>> budget.spent(n) <= 1.0 < budget.spent(n + 1), budget.allows(n - 1), budget.allows(n)
    (True, True, False)
    """

    target_epsilon: float
    delta: float
    noise_multiplier: float
    sampling: Sampling
    accountant: Accountant = "rdp"

    def __post_init__(self) -> None:
        if not (self.target_epsilon > 0 and not math.isnan(self.target_epsilon)):
            raise ValueError(f"target_epsilon must be > 0, got {self.target_epsilon}")
        _check(self.noise_multiplier, self.delta, 0)
        _accountant(self.sampling, self.accountant)

    def spent(self, rounds: int) -> float:
        """Epsilon at ``delta`` after ``rounds`` rounds."""
        return epsilon(self.noise_multiplier, rounds, self.delta, self.sampling, accountant=self.accountant)

    def allows(self, rounds_done: int) -> bool:
        """Whether round ``rounds_done + 1`` would keep epsilon ``<= target_epsilon``."""
        return self.spent(rounds_done + 1) <= self.target_epsilon

    def max_rounds(self, limit: int = 1_000_000) -> int:
        """The most rounds within the budget (at most ``limit``), by bisection on the monotone epsilon."""
        if not self.allows(0):
            return 0
        lo, hi = 1, 1
        while hi < limit and self.spent(hi) <= self.target_epsilon:
            lo, hi = hi, min(2 * hi, limit)
        if self.spent(hi) <= self.target_epsilon:
            return hi
        while hi - lo > 1:  # spent(lo) <= target < spent(hi)
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.spent(mid) <= self.target_epsilon else (lo, mid)
        return lo


@_quietly
def local_epsilon(
    noise_multiplier: float, participations: int, delta: float, *, accountant: Accountant = "rdp"
) -> float:
    """Epsilon of one client under local DP after it sent ``participations`` noised updates.

    Each release is a Gaussian mechanism on the client's own update; replacing the client's data moves
    its clipped change anywhere in the ball of radius ``C`` (sensitivity ``2C``), so with noise ``z C``
    the multiplier is ``z / 2``. No amplification by sampling is claimed: the server sees who sent what.
    """
    _check(noise_multiplier, delta, participations)
    if participations == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    # a Gaussian mechanism whose neighbouring outputs are 2C apart: multiplier z / 2 under add/remove-one,
    # the one relation in which dp-accounting's RDP and PLD read GaussianDpEvent's multiplier alike
    dp = _dp()
    if accountant == "rdp":
        from dp_accounting import rdp

        acc = rdp.RdpAccountant()
    elif accountant == "pld":
        from dp_accounting import pld

        acc = pld.PLDAccountant()
    else:
        raise ValueError(f"accountant must be 'rdp' or 'pld', got {accountant!r}")
    acc.compose(dp.GaussianDpEvent(noise_multiplier / 2), participations)
    return float(acc.get_epsilon(delta))


def run_budget(
    aggregator: Any,
    num_clients: int,
    *,
    clients_per_round: int | None = None,
    sampling_rate: float | None = None,
    delta: float | None = None,
    target_epsilon: float | None = None,
    accountant: str = "rdp",
) -> PrivacyBudget | None:
    """The :class:`PrivacyBudget` of a run whose server samples as given, or ``None`` when ``aggregator`` is
    not a :class:`~fedmodel.privacy.DPMean` (nothing to account).

    The accountant is told the sampling the server does: ``PoissonSampling(sampling_rate)``, or
    ``FixedSizeSampling`` of ``clients_per_round`` (all ``num_clients`` when ``None``). The noise multiplier
    is the aggregator's effective one. ``delta`` defaults to :func:`default_delta`; without
    ``target_epsilon`` the budget never stops a run (it only reports the epsilon spent).

    Raises:
        ValueError: for ``sampling_rate`` with ``clients_per_round``, a rate outside (0, 1], or a ``delta`` or
            ``target_epsilon`` without a ``DPMean`` aggregator.
    """
    from fedmodel.privacy.central import DPMean

    if sampling_rate is not None:
        if clients_per_round is not None:
            raise ValueError("give clients_per_round (fixed-size sampling) or sampling_rate (Poisson), not both")
        if not 0 < sampling_rate <= 1:
            raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate}")
    if not isinstance(aggregator, DPMean):
        if target_epsilon is not None or delta is not None:
            raise ValueError(f"target_epsilon and delta need a DPMean aggregator, not {type(aggregator).__name__}")
        return None
    sampling: Sampling
    if sampling_rate is not None:
        sampling = PoissonSampling(sampling_rate)
    else:
        sampling = FixedSizeSampling(min(clients_per_round or num_clients, num_clients), num_clients)
    delta = default_delta(num_clients) if delta is None else delta
    target = math.inf if target_epsilon is None else target_epsilon
    return PrivacyBudget(target, delta, aggregator.noise_multiplier, sampling, accountant)  # type: ignore[arg-type]
