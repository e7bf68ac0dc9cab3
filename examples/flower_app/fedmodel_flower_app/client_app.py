"""The ClientApp: this node's partition of digits, trained with the run's algorithm (fedmodel's client update)."""

from __future__ import annotations

from flwr.app import Context

from fedmodel.data import ClientData
from fedmodel.integrations.flower import client_app, partition_id
from fedmodel_flower_app.task import make_algorithm, make_data, make_model


def load_partition(context: Context) -> ClientData:
    """The node's partition; ``--node-config "partition-id=i num-partitions=n"`` must match the run config."""
    expected = int(context.run_config["num-partitions"])
    given = context.node_config.get("num-partitions", expected)
    if given != expected:
        raise ValueError(f"this node was started with num-partitions={given}, the run uses {expected}")
    return make_data(context.run_config).clients[partition_id(context)]


app = client_app(
    lambda context: make_model(context.run_config, partition_id(context)),
    load_partition,
    lambda context: make_algorithm(context.run_config).client_update,
)
