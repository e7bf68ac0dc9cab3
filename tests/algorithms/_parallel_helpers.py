"""What the parallel-runner tests send to worker processes: importable there (``tests.algorithms...``).

Functions that must also travel to Ray actors (whose workers may not see this repository) are closures
built here: cloudpickle sends those by value, and they only name the standard library, numpy and fedmodel.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedmodel.client import ClientResult, ClientUpdate
from fedmodel.data import ClientData, ClientSequence
from fedmodel.reference import SoftmaxRegression


def mark(clients: Sequence[ClientData], faulty: Sequence[int]) -> list[ClientData]:
    """Copies of ``clients`` where client ``i`` in ``faulty`` carries the marker ``x[0, 0] = -(i + 1)``."""
    out = list(clients)
    for i in faulty:
        x = out[i].x.copy()
        x[0, 0] = -(i + 1)
        out[i] = ClientData(x, out[i].y)
    return out


def _refuse_to_rebuild() -> None:
    raise RuntimeError("this object cannot be rebuilt here")


class Unreadable:
    """Pickles fine, but unpickling it raises: a worker can send it, and the runner cannot read it back."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _refuse_to_rebuild, ()


def faulty(inner: ClientUpdate, faults: Mapping[int, str]) -> ClientUpdate:
    """``inner``, except that the client marked by :func:`mark` as ``i`` misbehaves as ``faults[i]`` says:
    ``raise``, ``exit`` (its process dies), ``hang``, ``unpicklable`` (a result that cannot be pickled),
    ``unreadable`` (a result that pickles but cannot be unpickled: :class:`Unreadable`), ``nan`` (non-finite
    weights) or ``write_server`` (writes into the server's weights)."""
    faults = dict(faults)

    def update(model: Any, backend: Any, weights: Any, data: ClientData, seed: int) -> ClientResult:
        first = float(data.x.flat[0])
        fault = faults.get(int(-first) - 1) if first < 0 else None
        if fault == "raise":
            raise RuntimeError("disk full")
        if fault == "exit":
            os._exit(3)
        if fault == "hang":
            import time

            time.sleep(60)
        if fault == "write_server":
            weights.trainable[0][...] = 99.0
        result = inner(model, backend, weights, data, seed)
        if fault == "unpicklable":
            import threading

            return ClientResult(result.weights, result.num_examples, {**result.metrics, "lock": threading.Lock()})
        if fault == "unreadable":
            return ClientResult(result.weights, result.num_examples, {**result.metrics, "odd": Unreadable()})
        if fault == "nan":
            arrays = [np.full_like(a, np.nan) for a in result.weights.arrays]
            return ClientResult(result.weights.with_arrays(arrays), result.num_examples, result.metrics)
        return result

    return update


def pid_logged(inner: ClientUpdate, log: str) -> ClientUpdate:
    """``inner``, appending the id of the process that runs each client to the file ``log``."""

    def update(model: Any, backend: Any, weights: Any, data: ClientData, seed: int) -> ClientResult:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        return inner(model, backend, weights, data, seed)

    return update


def logged_softmax(log: str, num_features: int = 64, num_classes: int = 10) -> SoftmaxRegression:
    """A model factory that appends this process's id to the file ``log`` each time it builds a model."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
    return SoftmaxRegression(num_features, num_classes, seed=0)


def threads_softmax(log: str) -> SoftmaxRegression:
    """A model factory that, in a worker process, appends the process's thread caps (``OMP_NUM_THREADS``,
    ``MKL_NUM_THREADS``, ``TF_NUM_INTEROP_THREADS``, ``XLA_FLAGS``; ``-`` when unset) to the file ``log``."""
    if multiprocessing.parent_process() is not None:
        names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTEROP_THREADS", "XLA_FLAGS")
        with open(log, "a", encoding="utf-8") as f:
            f.write(" ".join(os.environ.get(name, "-") for name in names) + "\n")
    return SoftmaxRegression(64, 10, seed=0)


def softmax_outside_workers() -> SoftmaxRegression:
    """A model factory that works in the runner's process and fails in a worker process."""
    if multiprocessing.parent_process() is not None:
        raise RuntimeError("no GPU in this worker")
    return SoftmaxRegression(64, 10, seed=0)


class CountingClients(ClientSequence):
    """A lazy client sequence over in-memory clients that counts, in each process, the clients it loads."""

    def __init__(self, clients: Sequence[ClientData]) -> None:
        self._clients = list(clients)
        self._ids = tuple(f"c{i}" for i in range(len(self._clients)))
        self.loads = 0

    @property
    def client_ids(self) -> tuple[str, ...]:
        """``c0``, ``c1``, ..."""
        return self._ids

    def load(self, client_id: str) -> ClientData:
        """The client, counted."""
        self.loads += 1
        return self._clients[self._ids.index(client_id)]
