"""Local DP: the client clips and noises its own update, seeded from its seed or secure, and withholds counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedmodel import AggregationError, ModelWeights, backend_for, get_weights
from fedmodel.client import ClientResult, local_sgd
from fedmodel.data import ClientData
from fedmodel.privacy import SecureNoise, SeededNoise, local_dp, privatize
from fedmodel.reference import SoftmaxRegression

SERVER = ModelWeights(
    (np.zeros(40_000, np.float64), np.zeros(3, np.float32)), (np.array(2, np.int64),), ("a", "b"), ("n",)
)


def _trained(shift: float) -> ModelWeights:
    return SERVER.with_arrays([SERVER.arrays[0] + shift, SERVER.arrays[1] + shift, np.array(99, np.int64)])


def test_without_noise_the_sent_change_is_the_clipped_change_and_integers_are_the_servers() -> None:
    sent = privatize(SERVER, _trained(1.0), clip=2.0, noise_multiplier=0.0, noise=SeededNoise(0), key=(1,))
    change = np.concatenate([np.asarray(a, np.float64) for a in sent.arrays[:2]])
    assert np.linalg.norm(change) == pytest.approx(2.0, rel=1e-6)  # norm sqrt(40003) clipped to 2
    assert sent.arrays[2] == 2 and [a.dtype for a in sent.arrays] == [a.dtype for a in SERVER.arrays]
    small = privatize(SERVER, _trained(1e-3), clip=2.0, noise_multiplier=0.0, noise=SeededNoise(0), key=(1,))
    np.testing.assert_allclose(small.arrays[0], 1e-3)  # within the bound: unchanged


@pytest.mark.parametrize("noise", [SeededNoise(1), SecureNoise()], ids=["seeded", "secure"])
def test_each_coordinate_carries_noise_of_std_z_times_clip(noise: Any) -> None:
    sent = privatize(SERVER, SERVER, clip=0.5, noise_multiplier=1.5, noise=noise, key=(7,))
    assert abs(sent.arrays[0].std() / 0.75 - 1) < 0.02


def test_seeded_noise_follows_the_client_seed_and_secure_noise_never_repeats() -> None:
    def send(noise: Any, seed: int) -> np.ndarray:
        return privatize(SERVER, SERVER, clip=1.0, noise_multiplier=1.0, noise=noise, key=(seed,)).arrays[0]

    np.testing.assert_array_equal(send(SeededNoise(0), 42), send(SeededNoise(0), 42))
    assert not np.array_equal(send(SeededNoise(0), 42), send(SeededNoise(0), 43))
    assert not np.array_equal(send(SecureNoise(), 42), send(SecureNoise(), 42))


def test_the_client_refuses_to_send_non_finite_weights() -> None:
    bad = SERVER.with_arrays([np.full(40_000, np.nan), SERVER.arrays[1], SERVER.arrays[2]])
    with pytest.raises(AggregationError, match="non-finite"):
        privatize(SERVER, bad, clip=1.0, noise_multiplier=1.0, noise=SeededNoise(0), key=(0,))


def _client() -> tuple[SoftmaxRegression, ModelWeights, ClientData]:
    model = SoftmaxRegression(4, 3, seed=0)
    rng = np.random.default_rng(0)
    data = ClientData(rng.normal(size=(12, 4)).astype(np.float32), rng.integers(0, 3, 12))
    return model, get_weights(model), data


def test_the_wrapper_sends_noised_weights_and_withholds_metrics_and_counts() -> None:
    model, server, data = _client()
    inner = local_sgd(epochs=2, batch_size=4)
    plain = inner(model, backend_for(model), server, data, 5)
    private = local_dp(inner, clip=0.1, noise_multiplier=0.0, noise=SeededNoise(0))(
        model, backend_for(model), server, data, 5
    )
    assert isinstance(private, ClientResult)
    assert (private.num_examples, private.metrics, private.num_steps) == (1, {}, 0)
    expected = privatize(server, plain.weights, clip=0.1, noise_multiplier=0.0, noise=SeededNoise(0), key=(5,))
    for got, want in zip(private.weights.arrays, expected.arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    opted_in = local_dp(
        inner, clip=0.1, noise_multiplier=1.0, noise=SecureNoise(), send_metrics=True, send_num_examples=True
    )
    result = opted_in(model, backend_for(model), server, data, 5)
    assert (result.num_examples, result.num_steps) == (12, 6) and set(result.metrics) == set(plain.metrics)


def test_the_wrapper_checks_its_settings() -> None:
    inner = local_sgd()
    for kwargs in ({"clip": 0.0}, {"noise_multiplier": -1.0}, {"noise_multiplier": float("nan")}):
        settings: dict[str, Any] = {"clip": 1.0, "noise_multiplier": 1.0, "noise": SeededNoise(0), **kwargs}
        with pytest.raises(ValueError):
            local_dp(inner, **settings)
    with pytest.raises(TypeError, match="NoiseSource"):
        local_dp(inner, clip=1.0, noise_multiplier=1.0, noise=0)  # type: ignore[arg-type]
