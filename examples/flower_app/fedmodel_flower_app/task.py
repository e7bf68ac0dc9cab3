"""What the ServerApp and the ClientApp share: the model, the data split and the algorithm, from the run config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedmodel import algorithms
from fedmodel.algorithms import FederatedAlgorithm
from fedmodel.data import FederatedData, federated_digits

Config = Mapping[str, Any]


MIXED_FRAMEWORKS = ("torch", "tensorflow", "jax")


def make_model(config: Config, partition: int | None = None) -> Any:
    """A fresh model of the configured kind (every kind: 64 features, 10 classes, seeded by ``seed``).

    ``model = "mixed"`` gives partition ``i`` the digits MLP of ``MIXED_FRAMEWORKS[i % 3]`` (PyTorch,
    Keras, JAX) in the canonical layout, so the three frameworks train one model; the server (no
    partition) evaluates it with the PyTorch one.
    """
    kind, seed = str(config.get("model", "numpy")), int(config.get("seed", 0))
    if kind == "mixed":
        import importlib

        from fedmodel.layout import canonical

        framework = "torch" if partition is None else MIXED_FRAMEWORKS[partition % len(MIXED_FRAMEWORKS)]
        models = importlib.import_module(f"fedmodel_{framework}").models
        return canonical(models.mlp(num_features=64, hidden=(32,), num_classes=10, seed=seed))
    if kind == "numpy":
        from fedmodel.reference import SoftmaxRegression

        return SoftmaxRegression(num_features=64, num_classes=10, seed=seed)
    if kind == "torch":
        from fedmodel_torch import models

        return models.mlp(num_features=64, hidden=(32,), num_classes=10, seed=seed)
    raise ValueError(f"unknown model {kind!r}: expected 'numpy', 'torch' or 'mixed'")


def make_data(config: Config) -> FederatedData:
    """Digits split into ``num-partitions`` clients (IID for ``alpha = 0``), plus the held-out test set."""
    alpha = float(config.get("alpha", 0.0))
    return federated_digits(
        num_clients=int(config["num-partitions"]), alpha=alpha if alpha > 0 else None, seed=int(config.get("seed", 0))
    )


def make_algorithm(config: Config) -> FederatedAlgorithm:
    """The configured algorithm of :mod:`fedmodel.algorithms` with the run's learning rates and batching."""
    name = str(config.get("algorithm", "fedavg"))
    common = {
        "epochs": int(config.get("epochs", 1)),
        "batch_size": int(config.get("batch-size", 32)),
        "client_lr": float(config.get("client-lr", 0.1)),
        "server_lr": float(config.get("server-lr", 1.0)),
    }
    factories = {
        "fedavg": algorithms.fedavg,
        "fedavgm": algorithms.fedavgm,
        "fedprox": algorithms.fedprox,
        "fedadam": algorithms.fedadam,
        "fedyogi": algorithms.fedyogi,
        "fedadagrad": algorithms.fedadagrad,
    }
    if name not in factories:
        raise ValueError(f"unknown algorithm {name!r}: expected one of {sorted(factories)}")
    factory: Any = factories[name]
    algorithm: FederatedAlgorithm = factory(**common)
    return algorithm
