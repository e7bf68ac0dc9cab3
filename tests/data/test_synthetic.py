"""FedProx's synthetic(alpha, beta): the generator's statistics match the paper's recipe."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fedmodel.data import DataError, federated_synthetic
from fedmodel.data.synthetic import input_variances, sample_device, synthetic_devices


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_the_papers_shape_30_devices_60_features_10_classes_and_a_90_10_split() -> None:
    data = federated_synthetic(1.0, 1.0, seed=0)
    devices = synthetic_devices(1.0, 1.0, seed=0)
    assert len(data.clients) == 30 and data.test_clients is not None and len(data.test_clients) == 30
    for client, test, device in zip(data.clients, data.test_clients, devices, strict=True):
        assert client.x.shape[1:] == (60,) and client.x.dtype == np.float32 and client.y.dtype == np.int64
        assert len(client) == int(0.9 * device.num_examples)
        assert len(client) + len(test) == device.num_examples
    assert len(data.test) == sum(len(t) for t in data.test_clients)
    assert set(np.concatenate([c.y for c in data.clients]).tolist()) <= set(range(10))


def test_labels_are_the_argmax_of_each_devices_own_linear_model() -> None:
    data = federated_synthetic(1.0, 1.0, seed=2)
    devices = synthetic_devices(1.0, 1.0, seed=2)
    agree = total = 0
    for client, device in zip(data.clients, devices, strict=True):
        predicted = np.argmax(client.x.astype(np.float64) @ device.kernel + device.bias, axis=1)
        agree += int(np.sum(predicted == client.y))
        total += len(client)
    assert agree / total > 0.999  # float32 storage of x may flip a near tie
    other = devices[1]  # another device's model does not explain this device's labels
    first = data.clients[0]
    assert np.mean(np.argmax(first.x @ other.kernel + other.bias, axis=1) == first.y) < 0.9


def test_sample_counts_are_floor_lognormal_4_2_plus_50() -> None:
    sizes = np.array([d.num_examples for d in synthetic_devices(1.0, 1.0, num_devices=6000, seed=1)])
    assert sizes.min() >= 50
    for q in (5, 20, 54, 150, 1000):  # P(floor(L) <= q) = P(L < q + 1) for L ~ lognormal(4, 2)
        expected = _normal_cdf((math.log(q + 1) - 4.0) / 2.0)
        assert abs(np.mean(sizes - 50 <= q) - expected) < 0.02, q


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (1.0, 1.0), (0.0, 2.0)])
def test_model_and_input_priors_have_the_papers_spreads(alpha: float, beta: float) -> None:
    devices = synthetic_devices(alpha, beta, num_devices=3000, seed=3)
    u = np.array([d.model_mean for d in devices])
    shift = np.array([d.input_shift for d in devices])
    assert abs(u.mean()) < 0.05 and abs(u.std() - alpha) < 0.04  # u_k ~ N(0, alpha)
    assert abs(shift.mean()) < 0.08 and abs(shift.std() - beta) < 0.06  # B_k ~ N(0, beta)
    w_offsets = np.concatenate([(d.kernel - d.model_mean).ravel() for d in devices[:200]])
    b_offsets = np.concatenate([d.bias - d.model_mean for d in devices])
    v_offsets = np.concatenate([d.input_mean - d.input_shift for d in devices[:500]])
    for offsets in (w_offsets, b_offsets, v_offsets):  # W_k, b_k ~ N(u_k, 1); v_k ~ N(B_k, 1)
        assert abs(offsets.mean()) < 0.03 and abs(offsets.std() - 1.0) < 0.03
    assert devices[0].kernel.shape == (60, 10) and devices[0].bias.shape == (10,)


def test_inputs_have_mean_v_k_and_diagonal_covariance_j_to_the_minus_1_2() -> None:
    device = dataclasses.replace(synthetic_devices(1.0, 1.0, seed=4)[0], num_examples=40_000)
    x = sample_device(device, np.random.default_rng(5)).x.astype(np.float64)
    np.testing.assert_allclose(input_variances()[:3], [1.0, 2.0**-1.2, 3.0**-1.2])
    np.testing.assert_allclose(x.mean(axis=0), device.input_mean, atol=0.02)
    cov = np.cov(x, rowvar=False)
    np.testing.assert_allclose(np.diag(cov), input_variances(), rtol=0.05)
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 0.03


def test_the_iid_variant_shares_one_model_and_zero_input_means() -> None:
    devices = synthetic_devices(None, None, seed=0)
    assert all(np.array_equal(d.kernel, devices[0].kernel) and np.array_equal(d.bias, devices[0].bias) for d in devices)
    assert all(not d.input_mean.any() for d in devices)
    assert len({d.num_examples for d in devices}) > 10  # sizes still vary


def test_the_generator_is_seeded() -> None:
    a, b = federated_synthetic(1.0, 1.0, seed=7), federated_synthetic(1.0, 1.0, seed=7)
    np.testing.assert_array_equal(a.clients[3].x, b.clients[3].x)
    c = federated_synthetic(1.0, 1.0, seed=8)
    assert a.clients[3].x.shape != c.clients[3].x.shape or not np.array_equal(a.clients[3].x, c.clients[3].x)


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [(-1.0, 1.0), (1.0, -0.5), (None, 1.0), (1.0, float("nan")), (float("inf"), 1.0), (1.0, float("inf"))],
)
def test_bad_priors_are_typed_errors_naming_both_values(alpha: float | None, beta: float | None) -> None:
    with pytest.raises(DataError, match="alpha, beta"):
        federated_synthetic(alpha, beta)


@pytest.mark.parametrize("fraction", [1.0, 0.0, 1e-300, 0.001])
def test_a_train_fraction_that_leaves_a_device_without_train_or_test_examples_is_an_error(fraction: float) -> None:
    """Devices hold at least 50 examples: 1e-300 gave every client 0 training examples, and the run dropped them all."""
    with pytest.raises(DataError, match=r"train_fraction"):
        federated_synthetic(1.0, 1.0, train_fraction=fraction)


@pytest.mark.parametrize("num_devices", [0, 1.5, "30", True, 10**7])
def test_a_device_count_that_is_not_a_sane_int_is_an_error_naming_it(num_devices: object) -> None:
    """10**7 devices would allocate gigabytes before anything checked them."""
    with pytest.raises(DataError, match=rf"num_devices must be an int in \[1, .*got {num_devices!r}"):
        federated_synthetic(1.0, 1.0, num_devices=num_devices)  # type: ignore[arg-type]
