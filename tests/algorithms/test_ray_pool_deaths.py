"""How :class:`fedmodel._ray_pool.RayPool` finds the client that killed its actor, against a scripted stand-in for
Ray (deterministic, no Ray needed): Ray fails every call of an actor that died, the answers of calls that had
finished but not yet left included, so a call's failure does not say that its client killed the actor."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fedmodel import ModelWeights
from fedmodel._executors import ordered_replies
from fedmodel._ray_pool import RayPool
from fedmodel._worker import Failed, Task, WorkerError, pack_replies
from fedmodel.client import ClientResult

WEIGHTS = ModelWeights((np.zeros(2, np.float32),))


class RayError(Exception):
    pass


class RayTaskError(RayError):
    cause = None


class ActorDiedError(RayError):
    pass


class Ref:
    def __init__(self) -> None:
        self.value: Any = None
        self.error: Exception | None = None
        self.resolved = False


class FakeActor:
    """Runs its calls in order when the pool waits: a call with a client in ``kills`` kills it, and with it fail
    that call, the calls queued behind it and every answer of the same wait that had not left yet (its ``ready()``
    answer included)."""

    def __init__(self, ray: FakeRay) -> None:
        self.ray, self.dead = ray, False
        self.queue: list[tuple[Ref, list[Task] | None]] = []
        self.ready = SimpleNamespace(remote=lambda: self._enqueue(None))
        self.run = SimpleNamespace(remote=lambda weights, tasks: self._enqueue(list(tasks)))

    def _enqueue(self, tasks: list[Task] | None) -> Ref:
        ref = Ref()
        if self.dead:
            ref.error, ref.resolved = ActorDiedError("dead"), True
        else:
            self.queue.append((ref, tasks))
        return ref

    def step(self) -> None:
        batch: list[tuple[Ref, Any]] = []
        while self.queue and not self.dead:
            ref, tasks = self.queue.pop(0)
            if tasks is None:
                batch.append((ref, True))
                continue
            self.ray.calls.append([t.client for t in tasks])
            if any(t.client in self.ray.kills for t in tasks):
                self.die(lost=[r for r, _ in batch] + [ref])
                return
            replies = [ClientResult(WEIGHTS, 1, {"client": t.client}) for t in tasks]
            batch.append((ref, pack_replies(replies)))
        for ref, value in batch:
            ref.value, ref.resolved = value, True

    def die(self, lost: Sequence[Ref] = ()) -> None:
        self.dead = True
        for ref in [*lost, *(r for r, _ in self.queue)]:
            ref.error, ref.resolved = ActorDiedError("its worker process died"), True
        self.queue = []


class FakeRay:
    """The part of Ray that the pool uses."""

    def __init__(self, kills: set[int]) -> None:
        self.kills = kills
        self.calls: list[list[int]] = []
        self.actors: list[FakeActor] = []
        self.exceptions = SimpleNamespace(RayError=RayError, RayTaskError=RayTaskError)

    def is_initialized(self) -> bool:
        return True

    def remote(self, **_: Any) -> Any:
        def actor_class(_cls: Any) -> Any:
            def start(_setup: Any) -> FakeActor:
                actor = FakeActor(self)
                self.actors.append(actor)
                return actor

            return SimpleNamespace(remote=start)

        return actor_class

    def put(self, value: Any) -> Ref:
        ref = Ref()
        ref.value, ref.resolved = value, True
        return ref

    def wait(self, refs: list[Ref], num_returns: int, timeout: float | None) -> tuple[list[Ref], list[Ref]]:
        for actor in self.actors:
            actor.step()
        ready = [r for r in refs if r.resolved][: max(num_returns, 1)]
        assert ready or timeout is not None, "waiting forever: no call can end"
        return ready, [r for r in refs if r not in ready]

    def get(self, ref: Ref) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor: FakeActor, no_restart: bool = True) -> None:
        if not actor.dead:
            actor.die()


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def make(kills: set[int]) -> FakeRay:
        ray = FakeRay(kills)
        monkeypatch.setitem(sys.modules, "ray", ray)
        return ray

    yield make


def _task(client: int) -> Task:
    return Task(client, "model", seed=client)


def _round(pool: RayPool, clients: int, chunk: int) -> dict[int, Any]:
    return dict(ordered_replies(pool, WEIGHTS, list(range(clients)), _task, timeout=None, ahead=clients, chunk=chunk))


def test_only_the_client_that_kills_its_actor_fails_though_every_call_of_the_actor_failed(fake_ray: Any) -> None:
    """One actor, chunks of 3: the call of 3-5 kills it when 4 runs, which also loses the finished answer of 0-2.
    0-2 then run again one by one (probes: each alone on its actor), then 3-5 as one call, which dies again; of
    its probes, 4 kills the actor: 4 alone fails, and 5 goes again from the runner."""
    ray = fake_ray({4})
    pool = RayPool(1, setup=None)  # type: ignore[arg-type]
    replies = _round(pool, 9, chunk=3)
    assert isinstance(replies[4], Failed) and "its Ray actor died while running it" in replies[4].reason
    assert {c: r.metrics for c, r in replies.items() if c != 4} == {c: {"client": c} for c in range(9) if c != 4}
    first = list(itertools.takewhile(lambda c: c != [4], ray.calls))
    assert first[:2] == [[0, 1, 2], [3, 4, 5]]  # chunks, as submitted
    assert first[2:5] == [[0], [1], [2]]  # the victim's tasks, each in its own call
    assert [3] in first and [c for c in ray.calls if c == [4]] == [[4]]  # 4 ran alone once, and was blamed
    assert len(ray.actors) == 4  # killed by 3-5, by 3-5 again, then by the probe of 4


def test_a_probe_goes_alone_so_the_death_of_the_next_client_cannot_take_its_answer(fake_ray: Any) -> None:
    """Client 1 kills every actor; 0 and 1 go in a call each. The first death takes 0's answer along; the probe of
    0 must come back before 1 runs again behind it on the fresh actor (else 0 would be blamed), and no call goes
    to a fresh actor before its set-up has answered (the death would take that answer along: the run would stop
    with a set-up error). 1 dies once more in its ordinary call, then alone in its probe: blamed."""
    ray = fake_ray({1})
    pool = RayPool(1, setup=None)  # type: ignore[arg-type]
    replies = _round(pool, 2, chunk=2)
    assert isinstance(replies[0], ClientResult) and replies[0].metrics == {"client": 0}
    assert isinstance(replies[1], Failed)
    assert ray.calls == [[0], [1], [0], [1], [1]]


def test_a_dead_actor_before_its_set_up_answered_is_a_set_up_failure(fake_ray: Any) -> None:
    ray = fake_ray(set())
    pool = RayPool(1, setup=None)  # type: ignore[arg-type]
    ray.actors[0].die()
    with pytest.raises(WorkerError, match="could not be set up"):
        pool.wait(0)


def test_a_probes_clock_starts_again_at_the_death_and_when_the_fresh_actor_takes_it(fake_ray: Any) -> None:
    """Under a deadline the runner times a task from what ``running`` says: for a probe, not from before the
    actor's death (the restart is not the client's time), and for an ordinary call nothing (Ray does not say)."""
    fake_ray({1})
    pool = RayPool(1, setup=None)  # type: ignore[arg-type]
    assert pool.wait(0) == [] and pool.ready() == [0]
    pool.broadcast(WEIGHTS)
    pool.submit(0, [_task(0)])
    pool.submit(0, [_task(1)])
    assert pool.running(0) is None
    died = time.monotonic()
    assert pool.wait(0) == []  # 1 killed the actor and took 0's answer along: nothing to report yet
    assert pool.ready() == [] and pool.running(0) == (0, pytest.approx(died, abs=0.5))
    waiting = pool.running(0)[1]  # type: ignore[index]
    assert waiting >= died
    time.sleep(0.02)
    assert pool.wait(0) == []  # the fresh actor is set up: the probe of 0 goes now
    sent = pool.running(0)[1]  # type: ignore[index]
    assert sent >= waiting + 0.02
    [answer] = pool.wait(0)
    assert answer.reply.metrics == {"client": 0}  # type: ignore[union-attr]
    assert pool.running(0) is None  # 1 goes again in an ordinary call
