"""Clients in worker processes (``SimulationConfig(workers=2)``): the serial run's weights bit for bit, faults
handled as in process, lazy clients loaded only in the workers, bad options refused before anything starts."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fedmodel import _executors, backend_for, get_weights
from fedmodel._executors import chunk_size
from fedmodel._worker import ClientWorker, Setup
from fedmodel.algorithms import fedadam, fedavg
from fedmodel.data import ClientData, FederatedData, federated_digits, pool_clients
from fedmodel.optimizers import SGD, Adam, OptimizerSpec
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import RoundResult, SimulationConfig, SimulationResult, WorkerError, run_simulation
from tests.algorithms._parallel_helpers import (
    CountingClients,
    faulty,
    logged_softmax,
    mark,
    pid_logged,
    softmax_outside_workers,
    threads_softmax,
)

NUM_CLIENTS = 8


@pytest.fixture(scope="module")
def digits() -> FederatedData:
    return federated_digits(num_clients=NUM_CLIENTS, alpha=0.5, seed=1)


@pytest.fixture(scope="module")
def uneven() -> FederatedData:
    """Client 0 holds six times the examples of each other client: it finishes last in a worker, so a runner
    that folded results in the order they arrive would sum them in another order than the serial run."""
    data = federated_digits(num_clients=12, alpha=None, seed=1)
    return FederatedData([pool_clients(data.clients[:6]), *data.clients[6:]], data.test)


def _softmax() -> SoftmaxRegression:
    return SoftmaxRegression(64, 10, seed=0)


def _run(factory: Any, clients: Any, algorithm: Any, test: ClientData | None = None, **config: Any) -> SimulationResult:
    return run_simulation(factory, clients, algorithm, SimulationConfig(progress=False, **config), test_data=test)


def _bits(result: SimulationResult) -> list[bytes]:
    return [a.tobytes() for a in result.weights.arrays]


def _rounds(result: SimulationResult) -> list[tuple[Any, ...]]:
    """Everything a round reports except its duration."""
    return [(r.round, r.clients, r.train, r.test, r.failures, r.metrics_failures, r.problem) for r in result.rounds]


def _builders(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()]


@pytest.mark.parametrize("kinds", [1, 2], ids=["one model kind", "two model kinds"])
def test_two_workers_give_the_serial_runs_weights_and_metrics_bit_for_bit(
    uneven: FederatedData, tmp_path: Path, kinds: int
) -> None:
    algorithm = fedadam(server_lr=0.05, client_lr=0.3, batch_size=16)  # a server state beyond the weights
    options = {"rounds": 3, "clients_per_round": 6, "seed": 5}
    digits = uneven

    def factories(log: Path) -> Any:
        factory = functools.partial(logged_softmax, str(log))
        return factory if kinds == 1 else {"a": factory, "b": factory}

    serial = _run(factories(tmp_path / "serial"), digits.clients, algorithm, digits.test, **options)
    log = tmp_path / "parallel"
    parallel = _run(factories(log), digits.clients, algorithm, digits.test, workers=2, **options)

    assert _bits(parallel) == _bits(serial)
    assert [a.tobytes() for a in parallel.state.optimizer_state.v] == [
        a.tobytes() for a in serial.state.optimizer_state.v
    ]
    assert _rounds(parallel) == _rounds(serial)
    assert serial.rounds[-1].test["accuracy"] > 0.5
    # each process built each kind's model once: the runner's own, then one per worker, kept for 3 rounds
    builders = _builders(log)
    assert len(builders) == 3 * kinds and len(set(builders)) == 3
    assert all(builders.count(pid) == kinds for pid in builders)


def test_two_workers_train_a_torch_model_bit_for_bit(uneven: FederatedData) -> None:
    torch_models = pytest.importorskip("fedmodel_torch").models
    factory = functools.partial(torch_models.mlp, num_features=64, hidden=(16,), num_classes=10, seed=0)
    algorithm = fedavg(client_lr=0.1, batch_size=16)
    clients = uneven.clients[:5]
    serial = _run(factory, clients, algorithm, uneven.test, rounds=2)
    parallel = _run(factory, clients, algorithm, uneven.test, rounds=2, workers=2)
    assert _bits(parallel) == _bits(serial)
    assert _rounds(parallel) == _rounds(serial)


@pytest.mark.parametrize(
    "optimizer", [SGD(0.1), SGD(0.1, momentum=0.9), Adam(0.01)], ids=["plain-sgd", "momentum", "adam"]
)
def test_a_fresh_torch_worker_is_warm_before_its_first_client_so_a_short_timeout_fails_nobody(
    digits: FederatedData, optimizer: OptimizerSpec
) -> None:
    """torch imports its compiler (over a second here) when a process makes its first ``torch.optim`` optimizer: a
    worker that left that to its first client lost every client to a 0.8 s timeout, each timeout starting a cold
    worker. A plain SGD never builds one (the torch backend steps it itself), so the others must be warm too."""
    torch_models = pytest.importorskip("fedmodel_torch").models
    factory = functools.partial(torch_models.mlp, num_features=64, hidden=(16,), num_classes=10, seed=0)
    algorithm = fedavg(optimizer=optimizer)
    result = _run(factory, digits.clients, algorithm, rounds=2, workers=2, client_timeout=0.8)
    assert [r.failures for r in result.rounds] == [(), ()]
    assert [r.num_ok for r in result.rounds] == [NUM_CLIENTS, NUM_CLIENTS]


class _PoolNotStartedError(Exception):
    """Raised by a stand-in for ``open_pool`` once it has seen the workers' setup."""


