"""The clients of a round run in parallel workers; their results come back in client order.

``SimulationConfig(workers=N)`` runs clients in N worker processes on this machine
(:mod:`fedmodel._process_pool`), ``executor="ray"`` in N Ray actors (:mod:`fedmodel._ray_pool`); both are
a :class:`Pool`. :func:`ordered_replies` feeds a pool a round's tasks and yields each client's result in
the order of the tasks (the order the in-process runner uses), so the runner hands them to its one
:class:`fedmodel.server.ServerRound` exactly as it does in process, and the weights are bit-identical.

Each worker has up to :data:`DEPTH` tasks queued, so it never waits for the runner between clients. At
most ``ahead`` tasks are out of order at once (queued, running, or finished and waiting for an earlier
client), so the runner holds a bounded number of results whatever the number of clients. A client that
overruns ``timeout`` has its worker stopped and replaced; a dead worker is replaced by its pool; both clients
are reported as :class:`~fedmodel._worker.Failed` with the reason, the tasks that were queued behind them
are given again, and the round goes on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

from fedmodel._weights import ModelWeights
from fedmodel._worker import Failed, Finished, Setup, Task, pack_setup
from fedmodel.client import ClientResult

__all__ = ["AHEAD_PER_WORKER", "DEPTH", "EXECUTORS", "Pool", "check_options", "open_pool", "ordered_replies"]

EXECUTORS = ("processes", "ray")
DEPTH = 2  # tasks queued on a worker: it starts the next one without waiting for the runner to read a result
AHEAD_PER_WORKER = 4  # clients submitted per worker past the first one not yet handed back


class Pool(Protocol):
    """Workers that run :class:`~fedmodel._worker.Task` s, each in a slot ``0 .. size-1``; a worker runs the
    tasks given to it one at a time, in order, and :meth:`wait` reports them in that order."""

    def ready(self) -> list[int]:
        """The slots whose worker is set up (it may still be running tasks)."""
        ...

    def broadcast(self, weights: ModelWeights) -> None:
        """The global weights of the tasks submitted from now on (sent once per worker and round)."""
        ...

    def submit(self, slot: int, task: Task) -> None:
        """Queue ``task`` on worker ``slot``."""
        ...

    def wait(self, timeout: float | None) -> list[Finished]:
        """Tasks that ended within ``timeout`` seconds (``[]`` if none: e.g. only a worker became ready).

        A worker that died is reported for the task it was running (``restarted=True``: the tasks queued
        behind it are gone) and replaced.

        Raises:
            WorkerError: a worker could not be set up.
        """
        ...

    def replace(self, slot: int) -> None:
        """Stop worker ``slot`` whatever it is doing (its queued tasks are dropped) and start a fresh one."""
        ...

    def close(self) -> None:
        """Stop every worker."""
        ...


def check_options(workers: int, executor: str, threads_per_worker: int | None = None) -> None:
    """Check ``SimulationConfig.workers``, ``.executor`` and ``.threads_per_worker`` before anything starts.

    Raises:
        ValueError: naming the option, what it must be and what it is.
    """
    if type(workers) is not int or workers < 0:
        raise ValueError(f"SimulationConfig.workers must be an int >= 0 (0: in this process), got {workers!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"SimulationConfig.executor must be one of {EXECUTORS}, got {executor!r}")
    if executor == "ray" and workers == 0:
        raise ValueError("SimulationConfig.executor='ray' runs clients in Ray actors: set workers >= 1 (their number)")
    if threads_per_worker is not None and (type(threads_per_worker) is not int or threads_per_worker < 1):
        raise ValueError(f"SimulationConfig.threads_per_worker must be an int >= 1 or None, got {threads_per_worker!r}")


def open_pool(workers: int, executor: str, setup: Setup, threads_per_worker: int | None = None) -> Pool:
    """Start ``workers`` workers of ``executor`` (they set themselves up while the caller goes on).

    Worker processes cap their math libraries' thread pools (see :func:`fedmodel._process_pool.limit_threads`):
    ``threads_per_worker``, by default the CPUs shared out among the workers. Ray actors get Ray's own cap
    (``OMP_NUM_THREADS`` = the actor's one CPU).

    Raises:
        WorkerError: ``setup`` cannot be pickled (the message names the part).
        ImportError: ``executor="ray"`` without Ray installed (``pip install 'fedmodel[ray]'``).
    """
    check_options(workers, executor, threads_per_worker)
    if executor == "ray":
        from fedmodel._ray_pool import RayPool

        return RayPool(workers, setup)
    from fedmodel._process_pool import ProcessPool

    return ProcessPool(workers, pack_setup(setup), threads_per_worker)


@dataclass
class _Queued:
    """A task given to a worker: its position among the round's clients, and its deadline once it runs."""

    position: int
    deadline: float = float("inf")


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

    Each worker gets up to :data:`DEPTH` tasks at once; a task's ``timeout`` runs from when it reaches the
    head of its worker's queue. ``ahead`` bounds how far submission runs past the first client not yet
    yielded. Tasks lost behind a dead or stopped worker are given again. If the caller stops early, the
    workers still holding tasks are replaced (their late results must not reach a later round).
    """
    pool.broadcast(weights)
    done: dict[int, ClientResult | Failed] = {}
    queues: dict[int, deque[_Queued]] = {}  # each worker's tasks, the running one first
    retry: list[int] = []  # positions whose task was lost behind a dead or stopped worker, to give again
    submitted = handed = 0

    def next_position() -> int | None:
        nonlocal submitted
        if retry:
            return retry.pop(0)
        if submitted < min(len(clients), handed + ahead):
            submitted += 1
            return submitted - 1
        return None

    def start_head(queue: deque[_Queued]) -> None:
        if queue and timeout is not None:
            queue[0].deadline = time.monotonic() + timeout

    try:
        while handed < len(clients):
            for depth in range(1, DEPTH + 1):  # one task to every worker before a second to any
                for slot in pool.ready():
                    queue = queues.setdefault(slot, deque())
                    if len(queue) < depth and (position := next_position()) is not None:
                        pool.submit(slot, task(clients[position]))
                        queue.append(_Queued(position))
                        if len(queue) == 1:
                            start_head(queue)
            if handed in done:
                while handed in done:
                    yield clients[handed], done.pop(handed)
                    handed += 1
                continue
            first = min((q[0].deadline for q in queues.values() if q), default=float("inf"))
            wait = None if first == float("inf") else max(0.0, first - time.monotonic())
            for finished in pool.wait(wait):
                queue = queues[finished.slot]
                done[queue.popleft().position] = finished.reply
                if finished.restarted:
                    retry = sorted(retry + [q.position for q in queue])
                    queue.clear()
                start_head(queue)
            now = time.monotonic()
            for slot, queue in queues.items():
                if queue and now >= queue[0].deadline:
                    pool.replace(slot)
                    done[queue.popleft().position] = _timed_out(timeout)
                    retry = sorted(retry + [q.position for q in queue])
                    queue.clear()
    finally:
        for slot, queue in queues.items():
            if queue:
                pool.replace(slot)
