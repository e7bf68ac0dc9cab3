"""Workers of the simulation runner as Ray actors (``SimulationConfig(executor="ray", workers=N)``).

Ray is the engine Flower's simulation runs on; with it a run spreads over a cluster. Each worker is an
actor holding one :class:`~fedmodel._worker.ClientWorker` (one CPU each); its
:class:`~fedmodel._worker.Setup` is put in Ray's object store once per run, the global weights once per
round, and each task carries only the client's id, kind and seed. The runner uses the Ray instance that is
already initialized (``ray.init(address=...)`` for a cluster); when there is none it starts a local one with
``ray.init()`` and shuts it down when the run ends. An actor that dies is reported for its client and
replaced; :meth:`RayPool.replace` kills one whose client overran its time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

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
    read_only,
)
from fedmodel.client import ClientResult

__all__ = ["RayPool"]


class RayWorker:
    """The body of each Ray actor: a :class:`~fedmodel._worker.ClientWorker` built from the run's setup."""

    def __init__(self, setup: Setup) -> None:
        self.worker = ClientWorker(setup)

    def ready(self) -> bool:
        """Answered once the setup is done (the runner waits for it before the first task)."""
        return True

    def run(self, weights: ModelWeights, task: Task) -> ClientResult | Failed:
        """One client's update (Ray hands ``weights`` over from its object store, read-only)."""
        return self.worker.run(read_only(weights), task)


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
        self._tasks: list[deque[Any]] = [deque() for _ in range(size)]  # each actor's task refs, oldest first
        for slot in range(size):
            self._actors.append(self._start(slot))

    def _start(self, slot: int) -> Any:
        actor: Any = self._actor_class.remote(self._setup)
        self._starting[actor.ready.remote()] = slot
        self._ready[slot] = False
        self._tasks[slot].clear()
        return actor

    def ready(self) -> list[int]:
        """The slots whose actor is set up."""
        return [slot for slot in range(len(self._actors)) if self._ready[slot]]

    def broadcast(self, weights: ModelWeights) -> None:
        """The round's global weights, put in Ray's object store once."""
        self._weights = self._ray.put(weights)

    def submit(self, slot: int, tasks: Sequence[Task]) -> None:
        """Queue ``tasks`` on actor ``slot``, one call each (an actor runs its calls one at a time, in order;
        Ray hands each result over on its own)."""
        for task in tasks:
            self._tasks[slot].append(self._actors[slot].run.remote(self._weights, task))

    def running(self, slot: int) -> tuple[int, float] | None:
        """``None``: Ray does not say when an actor's call starts (the runner counts from when it saw the
        call reach the head of the actor's queue)."""
        return None

    def wait(self, timeout: float | None) -> list[Finished]:
        """Tasks that ended within ``timeout`` seconds (results, failures, dead actors); ``[]`` if none did.

        Raises:
            WorkerError: an actor could not be set up.
        """
        ray = self._ray
        refs = [*self._starting, *(ref for queue in self._tasks for ref in queue)]
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
        for slot, queue in enumerate(self._tasks):
            while queue and queue[0] in done:  # in order: a dead actor fails all its calls, the oldest ran
                try:
                    reply = ray.get(queue.popleft())
                except ray.exceptions.RayTaskError as exc:  # the actor is fine, its answer could not be returned
                    reply = Failed(f"its Ray actor could not return a result: {describe(exc.cause or exc)}")
                except ray.exceptions.RayError as exc:  # the actor is gone (died, lost, killed)
                    reason = f"its Ray actor died while running it ({type(exc).__name__}); a fresh one replaces it"
                    self.replace(slot)
                    finished.append(Finished(slot, Failed(reason), restarted=True))
                    break
                finished.append(Finished(slot, reply))
        return finished

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
