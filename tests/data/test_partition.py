"""Numpy partitioners: each is a seeded partition with the skew it promises."""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmodel.data import (
    ClientData,
    DataError,
    split_by_id,
    split_dirichlet,
    split_iid,
    split_quantity_skew,
    split_shards,
)


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
        split_dirichlet(dataset, k, alpha=alpha, seed=seed),
        split_shards(dataset, max(1, k // 2), shards_per_client=2, seed=seed) if n >= 2 * max(1, k // 2) else [],
        list(split_by_id(dataset, np.arange(n) % k).values()),
    ):
        if clients:
            np.testing.assert_array_equal(_members(clients), np.arange(n))
            assert all(len(c) >= 1 for c in clients)


def _labelled(y: Any) -> ClientData:
    """x holds each example's index, y is given (possibly NaN, 2-D, ...)."""
    y = np.asarray(y)
    return ClientData(np.arange(len(y), dtype=np.float32)[:, None], y)


@pytest.mark.parametrize("alpha", [math.inf, -math.inf, math.nan, 0.0, -1.0, "1", None, True, np.inf])
def test_alpha_must_be_a_finite_positive_real_number(alpha: Any) -> None:
    data = _indexed(20)
    before = data.x.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast" on the way to the error
        with pytest.raises(
            DataError, match=r"alpha must be > 0 and a finite real number, got .*" + type(alpha).__name__
        ):
            split_quantity_skew(data, 5, alpha=alpha)
        with pytest.raises(DataError, match=r"alpha must be > 0 and a finite real number"):
            split_dirichlet(data, 5, alpha=alpha)
    np.testing.assert_array_equal(data.x, before)


def test_alpha_accepts_ints_numpy_floats_and_extremes_and_stays_a_partition() -> None:
    data = _indexed(200)
    for alpha in (1, np.float32(0.5), 1e-300, 1e300):
        for clients in (split_quantity_skew(data, 7, alpha=alpha), split_dirichlet(data, 7, alpha=alpha)):
            np.testing.assert_array_equal(_members(clients), np.arange(200))
            assert all(len(c) >= 1 for c in clients)


@pytest.mark.parametrize("split", [split_dirichlet, split_shards])
def test_label_splits_refuse_nan_labels_naming_them(split: Any) -> None:
    data = _labelled([np.nan] * 10 + [1.0] * 10)
    kwargs = {"alpha": 0.5} if split is split_dirichlet else {}
    with pytest.raises(DataError, match=r"labels y .*float64.* NaN"):
        split(data, 5, **kwargs)


@pytest.mark.parametrize("split", [split_dirichlet, split_shards])
def test_label_splits_refuse_labels_that_are_not_one_dimensional(split: Any) -> None:
    one_hot = np.eye(4, dtype=np.int64)[np.arange(20) % 4]
    kwargs = {"alpha": 0.5} if split is split_dirichlet else {}
    with pytest.raises(DataError, match=r"labels y must be 1-D .*shape \(20, 4\)"):
        split(_labelled(one_hot), 5, **kwargs)


def test_iid_and_quantity_skew_still_split_one_hot_labels() -> None:
    one_hot = np.eye(4, dtype=np.int64)[np.arange(20) % 4]
    data = _labelled(one_hot)
    for clients in (split_iid(data, 5), split_quantity_skew(data, 5, alpha=0.5)):
        np.testing.assert_array_equal(_members(clients), np.arange(20))
        assert all(c.x.shape[1:] == (1,) and c.y.shape[1:] == (4,) for c in clients)
        assert all(np.array_equal(c.y, one_hot[c.x[:, 0].astype(int)]) for c in clients)


def test_label_splits_keep_working_with_string_and_negative_labels() -> None:
    for y in (np.array(list("ab") * 10), np.array([3, 70, -5, 3] * 5)):
        for clients in (split_dirichlet(_labelled(y), 5, alpha=0.5), split_shards(_labelled(y), 5)):
            np.testing.assert_array_equal(_members(clients), np.arange(20))


def test_dirichlet_draw_is_unchanged_and_many_clients_are_filled() -> None:
    data = _indexed(3000)
    clients = split_dirichlet(data, 300, alpha=0.001, seed=1)
    digest = np.concatenate([c.x[:, 0] for c in clients]).tobytes() + np.array([len(c) for c in clients]).tobytes()
    assert hashlib.sha256(digest).hexdigest()[:16] == "9b55a1986360d296"  # the draw before the linear fix-up
    big = _indexed(8000)
    many = split_dirichlet(big, 4000, alpha=0.001, seed=0)
    np.testing.assert_array_equal(_members(many), np.arange(8000))
    assert all(len(c) >= 1 for c in many)


@pytest.mark.parametrize("value", [2.5, True, "2", None, np.float64(2.0)])
def test_integer_options_must_be_ints_naming_the_option(value: Any) -> None:
    with pytest.raises(DataError, match=r"shards_per_client must be an int >= 1, got " + repr(value)[:3]):
        split_shards(_indexed(20), 2, shards_per_client=value)
    with pytest.raises(DataError, match=r"min_size must be an int >= 1, got " + repr(value)[:3]):
        split_quantity_skew(_indexed(20), 5, alpha=0.5, min_size=value)


def test_integer_options_accept_numpy_ints() -> None:
    assert len(split_shards(_indexed(20), 2, shards_per_client=np.int64(3))) == 2
    clients = split_quantity_skew(_indexed(20), 5, alpha=0.5, min_size=np.int64(2))
    assert min(len(c) for c in clients) >= 2 and sum(len(c) for c in clients) == 20


@pytest.mark.parametrize(
    ("ids", "kinds"),
    [
        ([1, "1"] * 10, "int.*str"),
        ([b"a", "a"] * 10, "bytes.*str"),
        ([2**53, 2**53 + 1] * 9 + [0.5, 0.5], "float.*int"),
        (["a", 1] * 10, "int.*str"),
        ([1, 1.0] * 10, "float.*int"),
        ([True, 1] * 10, "bool.*int"),
        (np.array(["a"] * 10 + [1] * 10, dtype=object), "int.*str"),
    ],
)
def test_split_by_id_refuses_ids_of_different_kinds(ids: Any, kinds: str) -> None:
    with pytest.raises(DataError, match=r"ids mix kinds .*" + kinds):
        split_by_id(_indexed(20), ids)


def test_split_by_id_keeps_the_original_ids_exactly() -> None:
    big = split_by_id(_indexed(20), [2**53, 2**53 + 1] * 10)
    assert list(big) == [2**53, 2**53 + 1] and all(type(k) is int for k in big)
    assert [len(c) for c in big.values()] == [10, 10]
    raw = split_by_id(_indexed(4), [b"b", b"a", b"b", b"b"])
    assert list(raw) == [b"a", b"b"] and raw[b"b"].x[:, 0].tolist() == [0, 2, 3]
    pairs = split_by_id(_indexed(4), [(1, "x"), (0, "y"), (1, "x"), (0, "y")])
    assert list(pairs) == [(0, "y"), (1, "x")]
    flags = split_by_id(_indexed(4), np.array([True, False, True, True]))
    assert list(flags) == [False, True] and type(next(iter(flags))) is bool
    floats = split_by_id(_indexed(3), np.array([2.5, 1.5, 2.5]))
    assert list(floats) == [1.5, 2.5] and type(next(iter(floats))) is float
    for clients in (big, raw, pairs, flags, floats):
        n = sum(len(c) for c in clients.values())
        np.testing.assert_array_equal(_members(list(clients.values())), np.arange(n))


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([{"a": 1}] * 20, r"ids\[0\] = \{'a': 1\} \(dict\) is not hashable"),
        ([[1]] * 20, r"ids\[0\] = \[1\] \(list\) is not hashable"),
        ([1] * 19 + [None], r"ids\[19\] is None"),
        ([1.0] * 10 + [math.nan] * 10, r"ids\[10\] is NaN"),
        (np.array([1.5] * 10 + [np.nan] * 10), r"ids\[10\] is NaN"),
        (None, r"ids must be a sequence .*NoneType"),
        ({"a": 1}, r"ids must be a sequence .*dict"),
        ("a" * 20, r"ids must be a sequence .*str"),
        ([{1}, {2}] * 10, r"\(set\) is not hashable"),
        ([{1}, 2] * 10, r"\(set\) is not hashable"),
    ],
)
def test_split_by_id_refuses_unhashable_missing_or_non_sequence_ids(ids: Any, message: str) -> None:
    with pytest.raises(DataError, match=message):
        split_by_id(_indexed(20), ids)


