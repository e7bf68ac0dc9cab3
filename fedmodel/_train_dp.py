"""``fedmodel train``'s differential-privacy options: DP-FedAvg (``fedmodel.privacy.DPMean``) on any algorithm.

``--dp-clip C`` turns it on: each round the server clips every client's change to L2 norm ``C`` (or, with
``--dp-adaptive-clip``, to a norm that follows the median update norm, starting at ``C``), adds Gaussian
noise of standard deviation ``z C`` to the sum and divides by the expected number of clients. ``z`` is
``--dp-noise-multiplier``, or calibrated with :func:`fedmodel.privacy.noise_multiplier_for` so that
``--rounds`` rounds spend ``--dp-target-epsilon``; with a target, the run stops before a round would exceed
it. The accountant is told the sampling the run does (``--sampling-rate``: Poisson; otherwise fixed-size,
``--clients-per-round`` of ``--clients``) and reports epsilon at ``--dp-delta`` after every round.

Every check runs before the first round; a user error raises :class:`DPOptionError` with one line.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["DPOptionError", "DPPlan", "add_options", "plan", "run_options"]

_MAX_CLIP = 1e100  # fedmodel.privacy.clipping.MAX_CLIP (not imported: --help stays light)


class DPOptionError(ValueError):
    """A DP option that cannot work (one line, naming the option)."""


@dataclass(frozen=True)
class DPPlan:
    """The DP settings of a run, checked: the aggregator to use and what the accountant is told."""

    aggregator: Any
    noise_multiplier: float
    delta: float
    target_epsilon: float | None
    calibrated: bool
    sampling: Any

    def describe(self, rounds: int) -> str:
        """One line for the run's header: the mechanism, the accountant's sampling and the budget."""
        clip, noise, sampling = self.aggregator.clip, self.aggregator.noise, self.sampling
        clipping = (
            f"clip norm {clip:g}" if isinstance(clip, float | int) else f"adaptive clip from {clip.initial_norm:g}"
        )
        source = "seeded noise (no protection)" if noise.reproducible else "secure noise"
        if hasattr(sampling, "rate"):
            sampled = f"Poisson sampling q={sampling.rate:g}"
        else:
            sampled = f"{sampling.clients_per_round} of {sampling.num_clients} clients per round"
        line = f"DP-FedAvg: noise multiplier {self.noise_multiplier:.6g}, {clipping}, {source}, {sampled}"
        if self.target_epsilon is not None:
            how = "calibrated for" if self.calibrated else "stops before"
            line += f"; {how} epsilon {self.target_epsilon:g} over {rounds} rounds"
        return line + f"; epsilon at delta {self.delta:g}"


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_options(parser: argparse.ArgumentParser, positive: Any, non_negative: Any, fraction: Any) -> None:
    """Add ``--sampling-rate`` and the ``--dp-*`` options (the validators are ``fedmodel train``'s own)."""
    add = parser.add_argument
    add(
        "--sampling-rate",
        type=_rate,
        default=None,
        help="Poisson sampling: each client joins each round with this probability",
    )
    add("--dp-clip", type=positive, default=None, help="DP-FedAvg: clip each client's change to this L2 norm")
    add(
        "--dp-adaptive-clip", action="store_true", help="adapt the clip norm to the median update norm (from --dp-clip)"
    )
    add("--dp-noise-multiplier", type=non_negative, default=None, help="noise std on the clipped sum, in clip norms")
    add(
        "--dp-target-epsilon",
        type=positive,
        default=None,
        help="privacy budget: the run stops before exceeding it; alone, it sets z for --rounds",
    )
    add(
        "--dp-delta",
        type=fraction,
        default=None,
        help="delta of the reported epsilon; None: a power of ten below 1/--clients",
    )
    add("--dp-secure-noise", action="store_true", help="noise from the OS's secure generator (not reproducible)")


def _given(args: argparse.Namespace) -> list[str]:
    names = ("dp_adaptive_clip", "dp_noise_multiplier", "dp_target_epsilon", "dp_delta", "dp_secure_noise")
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n) not in (None, False)]


