"""A smoke run of every benchmark at tiny size: each produces well-formed rows (the bars are not asserted here)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

import fedmodel
from benchmarks import __main__ as cli
from benchmarks import _backends, _flower_app, aggregation, fedavg_round, runner_memory, step, weights
from benchmarks._harness import SIZES, Result

TINY = SIZES["tiny"]
AVAILABLE = tuple(
    name for name in _backends.BACKENDS if name == "numpy" or importlib.util.find_spec(f"fedmodel_{name}") is not None
)


def _rows(rows: object) -> list[Result]:
    out = list(rows)  # type: ignore[call-overload]
    assert all(isinstance(r, Result) for r in out), [r for r in out if not isinstance(r, Result)]
    return out


def _well_formed(row: Result) -> None:
    assert row.candidate_s > 0 and row.baseline_s > 0 and math.isfinite(row.ratio)


@pytest.mark.parametrize("backend", AVAILABLE)
def test_weights_round_trip_runs_on_each_backend(backend: str) -> None:
    (row,) = _rows(weights.run(TINY, (backend,)))
    assert (row.bench, row.backend, row.bar) == ("weights round trip", backend, 1.5)
    _well_formed(row)


@pytest.mark.parametrize("backend", AVAILABLE)
def test_big_mlp_has_about_the_requested_number_of_parameters(backend: str) -> None:
    model = _backends.big_mlp(backend, 30_000)
    assert 0.9 * 30_000 <= fedmodel.get_weights(model).num_parameters <= 1.1 * 30_000


@pytest.mark.parametrize("backend", [b for b in AVAILABLE if b != "numpy"])
def test_native_steps_compute_the_same_loss_as_the_contract(backend: str, rng: np.random.Generator) -> None:
    x, y = rng.standard_normal((8, 64)).astype(np.float32), rng.integers(0, 10, 8).astype(np.int64)
    model = _backends.mlp(backend)
    contract_loss = float(np.asarray(model.forward_pass((x, y), training=False).loss))
    native_loss, _ = _backends.native_forward(backend, _backends.mlp(backend))(x, y)
    assert float(np.asarray(native_loss)) == pytest.approx(contract_loss, rel=1e-5)
    train_loss, _ = _backends.native_train_step(backend, _backends.mlp(backend), 0.1)(x, y)
    assert float(np.asarray(train_loss)) == pytest.approx(contract_loss, rel=1e-5)


@pytest.mark.parametrize("backend", AVAILABLE)
def test_step_benchmark_gives_forward_and_train_rows(backend: str) -> None:
    rows = [r for r in step.run(TINY, (backend,)) if isinstance(r, Result)]
    assert [r.bench for r in rows] == (
        ["forward_pass (eval)"] if backend == "numpy" else ["forward_pass (eval)", "train_step"]
    )
    for row in rows:
        _well_formed(row)


def test_aggregation_benchmark_gives_time_and_memory_rows() -> None:
    pytest.importorskip("flwr")
    rows = _rows(aggregation.run(TINY))
    assert [r.bench for r in rows] == [
        "validation + aggregation vs one np.add pass",
        "validation + aggregation vs flwr aggregate",
        "validation + aggregation vs flwr aggregate_arrayrecords",
        "ServerRound (FedAvg step included) vs one np.add pass",
        "validation + aggregation peak extra memory",
        "validation + aggregation vs one np.add pass",
    ]
    assert rows[0].bar == 1.5 and rows[4].unit == "models" and rows[5].bar is None
    assert rows[0].note.endswith(f"BLAS threads: {os.cpu_count()}")  # the bar's rows: BLAS on every core
    for row in rows:
        _well_formed(row)


def test_weighted_mean_peak_memory_does_not_grow_with_the_number_of_clients() -> None:
    few, many = aggregation.client_updates(2, 40_000), aggregation.client_updates(16, 40_000)
    peak_few = aggregation.peak_extra_bytes(lambda: aggregation.validate_and_aggregate(few))
    peak_many = aggregation.peak_extra_bytes(lambda: aggregation.validate_and_aggregate(many))
    assert peak_many < 1.2 * peak_few
    model = sum(a.nbytes for a in few[0][0].arrays)
    assert peak_many < 1.3 * model  # the accumulator, and a few blocks of scratch


def test_peak_extra_bytes_counts_a_temporary_numpy_buffer() -> None:
    peak = aggregation.peak_extra_bytes(lambda: np.ones(1_000_000, np.float64).sum())
    assert 8_000_000 <= peak < 8_500_000


def test_fedmodel_side_of_the_round_benchmark_runs_every_round() -> None:
    total, rounds = fedavg_round.run_fedmodel(num_clients=4, rounds=2)
    assert len(rounds) == 2 and all(r > 0 for r in rounds) and total >= sum(rounds)


def test_the_machines_ceiling_times_the_same_client_updates_in_one_and_in_two_processes() -> None:
    whole, split = fedavg_round.ceiling(4, 2, epochs=1, batch_size=32)
    assert whole > 0 and split > 0
    one = fedavg_round.client_updates(range(4), 4, 1, 1, 32, None)
    assert len(one) == 1 and one[0] > 0


def test_cpu_steal_reads_the_eighth_number_of_procs_cpu_line_and_its_share_between_two_readings(
    tmp_path: Path,
) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 20 800 3 0 2 70 9 0\ncpu0 50 2 10 400 1 0 1 35 4 0\n", encoding="ascii")
    before = fedavg_round.cpu_steal(str(stat))
    assert before == (70, 1000)  # user nice system idle iowait irq softirq steal; guest time is inside user
    stat.write_text("cpu  400 5 20 900 3 0 2 170 9 0\n", encoding="ascii")
    after = fedavg_round.cpu_steal(str(stat))
    assert after == (170, 1500)
    assert fedavg_round.steal_share(before, after) == pytest.approx(100 / 500)
    assert fedavg_round.steal_share(after, after) is None and fedavg_round.steal_share(None, after) is None
    assert fedavg_round.cpu_steal(str(tmp_path / "missing")) is None
    stat.write_text("intr 1 2 3\n", encoding="ascii")
    assert fedavg_round.cpu_steal(str(stat)) is None


def test_flower_client_app_trains_like_fedmodels_client() -> None:
    """The Flower ClientApp of bench 4 returns the weights fedmodel's own client computes, bit for bit."""
    pytest.importorskip("flwr")
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, Metadata, RecordDict

    from fedmodel.client import train_client
    from fedmodel.server import client_seed

    client, _ = _flower_app.make_apps(num_clients=4, rounds=1, stamps=[])
    server = fedmodel.get_weights(_flower_app.make_model())
    meta = Metadata(1, "m", 0, 1, "", "1", time.time(), 60.0, "train")
    content = RecordDict({"arrays": ArrayRecord(list(server.arrays)), "config": ConfigRecord({"server-round": 2})})
    context = Context(run_id=1, node_id=1, node_config={"partition-id": 3}, state=RecordDict(), run_config={})
    reply = client(Message(content=content, metadata=meta), context)
    expected = train_client(
        _flower_app.make_model(),
        server,
        _flower_app.client_partitions(4)[3],
        epochs=1,
        batch_size=32,
        optimizer=fedmodel.SGD(0.1),
        seed=client_seed(0, 1, 3),
    )
    assert reply.content["metrics"]["num-examples"] == expected.num_examples
    for got, want in zip(reply.content["arrays"].to_numpy_ndarrays(), expected.weights.arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_command_prints_machine_info_and_the_table() -> None:
    pytest.importorskip("flwr")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["--size", "tiny", "--only", "aggregation"]) == 0
    text = out.getvalue()
    assert "- cpus: " in text and "- numpy: " in text
    assert "| benchmark | backend | fedmodel | baseline | ratio | bar | verdict | note |" in text
    assert "6 rows, " in text  # the aggregation benchmark's six rows


