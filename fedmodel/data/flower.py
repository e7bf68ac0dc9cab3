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

    Client ids are the partitioner's natural ids where it has them (``NaturalIdPartitioner``), else
    the partition numbers as strings. ``x`` and ``y`` name the columns; float columns become float32,
    integer columns int64 (the dtypes of fedmodel's built-in models).
    """

    def __init__(self, partitioner: Any, *, x: str = "x", y: str = "y") -> None:
        if not hasattr(partitioner, "load_partition") or not hasattr(partitioner, "num_partitions"):
            raise DataError(f"{type(partitioner).__name__} is not a Flower Datasets partitioner")
        self.partitioner, self.x, self.y = partitioner, x, y
        try:
            count = int(partitioner.num_partitions)
        except Exception as exc:  # a partitioner without a dataset raises its own error types
            raise DataError(f"the partitioner cannot count its partitions ({type(exc).__name__}: {exc})") from None
        natural = getattr(partitioner, "partition_id_to_natural_id", None)
        if isinstance(natural, Mapping) and len(natural) == count:
            self._ids = tuple(str(natural[i]) for i in range(count))
        else:
            self._ids = tuple(str(i) for i in range(count))
        self._positions = {cid: i for i, cid in enumerate(self._ids)}

    @property
    def client_ids(self) -> tuple[str, ...]:
        """Natural ids, or partition numbers."""
        return self._ids

    def load(self, client_id: str) -> ClientData:
        """Partition ``client_id`` as numpy ``x`` and ``y``."""
        position = self._positions.get(client_id)
        if position is None:
            raise DataError(f"no partition with id {client_id!r} among {len(self._ids)}")
        partition = self.partitioner.load_partition(position).with_format("numpy")
        missing = [c for c in (self.x, self.y) if c not in partition.column_names]
        if missing:
            raise DataError(f"partition {client_id!r} has no column {missing}; columns: {partition.column_names}")
        return ClientData(_neutral(np.asarray(partition[self.x])), _neutral(np.asarray(partition[self.y])))


def _neutral(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype.kind in "iub":
        return array.astype(np.int64, copy=False)
    return array


def from_flower(partitioner: Any, data: Any, *, x: str = "x", y: str = "y") -> FlowerClients:
    """Give ``partitioner`` its dataset and wrap it: ``data`` is a ``datasets.Dataset`` or a mapping of
    equally long arrays (column name -> array), which becomes one with ``Dataset.from_dict``.

    Raises:
        DataError: when ``flwr-datasets`` is not installed or the columns are missing.
    """
    try:
        import datasets
    except ImportError:  # pragma: no cover - installed by the data extra
        raise DataError("the Flower Datasets adapter needs flwr-datasets: pip install 'fedmodel[data]'") from None
    if isinstance(data, Mapping):
        for column in (x, y):
            if column not in data:
                raise DataError(f"no column {column!r} in the arrays; columns: {sorted(data)}")
        data = datasets.Dataset.from_dict({k: np.asarray(v) for k, v in data.items()})
    partitioner.dataset = data
    return FlowerClients(partitioner, x=x, y=y)
