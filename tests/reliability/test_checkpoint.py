"""Checkpoints: exact round trips, atomic writes, and clear errors that change nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import fedmodel
from fedmodel import CheckpointError, ModelWeights, WeightsError
from fedmodel.checkpoint import load_checkpoint, restore, save_checkpoint
from fedmodel.reference import SoftmaxRegression


def _weights(rng: np.random.Generator) -> ModelWeights:
    return ModelWeights(
        (rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)),
        (np.array([7, -(2**40)], np.int64), np.array(3.25, np.float64)),
        ("dense/kernel", "dense/bias"),
        ("bn/count", "bn/scale"),
    )


def _same(a: ModelWeights, b: ModelWeights) -> bool:
    return (
        a.trainable_names == b.trainable_names
        and a.non_trainable_names == b.non_trainable_names
        and len(a.arrays) == len(b.arrays)
        and all(
            x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
            for x, y in zip(a.arrays, b.arrays, strict=True)
        )
    )


def _snapshot(model: SoftmaxRegression) -> list[bytes]:
    return [v.value.tobytes() for v in (*model.trainable_variables, *model.non_trainable_variables)]


def test_round_trip_is_bit_exact_for_float32_int64_float64_extra_and_metadata(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    w = _weights(rng)
    extra = {"m/0": rng.standard_normal((4, 3)), "step": np.array(12, np.int64)}
    meta = {"round": 5, "lr": 0.125, "algorithm": "fedadam"}
    save_checkpoint(tmp_path / "c.safetensors", w, extra=extra, metadata=meta)
    ckpt = load_checkpoint(tmp_path / "c.safetensors", like=w)
    assert _same(ckpt.weights, w)
    assert set(ckpt.extra) == set(extra)
    assert all(ckpt.extra[k].tobytes() == extra[k].tobytes() and ckpt.extra[k].dtype == extra[k].dtype for k in extra)
    assert ckpt.metadata == meta
    assert type(ckpt.metadata["round"]) is int and type(ckpt.metadata["lr"]) is float


def test_round_trip_of_bfloat16_is_bit_exact(tmp_path: Path) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([[1.5, -0.0078125], [3.0e38, np.inf]], ml_dtypes.bfloat16)
    w = ModelWeights((values,), (), ("w",))
    save_checkpoint(tmp_path / "b.safetensors", w)
    got = load_checkpoint(tmp_path / "b.safetensors", like=w).weights.trainable[0]
    assert got.dtype == values.dtype and got.tobytes() == values.tobytes()


def test_positional_weights_and_non_contiguous_and_scalar_arrays_round_trip(tmp_path: Path) -> None:
    w = ModelWeights((np.arange(6, dtype=np.float32).reshape(2, 3).T, np.array(2.0, np.float32)))
    save_checkpoint(tmp_path / "p.safetensors", w)
    got = load_checkpoint(tmp_path / "p.safetensors").weights
    assert got.trainable_names is None
    np.testing.assert_array_equal(got.trainable[0], [[0, 3], [1, 4], [2, 5]])
    assert got.trainable[1].shape == () and float(got.trainable[1]) == 2.0


def test_loaded_arrays_are_writable_copies(tmp_path: Path, rng: np.random.Generator) -> None:
    w = _weights(rng)
    save_checkpoint(tmp_path / "c.safetensors", w)
    got = load_checkpoint(tmp_path / "c.safetensors").weights.trainable[0]
    got[0, 0] = 123.0
    assert load_checkpoint(tmp_path / "c.safetensors").weights.trainable[0][0, 0] == w.trainable[0][0, 0]


def test_restore_round_trips_the_reference_model(tmp_path: Path) -> None:
    trained, fresh = SoftmaxRegression(5, 3, seed=1), SoftmaxRegression(5, 3, seed=2)
    save_checkpoint(tmp_path / "m.safetensors", fedmodel.get_weights(trained))
    restore(fresh, tmp_path / "m.safetensors")
    assert _snapshot(fresh) == _snapshot(trained)


def test_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 9, 60, -1])
def test_truncated_file_is_a_checkpoint_error_and_the_model_is_untouched(tmp_path: Path, keep: int) -> None:
    model = SoftmaxRegression(5, 3, seed=1)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, fedmodel.get_weights(SoftmaxRegression(5, 3, seed=2)))
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    before = _snapshot(model)
    with pytest.raises(CheckpointError):
        restore(model, path)
    assert _snapshot(model) == before
    assert path.read_bytes() == data[:keep]


def test_a_flipped_byte_in_the_tensor_data_is_caught_by_the_digest(tmp_path: Path) -> None:
    model = SoftmaxRegression(5, 3, seed=1)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, fedmodel.get_weights(SoftmaxRegression(5, 3, seed=2)))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor's bytes: the safetensors layout itself stays valid
    path.write_bytes(bytes(data))
    before = _snapshot(model)
    with pytest.raises(CheckpointError, match="SHA-256"):
        restore(model, path)
    assert _snapshot(model) == before


def test_a_corrupted_header_is_a_checkpoint_error(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _weights(rng))
    data = bytearray(path.read_bytes())
    data[10] = ord("}")  # the JSON header no longer parses
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a fedmodel checkpoint"):
        load_checkpoint(path)


def test_random_bytes_are_a_checkpoint_error(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_a_plain_safetensors_file_is_not_a_fedmodel_checkpoint(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"kernel": np.zeros((2, 2), np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a fedmodel checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")


@pytest.mark.parametrize(
    "other",
    [
        lambda: SoftmaxRegression(6, 3, seed=0),  # another shape
        lambda: ModelWeights((np.zeros((5, 3), np.float32),), (), ("kernel",)),  # another count
        lambda: ModelWeights(
            (np.zeros((5, 3), np.float64), np.zeros(3, np.float32)),
            (np.ones(5, np.float32),),
            ("kernel", "bias"),
            ("input_scale",),
        ),  # another dtype
        lambda: ModelWeights(
            (np.zeros((5, 3), np.float32), np.zeros(3, np.float32)),
            (np.ones(5, np.float32),),
            ("kernel", "offset"),
            ("input_scale",),
        ),  # another name
    ],
    ids=["shape", "count", "dtype", "name"],
)
def test_a_checkpoint_of_another_architecture_is_a_weights_error_and_changes_nothing(
    tmp_path: Path, other: object
) -> None:
    made = other()  # type: ignore[operator]
    weights = made if isinstance(made, ModelWeights) else fedmodel.get_weights(made)
    path = tmp_path / "other.safetensors"
    save_checkpoint(path, weights)
    data = path.read_bytes()
    model = SoftmaxRegression(5, 3, seed=1)
    before = _snapshot(model)
    with pytest.raises(WeightsError, match="does not fit the model"):
        restore(model, path)
    with pytest.raises(WeightsError):
        load_checkpoint(path, like=fedmodel.get_weights(model))
    assert _snapshot(model) == before
    assert path.read_bytes() == data


def test_a_failed_rename_leaves_the_old_checkpoint_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _weights(rng), metadata={"round": 1})
    old = path.read_bytes()

    def disk_error(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_error)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, _weights(np.random.default_rng(1)), metadata={"round": 2})
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["c.safetensors"]
    assert load_checkpoint(path).metadata == {"round": 1}


def test_a_failed_fsync_leaves_the_old_checkpoint_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _weights(rng))
    old = path.read_bytes()

    def io_error(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", io_error)
    with pytest.raises(CheckpointError, match="Input/output error"):
        save_checkpoint(path, _weights(np.random.default_rng(1)))
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["c.safetensors"]


@pytest.mark.parametrize(
    ("extra", "metadata"),
    [
        ({"bad": np.array([object()], dtype=object)}, None),
        ({"bad": [1.0, 2.0]}, None),
        ({"bad": np.zeros(2, np.complex128)}, None),
        (None, {"nested": {"a": 1}}),
        (None, {"flag": True}),
    ],
    ids=["object-array", "list", "complex128", "nested-metadata", "bool-metadata"],
)
def test_a_value_that_cannot_be_stored_is_refused_before_the_old_file_is_touched(
    tmp_path: Path, rng: np.random.Generator, extra: dict[str, object] | None, metadata: dict[str, object] | None
) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _weights(rng))
    old = path.read_bytes()
    with pytest.raises(CheckpointError):
        save_checkpoint(path, _weights(rng), extra=extra, metadata=metadata)  # type: ignore[arg-type]
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["c.safetensors"]


def test_a_missing_directory_is_a_checkpoint_error(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "no" / "such" / "dir.safetensors", _weights(rng))


def test_the_checkpoint_file_is_a_safetensors_file_any_tool_can_read(tmp_path: Path, rng: np.random.Generator) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    w = _weights(rng)
    extra = {"flags": np.array([True, False]), "half": np.array([1.5], np.float16), "empty": np.zeros((0, 3), np.uint8)}
    save_checkpoint(tmp_path / "c.safetensors", w, extra=extra, metadata={"round": 2})
    tensors = load_file(str(tmp_path / "c.safetensors"))
    assert sorted(tensors) == [
        "extra/empty",
        "extra/flags",
        "extra/half",
        "non_trainable/bn/count",
        "non_trainable/bn/scale",
        "trainable/dense/bias",
        "trainable/dense/kernel",
    ]
    np.testing.assert_array_equal(tensors["trainable/dense/kernel"], w.trainable[0])
    for key, value in extra.items():
        assert tensors[f"extra/{key}"].dtype == value.dtype and tensors[f"extra/{key}"].shape == value.shape
        np.testing.assert_array_equal(tensors[f"extra/{key}"], value)
    with safe_open(str(tmp_path / "c.safetensors"), "np") as f:
        meta = f.metadata()
    assert sorted(meta) == ["fedmodel", "fedmodel.sha256"] and len(meta["fedmodel.sha256"]) == 64
    assert json.loads(meta["fedmodel"])["metadata"] == {"round": 2}