def test_split_by_id_refuses_ids_that_cannot_be_sorted() -> None:
    with pytest.raises(DataError, match=r"ids of type tuple cannot be sorted"):
        split_by_id(_indexed(4), [(1,), ("a",), (1,), (1,)])


def test_split_by_id_of_no_examples_is_an_error() -> None:
    empty = ClientData(np.zeros((0, 1), np.float32), np.zeros(0, np.int64))
    with pytest.raises(DataError, match="no examples to split"):
        split_by_id(empty, [])
    with pytest.raises(DataError, match="0 examples, ids of shape \\(2,\\)"):
        split_by_id(empty, [1, 2])
    with pytest.raises(DataError, match="2 examples, ids of shape \\(2, 1\\)"):
        split_by_id(_indexed(2), np.zeros((2, 1)))


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None])
@pytest.mark.parametrize("split", ["iid", "dirichlet", "shards", "quantity"])
def test_a_seed_that_is_not_a_non_negative_int_is_a_data_error_naming_it(split: str, seed: object) -> None:
    data = ClientData(np.zeros((20, 2), np.float32), np.arange(20) % 4)
    call = {
        "iid": lambda: split_iid(data, 2, seed=seed),  # type: ignore[arg-type]
        "dirichlet": lambda: split_dirichlet(data, 2, alpha=1.0, seed=seed),  # type: ignore[arg-type]
        "shards": lambda: split_shards(data, 2, seed=seed),  # type: ignore[arg-type]
        "quantity": lambda: split_quantity_skew(data, 2, alpha=1.0, seed=seed),  # type: ignore[arg-type]
    }[split]
    with pytest.raises(DataError, match=rf"seed must be an int >= 0, got {seed!r}"):
        call()