@pytest.mark.parametrize(("timeout", "warm"), [(None, False), (30.0, True)], ids=["no deadline", "a deadline"])
def test_models_are_warmed_only_for_clients_with_a_deadline(
    digits: FederatedData, monkeypatch: pytest.MonkeyPatch, timeout: float | None, warm: bool
) -> None:
    """The warm-up optimizer (momentum, so that torch builds its own) is made only when clients have a deadline: it
    cost every worker a second of start-up (torch's compiler import), which without a deadline falls once on the
    first client that needs it, and never on a plain SGD's. In process, in a worker, and in what the runner sends
    its workers."""
    warm_ups: list[OptimizerSpec] = []
    backend_class = type(backend_for(_softmax()))
    make = backend_class.make_optimizer

    def spy(self: Any, model: Any, spec: OptimizerSpec) -> Any:
        if isinstance(spec, SGD) and spec.momentum:  # the clients below use plain SGD: only a warm-up has momentum
            warm_ups.append(spec)
        return make(self, model, spec)

    monkeypatch.setattr(backend_class, "make_optimizer", spy)
    algorithm = fedavg(client_lr=0.1)
    clients = digits.clients[:2]

    _run(_softmax, clients, algorithm, rounds=1, client_timeout=timeout)  # in process: the runner's model trains
    assert len(warm_ups) == warm

    warm_ups.clear()
    ClientWorker(Setup({"model": _softmax}, algorithm, clients, warm=warm))
    assert len(warm_ups) == warm

    sent: list[Setup] = []

    def open_pool(workers: int, executor: str, setup: Setup, threads: int | None = None) -> Any:
        sent.append(setup)
        raise _PoolNotStartedError

    monkeypatch.setattr(_executors, "open_pool", open_pool)
    with pytest.raises(_PoolNotStartedError):
        _run(_softmax, clients, algorithm, rounds=1, workers=2, client_timeout=timeout)
    assert [setup.warm for setup in sent] == [warm]


FAULTS = {1: "raise", 2: "exit", 3: "hang", 4: "unpicklable", 5: "nan", 6: "write_server"}


def _faulty_runs(
    data: FederatedData, faults: dict[int, str], workers: int
) -> tuple[SimulationResult, SimulationResult]:
    """Two rounds with clients that misbehave as ``faults`` says (:func:`faulty`), on ``workers`` workers and in
    process, where the faults that only a worker process can have (a death, a hang, a result that cannot be
    pickled) simply raise."""
    clients = mark(data.clients, list(faults))
    algorithm = fedavg(client_lr=0.5, batch_size=32)

    def broken(said: dict[int, str]) -> Any:
        return replace(algorithm, client_update=faulty(algorithm.client_update, said))

    parallel = _run(_softmax, clients, broken(faults), data.test, rounds=2, workers=workers, client_timeout=1.0)
    only_in_workers = ("exit", "hang", "unpicklable", "unreadable")
    in_process = {client: "raise" if fault in only_in_workers else fault for client, fault in faults.items()}
    return parallel, _run(_softmax, clients, broken(in_process), data.test, rounds=2)


def test_failing_clients_and_dying_workers_are_dropped_replaced_and_the_run_goes_on(digits: FederatedData) -> None:
    parallel, serial = _faulty_runs(digits, FAULTS, workers=2)
    assert _bits(parallel) == _bits(serial)
    assert [r.train for r in parallel.rounds] == [r.train for r in serial.rounds]
    assert parallel.rounds[-1].test["accuracy"] > 0.3  # two healthy clients of eight, label-skewed: it learned
    for got, same in zip(parallel.rounds, serial.rounds, strict=True):
        reasons = {f.client_id: f.reason for f in got.failures}
        assert sorted(reasons) == sorted(FAULTS)
        assert "its worker process died (exit code 3)" in reasons[2]
        assert "client_timeout=1.0s" in reasons[3] and "replaced" in reasons[3]
        assert "cannot be sent back" in reasons[4] and "lock" in reasons[4]
        # the failures that happen the same way in process are reported in the same words
        assert {k: reasons[k] for k in (1, 5, 6)} == {
            f.client_id: f.reason for f in same.failures if f.client_id in (1, 5, 6)
        }
    assert "read-only" in reasons[6]  # the server's weights are read-only in a worker too