def plan(args: argparse.Namespace) -> DPPlan | None:
    """The checked DP settings of ``args`` (``None`` without ``--dp-clip``).

    Raises:
        DPOptionError: for an option without ``--dp-clip``, a missing noise level, a delta of at least
            ``1 / --clients``, a target that no round fits, or a clip the aggregator refuses.
    """
    if args.sampling_rate is not None and args.clients_per_round is not None:
        raise DPOptionError(
            "--sampling-rate (Poisson sampling) and --clients-per-round (fixed size) exclude each other"
        )
    if args.dp_clip is None:
        if _given(args):
            raise DPOptionError(f"{_given(args)[0]} needs --dp-clip (the clip norm of DP-FedAvg)")
        return None
    if args.dp_clip > _MAX_CLIP:
        raise DPOptionError(f"--dp-clip: expected at most {_MAX_CLIP:g}, got {args.dp_clip}")
    if args.dp_noise_multiplier is None and args.dp_target_epsilon is None:
        raise DPOptionError("--dp-clip needs --dp-noise-multiplier or --dp-target-epsilon (the noise level)")
    from fedmodel import privacy

    n = args.clients
    if args.dp_delta is not None and not args.dp_delta < 1 / n:
        raise DPOptionError(f"--dp-delta {args.dp_delta} must be below 1/--clients = {1 / n:.6g}")
    delta = privacy.default_delta(n) if args.dp_delta is None else args.dp_delta
    rate, per_round = args.sampling_rate, min(args.clients_per_round or n, n)
    sampling = privacy.PoissonSampling(rate) if rate is not None else privacy.FixedSizeSampling(per_round, n)
    z, calibrated = args.dp_noise_multiplier, False
    if z is None:
        z, calibrated = privacy.noise_multiplier_for(args.dp_target_epsilon, args.rounds, delta, sampling), True
    elif args.dp_target_epsilon is not None and not privacy.epsilon(z, 1, delta, sampling) <= args.dp_target_epsilon:
        spent = privacy.epsilon(z, 1, delta, sampling)
        raise DPOptionError(
            f"--dp-target-epsilon {args.dp_target_epsilon}: not one round fits, one round with "
            f"--dp-noise-multiplier {z} spends epsilon {spent:.4g}"
        )
    clip = privacy.AdaptiveClipping(initial_norm=args.dp_clip) if args.dp_adaptive_clip else args.dp_clip
    noise = privacy.SecureNoise() if args.dp_secure_noise else privacy.SeededNoise(args.seed)
    expected = rate * n if rate is not None else per_round
    try:
        aggregator = privacy.DPMean(clip=clip, noise_multiplier=z, expected_clients=expected, noise=noise)
    except ValueError as exc:  # e.g. adaptive clipping whose count noise is too small for z
        raise DPOptionError(f"--dp-adaptive-clip: {exc}") from None
    return DPPlan(aggregator, float(z), delta, args.dp_target_epsilon, calibrated, sampling)


def run_options(args: argparse.Namespace, dp: DPPlan | None) -> dict[str, str | int | float]:
    """What ``--resume`` compares besides the algorithm's options: the sampling and every DP setting."""
    options: dict[str, str | int | float] = {}
    if args.sampling_rate is not None:
        options["--sampling-rate"] = args.sampling_rate
    if dp is not None:
        options["--dp-clip"] = args.dp_clip
        options["--dp-adaptive-clip"] = "yes" if args.dp_adaptive_clip else "no"
        options["--dp-noise-multiplier"] = dp.noise_multiplier
        options["--dp-target-epsilon"] = "none" if dp.target_epsilon is None else dp.target_epsilon
        options["--dp-delta"] = dp.delta
        options["--dp-secure-noise"] = "yes" if args.dp_secure_noise else "no"
    return options
