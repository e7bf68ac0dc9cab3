"""Noise sources: seeded noise is reproducible, secure noise is fresh, both are N(0, std^2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fedmodel.privacy import NoiseSource, SecureNoise, SeededNoise
from fedmodel.privacy import noise as noise_module

SOURCES = {"seeded": SeededNoise(3), "secure": SecureNoise()}


def test_seeded_noise_is_reproducible_per_seed_and_key() -> None:
    a = SeededNoise(11).normal((1000,), 2.0, (4, 0, 1))
    np.testing.assert_array_equal(a, SeededNoise(11).normal((1000,), 2.0, (4, 0, 1)))
    assert not np.array_equal(a, SeededNoise(11).normal((1000,), 2.0, (5, 0, 1)))  # another round
    assert not np.array_equal(a, SeededNoise(11).normal((1000,), 2.0, (4, 0, 2)))  # another variable
    assert not np.array_equal(a, SeededNoise(12).normal((1000,), 2.0, (4, 0, 1)))  # another seed
    assert SeededNoise(0).reproducible


def test_secure_noise_is_never_the_same_twice() -> None:
    a, b = SecureNoise().normal((1000,), 1.0, (0,)), SecureNoise().normal((1000,), 1.0, (0,))
    assert not np.array_equal(a, b)
    assert not SecureNoise().reproducible


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_noise_is_gaussian_with_the_asked_standard_deviation(name: str) -> None:
    """300k draws: the std within 2 % (its standard error is 0.13 %), the mean within 5 standard errors,
    and a Kolmogorov-Smirnov test against N(0, std^2). The secure source cannot be seeded: its test fails
    by chance with probability below 1e-6."""
    std = 0.37
    draws = SOURCES[name].normal((300, 1000), std, (1,))
    assert draws.shape == (300, 1000) and draws.dtype == np.float64
    assert abs(draws.std() / std - 1) < 0.02
    assert abs(draws.mean()) < 5 * std / math.sqrt(draws.size)
    assert stats.kstest(draws.reshape(-1)[:50_000] / std, "norm").pvalue > 1e-6


def test_secure_noise_draws_its_bits_from_the_operating_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """With os.urandom replaced by zeros, every uniform is 2**-53 and every value is 4 equal normals halved:
    2 * sqrt(-2 ln 2**-53) * cos(2 pi 2**-53) (first half of each pair), times std."""
    monkeypatch.setattr(noise_module.os, "urandom", lambda n: bytes(n))
    got = SecureNoise().normal((4,), 0.5, (0,))
    radius = math.sqrt(-2.0 * math.log(2.0**-53))
    angle = 2.0 * math.pi * 2.0**-53
    expected = [radius * math.cos(angle), radius * math.cos(angle), radius * math.sin(angle), radius * math.sin(angle)]
    np.testing.assert_allclose(got, [2 * 0.5 * e for e in expected], rtol=1e-15)


def test_secure_noise_of_a_large_array_is_drawn_in_blocks_without_repeats() -> None:
    draws = SecureNoise().normal((3 * noise_module._BLOCK + 5,), 1.0, (0,))
    blocks = draws[: 3 * noise_module._BLOCK].reshape(3, -1)
    assert not np.array_equal(blocks[0], blocks[1]) and np.isfinite(draws).all()


def test_scalar_and_empty_shapes() -> None:
    for source in SOURCES.values():
        assert source.normal((), 1.0, (0,)).shape == ()
        assert source.normal((0, 3), 1.0, (0,)).shape == (0, 3)
        np.testing.assert_array_equal(source.normal((5,), 0.0, (0,)), np.zeros(5))


@pytest.mark.parametrize("std", [-1.0, math.nan, math.inf])
def test_a_bad_standard_deviation_is_refused(std: float) -> None:
    for source in SOURCES.values():
        with pytest.raises(ValueError, match="standard deviation"):
            source.normal((2,), std, (0,))


def test_bad_keys_and_seeds_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative integers"):
        SeededNoise(0).normal((2,), 1.0, (-1,))
    with pytest.raises(ValueError, match="non-negative"):
        SeededNoise(-5)


def test_both_sources_are_noise_sources() -> None:
    assert all(isinstance(s, NoiseSource) for s in SOURCES.values())
    assert not isinstance(np.random.default_rng(0), NoiseSource)
