"""A fedmodel model as a Flower ``ClientApp`` (Flower's Message API: ``@app.train()``, ``@app.evaluate()``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.app import Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedmodel._backend import Backend, backend_for
from fedmodel._errors import FedModelError
from fedmodel._weights import ModelWeights, assign_weights
from fedmodel.client import ClientUpdate
from fedmodel.data import ClientData
from fedmodel.evaluation import local_report
from fedmodel.integrations._flower_wire import (
    CONFIG_KEY,
    METRICS_KEY,
    MessageError,
    flatten_report,
    read_weights,
    write_weights,
)
from fedmodel.server import client_seed

__all__ = ["REJECTED_MESSAGE", "client_app", "partition_id", "read_round_config"]

REJECTED_MESSAGE = 4220
"""The error code of a reply to a message that fedmodel rejected (malformed weights or config)."""


def partition_id(context: Context) -> int:
    """The client id of this node: ``node_config["partition-id"]`` (``--node-config "partition-id=0 ..."``).

    It seeds the client's example order exactly as :func:`fedmodel.server.client_seed` does for the
    client of the same index in a simulation.
    """
    value = context.node_config.get("partition-id")
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"node_config['partition-id'] must be an integer, got {value!r}")
    return value


def read_round_config(content: RecordDict) -> tuple[int, int]:
    """``(server_round, seed)`` from the instruction's :data:`CONFIG_KEY` record.

    Raises:
        MessageError: when the record or a value is missing or not an integer >= 1 / >= 0.
    """
    config = content.config_records.get(CONFIG_KEY)
    if config is None:
        raise MessageError(f"the message has no ConfigRecord {CONFIG_KEY!r} (records: {sorted(content)})")
    server_round, seed = config.get("server-round"), config.get("seed", 0)
    for key, value, low in (("server-round", server_round, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise MessageError(f"{CONFIG_KEY}[{key!r}]: expected an integer >= {low}, got {value!r}")
    return int(server_round), int(seed)  # type: ignore[arg-type]


def _reject(message: Message, exc: Exception) -> Message:
    return Message(Error(REJECTED_MESSAGE, f"fedmodel rejected the message: {exc}"), reply_to=message)


def client_app(
    model_factory: Callable[[Context], Any],
    load_data: Callable[[Context], ClientData],
    client_update: Callable[[Context], ClientUpdate],
    *,
    load_eval_data: Callable[[Context], ClientData] | None = None,
    client_id: Callable[[Context], int] = partition_id,
    eval_batch_size: int = 256,
    secure_aggregation: bool = False,
) -> ClientApp:
    """A Flower ``ClientApp`` that trains and evaluates one fedmodel model.

    Every argument is a function of the node's ``flwr.app.Context`` (its ``node_config`` and the run's
    ``run_config``). ``train`` messages carry the global weights (see :mod:`fedmodel.integrations.flower`)
    and a config with ``server-round`` and ``seed``; the client checks names, shapes and dtypes against its
    model (:func:`fedmodel.assign_weights`, all or nothing), runs ``client_update(context)`` (e.g.
    ``fedmodel.algorithms.fedavg(...).client_update``) on ``load_data(context)`` with the seed
    ``client_seed(seed, server_round - 1, client_id(context))`` — the one the in-process simulation gives
    the client of that index — and replies with its new weights and a metric record holding
    ``num-examples``, ``partition-id`` and its unfinalized training report. ``evaluate`` messages reply with
    the report of ``forward_pass(training=False)`` over ``load_eval_data(context)`` (default: the training
    data). A malformed message gets an error reply with code :data:`REJECTED_MESSAGE` and leaves the model
    unchanged. Clients of different frameworks share one run when every side's factory returns
    ``fedmodel.layout.canonical(model)``: the weights then travel in canonical names and axes.

    Args:
        model_factory: returns a fresh model; called once per run in a ClientApp process.
        load_data: this node's training data (e.g. a partition chosen by ``context.node_config``).
        client_update: returns the algorithm's client piece, ``(model, backend, weights, data, seed) ->
            ClientResult``.
        load_eval_data: this node's evaluation data.
        client_id: the client's index (default: ``node_config["partition-id"]``).
        eval_batch_size: batch size of local evaluation.
        secure_aggregation: take part in Flower's SecAgg+ (``secaggplus_mod`` on ``train``) for a server running
            :class:`fedmodel.integrations.flower.SecAggPlusStrategy`: the client sends its masked change from the
            global weights (clipped for DP when the server asks), weight 1, and no training metrics; it refuses
            to send non-finite values or values beyond SecAgg+'s clipping range.

    >>> from fedmodel.reference import SoftmaxRegression
    >>> from fedmodel.algorithms import fedavg
    >>> from fedmodel.data import federated_digits
    >>> app = client_app(lambda ctx: SoftmaxRegression(64, 10),
    ...                  lambda ctx: federated_digits(3, alpha=None).clients[partition_id(ctx)],
    ...                  lambda ctx: fedavg(client_lr=0.5).client_update)
    >>> type(app).__name__
    'ClientApp'
    """
    app = ClientApp()
    cache: dict[int, tuple[Any, Backend]] = {}

    def model_of(context: Context) -> tuple[Any, Backend]:
        """The run's model and its backend (one model per run in a ClientApp process)."""
        if context.run_id not in cache:
            model = model_factory(context)
            cache.clear()
            cache[context.run_id] = (model, backend_for(model))
        return cache[context.run_id]

    def prepare(context: Context, content: RecordDict) -> tuple[Any, Backend, ModelWeights]:
        """The run's model, its backend, and the message's weights assigned to it (checked first)."""
        model, backend = model_of(context)
        weights = read_weights(content)
        assign_weights(model, weights, backend=backend)  # every name, shape and dtype checked, all or nothing
        return model, backend, weights

    def train(message: Message, context: Context) -> Message:
        try:
            server_round, seed = read_round_config(message.content)
            cid = client_id(context)
            model, backend, weights = prepare(context, message.content)
        except FedModelError as exc:
            return _reject(message, exc)
        update = client_update(context)
        result = update(model, backend, weights, load_data(context), client_seed(seed, server_round - 1, cid))
        content = RecordDict()
        write_weights(content, result.weights)
        metrics = {"num-examples": int(result.num_examples), "partition-id": cid, "num-steps": int(result.num_steps)}
        content[METRICS_KEY] = MetricRecord({**metrics, **flatten_report(result.metrics)})
        return Message(content, reply_to=message)

    if secure_aggregation:
        from flwr.client.mod import secaggplus_mod

        from fedmodel.integrations._flower_secagg import secure_train

        app.train(mods=[secaggplus_mod])(secure_train(model_of, load_data, client_update, client_id))
    else:
        app.train()(train)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        try:
            cid = client_id(context)
            model, backend, _ = prepare(context, message.content)
        except FedModelError as exc:
            return _reject(message, exc)
        data = (load_eval_data or load_data)(context)
        report = local_report(model, data, batch_size=eval_batch_size, backend=backend)
        content = RecordDict()
        content[METRICS_KEY] = MetricRecord({"num-examples": len(data), "partition-id": cid, **flatten_report(report)})
        return Message(content, reply_to=message)

    return app
