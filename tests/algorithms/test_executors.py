"""The scheduler of the parallel runner (:func:`fedmodel._executors.ordered_replies`) against a scripted pool:
results in client order, a bounded number of clients out of order, timeouts, a caller that stops early."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections import deque
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pytest

from fedmodel import ModelWeights
from fedmodel._executors import chunk_size, ordered_replies, tapered
from fedmodel._process_pool import MAX_IDLE_DEATHS, ProcessPool, Progress
from fedmodel._worker import Failed, Finished, Task, WorkerError
from fedmodel.client import ClientResult

WEIGHTS = ModelWeights((np.zeros(2, np.float32),))


def _task(client: int) -> Task:
    return Task(client, "model", seed=1000 + client)


class ScriptedPool:
    """``size`` fake workers, each running its queue in order. ``wait`` ends the head task of the worker whose
    head started last (the worst order for the runner), never a client in ``slow`` while another head can
    end, never a client in ``hang``; a client in ``die`` kills its worker (its queue is lost)."""

    def __init__(
        self,
        size: int,
        *,
        slow: frozenset[int] = frozenset(),
        hang: frozenset[int] = frozenset(),
        die: frozenset[int] = frozenset(),
    ) -> None:
        self.size, self.slow, self.hang, self.die = size, slow, hang, die
        self.queues: dict[int, deque[Task]] = {slot: deque() for slot in range(size)}
        self.started: list[int] = []
        self.slots: list[int] = []
        self.replaced: list[int] = []
        self.weights: list[ModelWeights] = []
        self.chunks: list[list[int]] = []

    times_tasks = False

    def ready(self) -> list[int]:
        return list(range(self.size))

    def broadcast(self, weights: ModelWeights) -> None:
        self.weights.append(weights)

    def submit(self, slot: int, tasks: Sequence[Task]) -> None:
        self.chunks.append([t.client for t in tasks])
        for task in tasks:
            self.queues[slot].append(task)
            self.started.append(task.client)
            self.slots.append(slot)

    def running(self, slot: int) -> tuple[int, float] | None:
        return None

    def wait(self, timeout: float | None) -> list[Finished]:
        heads = {s: q[0] for s, q in self.queues.items() if q and q[0].client not in self.hang}
        quick = [s for s, t in heads.items() if t.client not in self.slow]
        pick = quick or list(heads)
        if not pick:
            assert timeout is not None, "waiting forever on a hung client"
            time.sleep(timeout)
            return []
        slot = max(pick, key=lambda s: self.started.index(heads[s].client))
        task = self.queues[slot].popleft()
        if task.client in self.die:
            self.queues[slot].clear()
            return [Finished(slot, Failed("died"), restarted=True)]
        return [Finished(slot, ClientResult(WEIGHTS, 1, {"seed": task.seed}))]

    def replace(self, slot: int) -> None:
        self.queues[slot].clear()
        self.replaced.append(slot)

    def close(self) -> None:
        pass

    def outstanding(self) -> int:
        return sum(len(q) for q in self.queues.values())


def test_results_come_back_in_client_order_when_workers_finish_out_of_order() -> None:
    pool = ScriptedPool(3)
    clients = [4, 7, 8, 11, 12, 20, 31]
    replies = list(ordered_replies(pool, WEIGHTS, clients, _task, timeout=None, ahead=6))
    assert [c for c, _ in replies] == clients
    assert [r.metrics["seed"] for _, r in replies] == [1000 + c for c in clients]  # type: ignore[union-attr]
    assert pool.weights == [WEIGHTS] and pool.replaced == []


def test_no_more_than_ahead_clients_run_past_the_first_unfinished_one() -> None:
    pool = ScriptedPool(4, slow=frozenset({0}))
    handed = 0
    worst = 0
    generator = ordered_replies(pool, WEIGHTS, list(range(20)), _task, timeout=None, ahead=5)
    original_submit = pool.submit

    def submit(slot: int, tasks: Sequence[Task]) -> None:
        nonlocal worst
        original_submit(slot, tasks)
        worst = max(worst, len(pool.started) - handed)

    pool.submit = submit  # type: ignore[method-assign]
    for expected, (client, _) in enumerate(generator):
        assert client == expected
        handed += 1
    assert worst == 5  # client 0 held back the round: 5 given (0 and 4 more), then they waited for it


def test_a_client_past_its_timeout_fails_and_the_task_queued_behind_it_is_given_again() -> None:
    pool = ScriptedPool(2, hang=frozenset({0}))  # worker 0 gets clients 0 and 2, worker 1 gets 1 and 3
    replies = dict(ordered_replies(pool, WEIGHTS, [0, 1, 2, 3], _task, timeout=0.05, ahead=4))
    assert pool.slots[:4] == [0, 1, 0, 1]
    assert isinstance(replies[0], Failed)
    assert replies[0].reason == "no result within client_timeout=0.05s; its worker was stopped and replaced"
    assert all(isinstance(replies[c], ClientResult) for c in (1, 2, 3))
    assert pool.replaced == [0]
    assert pool.started.count(0) == 1 and pool.started.count(2) == 2  # 2 never ran behind 0: given again


def test_a_dying_worker_fails_its_client_and_the_task_queued_behind_it_is_given_again() -> None:
    pool = ScriptedPool(2, die=frozenset({1}))
    replies = dict(ordered_replies(pool, WEIGHTS, list(range(6)), _task, timeout=None, ahead=6))
    assert replies[1] == Failed("died")
    assert all(isinstance(replies[c], ClientResult) for c in range(6) if c != 1)
    assert pool.started.count(1) == 1 and pool.started.count(3) == 2  # 3 was queued behind 1 (depth 2)


def test_each_worker_gets_one_task_before_any_gets_a_second_and_never_more_than_two() -> None:
    pool = ScriptedPool(3)
    generator = ordered_replies(pool, WEIGHTS, list(range(5)), _task, timeout=None, ahead=5)
    next(generator)  # everything is given before the first wait
    assert pool.slots[:5] == [0, 1, 2, 0, 1]
    list(generator)
    assert max(pool.slots.count(s) for s in range(3)) <= 3


def test_a_caller_that_stops_early_gets_the_busy_workers_replaced() -> None:
    pool = ScriptedPool(3, slow=frozenset({1}))
    generator = ordered_replies(pool, WEIGHTS, list(range(6)), _task, timeout=None, ahead=6)
    assert next(generator)[0] == 0
    busy = sorted(slot for slot, queue in pool.queues.items() if queue)
    generator.close()
    assert busy and sorted(pool.replaced) == busy  # no late result of this round can reach the next


class ChunkedPool:
    """``size`` fake workers that answer a whole chunk in one ``wait``, as worker processes do, and say which
    task of a chunk runs now: a client in ``hang`` runs (from the first time it is asked about) and never ends;
    a client in ``die`` kills its worker with the results of the chunk's earlier clients unsent; the worker of a
    chunk that starts with a client in ``vanish`` dies once before it starts that chunk."""

    def __init__(
        self,
        size: int,
        *,
        hang: frozenset[int] = frozenset(),
        die: frozenset[int] = frozenset(),
        vanish: frozenset[int] = frozenset(),
    ) -> None:
        self.size, self.hang, self.die, self.vanish = size, hang, die, set(vanish)
        self.queues: dict[int, deque[list[Task]]] = {slot: deque() for slot in range(size)}
        self.chunks: list[list[int]] = []
        self.started: list[int] = []
        self.replaced: list[tuple[int, float]] = []
        self.hung_since: dict[int, float] = {}

    times_tasks = True

    def ready(self) -> list[int]:
        return list(range(self.size))

    def broadcast(self, weights: ModelWeights) -> None:
        pass

    def submit(self, slot: int, tasks: Sequence[Task]) -> None:
        self.queues[slot].append(list(tasks))
        self.chunks.append([t.client for t in tasks])

    def _hung(self, slot: int) -> int | None:
        queue = self.queues[slot]
        if queue:
            for index, task in enumerate(queue[0]):
                if task.client in self.hang:
                    return index
        return None

    def running(self, slot: int) -> tuple[int, float] | None:
        index = self._hung(slot)
        if index is None:
            return None
        since = self.hung_since.setdefault(slot, time.monotonic())
        return index, since

    def wait(self, timeout: float | None) -> list[Finished]:
        for slot, queue in self.queues.items():
            if queue and self._hung(slot) is None:
                if queue[0][0].client in self.vanish:
                    self.vanish.discard(queue[0][0].client)
                    queue.clear()
                    return [Finished(slot, None, restarted=True)]
                chunk = queue.popleft()
                out = []
                for index, task in enumerate(chunk):
                    self.started.append(task.client)
                    if task.client in self.die:
                        queue.clear()
                        return [Finished(slot, Failed("died"), restarted=True, lost=index)]
                    out.append(Finished(slot, ClientResult(WEIGHTS, 1, {"seed": task.seed})))
                return out
        assert timeout is not None, "waiting forever on a hung client"
        time.sleep(timeout)
        return []

    def replace(self, slot: int) -> None:
        queue = self.queues[slot]
        self.started += [t.client for t in queue[0][: (self._hung(slot) or 0) + 1]] if queue else []
        self.replaced.append((slot, time.monotonic()))
        queue.clear()

    def close(self) -> None:
        pass


def test_tasks_go_in_chunks_one_to_every_worker_first_and_come_back_in_client_order() -> None:
    pool = ChunkedPool(2)
    replies = list(ordered_replies(pool, WEIGHTS, list(range(20)), _task, timeout=None, ahead=12, chunk=3))
    assert [c for c, _ in replies] == list(range(20))
    assert [r.metrics["seed"] for _, r in replies] == [1000 + c for c in range(20)]  # type: ignore[union-attr]
    assert pool.chunks[:4] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]  # two per worker, one each first
    assert sorted(c for chunk in pool.chunks for c in chunk) == list(range(20))


def test_chunks_taper_as_the_round_ends_so_that_the_workers_finish_together() -> None:
    pool = ChunkedPool(2)
    list(ordered_replies(pool, WEIGHTS, list(range(100)), _task, timeout=None, ahead=64, chunk=8))
    sizes = [len(chunk) for chunk in pool.chunks]
    assert sizes[:9] == [8] * 9  # full chunks while many clients remain: few messages
    assert sizes[-4:] == [1, 1, 1, 1]  # the last client of each queue goes alone
    assert all(later <= earlier for earlier, later in itertools.pairwise(sizes))
    assert len(sizes) <= 20 and sum(sizes) == 100


def test_a_chunk_is_at_most_the_remaining_clients_shared_by_the_workers_queues() -> None:
    assert [tapered(8, remaining, 2) for remaining in (100, 33, 32, 24, 12, 5, 4, 1, 0)] == [8, 8, 8, 6, 3, 2, 1, 1, 1]
    assert tapered(8, 100, 4) == 8 and tapered(8, 20, 4) == 3 and tapered(8, 100, 20) == 3  # DEPTH (2) per worker
    assert tapered(1, 100, 2) == 1


def test_a_worker_dying_inside_a_chunk_fails_only_the_client_it_ran_and_gives_the_others_again() -> None:
    pool = ChunkedPool(2, die=frozenset({4}))  # worker 1's first chunk is 3, 4, 5: 3 ran, its result died too
    replies = dict(ordered_replies(pool, WEIGHTS, list(range(12)), _task, timeout=None, ahead=12, chunk=3))
    assert replies[4] == Failed("died")
    assert all(isinstance(replies[c], ClientResult) for c in range(12) if c != 4)
    assert pool.started.count(3) == 2  # lost with the worker: run again
    assert pool.started.count(4) == 1  # blamed, not run again
    assert [c for c in range(12) if pool.started.count(c) != 1] == [3]  # 5 and 9-11 never ran before: once


def test_a_worker_that_dies_before_it_starts_its_tasks_fails_nobody_and_they_are_all_given_again() -> None:
    """A worker killed while idle (the OOM killer, a thread a previous client left behind) ran none of its queued
    tasks: no client is to blame, and each of them runs on the fresh worker."""
    pool = ChunkedPool(1, vanish=frozenset({4}))
    replies = dict(ordered_replies(pool, WEIGHTS, list(range(12)), _task, timeout=None, ahead=12, chunk=4))
    assert all(isinstance(r, ClientResult) for r in replies.values()) and sorted(replies) == list(range(12))
    assert pool.started == list(range(12))  # 4-7 (and whatever was queued behind them) ran once, after the death


def test_a_process_pool_times_a_chunks_last_task_until_its_answer_arrives() -> None:
    """A worker that has finished its chunk and is still sending the answer runs no task. Its clock must not fall
    back to when the chunk's first task reached the head of the queue, or a chunk of quick clients that together
    take longer than ``client_timeout`` has its finished first client blamed for a timeout."""
    pool = ProcessPool.__new__(ProcessPool)
    progress = Progress(multiprocessing.get_context("spawn"))
    worker = SimpleNamespace(progress=progress, answered=4)  # 4 answered before this chunk of 3
    pool._workers = [worker]  # type: ignore[list-item]
    assert pool.running(0) is None  # its chunk is queued, none started yet
    progress.start(5)
    assert pool.running(0) == (0, pytest.approx(time.monotonic(), abs=1.0))
    progress.finish(5)
    progress.start(6)
    progress.finish(6)
    progress.start(7)
    since = pool.running(0)
    assert since is not None and since[0] == 2  # the chunk's third task runs
    progress.finish(7)  # all three ended: the answer is being pickled and sent
    assert pool.running(0) == since  # still timed from the last task's start, not from the chunk's
    worker.answered = 7
    assert pool.running(0) is None


def test_workers_that_keep_dying_before_any_task_stop_the_run_instead_of_retrying_without_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = ProcessPool.__new__(ProcessPool)
    progress = Progress(multiprocessing.get_context("spawn"))
    dead = SimpleNamespace(is_alive=lambda: False, join=lambda *_: None, exitcode=-9)
    conn = SimpleNamespace(poll=lambda: False)
    pool._workers = [SimpleNamespace(conn=conn, process=dead, progress=progress, ready=True, outstanding=2, answered=0)]  # type: ignore[list-item]
    pool._idle_deaths = 0
    monkeypatch.setattr(pool, "_replace", lambda slot, *, kill: None)
    for _ in range(MAX_IDLE_DEATHS - 1):
        assert pool._collect(0) == [Finished(0, None, restarted=True)]
    with pytest.raises(WorkerError, match=rf"died {MAX_IDLE_DEATHS} times in a row before running any client"):
        pool._collect(0)


def test_a_hung_client_inside_a_chunk_times_out_counted_from_its_start_and_the_rest_is_given_again() -> None:
    pool = ChunkedPool(2, hang=frozenset({7}))  # worker 0's second chunk is 6, 7, 8: 7 hangs after 6 ran
    replies = dict(ordered_replies(pool, WEIGHTS, list(range(12)), _task, timeout=0.2, ahead=12, chunk=3))
    assert isinstance(replies[7], Failed) and "client_timeout=0.2s" in replies[7].reason
    assert all(isinstance(replies[c], ClientResult) for c in range(12) if c != 7)
    assert pool.started.count(6) == 2 and pool.started.count(8) == 1  # 6's result was lost; 8 never ran
    [(slot, when)] = pool.replaced
    assert slot == 0 and when - pool.hung_since[0] >= 0.2  # not before its own time, whatever ran before it


def test_a_pool_that_cannot_time_tasks_gets_one_per_chunk_only_when_clients_have_a_deadline() -> None:
    """Ray cannot say which task of a call runs: under a deadline a chunk's later clients would be timed from the
    chunk's start, so they go one per chunk; without one they go in chunks like everywhere else."""
    untimed = ScriptedPool(2)
    replies = dict(ordered_replies(untimed, WEIGHTS, list(range(12)), _task, timeout=None, ahead=12, chunk=3))
    assert sorted(replies) == list(range(12)) and {len(c) for c in untimed.chunks} - {1, 2} == {3}
    timed = ScriptedPool(2)
    replies = dict(ordered_replies(timed, WEIGHTS, list(range(12)), _task, timeout=5.0, ahead=12, chunk=3))
    assert sorted(replies) == list(range(12)) and {len(c) for c in timed.chunks} == {1}
    chunked = ChunkedPool(2)  # a pool that says which task runs keeps its chunks under a deadline
    replies = dict(ordered_replies(chunked, WEIGHTS, list(range(12)), _task, timeout=5.0, ahead=12, chunk=3))
    assert sorted(replies) == list(range(12)) and {len(c) for c in chunked.chunks} - {1, 2} == {3}


def test_chunks_grow_with_the_clients_per_worker_and_shrink_with_the_model() -> None:
    small = 10 << 10  # the digits MLP: 10 KiB
    assert chunk_size(100, 2, small) == 8  # capped at MAX_CHUNK
    assert chunk_size(24, 2, small) == 3  # about four chunks per worker
    assert chunk_size(8, 2, small) == 1 and chunk_size(1, 4, small) == 1
    assert chunk_size(100, 2, 4 << 20) == 4  # 16 MiB of results per chunk at most
    assert chunk_size(100, 2, 20 << 20) == 1  # a model over 16 MiB goes one client at a time
