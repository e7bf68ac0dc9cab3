"""What every loader produces: :class:`ClientData`, lazy :class:`ClientSequence` s and :class:`FederatedData`.

A federation is any ``Sequence[ClientData]``: the simulation runner only calls ``len()`` and indexes it.
A :class:`ClientSequence` is such a sequence whose clients are read from disk (or made) when indexed and
not kept, so a data set of 340,000 clients holds one client's arrays in memory at a time.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, final, overload

import numpy as np

from fedmodel._errors import DataError

__all__ = ["ClientData", "ClientSequence", "DataError", "FederatedData", "pool_clients"]


@dataclass(frozen=True)
class ClientData:
    """One client's examples: ``x`` with a leading example axis and labels ``y`` of the same length.

    >>> ClientData(np.zeros((3, 2), np.float32), np.zeros(3, np.int64)).num_examples
    3
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        x, y = _array("x", self.x), _array("y", self.y)
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise DataError(f"x and y need the same leading length, got shapes {x.shape} and {y.shape}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_examples(self) -> int:
        """Number of examples."""
        return len(self.y)

    def subset(self, indices: Any) -> ClientData:
        """The examples at ``indices`` (copies): a slice, integer positions (one or many, negative ones count
        from the end) or a boolean mask with one entry per example.

        Raises:
            IndexError: for a position out of range (the message names it and the number of examples).
            DataError: for anything else (floats, None, a bool, a mask of the wrong length, 2-D positions).
        """
        if isinstance(indices, slice):
            return ClientData(self.x[indices], self.y[indices])
        positions = _positions(indices, len(self))
        return ClientData(self.x[positions], self.y[positions])


def _array(name: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name} is not an array of equally shaped examples ({exc})") from None
    if array.dtype == object:
        raise DataError(f"{name} has dtype object (shape {array.shape}): give numbers, bools or fixed-width text")
    return array


def _positions(indices: Any, n: int) -> np.ndarray:
    """``indices`` (integer positions or a boolean mask) as int64 positions in ``range(n)``, checked."""
    try:
        picked = None if isinstance(indices, bool | np.bool_) or indices is None else np.asarray(indices)
    except (ValueError, TypeError):
        picked = None
    if picked is None or picked.ndim > 1 or (picked.size and picked.dtype.kind not in "iubO"):
        shape = f", dtype {picked.dtype}, shape {picked.shape}" if picked is not None else ""
        raise DataError(
            f"subset takes a slice, integer positions or a boolean mask, got {type(indices).__name__}{shape}"
        )
    if picked.dtype == bool:
        if picked.shape != (n,):
            raise DataError(f"subset: a boolean mask of shape {picked.shape} for {n} examples")
        return np.flatnonzero(picked)
    if picked.size == 0:
        return np.zeros(0, np.int64)
    if picked.dtype == object:  # Python ints beyond 64 bits, or something that is no position at all
        if not all(type(i) is int for i in picked.flat):
            raise DataError(f"subset takes integer positions, got {type(indices).__name__} of dtype object")
        raise IndexError(
            f"subset: index {next(i for i in picked.flat if not -n <= i < n)} is out of range for {n} examples"
        )
    positions = np.atleast_1d(picked)
    outside = (positions < -n) | (positions >= n)
    if outside.any():
        raise IndexError(f"subset: index {positions[outside][0]} is out of range for {n} examples")
    return np.where(positions < 0, positions + n, positions).astype(np.int64)


class ClientSequence(Sequence[ClientData]):
    """A read-only sequence of clients built when indexed: ``clients[i]`` loads client ``i``, nothing is cached.

    Subclasses name their clients (``client_ids``, the data set's natural ids, in a fixed order) and
    load one by id. Indexing by position, negative positions and slices (a lazy selection) come from
    here; iteration loads one client at a time.
    """

    @property
    @abstractmethod
    def client_ids(self) -> tuple[str, ...]:
        """The natural id of each client, in index order."""

    @abstractmethod
    def load(self, client_id: str) -> ClientData:
        """Read client ``client_id``'s examples.

        Raises:
            DataError: for an unknown id or a client whose stored data is malformed.
        """

    def __len__(self) -> int:
        return len(self.client_ids)

    @overload
    def __getitem__(self, index: int) -> ClientData: ...

    @overload
    def __getitem__(self, index: slice) -> ClientSequence: ...

    def __getitem__(self, index: int | slice) -> ClientData | ClientSequence:
        if isinstance(index, slice):
            return Selection(self, range(len(self))[index])
        if isinstance(index, bool | np.bool_) or not isinstance(index, int | np.integer):
            raise TypeError(f"client indices must be integers or slices, not {type(index).__name__}")
        ids = self.client_ids
        try:
            client_id = ids[index]
        except IndexError:
            raise IndexError(f"client index {index} out of range for {len(ids)} clients") from None
        return self.load(client_id)

    def index_of(self, client_id: str) -> int:
        """The position of ``client_id``.

        Raises:
            DataError: when no client has that id.
        """
        try:
            return self.client_ids.index(client_id)
        except ValueError:
            raise DataError(f"no client with id {client_id!r} among {len(self)} clients") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} clients)"


