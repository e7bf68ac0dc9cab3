"""Digits loading and client splits: partitions, non-empty clients, seeded, skew controlled by alpha."""

from __future__ import annotations

import numpy as np
import pytest

from fedmodel.data import ClientData, federated_digits, load_digits, split_dirichlet, split_iid


def _indexed(n: int = 300, classes: int = 10) -> ClientData:
    """x holds each example's index, so a split can be checked to be a partition."""
    return ClientData(np.arange(n, dtype=np.float32)[:, None], np.arange(n, dtype=np.int64) % classes)


def _ids(clients: list[ClientData]) -> np.ndarray:
    return np.sort(np.concatenate([c.x[:, 0] for c in clients]).astype(np.int64))


def test_digits_are_float32_in_unit_range_with_int64_labels_and_a_seeded_test_split() -> None:
    train, test = load_digits(test_fraction=0.2, seed=0)
    assert train.x.shape == (1438, 64) and test.x.shape == (359, 64)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    assert train.x.min() == 0.0 and train.x.max() == 1.0
    assert set(np.unique(train.y)) == set(range(10))
    again, _ = load_digits(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train.y, again.y)
    other, _ = load_digits(test_fraction=0.2, seed=1)
    assert not np.array_equal(train.y, other.y)


def test_iid_split_is_a_partition_with_balanced_sizes() -> None:
    clients = split_iid(_indexed(), 7, seed=0)
    np.testing.assert_array_equal(_ids(clients), np.arange(300))
    assert {len(c) for c in clients} <= {42, 43}


@pytest.mark.parametrize("alpha", [0.01, 0.5, 100.0])
def test_dirichlet_split_is_a_partition_with_every_client_non_empty(alpha: float) -> None:
    clients = split_dirichlet(_indexed(), 50, alpha=alpha, seed=0)
    assert len(clients) == 50
    assert min(len(c) for c in clients) >= 1
    np.testing.assert_array_equal(_ids(clients), np.arange(300))
    for c in clients:  # labels travel with their examples
        np.testing.assert_array_equal(c.y, c.x[:, 0].astype(np.int64) % 10)


def test_dirichlet_split_is_seeded() -> None:
    a = split_dirichlet(_indexed(), 10, alpha=0.5, seed=3)
    b = split_dirichlet(_indexed(), 10, alpha=0.5, seed=3)
    c = split_dirichlet(_indexed(), 10, alpha=0.5, seed=4)
    assert [len(x) for x in a] == [len(x) for x in b]
    assert all(np.array_equal(x.y, y.y) for x, y in zip(a, b, strict=True))
    assert [len(x) for x in a] != [len(x) for x in c]


def test_smaller_alpha_gives_clients_fewer_classes() -> None:
    def mean_classes(alpha: float) -> float:
        clients = split_dirichlet(_indexed(2000), 20, alpha=alpha, seed=0)
        return float(np.mean([len(np.unique(c.y)) for c in clients]))

    assert mean_classes(0.1) < 5 < 9 < mean_classes(100.0)


def test_federated_digits_gives_the_clients_and_the_held_out_set() -> None:
    data = federated_digits(20, alpha=0.5, seed=0)
    assert len(data.clients) == 20 and sum(len(c) for c in data.clients) == 1438
    assert len(data.test) == 359
    iid = federated_digits(20, alpha=None, seed=0)
    assert max(len(c) for c in iid.clients) - min(len(c) for c in iid.clients) <= 1


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="same leading length"):
        ClientData(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="alpha"):
        split_dirichlet(_indexed(), 3, alpha=0.0)
    with pytest.raises(ValueError, match="num_clients"):
        split_iid(_indexed(10), 11)
