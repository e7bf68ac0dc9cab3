"""Bench 4: simulated FedAvg rounds over many clients, fedmodel's in-process runner vs Flower's simulation engine.

Same model (fedmodel_torch's digits MLP 64-32-10), same data (scikit-learn's digits split IID over
``sizes.round_clients`` clients), same local update (one epoch, batch 32, SGD 0.1), all clients per round.
fedmodel: :func:`fedmodel.simulation.run_simulation` with :func:`fedmodel.algorithms.fedavg`. Flower:
``flwr.simulation.run_simulation`` (Ray backend, one CPU per client actor, as many actors as CPUs) with
Flower's own ``FedAvg`` strategy (see :mod:`benchmarks._flower_app`). Rows: the median steady-state
round (rounds after the first), and the whole run including start-up. Bar: ratio < 1 for the round.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

from benchmarks import _flower_app
from benchmarks._harness import Result, Sizes, UnavailableError

__all__ = ["BAR", "run", "run_fedmodel", "run_flower"]

BAR = 1.0


def _rounds(sizes: Sizes) -> int:
    return 2 if sizes.name == "tiny" else 4


def run_fedmodel(num_clients: int, rounds: int) -> tuple[float, list[float]]:
    """``(total seconds, seconds of each round)`` of fedmodel's in-process FedAvg."""
    from fedmodel.algorithms import fedavg
    from fedmodel.simulation import SimulationConfig, run_simulation

    start = time.perf_counter()
    clients = list(_flower_app.client_partitions(num_clients))
    algorithm = fedavg(
        epochs=_flower_app.EPOCHS, batch_size=_flower_app.BATCH_SIZE, client_lr=_flower_app.LEARNING_RATE
    )
    result = run_simulation(
        _flower_app.make_model,
        clients,
        algorithm,
        SimulationConfig(rounds=rounds, seed=_flower_app.SEED, progress=False),
    )
    return time.perf_counter() - start, [r.seconds for r in result.rounds]


def run_flower(num_clients: int, rounds: int) -> tuple[float, list[float]]:
    """``(total seconds, seconds of each round)`` of the same run under Flower's simulation engine."""
    try:
        import ray  # noqa: F401
        from flwr.simulation import run_simulation
    except ImportError as exc:
        raise UnavailableError(
            f"Flower's simulation engine needs Ray ({exc}); pip install 'flwr[simulation]==1.42.*'"
        ) from None
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    stamps: list[float] = []
    client, server = _flower_app.make_apps(num_clients, rounds, stamps)
    cpus = os.cpu_count() or 1
    config: Any = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False},
    }
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        logging.getLogger("flwr").setLevel(logging.WARNING)
        run_simulation(server_app=server, client_app=client, num_supernodes=num_clients, backend_config=config)
    total = time.perf_counter() - start
    if len(stamps) != rounds + 1:
        raise RuntimeError(f"the Flower run did not finish its {rounds} rounds ({len(stamps) - 1} timed)")
    return total, _flower_app.round_times(stamps)


def run(sizes: Sizes, backends: tuple[str, ...] = ()) -> Iterator[Result | tuple[str, str]]:
    """Rows: steady-state round time and whole-run time, fedmodel vs Flower."""
    if backends and "torch" not in backends:
        yield "round", "runs on the torch backend, which was not selected"
        return
    try:
        _flower_app.make_model()
    except ImportError as exc:
        yield "round", f"needs fedmodel_torch ({exc})"
        return
    rounds = _rounds(sizes)
    n = sizes.round_clients
    ours_total, ours_rounds = run_fedmodel(n, rounds)
    try:
        theirs_total, theirs_rounds = run_flower(n, rounds)
    except UnavailableError as exc:
        yield "flower", str(exc)
        return
    what = f"{n} clients, digits MLP, 1 local epoch, {rounds} rounds"
    yield Result(
        "FedAvg round (steady state)",
        "torch",
        statistics.median(ours_rounds[1:]),
        statistics.median(theirs_rounds[1:]),
        BAR,
        what + ", median of rounds 2+",
    )
    yield Result("FedAvg run incl. start-up", "torch", ours_total, theirs_total, None, what)
