"""What the ServerApp and the ClientApp share: the model, the data split and the algorithm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedmodel.algorithms import FederatedAlgorithm, fedavg
from fedmodel.data import FederatedData, federated_digits
from fedmodel.reference import SoftmaxRegression


def make_model() -> SoftmaxRegression:
    """The digits softmax regression (numpy), always the same initial weights."""
    return SoftmaxRegression(num_features=64, num_classes=10, seed=0)


def make_data(config: Mapping[str, Any]) -> FederatedData:
    """Digits split IID into ``num-partitions`` clients, plus the held-out test set."""
    return federated_digits(num_clients=int(config["num-partitions"]), alpha=None, seed=0)


def make_algorithm(config: Mapping[str, Any]) -> FederatedAlgorithm:
    """FedAvg with the run's learning rate and batch size (under SecAgg+: every client counts once)."""
    return fedavg(epochs=1, batch_size=int(config["batch-size"]), client_lr=float(config["client-lr"]))
