"""The Flower side of bench 4: a plain Flower 1.42 ``ClientApp`` and ``ServerApp`` (Flower's own ``FedAvg``).

Each client trains the same torch MLP on the same digits partition with the same local update as
fedmodel's in-process runner (:func:`fedmodel.client.train_client`: one epoch, batch 32, SGD 0.1, the
example order seeded by :func:`fedmodel.server.client_seed`), so the two runs differ only in the
engine. Each worker process caches its model and the data (Flower's best case).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np

__all__ = ["BATCH_SIZE", "EPOCHS", "LEARNING_RATE", "client_partitions", "make_apps", "make_model", "round_times"]

EPOCHS, BATCH_SIZE, LEARNING_RATE, SEED = 1, 32, 0.1, 0


def make_model() -> Any:
    """The digits MLP of both sides: fedmodel_torch's built-in ``mlp(64, (32,), 10)``."""
    import fedmodel_torch

    return fedmodel_torch.models.mlp(num_features=64, hidden=(32,), num_classes=10, seed=SEED)


@functools.cache
def client_partitions(num_clients: int) -> tuple[Any, ...]:
    """scikit-learn's digits (train split) cut IID into ``num_clients`` seeded parts."""
    from fedmodel.data import federated_digits

    return tuple(federated_digits(num_clients, alpha=None, seed=SEED).clients)


@functools.cache
def _worker_model() -> Any:
    return make_model()


def make_apps(num_clients: int, rounds: int, stamps: list[float]) -> tuple[Any, Any]:
    """``(client_app, server_app)`` for ``rounds`` FedAvg rounds over ``num_clients`` nodes.

    ``stamps`` receives ``time.perf_counter()`` at the start and at the end of every round (Flower
    calls ``evaluate_fn`` before the first round and after each); the server runs in this process.
    """
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        import fedmodel
        from fedmodel.client import train_client
        from fedmodel.server import client_seed

        cid = int(context.node_config["partition-id"])
        model = _worker_model()
        arrays = msg.content.array_records["arrays"].to_numpy_ndarrays()
        server = fedmodel.get_weights(model).with_arrays(arrays)
        config = msg.content.config_records.get("config")
        server_round = int(config.get("server-round", 1)) if config is not None else 1  # type: ignore[arg-type]
        result = train_client(
            model,
            server,
            client_partitions(num_clients)[cid],
            epochs=EPOCHS,
            batch_size=BATCH_SIZE,
            optimizer=fedmodel.SGD(LEARNING_RATE),
            seed=client_seed(SEED, server_round - 1, cid),
        )
        content = RecordDict(
            {
                "arrays": ArrayRecord(list(result.weights.arrays)),
                "metrics": MetricRecord({"num-examples": result.num_examples}),
            }
        )
        return Message(content=content, reply_to=msg)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        import fedmodel

        strategy = FedAvg(
            fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=num_clients, min_available_nodes=num_clients
        )

        def stamp(server_round: int, arrays: ArrayRecord) -> None:
            stamps.append(time.perf_counter())

        initial = ArrayRecord(list(fedmodel.get_weights(make_model()).arrays))
        strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, evaluate_fn=stamp)

    return client, server


def round_times(stamps: list[float]) -> list[float]:
    """Seconds of each round from the ``evaluate_fn`` time stamps."""
    return [float(d) for d in np.diff(stamps)]
