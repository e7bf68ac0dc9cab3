"""Numpy partitioners: each is a seeded partition with the skew it promises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmodel.data import ClientData, DataError, split_by_id, split_quantity_skew, split_shards


def _indexed(n: int, classes: int = 10) -> ClientData:
    """x holds each example's index, so a split can be checked to be a partition."""
    return ClientData(np.arange(n, dtype=np.float32)[:, None], np.arange(n, dtype=np.int64) % classes)


def _members(clients: list[ClientData]) -> np.ndarray:
    return np.sort(np.concatenate([c.x[:, 0] for c in clients]).astype(np.int64))


def test_shards_give_each_client_two_labels_as_in_mcmahan_et_al() -> None:
    data = _indexed(600)  # 60 per label: 100 shards of 6 never straddle two labels
    clients = split_shards(data, 50, shards_per_client=2, seed=0)
    np.testing.assert_array_equal(_members(clients), np.arange(600))
    assert all(len(c) == 12 for c in clients)
    labels = [set(c.y.tolist()) for c in clients]
    assert all(1 <= len(s) <= 2 for s in labels)
    assert sum(len(s) == 2 for s in labels) > 25  # most clients see two classes, as in the paper


def test_shards_are_seeded() -> None:
    data = _indexed(200)
    a, b = split_shards(data, 10, seed=3), split_shards(data, 10, seed=3)
    assert all(np.array_equal(x.x, y.x) for x, y in zip(a, b, strict=True))
    c = split_shards(data, 10, seed=4)
    assert not all(np.array_equal(x.x, y.x) for x, y in zip(a, c, strict=True))


def test_more_shards_than_examples_is_an_error_naming_the_counts() -> None:
    with pytest.raises(DataError, match="need 20 examples, got 15"):
        split_shards(_indexed(15), 10)
    with pytest.raises(DataError, match="shards_per_client"):
        split_shards(_indexed(15), 2, shards_per_client=0)


def test_natural_id_split_keeps_each_ids_examples_in_order() -> None:
    data = ClientData(np.arange(6, dtype=np.float32)[:, None], np.array([0, 1, 2, 0, 1, 2]))
    clients = split_by_id(data, np.array([7, 3, 7, 3, 9, 7]))
    assert list(clients) == [3, 7, 9]
    assert clients[3].x[:, 0].tolist() == [1, 3]
    assert clients[7].x[:, 0].tolist() == [0, 2, 5] and clients[7].y.tolist() == [0, 2, 2]
    assert clients[9].y.tolist() == [1]


def test_natural_id_split_needs_one_id_per_example() -> None:
    with pytest.raises(DataError, match="3 examples, ids of shape \\(2,\\)"):
        split_by_id(_indexed(3), ["a", "b"])


def test_quantity_skew_sizes_follow_the_dirichlet_draw_and_labels_stay_mixed() -> None:
    data = _indexed(10_000)
    small = split_quantity_skew(data, 20, alpha=0.1, seed=0)
    large = split_quantity_skew(data, 20, alpha=1000.0, seed=0)
    np.testing.assert_array_equal(_members(small), np.arange(10_000))
    assert min(len(c) for c in small) >= 1
    assert np.std([len(c) for c in small]) > 10 * np.std([len(c) for c in large])
    assert max(abs(len(c) - 500) for c in large) < 50
    biggest = max(small, key=len)
    assert len(set(biggest.y.tolist())) == 10


def test_quantity_skew_rejects_sizes_that_cannot_fit() -> None:
    with pytest.raises(DataError, match="min_size=5 for 3 clients"):
        split_quantity_skew(_indexed(10), 3, alpha=1.0, min_size=5)
    with pytest.raises(DataError, match="alpha must be > 0"):
        split_quantity_skew(_indexed(10), 3, alpha=0.0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    data=st.data(),
    alpha=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**16),
)
def test_every_partitioner_is_a_partition_with_non_empty_clients(
    n: int, data: st.DataObject, alpha: float, seed: int
) -> None:
    dataset = _indexed(n)
    k = data.draw(st.integers(1, n))
    for clients in (
        split_quantity_skew(dataset, k, alpha=alpha, seed=seed),
        split_shards(dataset, max(1, k // 2), shards_per_client=2, seed=seed) if n >= 2 * max(1, k // 2) else [],
        list(split_by_id(dataset, np.arange(n) % k).values()),
    ):
        if clients:
            np.testing.assert_array_equal(_members(clients), np.arange(n))
            assert all(len(c) >= 1 for c in clients)