@final
class Selection(ClientSequence):
    """Some clients of another :class:`ClientSequence`, still lazy (what slicing returns)."""

    def __init__(self, parent: ClientSequence, positions: Iterable[int]) -> None:
        ids = parent.client_ids
        self._parent = parent
        self._ids = tuple(ids[i] for i in positions)
        self._members = frozenset(self._ids)

    @property
    def client_ids(self) -> tuple[str, ...]:
        """The selected clients' ids."""
        return self._ids

    def load(self, client_id: str) -> ClientData:
        """Read the client from the parent sequence."""
        if client_id not in self._members:
            raise DataError(f"no client with id {client_id!r} in this selection of {len(self._ids)} clients")
        return self._parent.load(client_id)


@dataclass(frozen=True)
class FederatedData:
    """Training data split across clients, plus a held-out test set (the server's evaluation data).

    ``clients`` may be a list or a lazy :class:`ClientSequence`. ``test`` is the pooled held-out set;
    ``test_clients``, when the data set has per-client test data (LEAF, TFF), holds it per client
    (lazily), for ``fedmodel.evaluation.evaluate(model, data.test_clients)``.
    """

    clients: Sequence[ClientData]
    test: ClientData
    test_clients: Sequence[ClientData] | None = None


def pool_clients(clients: Iterable[ClientData]) -> ClientData:
    """All examples of ``clients`` in one :class:`ClientData` (client after client).

    >>> a = ClientData(np.zeros((2, 3), np.float32), np.array([0, 1]))
    >>> b = ClientData(np.ones((1, 3), np.float32), np.array([2]))
    >>> pool_clients([a, b]).y.tolist()
    [0, 1, 2]

    Raises:
        DataError: for no clients, an item that is not a :class:`ClientData`, or clients whose example
            shapes or dtypes differ.
    """
    xs, ys = [], []
    for i, client in enumerate(clients):
        if not isinstance(client, ClientData):
            raise DataError(f"pool_clients: item {i} is {type(client).__name__}, not ClientData")
        xs.append(client.x)
        ys.append(client.y)
    if not xs:
        raise DataError("cannot pool zero clients")
    first = (xs[0].shape[1:], xs[0].dtype, ys[0].shape[1:], ys[0].dtype)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if (x.shape[1:], x.dtype, y.shape[1:], y.dtype) != first:
            raise DataError(
                f"client {i}: examples x{x.shape[1:]} {x.dtype}, y{y.shape[1:]} {y.dtype} differ from the first "
                f"client's x{first[0]} {first[1]}, y{first[2]} {first[3]}"
            )
    return ClientData(np.concatenate(xs), np.concatenate(ys))