def test_a_worker_killed_between_rounds_fails_no_client(digits: FederatedData, tmp_path: Path) -> None:
    """The OOM killer (here SIGKILL) takes an idle worker between rounds: the next round's clients it was given
    run on the fresh worker, and none is reported for a death it did not cause. (The worker killed is one that ran
    clients in round 1, so it was set up: a worker killed while starting is a setup failure, a WorkerError.)"""
    algorithm = fedavg(client_lr=0.5, batch_size=32)
    serial = _run(_softmax, digits.clients, algorithm, rounds=3)
    log = tmp_path / "pids"

    def kill_a_worker_after_round_one(result: RoundResult) -> None:
        if result.round == 1:
            pid = int(log.read_text().split()[0])
            worker = next(p for p in multiprocessing.active_children() if p.pid == pid)
            os.kill(pid, signal.SIGKILL)
            worker.join(10)

    config = SimulationConfig(progress=False, rounds=3, workers=2)
    logged = replace(algorithm, client_update=pid_logged(algorithm.client_update, str(log)))
    parallel = run_simulation(_softmax, digits.clients, logged, config, on_round=kill_a_worker_after_round_one)
    assert [r.failures for r in parallel.rounds] == [(), (), ()]
    assert _bits(parallel) == _bits(serial)


def test_lazy_clients_are_loaded_in_the_workers_never_in_the_runners_process(digits: FederatedData) -> None:
    serial_clients, parallel_clients = CountingClients(digits.clients), CountingClients(digits.clients)
    algorithm = fedavg(client_lr=0.5, batch_size=32)
    serial = _run(_softmax, serial_clients, algorithm, rounds=2)
    parallel = _run(_softmax, parallel_clients, algorithm, rounds=2, workers=2)
    assert _bits(parallel) == _bits(serial)
    assert serial_clients.loads == 2 * NUM_CLIENTS
    assert parallel_clients.loads == 0


def test_a_serial_run_resumed_on_workers_ends_with_the_uninterrupted_runs_weights(
    uneven: FederatedData, tmp_path: Path
) -> None:
    """The number of workers decides nothing in the result, so a checkpoint resumes under any of them."""
    algorithm = fedadam(server_lr=0.05, client_lr=0.3, batch_size=16)
    whole = _run(_softmax, uneven.clients, algorithm, rounds=4, seed=3)
    path = tmp_path / "run.safetensors"
    _run(_softmax, uneven.clients, algorithm, rounds=2, seed=3, checkpoint_path=path)
    resumed = _run(_softmax, uneven.clients, algorithm, rounds=4, seed=3, checkpoint_path=path, resume=True, workers=2)
    assert [r.round for r in resumed.rounds] == [3, 4]
    assert _bits(resumed) == _bits(whole)


def test_the_readme_example_runs_as_written(readme_blocks: Callable[[str], list[str]]) -> None:
    """The README's parallel example asserts the bit-identity itself; here it runs as a script would."""
    (block,) = [b for b in readme_blocks("Federated training") if "workers=2" in b]
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["parallel"].rounds[-1].test["accuracy"] > 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": -1}, "workers must be an int >= 0"),
        ({"workers": 1.5}, "workers must be an int >= 0"),
        ({"workers": 2, "executor": "threads"}, "executor must be one of"),
        ({"executor": "ray"}, "set workers >= 1"),
        ({"workers": 2, "threads_per_worker": 0}, "threads_per_worker must be an int >= 1 or None"),
        ({"workers": 2, "threads_per_worker": 1.0}, "threads_per_worker must be an int >= 1 or None"),
    ],
)
def test_bad_worker_options_are_refused_before_anything_starts(
    digits: FederatedData, options: dict[str, Any], message: str
) -> None:
    def factory() -> SoftmaxRegression:
        raise AssertionError("no model may be built")

    with pytest.raises(ValueError, match=message):
        _run(factory, digits.clients, fedavg(), **options)


def test_a_setup_that_cannot_be_pickled_is_refused_naming_the_part(digits: FederatedData) -> None:
    lock = threading.Lock()

    def factory() -> SoftmaxRegression:
        with lock:
            return _softmax()

    with pytest.raises(WorkerError, match=r"the model factory pickled.*lock"):
        _run(factory, digits.clients, fedavg(), workers=2)


