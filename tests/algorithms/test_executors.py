"""The scheduler of the parallel runner (:func:`fedmodel._executors.ordered_replies`) against a scripted pool:
results in client order, a bounded number of clients out of order, timeouts, a caller that stops early."""

from __future__ import annotations

import time

import numpy as np

from fedmodel import ModelWeights
from fedmodel._executors import ordered_replies
from fedmodel._worker import Failed, Finished, Task
from fedmodel.client import ClientResult

WEIGHTS = ModelWeights((np.zeros(2, np.float32),))


def _task(client: int) -> Task:
    return Task(client, "model", seed=1000 + client)


class ScriptedPool:
    """``size`` fake workers. ``wait`` finishes the most recently started task first (the worst order), never
    a client in ``slow`` while another task runs, and never a client in ``hang``."""

    def __init__(self, size: int, *, slow: frozenset[int] = frozenset(), hang: frozenset[int] = frozenset()) -> None:
        self.size, self.slow, self.hang = size, slow, hang
        self.running: dict[int, Task] = {}
        self.started: list[int] = []
        self.replaced: list[int] = []
        self.weights: list[ModelWeights] = []

    def idle(self) -> list[int]:
        return [slot for slot in range(self.size) if slot not in self.running]

    def broadcast(self, weights: ModelWeights) -> None:
        self.weights.append(weights)

    def submit(self, slot: int, task: Task) -> None:
        assert slot not in self.running
        self.running[slot] = task
        self.started.append(task.client)

    def wait(self, timeout: float | None) -> list[Finished]:
        candidates = [s for s, t in self.running.items() if t.client not in self.hang]
        quick = [s for s in candidates if self.running[s].client not in self.slow]
        pick = quick or candidates
        if not pick:
            assert timeout is not None, "waiting forever on a hung client"
            time.sleep(timeout)
            return []
        slot = max(pick, key=lambda s: self.started.index(self.running[s].client))
        task = self.running.pop(slot)
        return [Finished(slot, ClientResult(WEIGHTS, 1, {"seed": task.seed}))]

    def replace(self, slot: int) -> None:
        self.running.pop(slot, None)
        self.replaced.append(slot)

    def close(self) -> None:
        pass


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

    def submit(slot: int, task: Task) -> None:
        nonlocal worst
        original_submit(slot, task)
        worst = max(worst, len(pool.started) - handed)

    pool.submit = submit  # type: ignore[method-assign]
    for expected, (client, _) in enumerate(generator):
        assert client == expected
        handed += 1
    assert worst == 5  # client 0 held back the round: 5 started (0 and 4 more), then they waited for it


def test_a_client_past_its_timeout_fails_and_its_worker_is_replaced() -> None:
    pool = ScriptedPool(2, hang=frozenset({2}))
    replies = dict(ordered_replies(pool, WEIGHTS, [0, 1, 2, 3, 4], _task, timeout=0.05, ahead=4))
    assert isinstance(replies[2], Failed)
    assert replies[2].reason == "no result within client_timeout=0.05s; its worker was stopped and replaced"
    assert all(isinstance(replies[c], ClientResult) for c in (0, 1, 3, 4))
    assert len(pool.replaced) == 1


def test_a_caller_that_stops_early_gets_the_busy_workers_replaced() -> None:
    pool = ScriptedPool(3, slow=frozenset({1}))
    generator = ordered_replies(pool, WEIGHTS, list(range(6)), _task, timeout=None, ahead=6)
    assert next(generator)[0] == 0
    busy = sorted(pool.running)
    generator.close()
    assert busy and sorted(pool.replaced) == busy  # no late result of this round can reach the next
