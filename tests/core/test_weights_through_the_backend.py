"""get_weights / assign_weights ask the Backend, never the variable objects: opaque handles work.

A third-party framework may hand out variables that are plain handles (an integer key into its own
store) with no ``shape`` or ``dtype``; the core must validate against what ``read_variables`` reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import fedmodel


class Handle:
    """An opaque key into a store: no shape, no dtype, nothing but identity."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key


class StoreBackend:
    """Reads and writes the handles' values in a dict; counts its reads."""

    name = "store"

    def __init__(self) -> None:
        self.store: dict[int, np.ndarray] = {}
        self.reads = 0

    def variable_names(self, model: Any, variables: Sequence[Handle]) -> list[str]:
        return [f"v{h.key}" for h in variables]

    def read_variables(self, variables: Sequence[Handle], *, copy: bool = True) -> list[np.ndarray]:
        self.reads += 1
        return [self.store[h.key].copy() if copy else self.store[h.key] for h in variables]

    def write_variables(self, variables: Sequence[Handle], values: Sequence[np.ndarray]) -> None:
        for h, v in zip(variables, values, strict=True):
            self.store[h.key] = np.array(v, copy=True)

    def to_native(self, model: Any, batch: Any) -> Any:
        return batch

    def make_optimizer(self, model: Any, spec: Any) -> Any:
        raise NotImplementedError

    def train_step(self, model: Any, batch: Any, optimizer: Any) -> Any:
        raise NotImplementedError


class HandleModel:
    def __init__(self, backend: StoreBackend) -> None:
        backend.store.update({0: np.zeros((2, 3), np.float32), 1: np.zeros(3, np.float32), 2: np.ones(2, np.int64)})
        self.trainable_variables = (Handle(0), Handle(1))
        self.non_trainable_variables = (Handle(2),)


@pytest.fixture
def backend() -> StoreBackend:
    return StoreBackend()


def test_weights_of_opaque_handles_round_trip(backend: StoreBackend) -> None:
    model = HandleModel(backend)
    weights = fedmodel.get_weights(model, backend=backend)
    assert weights.names == ("v0", "v1", "v2")
    new = weights.with_arrays([np.full((2, 3), 2.0, np.float32), np.full(3, 3.0, np.float32), np.arange(2)])
    fedmodel.assign_weights(model, new, backend=backend)
    for want, got in zip(new.arrays, fedmodel.get_weights(model, backend=backend).arrays, strict=True):
        np.testing.assert_array_equal(want, got)


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (0, np.zeros((3, 2), np.float32), r"trainable 'v0' \(index 0\): expected shape \(2, 3\), got \(3, 2\)"),
        (1, np.zeros(3, np.float64), r"trainable 'v1' \(index 1\): expected dtype float32, got float64"),
        (2, np.zeros(2, np.int32), r"non_trainable 'v2' \(index 0\): expected dtype int64, got int32"),
    ],
)
def test_a_bad_value_is_named_from_what_the_backend_reads_and_nothing_changes(
    backend: StoreBackend, index: int, bad: np.ndarray, message: str
) -> None:
    model = HandleModel(backend)
    weights = fedmodel.get_weights(model, backend=backend)
    arrays = [np.asarray(a) + 1 for a in weights.arrays]
    arrays[index] = bad
    before = {k: v.copy() for k, v in backend.store.items()}
    with pytest.raises(fedmodel.WeightsError, match=message):
        fedmodel.assign_weights(model, weights.with_arrays(arrays), backend=backend)
    for key, value in before.items():
        np.testing.assert_array_equal(backend.store[key], value)
