"""The clients of a round run in parallel workers; their results come back in client order.

``SimulationConfig(workers=N)`` runs clients in N worker processes on this machine
(:mod:`fedmodel._process_pool`), ``executor="ray"`` in N Ray actors (:mod:`fedmodel._ray_pool`); both are
a :class:`Pool`. :func:`ordered_replies` feeds a pool a round's tasks and yields each client's result in
the order of the tasks (the order the in-process runner uses), so the runner hands them to its one
:class:`fedmodel.server.ServerRound` exactly as it does in process, and the weights are bit-identical.

At most ``ahead`` tasks are out of order at once (running, or finished and waiting for an earlier client),
so the runner holds a bounded number of results whatever the number of clients. A client that overruns
``timeout`` has its worker stopped and replaced; a dead worker is replaced by its pool; both clients are
reported as :class:`~fedmodel._worker.Failed` with the reason, and the round goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from typing import Protocol

from fedmodel._weights import ModelWeights
from fedmodel._worker import Failed, Finished, Setup, Task, pack_setup
from fedmodel.client import ClientResult

__all__ = ["AHEAD_PER_WORKER", "EXECUTORS", "Pool", "check_options", "open_pool", "ordered_replies"]

EXECUTORS = ("processes", "ray")
AHEAD_PER_WORKER = 2  # results a worker may run ahead of the first client not yet handed back


class Pool(Protocol):
    """Workers that run :class:`~fedmodel._worker.Task` s; each has a slot number ``0 .. size-1``."""

    def idle(self) -> list[int]:
        """The slots whose worker is set up and has no task."""
        ...

    def broadcast(self, weights: ModelWeights) -> None:
        """The global weights of the tasks submitted from now on (sent once per worker and round)."""
        ...

    def submit(self, slot: int, task: Task) -> None:
        """Start ``task`` on the idle worker ``slot``."""
        ...

    def wait(self, timeout: float | None) -> list[Finished]:
        """Tasks that ended within ``timeout`` seconds (``[]`` if none: e.g. only a worker became ready).

        A worker that died is reported for its task (a :class:`~fedmodel._worker.Failed` reply) and replaced.

        Raises:
            WorkerError: a worker could not be set up.
        """
        ...

    def replace(self, slot: int) -> None:
        """Stop worker ``slot`` whatever it is doing and start a fresh one in its place."""
        ...

    def close(self) -> None:
        """Stop every worker."""
        ...


def check_options(workers: int, executor: str) -> None:
    """Check ``SimulationConfig.workers`` and ``.executor`` before anything starts.

    Raises:
        ValueError: naming the option, what it must be and what it is.
    """
    if type(workers) is not int or workers < 0:
        raise ValueError(f"SimulationConfig.workers must be an int >= 0 (0: in this process), got {workers!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"SimulationConfig.executor must be one of {EXECUTORS}, got {executor!r}")
    if executor == "ray" and workers == 0:
        raise ValueError("SimulationConfig.executor='ray' runs clients in Ray actors: set workers >= 1 (their number)")


def open_pool(workers: int, executor: str, setup: Setup) -> Pool:
    """Start ``workers`` workers of ``executor`` (they set themselves up while the caller goes on).

    Raises:
        WorkerError: ``setup`` cannot be pickled (the message names the part).
        ImportError: ``executor="ray"`` without Ray installed (``pip install 'fedmodel[ray]'``).
    """
    check_options(workers, executor)
    if executor == "ray":
        from fedmodel._ray_pool import RayPool

        return RayPool(workers, setup)
    from fedmodel._process_pool import ProcessPool

    return ProcessPool(workers, pack_setup(setup))


def _timed_out(timeout: float | None) -> Failed:
    return Failed(f"no result within client_timeout={timeout}s; its worker was stopped and replaced")


def ordered_replies(
    pool: Pool,
    weights: ModelWeights,
    clients: Sequence[int],
    task: Callable[[int], Task],
    *,
    timeout: float | None,
    ahead: int,
) -> Generator[tuple[int, ClientResult | Failed], None, None]:
    """Run ``task(client)`` for each of ``clients`` from ``weights`` on ``pool``; yield ``(client, result or
    failure)`` in the order of ``clients``.

    ``ahead`` bounds how far submission runs past the first client not yet yielded. If the caller stops
    early, the workers still busy are replaced (their late results must not reach a later round).
    """
    pool.broadcast(weights)
    done: dict[int, ClientResult | Failed] = {}
    running: dict[int, tuple[int, float]] = {}  # slot -> (position in clients, deadline)
    submitted = handed = 0
    try:
        while handed < len(clients):
            for slot in pool.idle():
                if submitted >= min(len(clients), handed + ahead):
                    break
                pool.submit(slot, task(clients[submitted]))
                deadline = time.monotonic() + timeout if timeout is not None else float("inf")
                running[slot] = (submitted, deadline)
                submitted += 1
            if handed in done:
                while handed in done:
                    yield clients[handed], done.pop(handed)
                    handed += 1
                continue
            first_deadline = min((deadline for _, deadline in running.values()), default=float("inf"))
            wait = None if first_deadline == float("inf") else max(0.0, first_deadline - time.monotonic())
            for finished in pool.wait(wait):
                position, _ = running.pop(finished.slot)
                done[position] = finished.reply
            now = time.monotonic()
            for slot, (position, deadline) in list(running.items()):
                if now >= deadline:
                    del running[slot]
                    pool.replace(slot)
                    done[position] = _timed_out(timeout)
    finally:
        for slot in running:
            pool.replace(slot)
