"""A fedmodel model as a Flower ClientApp: training, evaluation, and rejection of malformed messages."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, Metadata, RecordDict

from fedmodel import ModelWeights, backend_for, get_weights
from fedmodel.algorithms import fedavg
from fedmodel.data import ClientData
from fedmodel.evaluation import local_report
from fedmodel.integrations.flower import (
    REJECTED_MESSAGE,
    client_app,
    partition_id,
    read_weights,
    unflatten_report,
    write_weights,
)
from fedmodel.reference import SoftmaxRegression
from fedmodel.server import client_seed

Wire = Callable[[RecordDict], RecordDict]
ALGORITHM = fedavg(client_lr=0.5, batch_size=8)


def partitions() -> list[ClientData]:
    rng = np.random.default_rng(3)
    return [
        ClientData(rng.random((20 + i, 64), dtype=np.float32), rng.integers(0, 10, 20 + i).astype(np.int64))
        for i in range(3)
    ]


def context(partition: int) -> Context:
    return Context(7, 500 + partition, {"partition-id": partition, "num-partitions": 3}, RecordDict(), {})


def instruction(content: RecordDict, message_type: str = "train", node: int = 501) -> Message:
    metadata = Metadata(7, "m-1", 1, node, "", "2", time.time(), 3600.0, message_type)
    return Message(content, metadata=metadata)


def train_content(weights: ModelWeights, server_round: int = 2, seed: int = 5) -> RecordDict:
    content = RecordDict({"config": ConfigRecord({"server-round": server_round, "seed": seed})})
    write_weights(content, weights)
    return content


@pytest.fixture
def model() -> SoftmaxRegression:
    return SoftmaxRegression(64, 10, seed=1)


@pytest.fixture
def app(model: SoftmaxRegression):  # type: ignore[no-untyped-def]
    data = partitions()
    return client_app(lambda ctx: model, lambda ctx: data[partition_id(ctx)], lambda ctx: ALGORITHM.client_update)


def test_train_reply_is_the_simulation_client_update_with_the_simulation_seed(app, wire: Wire) -> None:  # type: ignore[no-untyped-def]
    server = get_weights(SoftmaxRegression(64, 10, seed=9))
    reply = app(instruction(wire(train_content(server, server_round=2, seed=5))), context(1))
    assert reply.has_content(), reply.error if reply.has_error() else None
    content = wire(reply.content)
    reference = SoftmaxRegression(64, 10)
    expected = ALGORITHM.client_update(reference, backend_for(reference), server, partitions()[1], client_seed(5, 1, 1))
    got = read_weights(content)
    assert got.names == expected.weights.names
    for a, b in zip(got.arrays, expected.weights.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    metrics = content.metric_records["metrics"]
    assert metrics["num-examples"] == 21 and metrics["partition-id"] == 1 and metrics["num-steps"] == 3
    report = unflatten_report(metrics, expected.metrics)
    assert int(report["accuracy"][0]) == int(expected.metrics["accuracy"][0])
    assert float(report["loss"][0]) == pytest.approx(float(expected.metrics["loss"][0]), rel=1e-12)


def test_evaluate_reply_is_the_local_report_of_the_sent_weights(app, wire: Wire) -> None:  # type: ignore[no-untyped-def]
    server = get_weights(SoftmaxRegression(64, 10, seed=4))
    content = RecordDict()
    write_weights(content, server)
    reply = app(instruction(wire(content), "evaluate", node=500), context(0))
    metrics = wire(reply.content).metric_records["metrics"]
    reference = SoftmaxRegression(64, 10, seed=4)
    expected = local_report(reference, partitions()[0])
    report = unflatten_report(metrics, expected)
    assert metrics["num-examples"] == 20
    assert int(report["accuracy"][0]) == int(expected["accuracy"][0])
    assert float(report["loss"][0]) == pytest.approx(float(expected["loss"][0]), rel=1e-12)


def _wrong_shape(w: ModelWeights) -> ModelWeights:
    return w.with_arrays([np.zeros((64, 9), np.float32), *w.arrays[1:]])


def _wrong_dtype(w: ModelWeights) -> ModelWeights:
    return w.with_arrays([w.arrays[0].astype(np.float64), *w.arrays[1:]])


def _wrong_name(w: ModelWeights) -> ModelWeights:
    return ModelWeights(w.trainable, w.non_trainable, ("kernel", "offset"), w.non_trainable_names)


def _missing_variable(w: ModelWeights) -> ModelWeights:
    return ModelWeights(w.trainable[:1], w.non_trainable, ("kernel",), w.non_trainable_names)


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (_wrong_shape, r"'kernel'.*expected shape \(64, 10\), got \(64, 9\)"),
        (_wrong_dtype, "'kernel'.*expected dtype float32, got float64"),
        (_wrong_name, "expected the variable named 'bias', got 'offset'"),
        (_missing_variable, "the model has 2 variables, the weights have 1"),
    ],
    ids=["shape", "dtype", "name", "count"],
)
def test_mismatched_weights_get_an_error_reply_and_leave_the_model_unchanged(  # type: ignore[no-untyped-def]
    app, model: SoftmaxRegression, wire: Wire, corrupt: Callable[[ModelWeights], ModelWeights], match: str
) -> None:
    before = get_weights(model)
    sent = corrupt(get_weights(SoftmaxRegression(64, 10, seed=2)))
    for kind in ("train", "evaluate"):
        reply = app(instruction(wire(train_content(sent)), kind), context(0))
        assert reply.has_error() and reply.error.code == REJECTED_MESSAGE
        assert reply.error.reason.startswith("fedmodel rejected the message: ")
        assert re.search(match, reply.error.reason), reply.error.reason
    for a, b in zip(before.arrays, get_weights(model).arrays, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (RecordDict({"config": ConfigRecord({"server-round": 1, "seed": 0})}), "carries no fedmodel weights"),
        (None, "has no ConfigRecord 'config'"),
        ("round-0", r"'server-round'.*expected an integer >= 1, got 0"),
        ("seed-str", r"'seed'.*expected an integer >= 0, got 'x'"),
    ],
    ids=["no-weights", "no-config", "round-zero", "seed-not-int"],
)
def test_malformed_instructions_get_an_error_reply_naming_the_problem(  # type: ignore[no-untyped-def]
    app, model: SoftmaxRegression, wire: Wire, content: object, match: str
) -> None:
    before = get_weights(model)
    if not isinstance(content, RecordDict):
        good = train_content(get_weights(SoftmaxRegression(64, 10, seed=2)))
        if content is None:
            del good["config"]
        elif content == "round-0":
            good["config"] = ConfigRecord({"server-round": 0, "seed": 0})
        else:
            good["config"] = ConfigRecord({"server-round": 1, "seed": "x"})
        content = good
    reply = app(instruction(wire(content)), context(0))
    assert reply.has_error() and reply.error.code == REJECTED_MESSAGE
    assert re.search(match, reply.error.reason), reply.error.reason
    for a, b in zip(before.arrays, get_weights(model).arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_node_without_a_partition_id_is_told_how_to_start_one(app, wire: Wire) -> None:  # type: ignore[no-untyped-def]
    bare = Context(7, 9, {}, RecordDict(), {})
    reply = app(instruction(wire(train_content(get_weights(SoftmaxRegression(64, 10))))), bare)
    assert reply.has_error() and "partition-id" in reply.error.reason
