"""Flower Datasets partitioners as fedmodel clients (the optional ``data`` extra: ``flwr-datasets``).

A Flower user already partitions a Hugging Face dataset with a ``flwr_datasets.partitioner``
(IID, Dirichlet, pathological, shard, natural id, ...). :class:`FlowerClients` wraps any such
partitioner: ``clients[i]`` is ``partitioner.load_partition(i)`` with the ``x`` and ``y`` columns as
numpy arrays, loaded when asked for. :func:`from_flower` builds one from numpy arrays or a local
``datasets.Dataset`` (e.g. from ``datasets.load_from_disk``); nothing is downloaded.

>>> import numpy as np
>>> from flwr_datasets.partitioner import IidPartitioner
>>> clients = from_flower(IidPartitioner(num_partitions=2), {"x": np.eye(4, dtype=np.float32),
...                                                          "y": np.arange(4)})
>>> len(clients), clients[0].x.shape, clients[0].y.dtype
(2, (2, 4), dtype('int64'))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final

import numpy as np

from fedmodel.data._core import ClientData, ClientSequence, DataError

__all__ = ["FlowerClients", "from_flower"]


@final
class FlowerClients(ClientSequence):
    """The partitions of a Flower Datasets partitioner, lazily, as :class:`ClientData`.

    Client ids are the partitioner's natural ids as strings where it has them (``NaturalIdPartitioner``),
    else the partition numbers as strings; natural ids that read the same as strings (``1`` and ``"1"``,
    ``None`` and ``"None"``) are refused rather than renamed. ``x`` and ``y`` name the columns; float
    columns become float32, integer and bool columns int64 (the dtypes of fedmodel's built-in models).
    An empty partition keeps the feature shape and dtypes of the partitioner's dataset's first row.

    Raises:
        DataError: for an object that is not a partitioner, one that cannot count its partitions, or
            natural ids that collide as strings.
    """

    def __init__(self, partitioner: Any, *, x: str = "x", y: str = "y") -> None:
        if not _is_partitioner(partitioner):
            raise DataError(f"{type(partitioner).__name__} is not a Flower Datasets partitioner")
        self.partitioner, self.x, self.y = partitioner, x, y
        try:
            count = int(partitioner.num_partitions)
        except Exception as exc:  # a partitioner without a dataset raises its own error types
            raise DataError(f"the partitioner cannot count its partitions ({type(exc).__name__}: {exc})") from None
        natural = getattr(partitioner, "partition_id_to_natural_id", None)
        if isinstance(natural, Mapping) and len(natural) == count and all(i in natural for i in range(count)):
            self._ids = tuple(str(natural[i]) for i in range(count))
        else:
            self._ids = tuple(str(i) for i in range(count))
        self._positions: dict[str, int] = {}
        for i, cid in enumerate(self._ids):
            first = self._positions.setdefault(cid, i)
            if first != i and isinstance(natural, Mapping):
                raise DataError(
                    f"partitions {first} and {i} have natural ids {natural[first]!r} and {natural[i]!r}, both "
                    f"{cid!r} as client ids: make the natural ids distinct as text (e.g. fill missing ids)"
                )

    @property
    def client_ids(self) -> tuple[str, ...]:
        """Natural ids, or partition numbers."""
        return self._ids

    def load(self, client_id: str) -> ClientData:
        """Partition ``client_id`` as numpy ``x`` and ``y``.

        Raises:
            DataError: for an unknown id, a partition the partitioner cannot load, a missing column, or
                uint64 values beyond int64.
        """
        position = self._positions.get(client_id)
        if position is None:
            raise DataError(f"no partition with id {client_id!r} among {len(self._ids)}")
        try:
            partition = self.partitioner.load_partition(position).with_format("numpy")
        except Exception as exc:  # the partitioner's own error types; an IndexError would end iteration early
            raise DataError(f"partition {client_id!r} cannot be loaded ({type(exc).__name__}: {exc})") from None
        missing = [c for c in (self.x, self.y) if c not in partition.column_names]
        if missing:
            raise DataError(f"partition {client_id!r} has no column {missing}; columns: {partition.column_names}")
        if len(partition) == 0:
            empty = self._empty()
            if empty is not None:
                return empty
        return ClientData(*(_neutral(np.asarray(partition[c]), c, client_id) for c in (self.x, self.y)))

    def _empty(self) -> ClientData | None:
        """No examples, shaped and typed like the first row of the whole dataset (None if there is none)."""
        try:
            dataset = self.partitioner.dataset
            if len(dataset) == 0:
                return None
            first = dataset.with_format("numpy")[:1]
            x, y = (_neutral(np.asarray(first[c]), c, "first row") for c in (self.x, self.y))
        except Exception:  # a duck-typed partitioner without a dataset: keep what the partition gave
            return None
        return ClientData(x[:0], y[:0])


def _is_partitioner(candidate: Any) -> bool:
    """Duck-typed: a ``load_partition`` method and a ``num_partitions`` (not read: it may need a dataset)."""
    counted = hasattr(type(candidate), "num_partitions") or "num_partitions" in getattr(candidate, "__dict__", {})
    return callable(getattr(candidate, "load_partition", None)) and counted


def _neutral(array: np.ndarray, column: str, client_id: str) -> np.ndarray:
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise DataError(
            f"column {column!r} of partition {client_id!r}: {array.dtype} values up to {int(array.max())} "
            "do not fit int64"
        )
    if array.dtype.kind in "iub":
        return array.astype(np.int64, copy=False)
    return array


def from_flower(partitioner: Any, data: Any, *, x: str = "x", y: str = "y") -> FlowerClients:
    """Give ``partitioner`` its dataset and wrap it: ``data`` is a ``datasets.Dataset`` or a mapping of
    equally long arrays (column name -> array), which becomes one with ``Dataset.from_dict``.

    Everything is checked before the partitioner is given the dataset (its only change).

    Raises:
        DataError: when ``flwr-datasets`` is not installed, ``partitioner`` is not a partitioner or
            already has a dataset, ``data`` is neither a dataset nor a mapping, the columns are missing,
            or the arrays differ in length.
    """
    if not _is_partitioner(partitioner):
        raise DataError(f"{type(partitioner).__name__} is not a Flower Datasets partitioner")
    try:
        import datasets
    except ImportError:  # pragma: no cover - installed by the data extra
        raise DataError("the Flower Datasets adapter needs flwr-datasets: pip install 'fedmodel[data]'") from None
    if isinstance(data, Mapping):
        for column in (x, y):
            if column not in data:
                raise DataError(f"no column {column!r} in the arrays; columns: {sorted(data)}")
        arrays = {name: _column(name, values) for name, values in data.items()}
        lengths = {name: len(array) for name, array in arrays.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{name} {length}" for name, length in lengths.items())
            raise DataError(f"columns of different lengths: {listed}")
        data = datasets.Dataset.from_dict(arrays)
    elif isinstance(data, datasets.Dataset):
        for column in (x, y):
            if column not in data.column_names:
                raise DataError(f"no column {column!r} in the dataset; columns: {data.column_names}")
    else:
        raise DataError(
            f"data must be a datasets.Dataset or a mapping of column name -> array, got {type(data).__name__}"
        )
    assigned = getattr(partitioner, "is_dataset_assigned", None)
    if callable(assigned) and assigned():
        raise DataError(f"the {type(partitioner).__name__} already has a dataset: use a new partitioner")
    try:
        partitioner.dataset = data
    except Exception as exc:  # the partitioner's own checks
        raise DataError(f"the partitioner refused the dataset ({type(exc).__name__}: {exc})") from None
    return FlowerClients(partitioner, x=x, y=y)


def _column(name: str, values: Any) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise DataError(f"column {name!r} is not an array of equally shaped examples ({exc})") from None
    if array.ndim == 0:
        raise DataError(f"column {name!r} is not an array of examples (shape {array.shape})")
    return array
