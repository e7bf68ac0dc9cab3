"""Client sampling as the accountant assumes it: fixed size (unchanged) or Poisson, seeded or secret."""

from __future__ import annotations

import numpy as np
import pytest

from fedmodel.server import sample_clients


@pytest.mark.parametrize(("population", "per_round"), [(10, 3), (100, 7), ([40, 10, 30, 20], 2), (5, None), (5, 9)])
def test_fixed_size_sampling_is_what_it_was_before_poisson_sampling(
    population: int | list[int], per_round: int
) -> None:
    members = list(range(population)) if isinstance(population, int) else sorted(population)
    for seed, r in [(0, 0), (3, 7), (2**40, 123)]:
        if per_round is None or per_round >= len(members):
            before = members
        else:  # the formula of fedmodel.server before this change, written out
            picks = np.random.default_rng([seed, r]).choice(len(members), size=per_round, replace=False)
            before = sorted(members[int(i)] for i in picks)
        assert sample_clients(population, per_round, seed, r) == before


def test_poisson_sampling_takes_each_client_independently_with_probability_q() -> None:
    n, q, rounds = 40, 0.2, 3000
    taken = np.zeros((rounds, n), bool)
    for r in range(rounds):
        taken[r, sample_clients(n, None, seed=5, round_index=r, rate=q)] = True
    per_client = taken.mean(axis=0)  # each ~ Binomial(3000, 0.2) / 3000: sd 0.0073
    assert np.all(np.abs(per_client - q) < 0.035)
    sizes = taken.sum(axis=1)  # Binomial(40, 0.2): mean 8, variance 6.4 (a fixed size would have variance 0)
    assert abs(sizes.mean() - n * q) < 0.15 and abs(sizes.var() - n * q * (1 - q)) < 0.6
    together = (taken[:, 0] & taken[:, 1]).mean()  # independence: P(both) = q^2 = 0.04
    assert abs(together - q * q) < 0.012


def test_poisson_sampling_is_seeded_per_round_and_sorted() -> None:
    first = sample_clients(1000, None, seed=1, round_index=4, rate=0.1)
    assert first == sample_clients(1000, None, seed=1, round_index=4, rate=0.1) == sorted(first)
    assert first != sample_clients(1000, None, seed=1, round_index=5, rate=0.1)
    assert first != sample_clients(1000, None, seed=2, round_index=4, rate=0.1)
    assert sample_clients([7, 3, 9], None, 0, 0, rate=1.0) == [3, 7, 9]


def test_secret_sampling_ignores_the_seed_and_keeps_the_rate_and_the_size() -> None:
    draws = [sample_clients(500, None, seed=0, round_index=0, rate=0.3, secret=True) for _ in range(40)]
    assert len({tuple(d) for d in draws}) == 40  # never the same twice (the seed does not decide it)
    assert abs(sum(map(len, draws)) / (40 * 500) - 0.3) < 0.015  # 20,000 draws: sd 0.0032
    fixed = [sample_clients(list(range(100, 150)), 5, seed=0, round_index=0, secret=True) for _ in range(20)]
    assert all(len(f) == len(set(f)) == 5 and set(f) <= set(range(100, 150)) and f == sorted(f) for f in fixed)
    assert len({tuple(f) for f in fixed}) > 15


@pytest.mark.parametrize(
    ("per_round", "rate", "message"),
    [(3, 0.5, "not both"), (None, 0.0, r"\(0, 1\]"), (None, 1.5, r"\(0, 1\]"), (None, float("nan"), r"\(0, 1\]")],
)
def test_contradictory_or_impossible_sampling_is_refused(per_round: int | None, rate: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_clients(10, per_round, 0, 0, rate=rate)
