"""fedmodel on Flower (``flwr`` 1.42, Message API): any fedmodel model as a Flower client, fedmodel's
algorithms as a Flower strategy. ``pip install 'fedmodel[flower]'``.

* :func:`client_app` turns a model factory, a data loader and an algorithm's client update into a
  ``flwr.clientapp.ClientApp`` (``@app.train()`` / ``@app.evaluate()``).
* :class:`FedModelStrategy` is a ``flwr.serverapp.strategy.Strategy`` that runs a
  :class:`fedmodel.algorithms.FederatedAlgorithm`: fedmodel's streaming aggregation (integer variables by
  the aggregator's declared rule, never zeroed), its server optimizers (FedAvgM, FedAdam, FedYogi,
  FedAdagrad), metrics finalized by ``model.federated_output_computation``, and a report of every
  dropped node.
* :class:`SecAggPlusStrategy` aggregates through Flower's SecAgg+ (``client_app(..., secure_aggregation=True)``
  on the clients): the server sees only the sum of the clients' changes (see :mod:`._flower_secagg`).
* With ``fedmodel.layout.canonical(model)`` as the model on both sides, weights travel in canonical names
  and axes, so clients of different frameworks can take part in one run.
* The wire format (weights as Flower ``ArrayRecord`` keyed by variable name plus a ``ConfigRecord`` of
  names, groups and widened dtypes; reports as ``MetricRecord`` entries) is in :func:`encode_weights`,
  :func:`decode_weights`, :func:`flatten_report` and :func:`unflatten_report`.

A minimal Flower app (``client_app.py`` and ``server_app.py`` of a project launched with ``flwr run``)::

    from fedmodel.algorithms import fedavg
    from fedmodel.data import federated_digits
    from fedmodel.reference import SoftmaxRegression
    from fedmodel.integrations.flower import FedModelStrategy, client_app, partition_id

    algorithm = fedavg(client_lr=0.5)
    data = federated_digits(num_clients=3, alpha=None)
    app = client_app(lambda context: SoftmaxRegression(64, 10),
                     lambda context: data.clients[partition_id(context)],
                     lambda context: algorithm.client_update)

    server = ServerApp()

    @server.main()
    def main(grid, context):
        strategy = FedModelStrategy(lambda: SoftmaxRegression(64, 10), algorithm, test_data=data.test)
        strategy.run(grid, num_rounds=5, round_timeout=30.0)
        strategy.write_report("results.json")
"""

from __future__ import annotations

from fedmodel.integrations._flower_client import REJECTED_MESSAGE as REJECTED_MESSAGE
from fedmodel.integrations._flower_client import client_app as client_app
from fedmodel.integrations._flower_client import partition_id as partition_id
from fedmodel.integrations._flower_client import read_round_config as read_round_config
from fedmodel.integrations._flower_report import NodeFailure as NodeFailure
from fedmodel.integrations._flower_report import RoundReport as RoundReport
from fedmodel.integrations._flower_secagg import SecAggPlus as SecAggPlus
from fedmodel.integrations._flower_secagg import SecAggPlusStrategy as SecAggPlusStrategy
from fedmodel.integrations._flower_secagg import secure_change as secure_change
from fedmodel.integrations._flower_server import FedModelStrategy as FedModelStrategy
from fedmodel.integrations._flower_wire import ARRAYS_KEY as ARRAYS_KEY
from fedmodel.integrations._flower_wire import CONFIG_KEY as CONFIG_KEY
from fedmodel.integrations._flower_wire import METRICS_KEY as METRICS_KEY
from fedmodel.integrations._flower_wire import REPORT_PREFIX as REPORT_PREFIX
from fedmodel.integrations._flower_wire import WEIGHTS_META_KEY as WEIGHTS_META_KEY
from fedmodel.integrations._flower_wire import WIDENED_DTYPES as WIDENED_DTYPES
from fedmodel.integrations._flower_wire import MessageError as MessageError
from fedmodel.integrations._flower_wire import decode_weights as decode_weights
from fedmodel.integrations._flower_wire import encode_weights as encode_weights
from fedmodel.integrations._flower_wire import flatten_report as flatten_report
from fedmodel.integrations._flower_wire import read_weights as read_weights
from fedmodel.integrations._flower_wire import unflatten_report as unflatten_report
from fedmodel.integrations._flower_wire import write_weights as write_weights

__all__ = [
    "ARRAYS_KEY",
    "CONFIG_KEY",
    "METRICS_KEY",
    "REJECTED_MESSAGE",
    "REPORT_PREFIX",
    "WEIGHTS_META_KEY",
    "WIDENED_DTYPES",
    "FedModelStrategy",
    "MessageError",
    "NodeFailure",
    "RoundReport",
    "SecAggPlus",
    "SecAggPlusStrategy",
    "client_app",
    "decode_weights",
    "encode_weights",
    "flatten_report",
    "partition_id",
    "read_round_config",
    "read_weights",
    "secure_change",
    "unflatten_report",
    "write_weights",
]
