"""Clients in Ray actors (``SimulationConfig(executor="ray", workers=2)``) on a local ``ray.init(num_cpus=2)``:
the serial run's weights bit for bit, a raising client and a dying actor handled as in process."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import warnings
from collections.abc import Iterator
from dataclasses import replace

import pytest

from fedmodel import get_weights
from fedmodel._executors import chunk_size
from fedmodel.algorithms import fedavg
from fedmodel.data import federated_digits
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, SimulationResult, run_simulation
from tests.algorithms._parallel_helpers import faulty, mark

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray instance of two CPUs for this module; Ray's own start-up noise is not this project's."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    with _ray_noise_ignored():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        gc.collect()
    yield
    with _ray_noise_ignored():
        ray.shutdown()
        gc.collect()


@contextlib.contextmanager
def _ray_noise_ignored() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # Ray leaves /dev/null handles to its child processes
        # Ray starts its daemons with a preexec_fn, which runs the at-fork hooks: JAX's warns (when a test before
        # this one imported JAX), although each daemon execs at once
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        yield


def _bits(result: SimulationResult) -> list[bytes]:
    return [a.tobytes() for a in result.weights.arrays]


def test_ray_actors_give_the_serial_runs_weights_and_survive_a_raising_client_and_a_dying_actor(
    local_ray: None,
) -> None:
    data = federated_digits(num_clients=6, alpha=None, seed=0)
    factory = functools.partial(SoftmaxRegression, 64, 10, seed=0)
    clients = mark(data.clients, [2, 4])
    algorithm = fedavg(client_lr=0.5, batch_size=32)

    def run(faults: dict[int, str], **options: object) -> SimulationResult:
        broken = replace(algorithm, client_update=faulty(algorithm.client_update, faults))
        config = SimulationConfig(rounds=2, progress=False, **options)  # type: ignore[arg-type]
        return run_simulation(factory, clients, broken, config, test_data=data.test)

    on_ray = run({2: "exit", 4: "raise"}, executor="ray", workers=2)
    serial = run({2: "raise", 4: "raise"})

    assert _bits(on_ray) == _bits(serial)
    assert [r.train for r in on_ray.rounds] == [r.train for r in serial.rounds]
    assert [r.test for r in on_ray.rounds] == [r.test for r in serial.rounds]
    for got, same in zip(on_ray.rounds, serial.rounds, strict=True):
        reasons = {f.client_id: f.reason for f in got.failures}
        assert sorted(reasons) == [2, 4]
        assert "its Ray actor died" in reasons[2] and "replaces it" in reasons[2]
        assert reasons[4] == next(f.reason for f in same.failures if f.client_id == 4)
        assert reasons[4] == "RuntimeError: disk full"
    assert ray.is_initialized()  # the runner leaves the Ray instance it found to its owner


CHUNKED_FAULTS = {8: "exit", 10: "unpicklable", 14: "raise", 17: "unreadable", 20: "nan"}


def test_faults_inside_a_ray_call_of_several_clients_fail_only_their_client(local_ray: None) -> None:
    """24 clients on one actor go six per call. Client 8 kills the actor in the call of 6-11: Ray does not say
    which client did, so 6-11 run again one per call on a fresh actor (the calls behind them too) and only 8
    fails; 10's result cannot be pickled, which fails 10 alone, and 17's cannot be unpickled in the runner, which
    fails 17 alone. The weights and metrics are the serial run's."""
    data = federated_digits(num_clients=24, alpha=None, seed=2)
    factory = functools.partial(SoftmaxRegression, 64, 10, seed=0)
    model_bytes = sum(a.nbytes for a in get_weights(factory()).arrays)
    assert chunk_size(24, 1, model_bytes) == 6  # the premise: these faults fall inside calls of several clients
    clients = mark(data.clients, list(CHUNKED_FAULTS))
    algorithm = fedavg(client_lr=0.5, batch_size=32)

    def run(faults: dict[int, str], **options: object) -> SimulationResult:
        broken = replace(algorithm, client_update=faulty(algorithm.client_update, faults))
        config = SimulationConfig(rounds=2, progress=False, **options)  # type: ignore[arg-type]
        return run_simulation(factory, clients, broken, config)

    on_ray = run(CHUNKED_FAULTS, executor="ray", workers=1)
    only_on_ray = ("exit", "unpicklable", "unreadable")  # in process these simply raise
    serial = run({client: "raise" if fault in only_on_ray else fault for client, fault in CHUNKED_FAULTS.items()})
    assert _bits(on_ray) == _bits(serial)
    assert [r.train for r in on_ray.rounds] == [r.train for r in serial.rounds]
    for got, same in zip(on_ray.rounds, serial.rounds, strict=True):
        reasons = {f.client_id: f.reason for f in got.failures}
        assert sorted(reasons) == sorted(CHUNKED_FAULTS)
        assert "its Ray actor died" in reasons[8]
        assert "cannot be sent back" in reasons[10] and "lock" in reasons[10]
        assert reasons[14] == "RuntimeError: disk full"
        assert "could not be read back" in reasons[17] and "cannot be rebuilt here" in reasons[17]
        assert reasons[20] == next(f.reason for f in same.failures if f.client_id == 20)
