"""Flower Datasets partitioners as lazy fedmodel clients (the data extra)."""

from __future__ import annotations

import numpy as np
import pytest

from fedmodel.data import DataError

partitioner = pytest.importorskip("flwr_datasets.partitioner", reason="flwr-datasets comes with the data extra")
from fedmodel.data.flower import FlowerClients, from_flower  # noqa: E402


def _arrays(n: int = 12) -> dict[str, np.ndarray]:
    return {
        "x": np.arange(2 * n, dtype=np.float64).reshape(n, 2),  # float64 in, float32 out
        "y": np.arange(n, dtype=np.int32) % 3,
        "writer": np.array([f"w{i % 4}" for i in range(n)]),
    }


def test_an_iid_partitioner_gives_a_partition_of_the_arrays_with_fedmodels_dtypes() -> None:
    clients = from_flower(partitioner.IidPartitioner(num_partitions=3), _arrays())
    assert isinstance(clients, FlowerClients) and len(clients) == 3 and clients.client_ids == ("0", "1", "2")
    first = clients[0]
    assert first.x.dtype == np.float32 and first.y.dtype == np.int64 and first.x.shape == (4, 2)
    seen = np.sort(np.concatenate([c.x[:, 0] for c in clients]))
    np.testing.assert_array_equal(seen, np.arange(0, 24, 2))
    np.testing.assert_array_equal(first.y, (first.x[:, 0] // 2).astype(np.int64) % 3)  # rows stay whole


def test_a_natural_id_partitioner_names_clients_by_their_natural_ids() -> None:
    clients = from_flower(partitioner.NaturalIdPartitioner(partition_by="writer"), _arrays())
    assert sorted(clients.client_ids) == ["w0", "w1", "w2", "w3"]
    w2 = clients[clients.index_of("w2")]
    assert sorted(w2.x[:, 0].tolist()) == [4.0, 12.0, 20.0]  # rows 2, 6, 10


def test_a_dirichlet_partitioner_from_flower_is_honoured() -> None:
    arrays = _arrays(300)
    dirichlet = partitioner.DirichletPartitioner(
        num_partitions=5, partition_by="y", alpha=0.1, min_partition_size=1, seed=0
    )
    clients = from_flower(dirichlet, arrays)
    assert sum(len(c) for c in clients) == 300
    skewed = [np.bincount(c.y, minlength=3).max() / len(c) for c in clients]
    assert np.mean(skewed) > 0.6  # alpha = 0.1: most of a client's examples share a label


def test_missing_columns_are_named_with_the_columns_there_are() -> None:
    with pytest.raises(DataError, match=r"no column 'label' in the arrays; columns: \['writer', 'x', 'y'\]"):
        from_flower(partitioner.IidPartitioner(num_partitions=2), _arrays(), y="label")
    clients = from_flower(partitioner.IidPartitioner(num_partitions=2), _arrays(), x="writer")
    assert clients[0].x.dtype.kind == "U"  # string columns stay as they are
    with pytest.raises(DataError, match="is not a Flower Datasets partitioner"):
        FlowerClients(object())
