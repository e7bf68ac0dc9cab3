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


class _Colliding:
    """A duck-typed partitioner whose natural ids 1 and "1" read the same as strings."""

    num_partitions = 2
    partition_id_to_natural_id = {0: 1, 1: "1"}  # noqa: RUF012

    def load_partition(self, i: int) -> object:
        import datasets

        return datasets.Dataset.from_dict({"x": np.full((i + 1, 2), i, np.float32), "y": np.full(i + 1, i)})


def test_natural_ids_that_read_the_same_as_strings_are_refused_naming_both() -> None:
    with pytest.raises(DataError, match=r"partitions 0 and 1 have natural ids 1 and '1', both '1'"):
        FlowerClients(_Colliding())


def test_uint64_labels_beyond_int64_are_refused_naming_the_column() -> None:
    clients = from_flower(
        partitioner.IidPartitioner(num_partitions=2),
        {"x": np.eye(4, dtype=np.float32), "y": np.array([2**63 + 5, 1, 2, 3], np.uint64)},
    )
    with pytest.raises(DataError, match=r"column 'y' of partition '0': uint64 values up to 9223372036854775813"):
        [len(c) for c in clients]
    small = from_flower(
        partitioner.IidPartitioner(num_partitions=2), {"x": np.eye(4), "y": np.array([7, 1, 2, 3], np.uint64)}
    )
    assert sorted(np.concatenate([c.y for c in small]).tolist()) == [1, 2, 3, 7] and small[0].y.dtype == np.int64


def test_from_flower_checks_the_partitioner_before_giving_it_the_data() -> None:
    import types

    plain = types.SimpleNamespace()
    with pytest.raises(DataError, match="SimpleNamespace is not a Flower Datasets partitioner"):
        from_flower(plain, _arrays())
    assert vars(plain) == {}
    with pytest.raises(DataError, match="object is not a Flower Datasets partitioner"):
        from_flower(object(), _arrays())


def test_from_flower_refuses_data_that_is_no_dataset_and_a_partitioner_that_has_one() -> None:
    for data in ([1, 2, 3], None):
        with pytest.raises(
            DataError, match=r"data must be a datasets.Dataset or a mapping .*, got " + type(data).__name__
        ):
            from_flower(partitioner.IidPartitioner(num_partitions=2), data)
    used = partitioner.IidPartitioner(num_partitions=2)
    from_flower(used, _arrays())
    with pytest.raises(DataError, match="already has a dataset"):
        from_flower(used, _arrays())


def test_a_dataset_missing_columns_is_refused_up_front() -> None:
    import datasets

    dataset = datasets.Dataset.from_dict({"img": np.eye(4, dtype=np.float32), "y": np.arange(4)})
    fresh = partitioner.IidPartitioner(num_partitions=2)
    with pytest.raises(DataError, match=r"no column 'x' in the dataset; columns: \['img', 'y'\]"):
        from_flower(fresh, dataset)
    assert not fresh.is_dataset_assigned()
    assert len(from_flower(partitioner.IidPartitioner(num_partitions=2), dataset, x="img")[0]) == 2


def test_arrays_of_different_lengths_are_refused_naming_both_lengths() -> None:
    arrays = {"x": np.zeros((4, 3)), "y": np.zeros(3), "w": np.zeros(4)}
    with pytest.raises(DataError, match=r"columns of different lengths: x 4, y 3, w 4"):
        from_flower(partitioner.IidPartitioner(num_partitions=2), arrays)
    with pytest.raises(DataError, match=r"column 'x' is not an array of examples \(shape \(\)\)"):
        from_flower(partitioner.IidPartitioner(num_partitions=2), {"x": 5, "y": np.arange(4)})


def test_an_empty_partition_keeps_the_feature_shape_and_dtypes() -> None:
    arrays = {"x": np.zeros((4, 2, 3), np.float64), "y": np.arange(4, dtype=np.int32)}
    dirichlet = partitioner.DirichletPartitioner(3, "y", alpha=0.1, min_partition_size=0, seed=1)
    clients = from_flower(dirichlet, arrays)
    assert [len(c) for c in clients] == [0, 0, 4]
    for client in clients:
        assert client.x.shape[1:] == (2, 3) and client.x.dtype == np.float32 and client.y.dtype == np.int64


def test_a_partition_the_partitioner_cannot_load_is_an_error_not_the_end_of_iteration() -> None:
    clients = from_flower(partitioner.IidPartitioner(num_partitions=6), _arrays(4))  # 6 partitions of 4 rows
    assert len(clients[3]) == 1
    with pytest.raises(DataError, match=r"partition '4' cannot be loaded \(IndexError: .*out of range"):
        [len(c) for c in clients]  # iteration must not stop quietly after 4 of 6 clients