def test_memory_benchmark_gives_one_row_per_larger_number_of_clients() -> None:
    rows = _rows(runner_memory.run(TINY))
    assert [r.note.split(",")[0] for r in rows] == ["K=4 vs K=2", "K=8 vs K=2"]
    assert all(r.bench == "runner peak memory" and r.unit == "MiB" and r.bar == 1.2 for r in rows)
    for row in rows:
        _well_formed(row)


def test_runner_peak_memory_is_flat_in_the_number_of_clients() -> None:
    """A runner that kept each client's result (or its data) would hold K models at K = 40; it holds a few."""
    features, classes = 256, 250  # 64,506 float32 parameters: 252 KiB
    model = 4 * (features * classes + classes + features)
    runner_memory.runner_peak_bytes(2, features, classes)  # warm-up
    few = runner_memory.runner_peak_bytes(4, features, classes)
    many = runner_memory.runner_peak_bytes(40, features, classes)
    assert 3 * model < few  # the server state, a client's result and the aggregator were counted
    assert many < 1.2 * few


def test_synthetic_clients_are_made_the_same_each_time_they_are_indexed() -> None:
    clients = runner_memory.SyntheticClients(3, 5, 4)
    first, again = clients[2], clients[2]
    np.testing.assert_array_equal(first.x, again.x)
    assert first.x.shape == (runner_memory.EXAMPLES, 5) and set(first.y) <= {0, 1, 2, 3}
    assert not np.array_equal(clients[1].x, first.x)


def test_flower_round_times_are_plain_floats() -> None:
    times = _flower_app.round_times([1.0, 1.5, 2.25])
    assert times == [0.5, 0.75] and all(type(t) is float for t in times)
