"""DPMean (DP-FedAvg's aggregator): clipping, the fixed denominator, the noise, the carry, adaptive clipping."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fedmodel import AggregationError, ModelWeights
from fedmodel.privacy import (
    AdaptiveClipping,
    DPCarry,
    DPMean,
    SecureNoise,
    SeededNoise,
    adaptive_noise_multiplier,
)
from fedmodel.privacy.clipping import MAX_CLIP, MIN_CLIP


def _vec(values: Any, dtype: Any = np.float32) -> ModelWeights:
    return ModelWeights((np.asarray(values, dtype),), (), ("w",))


def _dp(clip: float | AdaptiveClipping = 1.0, z: float = 0.0, m: float = 2.0, noise: Any = None) -> DPMean:
    return DPMean(clip=clip, noise_multiplier=z, expected_clients=m, noise=noise or SeededNoise(0))


def _round(dp: DPMean, server: ModelWeights, updates: list[ModelWeights], carry: DPCarry | None = None) -> Any:
    state = dp.init(server, carry or dp.initial_carry(server))
    for u in updates:
        state = dp.accumulate(state, u, 1.0)
    return dp.finalize(state), dp.next_carry(state), state


# -- the mean: clipped, summed, divided by the FIXED expected number of clients -----------------------
def test_changes_are_clipped_then_summed_then_divided_by_the_expected_clients() -> None:
    server = _vec([1.0, 1.0], np.float64)
    big, small = _vec([4.0, 5.0], np.float64), _vec([1.3, 1.4], np.float64)  # changes (3, 4) -> (0.6, 0.8); (0.3, 0.4)
    new, _, state = _round(_dp(clip=1.0, m=4.0), server, [big, small])
    np.testing.assert_allclose(new.trainable[0], [1 + 0.9 / 4, 1 + 1.2 / 4], rtol=1e-15)
    assert (state.count, state.unclipped) == (2, 1)


def test_the_denominator_does_not_depend_on_how_many_clients_replied() -> None:
    server = _vec([0.0], np.float64)
    one, _, _ = _round(_dp(clip=10.0, m=5.0), server, [_vec([1.0], np.float64)])
    three, _, _ = _round(_dp(clip=10.0, m=5.0), server, [_vec([1.0], np.float64)] * 3)
    assert one.trainable[0].tolist() == [0.2] and three.trainable[0].tolist() == [0.6]


def test_the_clients_weight_is_checked_then_ignored() -> None:
    dp, server = _dp(clip=10.0), _vec([0.0])
    a, b = _vec([1.0]), _vec([3.0])
    s1 = dp.accumulate(dp.accumulate(dp.init(server, dp.initial_carry(server)), a, 1.0), b, 1.0)
    s2 = dp.accumulate(dp.accumulate(dp.init(server, dp.initial_carry(server)), a, 1e9), b, 0.0)
    np.testing.assert_array_equal(dp.finalize(s1).trainable[0], dp.finalize(s2).trainable[0])
    with pytest.raises(AggregationError, match="weight"):
        dp.accumulate(dp.init(server, dp.initial_carry(server)), a, -1.0)


def test_one_norm_over_trainable_and_non_trainable_floats_and_integers_keep_the_server_value() -> None:
    server = ModelWeights(
        (np.zeros(1, np.float32),), (np.zeros(1, np.float64), np.array(7, np.int64)), ("w",), ("bn_mean", "count")
    )
    update = ModelWeights(
        (np.array([3.0], np.float32),), (np.array([4.0]), np.array(10**15, np.int64)), ("w",), ("bn_mean", "count")
    )
    new, _, _ = _round(_dp(clip=1.0, m=1.0), server, [update])
    assert new.names == server.names
    np.testing.assert_allclose(new.trainable[0], [0.6], rtol=1e-7)
    np.testing.assert_allclose(new.non_trainable[0], [0.8], rtol=1e-15)
    assert new.non_trainable[1] == 7 and new.non_trainable[1].dtype == np.int64
    assert [a.dtype for a in new.arrays] == [a.dtype for a in server.arrays]


def test_every_clipped_change_has_norm_at_most_clip_at_any_scale(rng: np.random.Generator) -> None:
    """One client, m = 1, no noise: the new weights minus the server's are that client's clipped change."""
    clip = 0.75
    for scale in (1e-30, 1e-3, 0.5, 1.0, 10.0, 1e10, 1e150):
        for dtype in (np.float64, np.float32):
            if dtype == np.float32 and scale > 1e30:
                continue
            server = _vec(rng.normal(size=50), dtype)
            update = _vec(server.trainable[0] + scale * rng.normal(size=50), dtype)
            new, _, _ = _round(_dp(clip=clip, m=1.0), server, [update])
            change = np.asarray(new.trainable[0], np.float64) - np.asarray(server.trainable[0], np.float64)
            before = np.linalg.norm(np.asarray(update.trainable[0], np.float64) - server.trainable[0])
            tolerance = 1e-12 if dtype == np.float64 else 1e-6 * (1 + np.abs(server.trainable[0]).max())
            assert np.linalg.norm(change) <= clip + tolerance
            if before <= clip:  # a change within the bound passes unscaled
                unscaled = np.asarray(update.trainable[0], np.float64) - server.trainable[0]
                np.testing.assert_allclose(change, unscaled, atol=1e-6)


# -- the noise -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", [SeededNoise(5), SecureNoise()], ids=["seeded", "secure"])
def test_noise_std_on_the_mean_is_noise_multiplier_times_clip_over_expected_clients(noise: Any) -> None:
    """200k coordinates of one round: the empirical std within 2 % of z C / m (its standard error: 0.16 %)."""
    z, clip, m = 1.3, 0.7, 5.0
    server = _vec(np.zeros(200_000), np.float64)
    new, _, _ = _round(_dp(clip=clip, z=z, m=m, noise=noise), server, [server, server])  # two unchanged clients
    assert abs(new.trainable[0].std() / (z * clip / m) - 1) < 0.02


def test_adaptive_clipping_adds_the_larger_value_noise_it_accounts_for() -> None:
    z, m = 1.0, 20.0
    dp = _dp(clip=AdaptiveClipping(initial_norm=0.5), z=z, m=m)
    z_values = adaptive_noise_multiplier(z, 0.05 * m)
    assert dp.count_stddev == 1.0 and dp.value_noise_multiplier == pytest.approx(z_values) and z_values > z
    server = _vec(np.zeros(200_000), np.float64)
    new, _, _ = _round(dp, server, [])
    assert abs(new.trainable[0].std() / (z_values * 0.5 / m) - 1) < 0.02


def test_the_effective_noise_multiplier_matches_andrew_et_al() -> None:
    """Theorem 1: (z_values^-2 + (2 sigma_b)^-2)^-1/2 is the effective z; TFF's own example values."""
    for z, sigma_b in ((1.0, 5.0), (0.5, 0.5), (2.0, 10.0)):
        z_values = adaptive_noise_multiplier(z, sigma_b)
        assert (z_values**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(z, rel=1e-12)
    with pytest.raises(ValueError, match="too small"):
        adaptive_noise_multiplier(1.0, 0.5)
    with pytest.raises(ValueError, match="too small"):  # 10 clients: default sigma_b = 0.5, 2 sigma_b = z
        _dp(clip=AdaptiveClipping(), z=1.0, m=10.0)
    assert _dp(clip=AdaptiveClipping(), z=0.0, m=10.0).count_stddev == 0.0


def test_seeded_noise_repeats_for_the_same_carry_and_differs_between_rounds() -> None:
    server = _vec(np.zeros(100), np.float64)
    dp = _dp(z=1.0, noise=SeededNoise(9))
    first, carry, _ = _round(dp, server, [])
    again, _, _ = _round(dp, server, [])
    second, carry2, _ = _round(dp, server, [], carry)
    np.testing.assert_array_equal(first.trainable[0], again.trainable[0])
    assert not np.array_equal(first.trainable[0], second.trainable[0])
    assert (carry, carry2) == (DPCarry(1, 1.0), DPCarry(2, 1.0))


def test_secure_noise_differs_for_the_same_carry() -> None:
    server = _vec(np.zeros(100), np.float64)
    dp = _dp(z=1.0, noise=SecureNoise())
    assert not np.array_equal(_round(dp, server, [])[0].trainable[0], _round(dp, server, [])[0].trainable[0])


def test_an_empty_round_releases_the_server_weights_plus_noise() -> None:
    server = _vec(np.ones(4), np.float64)
    new, _, state = _round(_dp(z=0.0), server, [])
    np.testing.assert_array_equal(new.trainable[0], server.trainable[0])
    assert state.count == 0


# -- the round's life cycle --------------------------------------------------------------------------
def test_a_round_is_released_once() -> None:
    dp, server = _dp(z=1.0), _vec([0.0])
    state = dp.init(server, dp.initial_carry(server))
    with pytest.raises(AggregationError, match="finalize the round"):
        dp.next_carry(state)
    dp.finalize(state)
    with pytest.raises(AggregationError, match="already finalized"):
        dp.finalize(state)
    with pytest.raises(AggregationError, match="already finalized"):
        dp.accumulate(state, server, 1.0)


def test_init_needs_the_carry_and_checks_it() -> None:
    dp, server = _dp(), _vec([0.0])
    with pytest.raises(TypeError):
        dp.init(server)  # type: ignore[call-arg]
    for bad in (DPCarry(-1, 1.0), DPCarry(0, 0.0), DPCarry(0, math.nan), (0, 1.0)):
        with pytest.raises(AggregationError, match="invalid carry"):
            dp.init(server, bad)  # type: ignore[arg-type]


def test_a_noised_value_that_does_not_fit_its_dtype_is_refused_and_the_state_kept() -> None:
    server = _vec([65000.0], np.float16)
    dp = _dp(clip=1e4, m=1.0)
    state = dp.init(server, dp.initial_carry(server))
    state = dp.accumulate(state, _vec([np.float16(65504.0)], np.float16), 1.0)  # change 504: 65504 fits
    assert dp.finalize(state).trainable[0].tolist() == [65504.0]
    state = dp.init(server, dp.initial_carry(server))
    state = dp.accumulate(state, _vec([np.float16(65504.0)], np.float16), 1.0)
    state = dp.accumulate(state, _vec([np.float16(65504.0)], np.float16), 1.0)  # 65000 + 1008 overflows
    with pytest.raises(AggregationError, match="does not fit dtype float16"):
        dp.finalize(state)
    assert state.next is None and state.count == 2


def test_settings_are_checked() -> None:
    for kwargs in ({"z": -1.0}, {"z": math.inf}, {"m": 0.0}, {"m": math.nan}, {"clip": 0.0}, {"clip": 2 * MAX_CLIP}):
        with pytest.raises(ValueError):
            _dp(**kwargs)
    with pytest.raises(TypeError, match="NoiseSource"):
        DPMean(clip=1.0, noise_multiplier=1.0, expected_clients=1.0, noise=np.random.default_rng(0))  # type: ignore[arg-type]
    for kwargs in ({"initial_norm": 0.0}, {"target_quantile": 1.5}, {"learning_rate": -0.1}, {"count_stddev": -1.0}):
        with pytest.raises(ValueError):
            AdaptiveClipping(**kwargs)  # type: ignore[arg-type]


# -- adaptive clipping ------------------------------------------------------------------------------
@pytest.mark.parametrize(("quantile", "z"), [(0.5, 0.0), (0.5, 1.0), (0.8, 1.0)])
def test_adaptive_clipping_converges_to_the_target_quantile_of_the_norms(quantile: float, z: float) -> None:
    """Update norms log-normal (median 2, sigma 0.5), 100 clients a round, the clip starting 20x too low:
    after 150 rounds the clip sits at the norms' target quantile (within 10 %); with z = 1 the count
    carries noise of std 5 (TFF's default 0.05 m), as accounted."""
    rng = np.random.default_rng(1)
    m = 100
    dp = _dp(clip=AdaptiveClipping(initial_norm=0.1, target_quantile=quantile, learning_rate=0.2), z=z, m=m)
    server = _vec(np.zeros(1), np.float64)
    carry = dp.initial_carry(server)
    for _ in range(150):
        norms = 2.0 * np.exp(0.5 * rng.normal(size=m))
        _, carry, _ = _round(dp, server, [_vec([n], np.float64) for n in norms], carry)
    true_quantile = 2.0 * math.exp(0.5 * float(np.quantile(rng.normal(size=1_000_000), quantile)))
    assert carry.round == 150
    assert abs(carry.clip_norm / true_quantile - 1) < 0.1


def test_adaptive_clip_norm_never_leaves_its_bounds() -> None:
    server = _vec([0.0], np.float64)
    dp = _dp(clip=AdaptiveClipping(initial_norm=MAX_CLIP, target_quantile=1.0, learning_rate=5.0), m=1.0)
    _, carry, _ = _round(dp, server, [_vec([1e101], np.float64)])
    assert carry.clip_norm == MAX_CLIP  # clipped with target 1: it would grow by e^5, it stays
    dp = _dp(clip=AdaptiveClipping(initial_norm=MIN_CLIP, target_quantile=1.0, learning_rate=5.0), m=1.0)
    _, carry, _ = _round(dp, server, [server])  # unclipped, target 1: nothing to move
    assert carry.clip_norm == MIN_CLIP
    dp = _dp(clip=AdaptiveClipping(initial_norm=MIN_CLIP, target_quantile=0.0, learning_rate=50.0), m=1.0)
    _, carry, _ = _round(dp, server, [server])  # unclipped, target 0: would shrink below MIN_CLIP
    assert carry.clip_norm == MIN_CLIP


def test_adaptive_step_is_the_geometric_update_on_the_shifted_count() -> None:
    """No noise: 3 of 4 clients unclipped, m = 4: b = (3 - 2) / 4 + 1/2 = 0.75; C <- C exp(-0.2 (0.75 - 0.5))."""
    server = _vec([0.0], np.float64)
    dp = _dp(clip=AdaptiveClipping(initial_norm=1.0, target_quantile=0.5, learning_rate=0.2), m=4.0)
    _, carry, _ = _round(dp, server, [_vec([v], np.float64) for v in (0.1, 0.5, 1.0, 3.0)])
    assert carry.clip_norm == pytest.approx(math.exp(-0.2 * 0.25), rel=1e-15)
