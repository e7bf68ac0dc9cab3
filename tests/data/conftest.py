"""Writers of small files in exactly the published layouts, shared by the loader tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

LeafWriter = Callable[..., Path]


def write_leaf(path: Path, user_data: dict[str, dict[str, list[Any]]], **dump: Any) -> Path:
    """One LEAF file, ``{"users", "num_samples", "user_data"}``, dumped as LEAF's data_to_json.py does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "users": list(user_data),
        "num_samples": [len(d["y"]) for d in user_data.values()],
        "user_data": user_data,
    }
    with open(path, "w") as f:
        json.dump(record, f, **dump)
    return path


def write_tff(path: Path, clients: dict[str, dict[str, Any]]) -> Path:
    """``/examples/<client_id>/<feature>``, the layout of TFF's HDF5ClientData files."""
    import h5py

    with h5py.File(path, "w") as f:
        examples = f.create_group("examples")
        for client_id, features in clients.items():
            group = examples.create_group(client_id)
            for name, value in features.items():
                group.create_dataset(name, data=value)
    return path


@pytest.fixture
def leaf_file() -> LeafWriter:
    """:func:`write_leaf`."""
    return write_leaf


@pytest.fixture
def tff_file() -> Callable[..., Path]:
    """:func:`write_tff` (needs h5py)."""
    pytest.importorskip("h5py", reason="h5py comes with the data extra")
    return write_tff
