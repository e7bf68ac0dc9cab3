"""Workers of the simulation runner as Ray actors (``SimulationConfig(executor="ray", workers=N)``).

Ray is the engine Flower's simulation runs on; with it a run spreads over a cluster. Each worker is an
actor holding one :class:`~fedmodel._worker.ClientWorker` (one CPU each); its
:class:`~fedmodel._worker.Setup` is put in Ray's object store once per run, the global weights once per
round, and each call carries a chunk of tasks (each the client's id, kind and seed) and answers their results
in one pickled message, as a worker process does: a Ray call costs the runner about a millisecond here, more
than a small model's client update. The runner uses the Ray instance that is already initialized
(``ray.init(address=...)`` for a cluster); when there is none it starts a local one with ``ray.init()`` and
shuts it down when the run ends.

An actor that dies is replaced, and the runner learns of it from the calls it had: each fails. Which of them
killed it, Ray does not say: a call that had finished can fail too when its actor dies before its answer left.
So the tasks of the oldest failed call run again on the fresh actor, each alone in its own call (a probe, with
nothing queued behind it to kill the actor before its answer is back), and the calls that were queued behind
go again after them; a task is reported as the one that killed its actor only when its probe dies too (a death
that does not happen again is then no client's). :meth:`RayPool.replace` kills an actor whose client overran
its time; under a deadline the runner gives Ray one task per call (:attr:`RayPool.times_tasks`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

from fedmodel._weights import ModelWeights
from fedmodel._worker import (
    ClientWorker,
    Failed,
    Finished,
    Setup,
    Task,
    WorkerError,
    check_picklable,
    describe,
    pack_replies,
    read_only,
    unpack_replies,
)

__all__ = ["RayPool"]


class RayWorker:
    """The body of each Ray actor: a :class:`~fedmodel._worker.ClientWorker` built from the run's setup."""

    def __init__(self, setup: Setup) -> None:
        self.worker = ClientWorker(setup)

    def ready(self) -> bool:
        """Answered once the setup is done (the runner waits for it before the first task)."""
        return True

    def run(self, weights: ModelWeights, tasks: list[Task]) -> list[bytes]:
        """The results of ``tasks`` from ``weights`` (Ray hands them over from its object store, read-only), in
        order, each pickled on its own (:func:`~fedmodel._worker.pack_replies`)."""
        weights = read_only(weights)
        return pack_replies([self.worker.run(weights, task) for task in tasks])


class _Call(NamedTuple):
    """One call for an actor: its tasks, the weights they start from, whether it is a probe (one task, alone on
    its actor: its death is its own), and its result's ref once it is submitted."""

    tasks: list[Task]
    weights: Any
    probe: bool = False
    ref: Any = None


