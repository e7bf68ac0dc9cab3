"""What a worker of the simulation runner holds and does, whatever starts it (a process, a Ray actor).

A worker is set up once per run with the model factories, the algorithm and the client sequence (shipped
once, pickled by ``cloudpickle`` so that lambdas and closures such as :func:`fedmodel.algorithms.fedavg`'s
client update travel). It builds one model per kind from its factory, once, and keeps it between rounds.
Per round it receives the global weights once; per client, the client's id, kind and seed. It runs the
algorithm's client update exactly as the in-process runner does, so its result is bit-identical, and
answers with the :class:`~fedmodel.client.ClientResult` or, when the client raised, the reason the
in-process runner would give.
"""

from __future__ import annotations

import contextlib
import pickle
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedmodel._backend import Backend, backend_for
from fedmodel._errors import FedModelError
from fedmodel._weights import ModelWeights
from fedmodel.algorithms import FederatedAlgorithm
from fedmodel.client import ClientResult
from fedmodel.data import ClientData
from fedmodel.optimizers import SGD

__all__ = [
    "ClientWorker",
    "Failed",
    "Finished",
    "Setup",
    "Task",
    "WorkerError",
    "build_model",
    "check_picklable",
    "describe",
    "pack_replies",
    "pack_setup",
    "read_only",
    "unpack_replies",
]


class WorkerError(FedModelError, RuntimeError):
    """A worker of the simulation runner could not be set up: what it was sent cannot be pickled, or its
    setup (unpickling, the model factories) failed in the worker; the message names which and why."""


@dataclass(frozen=True)
class Task:
    """One client's work in a round: its id (an index into the client sequence), model kind and seed."""

    client: int
    kind: str
    seed: int


@dataclass(frozen=True)
class Failed:
    """A client that gave no result, and why (the reason :class:`fedmodel.server.ServerRound` records)."""

    reason: str


@dataclass(frozen=True)
class Finished:
    """A worker's oldest task ended: the worker's slot and the client's result, or why there is none.

    ``restarted``: the worker died running it and a fresh one took its slot; the tasks queued behind it
    never ran and must be given again. ``lost``: how many of the worker's oldest tasks, before this one,
    ran but had their results die with the worker (a worker answers a chunk of tasks in one message);
    they must be given again too. ``reply=None`` (with ``restarted``): the worker died before it started any
    task it held; no client is to blame, and every one of them must be given again.
    """

    slot: int
    reply: ClientResult | Failed | None
    restarted: bool = False
    lost: int = 0


@dataclass(frozen=True)
class Setup:
    """What every worker receives once: the model factories by kind, the algorithm and the clients; ``warm``: build
    each model's warm-up optimizer before the first client (see :func:`build_model`), which the runner asks for
    when clients have a deadline (``client_timeout``)."""

    factories: Mapping[str, Callable[[], Any]]
    algorithm: FederatedAlgorithm
    clients: Sequence[ClientData]
    warm: bool = True


def describe(exc: BaseException) -> str:
    """A client's failure as the in-process runner reports it: ``"TypeName: message"``."""
    return f"{type(exc).__name__}: {exc}"


def _cloudpickle() -> Any:
    """cloudpickle, imported on first use: only parallel runs need it.

    What it (un)pickles goes from the runner to the worker processes it started itself, never from another party.
    """
    import cloudpickle

    return cloudpickle


def check_picklable(setup: Setup) -> None:
    """Pickle each part of ``setup`` with cloudpickle on its own, to name the one that fails.

    Raises:
        WorkerError: naming the part (the model factory, the algorithm, the client sequence) and why.
    """
    for what, part in (
        ("the model factory", setup.factories),
        ("the algorithm", setup.algorithm),
        ("the client sequence", setup.clients),
    ):
        try:
            _cloudpickle().dumps(part)
        except Exception as exc:
            raise WorkerError(f"workers need {what} pickled to start, and it cannot be: {describe(exc)}") from exc


def pack_setup(setup: Setup) -> bytes:
    """``setup`` pickled by cloudpickle (functions defined in ``__main__``, lambdas and closures included).

    Raises:
        WorkerError: naming the part (the model factory, the algorithm, the client sequence) that cannot be pickled.
    """
    try:
        packed: bytes = _cloudpickle().dumps(setup)
    except Exception:
        check_picklable(setup)
        raise
    return packed


