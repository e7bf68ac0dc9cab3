"""The clients of a round run in parallel workers; their results come back in client order.

``SimulationConfig(workers=N)`` runs clients in N worker processes on this machine
(:mod:`fedmodel._process_pool`), ``executor="ray"`` in N Ray actors (:mod:`fedmodel._ray_pool`); both are
a :class:`Pool`. :func:`ordered_replies` feeds a pool a round's tasks and yields each client's result in
the order of the tasks (the order the in-process runner uses), so the runner hands them to its one
:class:`fedmodel.server.ServerRound` exactly as it does in process, and the weights are bit-identical.

Tasks go to a worker in chunks of up to ``chunk`` clients (:func:`chunk_size`: several when the clients
are many and the model small, so that a worker answers them in one message and the runner wakes once per
chunk rather than once per client), and each worker has up to :data:`DEPTH` chunks queued, so it never
waits for the runner between clients. At most ``ahead`` tasks are out of order at once (queued, running,
or finished and waiting for an earlier client), so the runner holds a bounded number of results whatever
the number of clients. A client that overruns ``timeout`` (counted from when it starts) has its worker
stopped and replaced; a dead worker is replaced by its pool; both clients are reported as
:class:`~fedmodel._worker.Failed` with the reason, the other tasks the worker held (queued behind it, or
run before it with their results unsent) are given again, and the round goes on.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

from fedmodel._weights import ModelWeights
from fedmodel._worker import Failed, Finished, Setup, Task, pack_setup
from fedmodel.client import ClientResult

__all__ = [
    "AHEAD_PER_WORKER",
    "CHUNK_BYTES",
    "DEPTH",
    "EXECUTORS",
    "MAX_CHUNK",
    "MAX_CLIENT_TIMEOUT",
    "Pool",
    "check_options",
    "chunk_size",
    "open_pool",
    "ordered_replies",
    "tapered",
]

EXECUTORS = ("processes", "ray")
DEPTH = 2  # chunks queued on a worker: it starts the next one without waiting for the runner to read a result
AHEAD_PER_WORKER = 4  # chunks submitted per worker past the first client not yet handed back
MAX_CHUNK = 8  # clients per chunk at most: past that the runner's wake-ups are already few
CHUNK_BYTES = 16 << 20  # a chunk's results (one model each) held at once stay under this
MAX_CLIENT_TIMEOUT = 7 * 24 * 3600
"""The longest ``client_timeout``, in seconds (a week): a pool's wait past about 24 days overflows the OS's poll."""


class Pool(Protocol):
    """Workers that run :class:`~fedmodel._worker.Task` s, each in a slot ``0 .. size-1``; a worker runs the
    tasks given to it one at a time, in order, and :meth:`wait` reports them in that order."""

    times_tasks: bool
    """Whether :meth:`running` says which task of a chunk runs now and since when; a pool that cannot say gets
    one task per chunk when clients have a deadline (a chunk's later tasks would be timed from its start)."""

    def ready(self) -> list[int]:
        """The slots whose worker is set up (it may still be running tasks)."""
        ...

    def broadcast(self, weights: ModelWeights) -> None:
        """The global weights of the tasks submitted from now on (sent once per worker and round)."""
        ...

    def submit(self, slot: int, tasks: Sequence[Task]) -> None:
        """Queue a chunk of ``tasks`` on worker ``slot`` (run in order after its earlier ones)."""
        ...

    def running(self, slot: int) -> tuple[int, float] | None:
        """Which of worker ``slot``'s unanswered tasks runs now (its index among them, oldest 0) and since when
        (``time.monotonic()``), or, after it ended, is still being answered; ``None`` when none has started or the
        pool cannot tell (the caller then counts a task's time from when it saw the task reach the head of the
        queue)."""
        ...

    def wait(self, timeout: float | None) -> list[Finished]:
        """Tasks that ended within ``timeout`` seconds (``[]`` if none: e.g. only a worker became ready).

        A worker that died is reported for the task it was running (``restarted=True``: the tasks queued
        behind it are gone; ``lost``: how many before it lost their unsent results), or with ``reply=None`` when
        it had started none of its tasks, and replaced.

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


def chunk_size(clients: int, workers: int, model_bytes: int) -> int:
    """Clients per chunk: enough that each worker gets about :data:`DEPTH` x 2 chunks of the round, at most
    :data:`MAX_CHUNK`, and at most :data:`CHUNK_BYTES` of results (one model each) per chunk; at least 1.

    A chunk is answered in one message, so the runner wakes once per chunk: with many clients of a small model
    (a millisecond each) the wake-ups and hand-offs cost the runner as much CPU as a client; with a large
    model a client takes long enough that one per message costs nothing, and its results are large.
    """
    share = math.ceil(clients / max(1, workers * DEPTH * 2))
    return max(1, min(MAX_CHUNK, share, CHUNK_BYTES // max(1, model_bytes)))


def tapered(chunk: int, remaining: int, workers: int) -> int:
    """The size of the next chunk: ``chunk``, less as the round's end nears, so that the workers finish together.

    Each worker's queue holds at most :data:`DEPTH` chunks, which no other worker can take over; a chunk is at most
    the ``remaining`` clients (not yet given out) shared by the ``workers``' queues, so the work queued on a
    worker when the last clients go out is a few clients, not :data:`DEPTH` full chunks (guided self-scheduling,
    Polychronopoulos and Kuck 1987).

    >>> [tapered(8, r, 2) for r in (100, 32, 24, 12, 5, 4, 1)]
    [8, 8, 6, 3, 2, 1, 1]
    """
    return max(1, min(chunk, math.ceil(remaining / max(1, workers * DEPTH))))


@dataclass
class _Queued:
    """A task given to a worker: its position among the round's clients, and when it is due if it reached the
    head of its worker's queue (the deadline when the pool cannot tell when it started)."""

    position: int
    deadline: float = float("inf")


def _timed_out(timeout: float | None) -> Failed:
    return Failed(f"no result within client_timeout={timeout}s; its worker was stopped and replaced")


class _Slot:
    """What the runner has given one worker: its tasks in order (the oldest runs first) and the size of each
    chunk still unanswered, oldest first."""

    __slots__ = ("chunks", "tasks")

    def __init__(self) -> None:
        self.tasks: deque[_Queued] = deque()
        self.chunks: deque[int] = deque()

    def pop(self) -> _Queued:
        """The oldest task, now answered (or lost)."""
        self.chunks[0] -= 1
        if not self.chunks[0]:
            self.chunks.popleft()
        return self.tasks.popleft()

    def clear(self) -> list[int]:
        """Forget every task (its worker was replaced); their positions."""
        positions = [q.position for q in self.tasks]
        self.tasks.clear()
        self.chunks.clear()
        return positions


def ordered_replies(
    pool: Pool,
    weights: ModelWeights,
    clients: Sequence[int],
    task: Callable[[int], Task],
    *,
    timeout: float | None,
    ahead: int,
    chunk: int = 1,
) -> Generator[tuple[int, ClientResult | Failed], None, None]:
    """Run ``task(client)`` for each of ``clients`` from ``weights`` on ``pool``; yield ``(client, result or
    failure)`` in the order of ``clients``.

    Tasks go in chunks of up to ``chunk`` (one per chunk under a ``timeout`` when the pool cannot say which task
    of a chunk runs: :attr:`Pool.times_tasks`), each worker holding up to :data:`DEPTH` chunks; a task's
    ``timeout`` runs from when it starts (as the pool reports it, else from when it reached the head of its
    worker's queue). ``ahead`` bounds how far submission runs past the first client not yet yielded. Tasks
    lost with a dead or stopped worker are given again. If the caller stops early, the workers still holding
    tasks are replaced (their late results must not reach a later round).
    """
    pool.broadcast(weights)
    if timeout is not None and not pool.times_tasks:
        chunk = 1
    done: dict[int, ClientResult | Failed] = {}
    slots: dict[int, _Slot] = {}
    retry: list[int] = []  # positions whose task was lost with a dead or stopped worker, to give again
    submitted = handed = 0

    def next_position() -> int | None:
        nonlocal submitted
        if retry:
            return retry.pop(0)
        if submitted < min(len(clients), handed + ahead):
            submitted += 1
            return submitted - 1
        return None

    def start_head(slot: _Slot) -> None:
        if slot.tasks and timeout is not None:
            slot.tasks[0].deadline = time.monotonic() + timeout

    def due(number: int, slot: _Slot) -> tuple[int, float]:
        """The index of the task of worker ``number`` that runs now, and when it overruns."""
        if timeout is None:
            return 0, float("inf")
        running = pool.running(number)
        if running is not None and 0 <= running[0] < len(slot.tasks):
            return running[0], running[1] + timeout
        return 0, slot.tasks[0].deadline

    def give_again(positions: list[int]) -> None:
        nonlocal retry
        retry = sorted(retry + positions)

    try:
        while handed < len(clients):
            ready = pool.ready()
            for depth in range(1, DEPTH + 1):  # one chunk to every worker before a second to any
                for number in ready:
                    slot = slots.setdefault(number, _Slot())
                    if len(slot.chunks) >= depth:
                        continue
                    size = tapered(chunk, len(clients) - submitted + len(retry), len(ready))
                    positions: list[int] = []
                    while len(positions) < size and (position := next_position()) is not None:
                        positions.append(position)
                    if positions:
                        pool.submit(number, [task(clients[p]) for p in positions])
                        fresh = not slot.tasks
                        slot.tasks.extend(_Queued(p) for p in positions)
                        slot.chunks.append(len(positions))
                        if fresh:
                            start_head(slot)
            if handed in done:
                while handed in done:
                    yield clients[handed], done.pop(handed)
                    handed += 1
                continue
            first = min((due(number, slot)[1] for number, slot in slots.items() if slot.tasks), default=float("inf"))
            wait = None if first == float("inf") else max(0.0, first - time.monotonic())
            for finished in pool.wait(wait):
                slot = slots[finished.slot]
                give_again([slot.pop().position for _ in range(finished.lost)])
                if finished.reply is not None:
                    done[slot.pop().position] = finished.reply
                if finished.restarted:
                    give_again(slot.clear())
                start_head(slot)
            now = time.monotonic()
            for number, slot in slots.items():
                if not slot.tasks:
                    continue
                index, deadline = due(number, slot)
                if now >= deadline:
                    pool.replace(number)
                    late = slot.tasks[index].position
                    done[late] = _timed_out(timeout)
                    give_again([p for p in slot.clear() if p != late])
    finally:
        for number, slot in slots.items():
            if slot.tasks:
                pool.replace(number)
