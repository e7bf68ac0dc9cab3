"""Accounting: fedmodel's epsilons are dp-accounting's, reproduce published figures, and the budget stops in time."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp
from scipy import optimize, stats

from fedmodel.privacy import (
    FixedSizeSampling,
    PoissonSampling,
    PrivacyBudget,
    epsilon,
    local_epsilon,
    noise_multiplier_for,
    rdp_curve,
)

DELTA = 1e-5


@pytest.mark.parametrize(("q", "z", "rounds"), [(0.01, 1.1, 100), (0.1, 0.8, 37), (1.0, 5.0, 3), (0.003, 2.0, 1000)])
def test_poisson_epsilon_equals_dp_accounting_called_directly(q: float, z: float, rounds: int) -> None:
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    direct_rdp = rdp.RdpAccountant()
    direct_rdp.compose(event, rounds)
    assert epsilon(z, rounds, DELTA, PoissonSampling(q)) == direct_rdp.get_epsilon(DELTA)
    direct_pld = pld.PLDAccountant()
    direct_pld.compose(event, rounds)
    assert epsilon(z, rounds, DELTA, PoissonSampling(q), accountant="pld") == direct_pld.get_epsilon(DELTA)


def test_fixed_size_epsilon_is_dp_accountings_without_replacement_with_replace_one_sensitivity_2c() -> None:
    """Replacing one of m sampled clients moves the sum by up to 2C: the accountant is handed z / 2."""
    z, rounds, m, n = 1.5, 50, 10, 500
    direct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    direct.compose(dp_accounting.SampledWithoutReplacementDpEvent(n, m, dp_accounting.GaussianDpEvent(z / 2)), rounds)
    assert epsilon(z, rounds, DELTA, FixedSizeSampling(m, n)) == direct.get_epsilon(DELTA)
    with pytest.raises(ValueError, match="no PLD analysis"):
        epsilon(z, rounds, DELTA, FixedSizeSampling(m, n), accountant="pld")


def _classic_conversion(orders: np.ndarray, rdp_values: np.ndarray, delta: float) -> float:
    """RDP -> (epsilon, delta) by Mironov, "Renyi Differential Privacy", CSF 2017, Proposition 3, the conversion
    the published figures below were computed with (dp-accounting now uses a tighter one)."""
    return float(np.min(rdp_values - math.log(delta) / (orders - 1)))


@pytest.mark.parametrize(
    ("q", "z", "steps", "published"),
    [
        # TensorFlow Privacy, tutorials/README.md, "Select Parameters" table (MNIST, 60000 examples, batch 256,
        # 60000 // 256 = 234 steps per epoch, delta = 1e-5): noise 1.12 for 60 epochs -> eps 2.92 ...
        (256 / 60000, 1.12, 60 * 234, 2.92),
        # ... and noise 1.2 for 10 epochs -> eps 1.20.
        (256 / 60000, 1.2, 10 * 234, 1.20),
        # Abadi et al., "Deep Learning with Differential Privacy", CCS 2016, Section 3.1: q = 0.01, sigma = 4,
        # delta = 1e-5, T = 10000 -> eps ~ 1.26 with the moments accountant.
        (0.01, 4.0, 10_000, 1.26),
    ],
)
def test_published_epsilons_are_reproduced(q: float, z: float, steps: int, published: float) -> None:
    orders, curve = rdp_curve(z, steps, PoissonSampling(q))
    assert round(_classic_conversion(orders, curve, DELTA), 2) == published
    assert epsilon(z, steps, DELTA, PoissonSampling(q)) < published  # the reported epsilon is the tighter bound


def test_rdp_curve_is_what_the_accountant_holds_after_composing() -> None:
    direct = rdp.RdpAccountant()
    direct.compose(dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(0.9)), 123)
    orders, curve = rdp_curve(0.9, 123, PoissonSampling(0.02))
    np.testing.assert_array_equal(orders, direct.orders)
    np.testing.assert_array_equal(curve, direct.rdp)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    s = PoissonSampling(0.05)
    per_round = [epsilon(1.0, r, DELTA, s) for r in range(0, 60, 5)]
    assert per_round[0] == 0.0 and all(a < b for a, b in itertools.pairwise(per_round))
    assert epsilon(2.0, 50, DELTA, s) < epsilon(1.0, 50, DELTA, s)
    assert epsilon(0.0, 1, DELTA, s) == math.inf
    assert epsilon(1.0, 50, DELTA, s, accountant="pld") < epsilon(1.0, 50, DELTA, s)  # PLD is tighter


def test_noise_multiplier_for_a_target_is_the_smallest_that_fits() -> None:
    # PLD's search takes seconds: it is tested where the distributions are narrow (few rounds, large noise)
    for accountant, q, rounds, target in (("rdp", 0.02, 200, 2.0), ("pld", 0.1, 10, 1.0)):
        s = PoissonSampling(q)
        z = noise_multiplier_for(target, rounds, DELTA, s, accountant=accountant)  # type: ignore[arg-type]
        assert epsilon(z, rounds, DELTA, s, accountant=accountant) <= target  # type: ignore[arg-type]
        assert epsilon(z - 1e-3, rounds, DELTA, s, accountant=accountant) > target  # type: ignore[arg-type]


def test_the_budget_stops_a_run_before_it_is_exceeded() -> None:
    budget = PrivacyBudget(target_epsilon=1.5, delta=DELTA, noise_multiplier=1.0, sampling=PoissonSampling(0.01))
    rounds_done = 0
    while budget.allows(rounds_done):  # what a server does before each round
        rounds_done += 1
    assert budget.spent(rounds_done) <= 1.5 < budget.spent(rounds_done + 1)
    assert rounds_done == budget.max_rounds() > 0
    assert not PrivacyBudget(0.01, DELTA, 0.5, PoissonSampling(0.5)).allows(0)
    assert PrivacyBudget(0.01, DELTA, 0.5, PoissonSampling(0.5)).max_rounds() == 0
    assert PrivacyBudget(100.0, DELTA, 5.0, PoissonSampling(0.001)).max_rounds(limit=1000) == 1000


def _analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Exact epsilon of a Gaussian mechanism with sensitivity / std = mu (Balle & Wang, ICML 2018, Theorem 8)."""

    def gap(eps: float) -> float:
        return float(stats.norm.cdf(mu / 2 - eps / mu) - math.exp(eps) * stats.norm.cdf(-mu / 2 - eps / mu)) - delta

    return float(optimize.brentq(gap, 0.0, 500.0, xtol=1e-12))


