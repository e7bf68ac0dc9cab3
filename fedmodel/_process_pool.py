"""Worker processes of the simulation runner (``SimulationConfig(workers=N)``), on this machine.

Each worker is a process started with the ``spawn`` method (a fresh interpreter: no forked framework
threads, the same on Linux, macOS and Windows) and talks to the runner over one pipe. It receives its
:class:`~fedmodel._worker.Setup` once (cloudpickled bytes, over the pipe once every worker has started, so that
they start up side by side), answers ``ready``, then for each round the
global weights once and then chunks of :class:`~fedmodel._worker.Task` s (up to two queued, so that it
never waits for the runner between clients); it answers each chunk in one message, a
:class:`~fedmodel.client.ClientResult` or a :class:`~fedmodel._worker.Failed` reason per task, in order.
Everything that crosses the pipe is pickled: it comes from the user's own processes, never from another
party.

Each worker also writes its progress to a few numbers in shared memory, which cost the runner no wake-up:
how many tasks it has started and finished, and when the latest started (``time.monotonic()``, one clock
for every process of the machine). From them the runner knows which task of a chunk runs now, for its
timeout, and which one was running when a worker died, so that the death is blamed on that client alone
and the tasks whose results died with it are given again.

A worker that dies (its sentinel fires, or its pipe closes) is reported for the client it started last and
replaced by a fresh one; one that dies before it started any of its tasks is no client's fault, and its tasks are
given again (:data:`MAX_IDLE_DEATHS` such deaths in a row stop the run). :meth:`ProcessPool.replace` stops a
worker whose client overran its time (``kill``) and starts another. A worker whose setup fails raises
:class:`~fedmodel._worker.WorkerError` in the runner.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from fedmodel._weights import ModelWeights
from fedmodel._worker import (
    ClientWorker,
    Failed,
    Finished,
    Task,
    WorkerError,
    pack_replies,
    read_only,
    setup_failure,
    unpack_replies,
    unpack_setup,
)
from fedmodel.client import ClientResult

__all__ = ["MAX_IDLE_DEATHS", "ProcessPool", "limit_threads"]

_STOP_SECONDS = 5.0  # how long an idle worker gets to exit after its pipe closes, before it is killed
MAX_IDLE_DEATHS = 3
"""Worker deaths in a row, each before the worker started any task it held, after which the run stops: one such
death is no client's fault (its tasks run again on a fresh worker), but workers that keep dying that way would
have their tasks given again without end."""


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def limit_threads(threads: int | None, workers: int) -> None:
    """Cap the math libraries' thread pools of this process, before any framework is imported.

    ``threads``: the pool size; ``None``: ``os.cpu_count() // workers`` (at least 1), and a cap the user set
    (``OMP_NUM_THREADS`` in the environment) is kept. Sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS`` and ``TF_NUM_INTRAOP_THREADS`` (TensorFlow's inter-op pool to 1), and for one
    thread turns off XLA's multi-threaded Eigen (unless ``XLA_FLAGS`` is set).
    """
    if threads is None:
        if "OMP_NUM_THREADS" in os.environ:
            return
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    values = dict.fromkeys(_THREAD_VARIABLES, str(threads))
    values["TF_NUM_INTEROP_THREADS"] = "1"
    if threads == 1 and "XLA_FLAGS" not in os.environ:
        values["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    os.environ.update(values)


class Progress:
    """A worker's progress in shared memory: tasks started, tasks finished, when the latest started.

    Only the worker writes it, the runner reads it; no lock (a worker killed while holding one would hang the
    runner). A start is written as ``-started`` first, then its time, then ``started``: a reading that sees a
    negative count, or a count that changed while it read, reads again, so it never pairs one task's count
    with another's time; a worker that died in the middle of a write leaves ``-started``, read as that task
    started just now.
    """

    __slots__ = ("_values",)

    def __init__(self, context: Any) -> None:
        self._values: Any = context.RawArray("d", 3)  # started, finished, start time of the latest started

    def start(self, started: int) -> None:
        """In the worker: task number ``started`` (counting from 1) starts now."""
        values = self._values
        values[0] = -float(started)
        values[2] = time.monotonic()
        values[0] = float(started)

    def finish(self, finished: int) -> None:
        """In the worker: ``finished`` tasks have ended."""
        self._values[1] = float(finished)

    def read(self) -> tuple[int, int, float]:
        """``(started, finished, start time of the latest started)``, one consistent reading."""
        values = self._values
        for _ in range(1000):  # a write in progress takes a few hundred nanoseconds
            started, finished, since = values[0], values[1], values[2]
            if started >= 0 and values[0] == started:
                return int(started), int(finished), since
        return int(abs(values[0])), int(values[1]), time.monotonic()


def serve(conn: Connection, threads: int | None, workers: int, progress: Progress) -> None:
    """A worker process's whole life: cap its threads, read its setup from the pipe, set up, say ``ready``, then
    answer chunks of tasks until the pipe closes, writing its ``progress`` as it goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle; it stops the workers
    limit_threads(threads, workers)  # before the setup is unpacked: that imports the framework
    try:
        packed = conn.recv_bytes()
    except (EOFError, OSError):  # the runner is gone
        return
    try:
        worker = ClientWorker(unpack_setup(packed))
    except BaseException as exc:
        conn.send(("failed", setup_failure(exc)))
        return
    conn.send(("ready", None))
    weights: ModelWeights | None = None
    started = 0
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the runner is done (or gone)
            return
        if isinstance(message, ModelWeights):
            weights = read_only(message)
            continue
        if not isinstance(message, list) or not all(isinstance(t, Task) for t in message) or weights is None:
            raise RuntimeError(f"a worker expected tasks after the round's weights, got {type(message).__name__}")
        replies: list[ClientResult | Failed] = []
        for task in message:
            started += 1
            progress.start(started)
            replies.append(worker.run(weights, task))
            progress.finish(started)
        try:
            conn.send(("replies", pack_replies(replies)))
        except OSError:  # the runner is gone
            return


class _Worker:
    """One slot's process and pipe, and what the runner knows of it."""

    def __init__(self, context: Any, name: str, threads: int | None, workers: int) -> None:
        """Start the process; it waits for its setup (:meth:`send_setup`)."""
        self.conn, child = context.Pipe(duplex=True)
        self.progress = Progress(context)
        self.process = context.Process(
            target=serve, args=(child, threads, workers, self.progress), name=name, daemon=True
        )
        self.process.start()
        child.close()
        self.ready = False
        self.outstanding = 0  # tasks sent and not answered: the first runs, the others wait
        self.answered = 0  # tasks answered since it started (its progress counts from its start too)
        self.weights_token: object = None

    def send_setup(self, packed: bytes) -> None:
        """Send the setup; returns once the worker has read it (a setup larger than the pipe's buffer waits for
        the worker's interpreter to start, which is why a pool starts every process before sending any setup)."""
        with contextlib.suppress(OSError):  # it died starting: wait() sees its sentinel and reports it
            self.conn.send_bytes(packed)

    def stop(self, *, kill: bool) -> None:
        """Close the pipe (an idle worker exits) and make sure the process is gone."""
        self.conn.close()
        if kill:
            self.process.kill()
        self.process.join(_STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.process.close()


class ProcessPool:
    """``size`` worker processes; see the module's docstring. Create, use for every round, :meth:`close`."""

    def __init__(self, size: int, packed: bytes, threads_per_worker: int | None = None) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._packed = packed
        self._threads = threads_per_worker
        self._size = size
        self._weights: ModelWeights | None = None
        self._token: object = None
        self._workers: list[_Worker] = []
        self._idle_deaths = 0  # worker deaths in a row that happened before the worker started any task it held
        try:
            # every process first, then the setups: a process's setup (the clients' data, often more than a pipe's
            # buffer) is read only once its interpreter has started, and waiting for that before starting the
            # next process made the workers ready one after another (1.5 s apart here, the last of N after N times
            # that), so that short runs ran on fewer workers than asked for
            for slot in range(size):
                self._workers.append(self._start(slot))
            for worker in self._workers:
                worker.send_setup(packed)
        except BaseException:
            self.close()
            raise

    def _start(self, slot: int) -> _Worker:
        return _Worker(self._context, f"fedmodel-worker-{slot}", self._threads, self._size)

    times_tasks = True
    """:meth:`running` reads which task of a chunk runs, and since when, from the worker's progress."""

    def ready(self) -> list[int]:
        """The slots whose worker is set up."""
        return [slot for slot, w in enumerate(self._workers) if w.ready]

    def broadcast(self, weights: ModelWeights) -> None:
        """The round's global weights, sent to each worker before its first task of the round."""
        self._weights = weights
        self._token = object()

    def submit(self, slot: int, tasks: Sequence[Task]) -> None:
        """Queue a chunk of ``tasks`` on worker ``slot`` (they run after the worker's earlier tasks, and are
        answered in one message).

        The round's weights go first when the worker has not had them; that happens only when it has no
        task (a new round, or a fresh worker), so it is reading its pipe and a large message cannot block.
        """
        worker = self._workers[slot]
        try:
            if worker.weights_token is not self._token:
                worker.conn.send(self._weights)
                worker.weights_token = self._token
            worker.conn.send(list(tasks))
        except OSError:  # it died since it last answered: wait() sees its sentinel and reports the task
            pass
        worker.outstanding += len(tasks)

    def running(self, slot: int) -> tuple[int, float] | None:
        """The index among worker ``slot``'s unanswered tasks of the one it started last, and since when: the task
        it runs now, or, once it has ended, the one whose chunk's answer is being pickled and sent (the clock of a
        chunk's last task runs until the answer arrives); ``None`` when it has started none of them."""
        worker = self._workers[slot]
        started, _, since = worker.progress.read()
        if started > worker.answered:
            return started - 1 - worker.answered, since
        return None

    def wait(self, timeout: float | None) -> list[Finished]:
        """Tasks that ended within ``timeout`` seconds (results, failures, dead workers); ``[]`` if none did.

        Raises:
            WorkerError: a worker's setup failed, or a worker died before it was set up.
        """
        waitables: list[Any] = []
        for w in self._workers:
            waitables += [w.conn, w.process.sentinel]
        finished: list[Finished] = []
        for ready in wait(waitables, timeout):
            for slot, w in enumerate(self._workers):
                if ready is w.conn or ready is w.process.sentinel:
                    finished += self._collect(slot)
                    break
        return finished

    def _collect(self, slot: int) -> list[Finished]:
        """Read what worker ``slot`` sent; if it died, report its task (if any) and replace it."""
        w = self._workers[slot]
        out: list[Finished] = []
        try:
            while w.conn.poll():
                tag, value = w.conn.recv()
                if tag == "failed":
                    raise WorkerError(f"a worker process could not be set up: {value}")
                if tag == "ready":
                    w.ready = True
                else:
                    self._idle_deaths = 0
                    w.outstanding -= len(value)
                    w.answered += len(value)
                    out.extend(Finished(slot, reply) for reply in unpack_replies(value))
        except (EOFError, OSError):
            pass
        if w.process.is_alive():
            return out
        w.process.join()
        code = w.process.exitcode
        if not w.ready:
            raise WorkerError(f"a worker process died before it was set up (exit code {code})")
        started = w.progress.read()[0]
        if started <= w.answered:  # it died before it started any task it holds: no client is to blame
            self._idle_deaths += 1
            if self._idle_deaths >= MAX_IDLE_DEATHS:
                raise WorkerError(
                    f"worker processes died {self._idle_deaths} times in a row before running any client "
                    f"(the last with exit code {code}): is something in the model factory or the setup killing them?"
                )
            if w.outstanding:
                out.append(Finished(slot, None, restarted=True))
        elif w.outstanding:  # blamed on the task it started last; those it ran before that lost their results
            lost = min(started - 1 - w.answered, w.outstanding - 1)
            reason = f"its worker process died (exit code {code}) while running it; a fresh worker replaces it"
            out.append(Finished(slot, Failed(reason), restarted=True, lost=lost))
        self._replace(slot, kill=False)
        return out

    def replace(self, slot: int) -> None:
        """Stop worker ``slot`` whatever it is doing (a client past its time; its queued tasks are dropped) and
        start a fresh one there."""
        self._replace(slot, kill=True)

    def _replace(self, slot: int, *, kill: bool) -> None:
        if slot >= len(self._workers):  # closed
            return
        self._workers[slot].stop(kill=kill)
        self._workers[slot] = self._start(slot)
        self._workers[slot].send_setup(self._packed)

    def close(self) -> None:
        """Stop every worker: idle ones exit when their pipe closes; those with tasks are killed."""
        for w in self._workers:
            w.stop(kill=w.outstanding > 0 or not w.ready)
        self._workers = []