class RayPool:
    """``size`` Ray actors; see the module's docstring. Create, use for every round, :meth:`close`."""

    def __init__(self, size: int, setup: Setup) -> None:
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init()
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0)(RayWorker)
        try:
            self._setup = ray.put(setup)
        except Exception as exc:
            check_picklable(setup)  # names the part that cannot be pickled
            raise WorkerError(f"workers need their setup in Ray's object store, and it cannot go: {exc}") from exc
        self._weights: Any = None
        self._actors: list[Any] = []
        self._ready = [False] * size
        self._starting: dict[Any, int] = {}  # the ``ready()`` ref of each actor being set up -> its slot
        self._calls: list[deque[_Call]] = [deque() for _ in range(size)]  # each actor's submitted calls, oldest first
        self._held: list[deque[_Call]] = [deque() for _ in range(size)]  # calls to submit after them, in order
        self._probed = [0.0] * size  # per actor: when its probe went, or its predecessor died (time.monotonic())
        for slot in range(size):
            self._actors.append(self._start(slot))

    def _start(self, slot: int) -> Any:
        actor: Any = self._actor_class.remote(self._setup)
        self._starting[actor.ready.remote()] = slot
        self._ready[slot] = False
        self._calls[slot].clear()
        self._held[slot].clear()
        return actor

    times_tasks = False
    """Ray does not say which task of a call runs now, nor since when: under a deadline the runner gives one task
    per call, and counts its time from when it saw the call reach the head of the actor's queue (a probe's, from
    when the fresh actor took it: see :meth:`running`)."""

    def ready(self) -> list[int]:
        """The slots whose actor is set up."""
        return [slot for slot in range(len(self._actors)) if self._ready[slot]]

    def broadcast(self, weights: ModelWeights) -> None:
        """The round's global weights, put in Ray's object store once."""
        self._weights = self._ray.put(weights)

    def submit(self, slot: int, tasks: Sequence[Task]) -> None:
        """Queue ``tasks`` on actor ``slot`` as one call (an actor runs its calls one at a time, in order)."""
        self._held[slot].append(_Call(list(tasks), self._weights))
        self._pump(slot)

    def _pump(self, slot: int) -> None:
        """Submit actor ``slot``'s held calls in order once it is set up (a call that kills it then cannot take
        the answer of its ``ready()`` along), except that a probe goes alone: only to an actor with no call, and
        nothing after it until it has answered."""
        calls, held = self._calls[slot], self._held[slot]
        while self._ready[slot] and held and not (calls and calls[-1].probe) and not (held[0].probe and calls):
            calls.append(self._submitted(slot, held.popleft()))
            if calls[-1].probe:
                self._probed[slot] = time.monotonic()

    def _submitted(self, slot: int, call: _Call) -> _Call:
        return call._replace(ref=self._actors[slot].run.remote(call.weights, call.tasks))

    def running(self, slot: int) -> tuple[int, float] | None:
        """For a probe, ``(0, when the fresh actor got it)``, and while it waits for that actor to be set up, ``(0,
        when the old one died)``: the probe's task is the oldest the runner waits for, and its clock starts again
        (an actor's restart is not the client's time, but one that takes longer than a client may is not waited
        for without end); else ``None``: Ray does not say (see :attr:`times_tasks`)."""
        calls, held = self._calls[slot], self._held[slot]
        if (calls and calls[0].probe) or (not calls and held and held[0].probe):
            return 0, self._probed[slot]
        return None

    def wait(self, timeout: float | None) -> list[Finished]:
        """Tasks that ended within ``timeout`` seconds (results, failures, dead actors); ``[]`` if none did.

        Raises:
            WorkerError: an actor could not be set up.
        """
        ray = self._ray
        refs = [*self._starting, *(call.ref for calls in self._calls for call in calls)]
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        done = set(ready)
        for ref in [r for r in self._starting if r in done]:
            slot = self._starting.pop(ref)
            try:
                ray.get(ref)
            except Exception as exc:
                raise WorkerError(f"a Ray actor could not be set up: {exc}") from exc
            self._ready[slot] = True
        finished: list[Finished] = []
        for slot, calls in enumerate(self._calls):
            while calls and calls[0].ref in done:  # in order: a dead actor fails all its calls
                call = calls.popleft()
                try:
                    replies = unpack_replies(ray.get(call.ref))  # from our own actor
                except ray.exceptions.RayTaskError as exc:  # the actor is fine: its call raised
                    if len(call.tasks) > 1:  # which task made it raise is unknown: each goes again in its own call,
                        singles = [self._submitted(slot, _Call([task], call.weights)) for task in call.tasks]
                        calls.extendleft(reversed(singles))  # after the calls already queued, answered before them
                        break
                    replies = [Failed(f"its Ray actor could not return a result: {describe(exc.cause or exc)}")]
                except ray.exceptions.RayError as exc:  # the actor is gone (died, lost, killed)
                    if call.probe:  # it killed a fresh actor alone: its own death
                        reason = f"its Ray actor died while running it ({type(exc).__name__}); a fresh one replaces it"
                        self.replace(slot)  # the calls held behind it go again from the runner
                        finished.append(Finished(slot, Failed(reason), restarted=True))
                    else:
                        self._probe(slot, call)
                    break
                finished.extend(Finished(slot, reply) for reply in replies)
            self._pump(slot)  # after answers, a death or the actor's set-up: what it may take now
        return finished

    def _probe(self, slot: int, died: _Call) -> None:
        """Actor ``slot`` died during ``died`` (or right after it, its answer lost): on a fresh actor, each task of
        ``died`` runs alone in a probe, then the calls that were submitted or held behind it go again."""
        behind = [call._replace(ref=None) for call in self._calls[slot]] + list(self._held[slot])
        self.replace(slot)
        self._probed[slot] = time.monotonic()
        probes = [_Call([task], died.weights, probe=True) for task in died.tasks]
        self._held[slot].extend(probes + behind)

    def replace(self, slot: int) -> None:
        """Kill actor ``slot`` whatever it is doing and start a fresh one in its place."""
        if slot >= len(self._actors):  # closed
            return
        self._starting = {ref: s for ref, s in self._starting.items() if s != slot}
        self._ray.kill(self._actors[slot], no_restart=True)
        self._actors[slot] = self._start(slot)

    def close(self) -> None:
        """Kill every actor; shut Ray down if this pool started it."""
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._actors, self._starting = [], {}
        if self._owns_ray:
            self._ray.shutdown()
