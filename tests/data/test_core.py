"""ClientData, lazy client sequences and pooling: what every loader's output promises."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import fedmodel.data as fd
from fedmodel import FedModelError
from fedmodel.data import ClientData, ClientSequence, DataError, FederatedData, pool_clients


class _Counting(ClientSequence):
    """Client ``k`` has ``k + 1`` examples whose x is ``k``; every load is counted."""

    def __init__(self, n: int) -> None:
        self.loads: list[str] = []
        self._ids = tuple(f"c{k:02d}" for k in range(n))

    @property
    def client_ids(self) -> tuple[str, ...]:
        return self._ids

    def load(self, client_id: str) -> ClientData:
        self.loads.append(client_id)
        k = int(client_id[1:])
        return ClientData(np.full((k + 1, 2), k, np.float32), np.zeros(k + 1, np.int64))


def test_every_public_name_of_the_old_module_still_imports_from_fedmodel_data() -> None:
    for name in ("ClientData", "FederatedData", "federated_digits", "load_digits", "split_iid", "split_dirichlet"):
        assert name in fd.__all__ and callable(getattr(fd, name))


def test_client_data_with_unequal_lengths_is_a_typed_error_naming_both_shapes() -> None:
    with pytest.raises(DataError, match=r"\(3, 2\) and \(2,\)") as info:
        ClientData(np.zeros((3, 2)), np.zeros(2))
    assert isinstance(info.value, FedModelError) and isinstance(info.value, ValueError)


def test_a_client_sequence_loads_only_the_client_asked_for_and_keeps_nothing() -> None:
    clients = _Counting(5)
    assert len(clients) == 5 and clients.loads == []
    assert clients[3].x[0, 0] == 3 and clients.loads == ["c03"]
    assert clients[-1].num_examples == 5 and clients.loads == ["c03", "c04"]
    assert clients[3] is not clients[3]  # read again, not cached
    assert [c.num_examples for c in clients] == [1, 2, 3, 4, 5]


def test_an_index_out_of_range_raises_index_error_so_iteration_stops() -> None:
    clients = _Counting(2)
    with pytest.raises(IndexError, match="client index 2 out of range for 2 clients"):
        clients[2]
    assert len(list(clients)) == 2


def test_a_slice_is_a_lazy_selection_of_the_same_clients() -> None:
    clients = _Counting(6)
    picked = clients[1:6:2]
    assert isinstance(picked, ClientSequence) and clients.loads == []
    assert picked.client_ids == ("c01", "c03", "c05")
    assert [c.x[0, 0] for c in picked] == [1, 3, 5]
    assert picked[::-1].client_ids == ("c05", "c03", "c01")
    with pytest.raises(DataError, match="'c02'"):
        picked.load("c02")


def test_index_of_finds_a_natural_id_and_names_an_unknown_one() -> None:
    clients = _Counting(3)
    assert clients.index_of("c02") == 2
    with pytest.raises(DataError, match="'bob'"):
        clients.index_of("bob")


def test_pooling_concatenates_clients_in_order() -> None:
    pooled = pool_clients(_Counting(3))
    np.testing.assert_array_equal(pooled.x[:, 0], [0, 1, 1, 2, 2, 2])
    assert pooled.x.dtype == np.float32 and pooled.y.dtype == np.int64


def test_pooling_clients_of_different_shapes_names_the_client_and_both_shapes() -> None:
    a = ClientData(np.zeros((2, 3), np.float32), np.zeros(2, np.int64))
    b = ClientData(np.zeros((2, 4), np.float32), np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"client 1: examples x\(4,\) float32.*x\(3,\) float32"):
        pool_clients([a, b])
    with pytest.raises(DataError, match="zero clients"):
        pool_clients([])


def test_federated_data_accepts_a_lazy_sequence_and_per_client_test_sets() -> None:
    clients = _Counting(4)
    data = FederatedData(clients, pool_clients(clients[:2]), test_clients=clients[2:])
    assert len(data.clients) == 4 and len(data.test) == 3 and len(data.test_clients or []) == 2


def test_importing_fedmodel_data_loads_no_optional_library() -> None:
    code = (
        "import json, sys\n"
        "import fedmodel.data, fedmodel.heterogeneity\n"
        "heavy = ('h5py', 'datasets', 'flwr_datasets', 'sklearn', 'matplotlib', 'torch', 'tensorflow', 'jax')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def _five() -> ClientData:
    return ClientData(np.arange(5, dtype=np.float32)[:, None], np.arange(5, dtype=np.int64))


@pytest.mark.parametrize(
    ("indices", "bad"),
    [(10**20, "100000000000000000000"), ([7], "7"), ([0, -6], "-6"), (np.array([4, 5]), "5"), (-6, "-6")],
)
def test_subset_out_of_range_names_the_index_and_the_number_of_examples(indices: object, bad: str) -> None:
    with pytest.raises(IndexError, match=rf"index {bad} is out of range for 5 examples"):
        _five().subset(indices)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([1.0], r"float64"),
        (np.array([True, False]), r"boolean mask of shape \(2,\) for 5 examples"),
        (True, r"bool"),
        (None, r"NoneType"),
        ("ab", r"str"),
        ([[0, 1]], r"shape \(1, 2\)"),
    ],
)
def test_subset_refuses_indices_that_are_not_positions_or_a_mask(indices: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        _five().subset(indices)


def test_subset_takes_positions_masks_slices_and_single_positions() -> None:
    data = _five()
    assert data.subset([4, -5]).y.tolist() == [4, 0]
    assert data.subset(np.array([True, False, True, False, True])).y.tolist() == [0, 2, 4]
    assert data.subset(slice(1, 3)).y.tolist() == [1, 2]
    assert data.subset([]).num_examples == 0 and data.subset([]).x.shape == (0, 1)
    assert data.subset(np.int64(3)).y.tolist() == [3] and data.subset(np.int64(3)).x.shape == (1, 1)


@pytest.mark.parametrize(("items", "kind"), [([1, 2], "int"), ("ab", "str"), ([_five(), None], "NoneType")])
def test_pooling_something_that_is_not_client_data_names_the_item_and_its_type(items: object, kind: str) -> None:
    with pytest.raises(DataError, match=rf"item \d is {kind}, not ClientData"):
        pool_clients(items)  # type: ignore[arg-type]


@pytest.mark.parametrize(("index", "kind"), [("a", "str"), (True, "bool"), (1.0, "float"), (None, "NoneType")])
def test_client_sequence_refuses_indexes_that_are_not_ints_naming_the_type(index: object, kind: str) -> None:
    clients = _Counting(3)
    with pytest.raises(TypeError, match=rf"client indices must be integers or slices, not {kind}"):
        clients[index]  # type: ignore[call-overload]
    assert clients.loads == []
    assert clients[np.int64(1)].num_examples == 2 and clients[np.uint8(2)].num_examples == 3


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.array([{"a": 1}, None], dtype=object), np.zeros(2), r"x has dtype object"),
        (np.zeros((2, 1)), np.array([None, "a"], dtype=object), r"y has dtype object"),
        ([[1, 2], [3]], [0, 1], r"x is not an array"),
    ],
)
def test_client_data_refuses_object_and_ragged_arrays_naming_the_dtype(x: object, y: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ClientData(x, y)  # type: ignore[arg-type]
    assert ClientData(np.array([b"ab", b"c"]), np.array(["u", "v"])).x.dtype.kind == "S"  # text is fine
