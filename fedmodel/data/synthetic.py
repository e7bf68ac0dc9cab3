"""The synthetic(alpha, beta) data of Li et al. 2020, "Federated Optimization in Heterogeneous Networks" (FedProx).

The paper's recipe (its appendix, and the generator in its repository, ``litian96/FedProx``): device
``k`` draws ``u_k ~ N(0, alpha)`` and ``B_k ~ N(0, beta)`` (standard deviations, as the generator
draws them); its own model ``W_k ~ N(u_k, 1)`` (60 x 10) and ``b_k ~ N(u_k, 1)``; its inputs
``x ~ N(v_k, diag(j^-1.2))`` with each element of ``v_k ~ N(B_k, 1)``; its labels
``y = argmax(W_k^T x + b_k)``. ``alpha`` controls how much the local models differ, ``beta`` how much
the local inputs differ. The IID variant gives every device one shared ``W, b ~ N(0, 1)`` and
``v_k = 0``. 30 devices; ``n_k = floor(lognormal(4, 2)) + 50`` examples on device ``k`` (the power-law
sizes of the paper); each device keeps a random 90 % for training and 10 % for testing.

>>> data = federated_synthetic(1.0, 1.0, seed=0)
>>> len(data.clients), data.clients[0].x.shape[1], data.clients[0].x.dtype, data.clients[0].y.dtype
(30, 60, dtype('float32'), dtype('int64'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedmodel.data._core import ClientData, DataError, FederatedData, pool_clients

__all__ = ["MAX_DEVICES", "SyntheticDevice", "federated_synthetic", "sample_device", "synthetic_devices"]

NUM_FEATURES = 60
NUM_CLASSES = 10


@dataclass(frozen=True)
class SyntheticDevice:
    """One device's generating parameters: its model ``(W, b)``, input mean ``v`` and number of examples."""

    kernel: np.ndarray  # W_k, (features, classes)
    bias: np.ndarray  # b_k, (classes,)
    input_mean: np.ndarray  # v_k, (features,)
    num_examples: int
    model_mean: float  # u_k
    input_shift: float  # B_k


def input_variances(num_features: int = NUM_FEATURES) -> np.ndarray:
    """The diagonal of the inputs' covariance, ``j^-1.2`` for ``j = 1..num_features``."""
    return np.arange(1, num_features + 1, dtype=np.float64) ** -1.2


MAX_DEVICES = 10_000
"""The most devices generated: they are held in memory (about 100 KB each on average), and the paper uses 30."""


def _check_devices(num_devices: object) -> None:
    if type(num_devices) is not int or not 1 <= num_devices <= MAX_DEVICES:
        raise DataError(f"num_devices must be an int in [1, {MAX_DEVICES}], got {num_devices!r}")


def synthetic_devices(
    alpha: float | None,
    beta: float | None,
    *,
    num_devices: int = 30,
    num_features: int = NUM_FEATURES,
    num_classes: int = NUM_CLASSES,
    seed: int = 0,
) -> list[SyntheticDevice]:
    """Each device's parameters; ``alpha = beta = None`` is the IID variant (one shared model, ``v_k = 0``).

    Raises:
        DataError: for a negative or non-finite ``alpha`` or ``beta``, only one of them None, a non-positive size, or
            ``num_devices`` not an int in ``[1, MAX_DEVICES]``.
    """
    iid = alpha is None and beta is None
    if not iid and not (alpha is not None and beta is not None and 0 <= alpha < math.inf and 0 <= beta < math.inf):
        raise DataError(
            f"synthetic(alpha, beta) needs both finite and >= 0 (or both None for IID), got ({alpha}, {beta})"
        )
    _check_devices(num_devices)
    if min(num_devices, num_features, num_classes) < 1:
        raise DataError(
            f"num_devices, num_features and num_classes must be >= 1, got {num_devices}, {num_features}, {num_classes}"
        )
    rng = np.random.default_rng([seed, 0xFED9])
    sizes = rng.lognormal(4.0, 2.0, num_devices).astype(np.int64) + 50
    if iid:
        shared_kernel = rng.normal(0.0, 1.0, (num_features, num_classes))
        shared_bias = rng.normal(0.0, 1.0, num_classes)
        return [SyntheticDevice(shared_kernel, shared_bias, np.zeros(num_features), int(n), 0.0, 0.0) for n in sizes]
    assert alpha is not None and beta is not None
    model_means = rng.normal(0.0, alpha, num_devices)
    shifts = rng.normal(0.0, beta, num_devices)
    devices = []
    for k in range(num_devices):
        input_mean = rng.normal(shifts[k], 1.0, num_features)
        kernel = rng.normal(model_means[k], 1.0, (num_features, num_classes))
        bias = rng.normal(model_means[k], 1.0, num_classes)
        devices.append(
            SyntheticDevice(kernel, bias, input_mean, int(sizes[k]), float(model_means[k]), float(shifts[k]))
        )
    return devices


def sample_device(device: SyntheticDevice, rng: np.random.Generator) -> ClientData:
    """``device.num_examples`` examples: x (float32) from ``N(v_k, diag(j^-1.2))``, y = argmax(x W_k + b_k)."""
    std = np.sqrt(input_variances(len(device.input_mean)))
    x = device.input_mean + std * rng.standard_normal((device.num_examples, len(device.input_mean)))
    y = np.argmax(x @ device.kernel + device.bias, axis=1).astype(np.int64)
    return ClientData(x.astype(np.float32), y)


def federated_synthetic(
    alpha: float | None,
    beta: float | None,
    *,
    num_devices: int = 30,
    train_fraction: float = 0.9,
    seed: int = 0,
) -> FederatedData:
    """synthetic(alpha, beta) as clients (each device's training 90 %) and a pooled test set (the other 10 %).

    ``data.test_clients`` holds each device's test examples. Labels are computed in float64 from the
    float64 inputs, then the inputs are stored as float32 (the models' dtype).

    Raises:
        DataError: as :func:`synthetic_devices`, or for ``train_fraction`` outside (0, 1) or so close to 0 or 1
            that a device would have no training or no test examples.
    """
    if not 0 < train_fraction < 1:
        raise DataError(f"train_fraction must be in (0, 1), got {train_fraction}")
    _check_devices(num_devices)
    devices = synthetic_devices(alpha, beta, num_devices=num_devices, seed=seed)
    smallest = min(device.num_examples for device in devices)
    if not 1 <= int(train_fraction * smallest) < smallest:
        raise DataError(
            f"train_fraction={train_fraction} leaves the smallest device ({smallest} examples) without training "
            "or test examples"
        )
    train, test = [], []
    for k, device in enumerate(devices):
        rng = np.random.default_rng([seed, 0xFED9, k])
        examples = sample_device(device, rng)
        n_train = int(train_fraction * len(examples))
        train.append(examples.subset(np.arange(n_train)))
        test.append(examples.subset(np.arange(n_train, len(examples))))
    return FederatedData(train, pool_clients(test), test_clients=test)