def test_a_worker_whose_setup_fails_raises_with_the_workers_reason(digits: FederatedData) -> None:
    with pytest.raises(WorkerError, match="could not be set up: RuntimeError: no GPU in this worker"):
        _run(softmax_outside_workers, digits.clients, fedavg(), workers=1)


@pytest.mark.parametrize(
    ("parent", "threads", "expected"),
    [
        (None, 3, "3 3 1 -"),  # asked for: the same cap everywhere
        (None, 1, "1 1 1 --xla_cpu_multi_thread_eigen=false"),
        (None, None, "{shared} {shared} 1 {xla}"),  # the CPUs shared out between the two workers
        ("5", None, "5 - - -"),  # the user's own cap is kept
    ],
    ids=["asked for", "one thread", "shared out", "the user's cap"],
)
def test_worker_processes_cap_their_math_threads(
    digits: FederatedData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parent: str | None,
    threads: int | None,
    expected: str,
) -> None:
    """Without a cap each worker starts one math thread per CPU: two workers on two CPUs ran a round 4-6x slower
    than one process."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTEROP_THREADS", "XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    if parent is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", parent)
    shared = max(1, (os.cpu_count() or 1) // 2)
    expected = expected.format(shared=shared, xla="--xla_cpu_multi_thread_eigen=false" if shared == 1 else "-")
    log = tmp_path / "caps.log"
    factory = functools.partial(threads_softmax, str(log))
    _run(factory, digits.clients, fedavg(), rounds=1, workers=2, threads_per_worker=threads)
    lines = log.read_text().splitlines()
    assert len(lines) >= 2 and set(lines) == {expected}  # every worker's every model


CHUNKED_FAULTS = {3: "hang", 13: "exit", 18: "unpicklable", 20: "raise", 22: "unreadable", 25: "nan"}


def test_faults_inside_chunks_fail_only_their_client_and_the_chunks_other_clients_are_given_again() -> None:
    """32 clients on one worker go in chunks of 8 (each answered in one message): client 3 hangs after 0-2 ran
    (their results die with the stopped worker); then 0-2 and 4-8 go again as one chunk, and 9-16 as the next,
    where 13 kills its worker after 9-12 ran; 22's result reaches the runner but cannot be unpickled there, which
    fails 22 alone. The run still equals the serial one. (One worker: with two, which worker gets which chunk
    depends on which is set up first.)"""
    data = federated_digits(num_clients=32, alpha=None, seed=2)
    model_bytes = sum(a.nbytes for a in get_weights(_softmax()).arrays)
    assert chunk_size(32, 1, model_bytes) == 8  # the premise: these faults fall inside chunks
    parallel, serial = _faulty_runs(data, CHUNKED_FAULTS, workers=1)
    assert _bits(parallel) == _bits(serial)
    assert [r.train for r in parallel.rounds] == [r.train for r in serial.rounds]
    for got in parallel.rounds:
        reasons = {f.client_id: f.reason for f in got.failures}
        assert sorted(reasons) == sorted(CHUNKED_FAULTS)
        assert "client_timeout=1.0s" in reasons[3]
        assert "its worker process died (exit code 3)" in reasons[13]
        assert "cannot be sent back" in reasons[18]
        assert "could not be read back" in reasons[22] and "cannot be rebuilt here" in reasons[22]


def test_a_pool_starts_every_worker_before_it_sends_any_setup_so_they_get_ready_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A setup larger than a pipe's buffer is read only once the worker's interpreter has started: sent right after
    each start, it made worker k wait for worker k-1's start-up (1.5 s apart here), and short runs ran on one."""
    import multiprocessing
    import time

    import numpy as np

    from fedmodel import _process_pool
    from fedmodel._worker import Setup, pack_setup

    started_at_send: list[list[str]] = []  # the pool's processes alive at each send
    send = _process_pool._Worker.send_setup

    def recording(self: Any, packed: bytes) -> None:
        started_at_send.append(
            sorted(p.name for p in multiprocessing.active_children() if p.name.startswith("fedmodel-"))
        )
        send(self, packed)

    monkeypatch.setattr(_process_pool._Worker, "send_setup", recording)
    rng = np.random.default_rng(0)
    clients = [ClientData(rng.standard_normal((4096, 64)).astype(np.float32), np.zeros(4096, np.int64))]
    packed = pack_setup(Setup({"model": _softmax}, fedavg(client_lr=0.1), clients))
    assert len(packed) > 1 << 20  # far more than a pipe holds
    pool = _process_pool.ProcessPool(2, packed, threads_per_worker=1)
    try:
        both = ["fedmodel-worker-0", "fedmodel-worker-1"]
        assert started_at_send == [both, both]
        deadline = time.monotonic() + 120
        while len(pool.ready()) < 2 and time.monotonic() < deadline:
            pool.wait(1.0)
        assert pool.ready() == [0, 1]
    finally:
        pool.close()
