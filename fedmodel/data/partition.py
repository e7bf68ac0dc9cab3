"""Numpy partitioners: cut one centralized data set into clients (no Flower Datasets needed).

Each is seeded and returns a partition (every example lands in exactly one client):

- :func:`split_iid`: a shuffle cut into equal parts;
- :func:`split_dirichlet`: label skew, each class divided by Dir(alpha) proportions (Hsu et al. 2019);
- :func:`split_shards`: McMahan et al.'s pathological non-IID split, sorted-by-label shards, two per client;
- :func:`split_by_id`: natural ids (writer, speaker, user), one client per distinct id;
- :func:`split_quantity_skew`: IID labels, client sizes in Dir(alpha) proportions.

>>> data = ClientData(np.arange(8, dtype=np.float32)[:, None], np.array([0, 0, 1, 1, 2, 2, 3, 3]))
>>> [sorted(set(c.y.tolist())) for c in split_shards(data, 2, seed=0)]
[[1, 2], [0, 3]]
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedmodel.data._core import ClientData, DataError

__all__ = ["split_by_id", "split_dirichlet", "split_iid", "split_quantity_skew", "split_shards"]


def split_iid(data: ClientData, num_clients: int, *, seed: int = 0) -> list[ClientData]:
    """A seeded shuffle cut into ``num_clients`` parts whose sizes differ by at most one."""
    _check_clients(data, num_clients)
    order = np.random.default_rng(_seed(seed)).permutation(len(data))
    return [data.subset(part) for part in np.array_split(order, num_clients)]


def split_dirichlet(data: ClientData, num_clients: int, *, alpha: float, seed: int = 0) -> list[ClientData]:
    """Label skew: each class's examples are divided among clients in proportions drawn from Dir(alpha).

    Small ``alpha`` (0.1) gives clients few classes; large ``alpha`` (100) is close to IID (Hsu et al.
    2019). Every client gets at least one example: an empty client takes one from the largest client.

    Raises:
        DataError: for ``alpha`` not > 0 and finite, or labels ``y`` not 1-D or holding NaN.
    """
    _check_clients(data, num_clients)
    _check_alpha(alpha)
    _check_labels(data)
    rng = np.random.default_rng(_seed(seed))
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    inverse = np.unique(data.y, return_inverse=True)[1]
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    for indices in by_class:  # each class's example indices, ascending, classes in sorted order
        members = rng.permutation(indices)
        shares = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for client, chunk in enumerate(np.split(members, cuts)):
            parts[client].extend(int(i) for i in chunk)
    # Fill empty clients from the largest one (lowest number on ties): a heap of (-size, client).
    # A donor always has >= 2 examples (there are >= num_clients examples), so no filled client donates.
    largest = [(-len(p), c) for c, p in enumerate(parts) if p]
    heapq.heapify(largest)
    for client in range(num_clients):
        if not parts[client]:
            size, donor = heapq.heappop(largest)
            parts[client].append(parts[donor].pop())
            heapq.heappush(largest, (size + 1, donor))
    return [data.subset(np.sort(np.asarray(p, np.int64))) for p in parts]


def split_shards(data: ClientData, num_clients: int, *, shards_per_client: int = 2, seed: int = 0) -> list[ClientData]:
    """McMahan et al.'s pathological non-IID split: sort by label, cut into equal shards, deal them out.

    "Communication-Efficient Learning of Deep Networks from Decentralized Data" (AISTATS 2017) sorts
    MNIST by digit, cuts it into 200 shards of 300 and gives each of 100 clients two shards, so most
    clients see two digits. Here the examples of each label are shuffled first (seeded), the sorted
    data is cut into ``num_clients * shards_per_client`` shards whose sizes differ by at most one, and
    each client gets ``shards_per_client`` shards drawn without replacement. A client has at most
    ``shards_per_client`` labels when every label's count is a multiple of the shard size, and at most
    twice that otherwise (a shard can straddle two labels).

    Raises:
        DataError: for fewer examples than shards, ``shards_per_client`` not an int >= 1, or labels
            ``y`` not 1-D or holding NaN.
    """
    _check_positive_int("shards_per_client", shards_per_client)
    _check_clients(data, num_clients)
    _check_labels(data)
    num_shards = num_clients * shards_per_client
    if num_shards > len(data):
        raise DataError(
            f"{num_clients} clients x {shards_per_client} shards need {num_shards} examples, got {len(data)}"
        )
    rng = np.random.default_rng(_seed(seed))
    shuffled = rng.permutation(len(data))
    by_label = shuffled[np.argsort(data.y[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_shards)
    dealt = rng.permutation(num_shards).reshape(int(num_clients), int(shards_per_client))
    return [data.subset(np.sort(np.concatenate([shards[s] for s in row]))) for row in dealt]


def split_by_id(data: ClientData, ids: Sequence[Any] | np.ndarray) -> dict[Any, ClientData]:
    """One client per distinct natural id (a writer, a speaker, a user), in sorted id order.

    ``ids[i]`` is the id of example ``i``; each client keeps its examples in their original order.
    The dict's keys are the ids themselves (a numpy array's items become Python scalars). All ids
    must be of one kind (int, float, bool, str, bytes or one other type), since ``1``, ``1.0``,
    ``True`` and ``"1"`` are different ids that would otherwise merge or sort ambiguously.

    >>> data = ClientData(np.arange(4, dtype=np.float32)[:, None], np.array([0, 1, 0, 1]))
    >>> {k: v.x[:, 0].tolist() for k, v in split_by_id(data, ["bob", "amy", "bob", "bob"]).items()}
    {'amy': [1.0], 'bob': [0.0, 2.0, 3.0]}

    Raises:
        DataError: when ``ids`` does not have one id per example, an id is missing (None, NaN) or not
            hashable, the ids mix kinds or cannot be sorted, or there are no examples.
    """
    keys = _id_list(ids)
    if (isinstance(ids, np.ndarray) and ids.ndim != 1) or len(keys) != len(data):
        shape = ids.shape if isinstance(ids, np.ndarray) else (len(keys),)
        raise DataError(f"ids needs one id per example: {len(data)} examples, ids of shape {shape}")
    if not keys:
        raise DataError("split_by_id: no examples to split")
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "biufUS":  # one kind already: group in numpy
        if ids.dtype.kind == "f" and np.isnan(ids).any():
            raise DataError(f"ids[{int(np.flatnonzero(np.isnan(ids))[0])}] is NaN: every example needs an id")
        unique, inverse = np.unique(ids, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        parts = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
        return {key: data.subset(part) for key, part in zip(unique.tolist(), parts, strict=True)}
    groups: dict[tuple[str, Any], list[int]] = {}
    for i, key in enumerate(keys):
        if key is None or (isinstance(key, float | np.floating) and math.isnan(key)):
            raise DataError(f"ids[{i}] is {'None' if key is None else 'NaN'}: every example needs an id")
        try:
            groups.setdefault((_id_kind(key), key), []).append(i)
        except TypeError:
            raise DataError(f"ids[{i}] = {key!r} ({type(key).__name__}) is not hashable") from None
    kinds = {kind: key for kind, key in groups}
    if len(kinds) > 1:
        named = ", ".join(f"{kind} (e.g. {key!r})" for kind, key in sorted(kinds.items()))
        raise DataError(f"ids mix kinds {named}: give ids of one type")
    try:
        ordered = sorted(groups, key=lambda kind_key: kind_key[1])
    except TypeError:
        raise DataError(f"ids of type {next(iter(kinds))} cannot be sorted") from None
    return {key: data.subset(np.asarray(groups[kind, key], np.int64)) for kind, key in ordered}


def _id_list(ids: Any) -> list[Any]:
    """The ids as a list of Python objects (a 1-D numpy array's items as Python scalars)."""
    if isinstance(ids, np.ndarray):
        return list(ids.ravel().tolist())
    if isinstance(ids, Sequence) and not isinstance(ids, str | bytes):
        return list(ids)
    raise DataError(f"ids must be a sequence or 1-D array of one id per example, got {type(ids).__name__}")


def _id_kind(key: Any) -> str:
    """The kind an id sorts with: numpy scalars go with the Python type they equal."""
    hash(key)  # TypeError for an unhashable id
    for kind, types in (
        ("bool", bool | np.bool_),
        ("int", int | np.integer),
        ("float", float | np.floating),
        ("str", str),
        ("bytes", bytes),
    ):
        if isinstance(key, types):
            return kind
    return type(key).__name__


def split_quantity_skew(
    data: ClientData, num_clients: int, *, alpha: float, min_size: int = 1, seed: int = 0
) -> list[ClientData]:
    """Quantity skew: labels stay IID, client sizes follow Dir(alpha) proportions of the data.

    As in Li et al., "Federated Learning on Non-IID Data Silos: An Experimental Study" (ICDE 2022):
    each client first gets ``min_size`` examples, the rest is shared out by the Dirichlet proportions
    (largest remainders round up), all from one seeded shuffle. Small ``alpha`` gives a few large
    clients and many small ones.

    Raises:
        DataError: for ``alpha`` not > 0 and finite, ``min_size`` not an int >= 1, or fewer than
            ``num_clients * min_size`` examples.
    """
    _check_clients(data, num_clients)
    _check_alpha(alpha)
    _check_positive_int("min_size", min_size)
    if num_clients * min_size > len(data):
        raise DataError(f"min_size={min_size} for {num_clients} clients does not fit {len(data)} examples")
    rng = np.random.default_rng(_seed(seed))
    order = rng.permutation(len(data))
    shares = rng.dirichlet(np.full(num_clients, alpha))
    spare = len(data) - num_clients * min_size
    exact = shares * spare
    sizes = np.floor(exact).astype(np.int64)
    short = spare - int(sizes.sum())
    sizes[np.argsort(sizes - exact, kind="stable")[:short]] += 1  # the largest remainders
    cuts = np.cumsum(sizes + min_size)[:-1]
    return [data.subset(np.sort(part)) for part in np.split(order, cuts)]


def _check_clients(data: ClientData, num_clients: int) -> None:
    if (
        not isinstance(num_clients, int | np.integer)
        or isinstance(num_clients, bool)
        or not 1 <= num_clients <= len(data)
    ):
        raise DataError(f"num_clients must be an int between 1 and the {len(data)} examples, got {num_clients!r}")


def _seed(seed: object) -> int:
    """``seed`` if it is an int >= 0 (numpy's too), what ``np.random.default_rng`` takes; a DataError otherwise."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be an int >= 0, got {seed!r}")
    return int(seed)


def _check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise DataError(f"{name} must be an int >= 1, got {value!r} ({type(value).__name__})")


def _check_alpha(alpha: float) -> None:
    real = isinstance(alpha, int | float | np.integer | np.floating) and not isinstance(alpha, bool | np.bool_)
    if not real or not math.isfinite(alpha) or alpha <= 0:
        raise DataError(f"alpha must be > 0 and a finite real number, got {alpha!r} ({type(alpha).__name__})")


def _check_labels(data: ClientData) -> None:
    """Labels a label-based split can sort and group: 1-D, no NaN."""
    y = data.y
    if y.ndim != 1:
        raise DataError(
            f"labels y must be 1-D for a label-based split (one class per example), got shape {y.shape} {y.dtype}"
        )
    if y.dtype.kind in "fc" and np.isnan(y).any():
        raise DataError(f"labels y ({y.dtype}, shape {y.shape}) hold NaN at {int(np.flatnonzero(np.isnan(y))[0])}")