def unpack_setup(packed: bytes) -> Setup:
    """The :class:`Setup` that :func:`pack_setup` pickled (in a worker: our own bytes, from our own process)."""
    setup = _cloudpickle().loads(packed)
    if not isinstance(setup, Setup):
        raise WorkerError(f"a worker expected its setup, got {type(setup).__name__}")
    return setup


def read_only(weights: ModelWeights) -> ModelWeights:
    """``weights`` with every array marked read-only, as the server's arrays are in the in-process runner
    (a client update that writes into them fails the same way in a worker)."""
    for array in weights.arrays:
        if isinstance(array, np.ndarray) and array.flags.writeable:
            array.flags.writeable = False
    return weights


def pack_replies(replies: Sequence[ClientResult | Failed]) -> list[bytes]:
    """Each of a chunk's ``replies`` pickled on its own, so that one the runner cannot unpickle fails only its
    client (:func:`unpack_replies`); one that cannot be pickled (a lock, a local class in its metrics) is sent as
    why: that client fails, not its worker, nor the other clients answered in the same message."""
    out: list[bytes] = []
    for reply in replies:
        try:
            out.append(pickle.dumps(reply, pickle.HIGHEST_PROTOCOL))
        except Exception as exc:
            why = Failed(f"its result cannot be sent back from its worker: {describe(exc)}")
            out.append(pickle.dumps(why, pickle.HIGHEST_PROTOCOL))
    return out


def unpack_replies(packed: Sequence[bytes]) -> list[ClientResult | Failed]:
    """The replies :func:`pack_replies` pickled, in the runner (our own worker's bytes, never another party's); one
    that cannot be unpickled here (its class needs what this process lacks, its ``__reduce__`` raises) becomes
    why, failing only its client."""
    out: list[ClientResult | Failed] = []
    for blob in packed:
        try:
            reply = pickle.loads(blob)
        except Exception as exc:
            reply = Failed(f"its result could not be read back from its worker: {describe(exc)}")
        if not isinstance(reply, ClientResult | Failed):
            reply = Failed(f"its worker sent back a {type(reply).__name__}, not a result")
        out.append(reply)
    return out


def setup_failure(exc: BaseException) -> str:
    """Why a worker's setup failed: the exception and the last lines of its traceback."""
    lines = traceback.format_exception(exc)
    return describe(exc) + "\n" + "".join(lines[-6:]).rstrip()


def build_model(factory: Callable[[], Any], *, warm: bool = True) -> tuple[Any, Backend]:
    """A model from ``factory`` and its backend; with ``warm`` (for a process whose clients have a deadline), one
    optimizer made for it and dropped.

    Frameworks set themselves up on their first optimizer (torch imports its compiler then: over a second), and
    under ``client_timeout`` that one-time cost must not fall on a client: it made the first client of every
    fresh worker time out, and each timeout started another cold worker. The warm-up optimizer has momentum: a
    backend may step a plain SGD itself without building its framework's optimizer (torch's does), and would
    then warm nothing. Making an optimizer changes nothing of the model (a client makes a fresh one anyway); a
    backend that refuses the neutral SGD here is left to refuse it again, with its own message, to a client that
    asks for it. Without a deadline nothing is warmed: the cost then falls once on the first client that needs
    it, and never on a plain SGD's (a worker that warmed took 1 s longer to start here, 2.3-2.8 s instead of
    1.4-1.9 s, and a short run's early rounds ran on the workers that were ready).
    """
    model = factory()
    backend = backend_for(model)
    if warm:
        with contextlib.suppress(Exception):
            backend.make_optimizer(model, _WARM_UP)
    return model, backend


_WARM_UP = SGD(0.1, momentum=0.9)  # with state: every backend builds its framework's own optimizer for it


class ClientWorker:
    """One worker's state: one model per kind (built once), the algorithm and the clients.

    Raises (at construction): whatever a model factory raises.
    """

    def __init__(self, setup: Setup) -> None:
        self.algorithm = setup.algorithm
        self.clients = setup.clients
        self.models: dict[str, tuple[Any, Backend]] = {}
        for kind, factory in setup.factories.items():
            self.models[kind] = build_model(factory, warm=setup.warm)

    def run(self, weights: ModelWeights, task: Task) -> ClientResult | Failed:
        """The client update of ``task`` from ``weights``, or why it failed (as the in-process runner says)."""
        model, backend = self.models[task.kind]
        try:
            result: ClientResult = self.algorithm.client_update(
                model, backend, weights, self.clients[task.client], task.seed
            )
        except Exception as exc:  # the client's own failure: the runner drops it, the worker goes on
            return Failed(describe(exc))
        return result
