"""The ClientApp: this node's partition of digits, trained with FedAvg, its change sent through SecAgg+."""

from __future__ import annotations

import os
import time

from flwr.app import ConfigRecord, Context

from fedmodel.data import ClientData
from fedmodel.integrations.flower import client_app, partition_id
from fedmodel_secagg_app.task import make_algorithm, make_data, make_model


def load_partition(context: Context) -> ClientData:
    """The node's partition. For the tests' dropout, ``stall-partition`` stops in its ``stall-round``-th
    training (a marker file says so) and waits there to be killed, mid-round, after sharing its keys."""
    pid, config = partition_id(context), context.run_config
    record = context.state.config_records.setdefault("fedmodel-test", ConfigRecord({"trainings": 0}))
    record["trainings"] = int(record["trainings"]) + 1  # type: ignore[call-overload]
    if pid == int(config["stall-partition"]) and record["trainings"] == int(config["stall-round"]):
        with open(os.path.join(str(config["results-dir"]), f"stalled-{pid}"), "w") as marker:
            marker.write(str(os.getpid()))
        time.sleep(3600)
    return make_data(config).clients[pid]


app = client_app(
    lambda context: make_model(),
    load_partition,
    lambda context: make_algorithm(context.run_config).client_update,
    secure_aggregation=True,
)