def test_local_epsilon_is_the_gaussian_mechanism_with_sensitivity_2c() -> None:
    """T releases of noise z C with sensitivity 2C compose to one Gaussian of mu = 2 sqrt(T) / z."""
    for z, t in ((4.0, 1), (8.0, 10), (20.0, 50)):
        exact = _analytic_gaussian_epsilon(2 * math.sqrt(t) / z, DELTA)
        assert local_epsilon(z, t, DELTA, accountant="pld") == pytest.approx(exact, rel=0.01)
        assert exact <= local_epsilon(z, t, DELTA) <= 1.5 * exact  # RDP: an upper bound, looser
    assert local_epsilon(1.0, 0, DELTA) == 0.0 and local_epsilon(0.0, 3, DELTA) == math.inf


def test_bad_arguments_are_refused() -> None:
    s = PoissonSampling(0.1)
    for call in (
        lambda: epsilon(-1.0, 1, DELTA, s),
        lambda: epsilon(1.0, -1, DELTA, s),
        lambda: epsilon(1.0, 1, 0.0, s),
        lambda: epsilon(1.0, 1, DELTA, s, accountant="gdp"),  # type: ignore[arg-type]
        lambda: noise_multiplier_for(0.0, 10, DELTA, s),
        lambda: PrivacyBudget(1.0, DELTA, 1.0, FixedSizeSampling(5, 50), accountant="pld"),
        lambda: PoissonSampling(0.0),
        lambda: PoissonSampling(1.5),
        lambda: FixedSizeSampling(11, 10),
        lambda: local_epsilon(1.0, 1, DELTA, accountant="x"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(TypeError, match="sampling"):
        epsilon(1.0, 1, DELTA, 0.1)  # type: ignore[arg-type]


def test_import_fedmodel_privacy_does_not_load_dp_accounting() -> None:
    code = "import json, sys, fedmodel, fedmodel.privacy\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert "dp_accounting" not in loaded and "scipy" not in loaded
