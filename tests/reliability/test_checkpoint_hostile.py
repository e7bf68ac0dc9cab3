"""Checkpoints under hostile input: every byte digested, forgeries checked, special and huge files refused.

Each case is one of issue 18's reproductions: header bit flips that loaded other content, dtype and
shape edits of extra arrays, metadata of the wrong type, ``/dev/zero``, a FIFO, a 3 GiB garbage file,
and the temporary files of killed writers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedmodel import CheckpointError, ModelWeights
from fedmodel.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from tests.reliability._headers import checkpoint_header

GIB = 2**30


def _small() -> tuple[ModelWeights, dict[str, np.ndarray], dict[str, Any]]:
    weights = ModelWeights((np.array([1.5, -2.0], np.float32),), (np.array(7, np.int64),), ("w",), ("n",))
    return weights, {"m/0": np.array([0.25, 4.0])}, {"round": 3, "seed": 0, "algorithm": "fedavgm", "lr": 0.5}


W_ENTRY = {"trainable/w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
W_BODY = np.array([1.0, 2.0], "<f4").tobytes()


def test_the_forger_in_conftest_writes_what_the_loader_reads(tmp_path: Path, forge: Callable[..., bytes]) -> None:
    """The forgeries below differ from a valid file only where each test says."""
    path = tmp_path / "ok.safetensors"
    path.write_bytes(forge(W_ENTRY, checkpoint_header(), W_BODY))
    ckpt = load_checkpoint(path)
    assert ckpt.weights.trainable_names == ("w",) and ckpt.weights.trainable[0].tolist() == [1.0, 2.0]
    assert ckpt.metadata == {"round": 1}


def test_every_single_bit_flip_of_a_small_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    weights, extra, metadata = _small()
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, weights, extra=extra, metadata=metadata)
    data = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    caught = 0
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        bad.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError):  # never WeightsError, ValueError, ... nor a quiet load
            load_checkpoint(bad, like=weights)
        caught += 1
    assert caught == len(data) * 8 > 4000  # the header is most of a small file: every byte of it counts
    assert load_checkpoint(good, like=weights).metadata == metadata


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    tail=st.binary(max_size=16),
)
def test_any_corruption_is_a_checkpoint_error_and_nothing_else(
    tmp_path: Path, edits: list[tuple[int, int]], cut: int | None, tail: bytes
) -> None:
    weights, extra, metadata = _small()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, weights, extra=extra, metadata=metadata)
    data = bytearray(path.read_bytes())
    original = bytes(data)
    for at, value in edits:
        data[at % len(data)] = value
    data = data[:cut] + bytearray(tail) if cut is not None else data + bytearray(tail)
    path.write_bytes(bytes(data))
    if bytes(data) == original:
        assert load_checkpoint(path).metadata == metadata
        return
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


FORGERIES: dict[str, tuple[dict[str, Any], str, bytes]] = {
    "format tag of another version": (W_ENTRY, checkpoint_header(format="fedmodel.checkpoint/9"), W_BODY),
    "format tag missing": (W_ENTRY, json.dumps({"trainable": {"count": 1, "names": ["w"]}}), W_BODY),
    "fedmodel header not JSON": (W_ENTRY, "{not json", W_BODY),
    "fedmodel header a list": (W_ENTRY, "[1, 2]", W_BODY),
    "fedmodel header nested 100000 deep": (W_ENTRY, "[" * 100_000 + "]" * 100_000, W_BODY),
    "metadata round NaN": (W_ENTRY, checkpoint_header().replace('"round": 1', '"round": NaN'), W_BODY),
    "metadata round Infinity": (W_ENTRY, checkpoint_header().replace('"round": 1', '"round": Infinity'), W_BODY),
    "metadata round -Infinity": (W_ENTRY, checkpoint_header().replace('"round": 1', '"round": -Infinity'), W_BODY),
    "metadata int of 10**30": (W_ENTRY, checkpoint_header(metadata={"round": 10**30}), W_BODY),
    "metadata int of 5000 digits": (
        W_ENTRY,
        checkpoint_header().replace('"round": 1', '"round": ' + "9" * 5000),
        W_BODY,
    ),
    "metadata bool": (W_ENTRY, checkpoint_header(metadata={"round": True}), W_BODY),
    "metadata null": (W_ENTRY, checkpoint_header(metadata={"round": None}), W_BODY),
    "metadata nested": (W_ENTRY, checkpoint_header(metadata={"round": [1]}), W_BODY),
    "metadata a list": (W_ENTRY, checkpoint_header(metadata=[1]), W_BODY),
    "count disagrees with names": (W_ENTRY, checkpoint_header(trainable={"count": 2, "names": ["w"]}), W_BODY),
    "count a float": (W_ENTRY, checkpoint_header(trainable={"count": 1.0, "names": ["w"]}), W_BODY),
    "count a bool": (W_ENTRY, checkpoint_header(trainable={"count": True, "names": ["w"]}), W_BODY),
    "a name not a string": (W_ENTRY, checkpoint_header(trainable={"count": 1, "names": [7]}), W_BODY),
    "group missing": (W_ENTRY, json.dumps({"format": FORMAT, "trainable": {"count": 1, "names": ["w"]}}), W_BODY),
    "a listed tensor missing": (W_ENTRY, checkpoint_header(trainable={"count": 2, "names": ["w", "v"]}), W_BODY),
    "an unlisted tensor": (
        {**W_ENTRY, "trainable/v": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]}},
        checkpoint_header(),
        W_BODY,
    ),
    "dtype unknown": (
        {"trainable/w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}},
        checkpoint_header(),
        W_BODY,
    ),
    "dtype not a string": (
        {"trainable/w": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}},
        checkpoint_header(),
        W_BODY,
    ),
    "shape of other size": (
        {"trainable/w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
        checkpoint_header(),
        W_BODY,
    ),
    "shape negative": (
        {"trainable/w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
        checkpoint_header(),
        W_BODY,
    ),
    "shape of bools": (
        {"trainable/w": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}},
        checkpoint_header(),
        W_BODY,
    ),
    "shape of floats": (
        {"trainable/w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}},
        checkpoint_header(),
        W_BODY,
    ),
    "shape of 2**40 x 0 x 2**40": (
        {"trainable/w": {"dtype": "F32", "shape": [2**40, 0, 2**40], "data_offsets": [0, 0]}},
        checkpoint_header(),
        b"",
    ),
    "shape 100 dims": (
        {"trainable/w": {"dtype": "U8", "shape": [1] * 100, "data_offsets": [0, 1]}},
        checkpoint_header(),
        b"x",
    ),
    "offsets reversed": (
        {"trainable/w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
        checkpoint_header(),
        W_BODY,
    ),
    "offsets past the end": (
        {"trainable/w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}},
        checkpoint_header(),
        W_BODY,
    ),
    "offsets overlapping": (
        {
            "trainable/w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "extra/v": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        },
        checkpoint_header(extra={"count": 1, "names": ["v"]}),
        W_BODY,
    ),
    "a hole in the data": (
        {"trainable/w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
        checkpoint_header(),
        b"0" * 12,
    ),
    "bytes after the data": (W_ENTRY, checkpoint_header(), W_BODY + b"\0" * 8),
    "an entry with another field": (
        {"trainable/w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}},
        checkpoint_header(),
        W_BODY,
    ),
    "an entry not an object": ({"trainable/w": [1, 2]}, checkpoint_header(), W_BODY),
    "a group with another field": (W_ENTRY, checkpoint_header(trainable={"count": 1, "names": ["w"], "x": 0}), W_BODY),
    "extra without names": (W_ENTRY, checkpoint_header(extra={"count": 0, "names": None}), W_BODY),
    "extra names twice": (
        {**W_ENTRY, "extra/#0": {"dtype": "U8", "shape": [0], "data_offsets": [8, 8]}},
        checkpoint_header(extra={"count": 2, "names": ["a", "a"]}),
        W_BODY,
    ),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_a_consistent_forgery_is_still_checked_field_by_field(
    tmp_path: Path, forge: Callable[..., bytes], case: str
) -> None:
    entries, header, body = FORGERIES[case]
    path = tmp_path / "forged.safetensors"
    path.write_bytes(forge(entries, header, body))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_a_wrong_format_tag_is_named_with_the_expected_one(tmp_path: Path, forge: Callable[..., bytes]) -> None:
    path = tmp_path / "v9.safetensors"
    path.write_bytes(forge(W_ENTRY, checkpoint_header(format="fedmodel.checkpoint/9"), W_BODY))
    with pytest.raises(CheckpointError, match=r"format 'fedmodel.checkpoint/9', expected 'fedmodel.checkpoint/2'"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"__metadata__":{"fedmodel.sha256":"' + b"0" * 64 + b'","fedmodel":"{}","fedmodel":"{}"}}',  # twice
        b'{"__metadata__":{"fedmodel.sha256":"' + b"0" * 64 + b'","fedmodel":"\xff\xfe"}}',  # not UTF-8
        b'{"__metadata__":{"fedmodel.sha256":"' + b"0" * 64 + b'"}}',  # no fedmodel header
        b'{"__metadata__":{"fedmodel.sha256":"' + b"0" * 64 + b'","fedmodel":"{}","more":"x"}}',
        b'{"__metadata__":{"fedmodel.sha256":"' + b"0" * 64 + b'","fedmodel":7}}',  # not a string
    ],
    ids=["a-key-twice", "not-utf8", "no-fedmodel-header", "unknown-metadata-key", "header-not-a-string"],
)
def test_a_consistent_but_malformed_header_is_a_checkpoint_error(
    tmp_path: Path, redigest: Callable[[bytes], bytes], raw: bytes
) -> None:
    raw += b" " * (-len(raw) % 8)
    path = tmp_path / "m.safetensors"
    path.write_bytes(redigest(len(raw).to_bytes(8, "little") + raw))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


M_ENTRY = b'"extra/m/0":{"dtype":"F64","shape":[4]'


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (b'"extra/m/0":{"dtype":"I64","shape":[4]', r"extra 'm/0' has dtype int64, expected float64"),
        (b'"extra/m/0":{"dtype":"F64","shape":[2,2]', r"extra 'm/0' has shape \(2, 2\), expected \(4,\)"),
    ],
    ids=["dtype-F64-to-I64", "shape-4-to-2x2"],
)
def test_a_same_size_edit_of_an_extra_array_is_caught(
    tmp_path: Path, edit_checkpoint: Callable[[Path, bytes, bytes], None], new: bytes, message: str
) -> None:
    weights, _, metadata = _small()
    extra = {"m/0": np.array([0.25, 4.0, -1.0, 8.0])}
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, weights, extra=extra, metadata=metadata)
    data = path.read_bytes()
    if len(new) == len(M_ENTRY):  # the edit alone: the digest no longer matches
        path.write_bytes(data.replace(M_ENTRY, new))
        with pytest.raises(CheckpointError, match="digest"):
            load_checkpoint(path)
    path.write_bytes(data)
    edit_checkpoint(path, M_ENTRY, new)  # with the digest recomputed: a consistent file of other content
    assert load_checkpoint(path).extra["m/0"].nbytes == 32  # what a forger can do: the digest is not a MAC
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, extra_like=extra)  # what a resume checks against its own server state


def test_a_tensor_listed_twice_in_the_header_is_refused(
    tmp_path: Path, forge: Callable[..., bytes], edit_checkpoint: Callable[[Path, bytes, bytes], None]
) -> None:
    entries = {
        "trainable/w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "trainable/x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    path = tmp_path / "twice.safetensors"
    path.write_bytes(forge(entries, checkpoint_header(), W_BODY))
    edit_checkpoint(path, b'"trainable/x"', b'"trainable/w"')  # JSON readers keep the last of two equal keys
    with pytest.raises(CheckpointError, match="trainable/w"):
        load_checkpoint(path)


def test_extra_like_names_a_missing_an_unexpected_and_a_reshaped_array(tmp_path: Path) -> None:
    weights, extra, _ = _small()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, weights, extra=extra)
    with pytest.raises(CheckpointError, match=r"missing \['v/0'\], unexpected \['m/0'\]"):
        load_checkpoint(path, extra_like={"v/0": extra["m/0"]})
    with pytest.raises(CheckpointError, match=r"extra 'm/0' has shape \(2,\), expected \(3,\)"):
        load_checkpoint(path, extra_like={"m/0": np.zeros(3)})
    assert load_checkpoint(path, extra_like=extra).extra["m/0"].tolist() == [0.25, 4.0]


def test_dev_zero_is_refused_as_not_a_regular_file() -> None:
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint("/dev/zero")


def test_a_symlink_to_dev_zero_and_a_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "link.safetensors").symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="a character device"):
        load_checkpoint(tmp_path / "link.safetensors")
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="a directory"):
        load_checkpoint(tmp_path / "dir.safetensors")


def _within(seconds: float, fifo: Path, call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread; if it blocks, open the FIFO for writing to release it and fail."""
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
        pytest.fail(f"blocked for {seconds}s on a FIFO")
    return box.get("error")


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "c.safetensors"
    os.mkfifo(fifo)
    error = _within(10, fifo, lambda: load_checkpoint(fifo))
    assert isinstance(error, CheckpointError) and "a FIFO" in str(error)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_saving_over_a_special_file_is_refused_and_leaves_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.safetensors"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    weights, _, _ = _small()
    error = _within(10, path, lambda: save_checkpoint(path, weights))
    assert isinstance(error, CheckpointError) and "not a regular file" in str(error)
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]


def _peak_while(call: Callable[[], object]) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        call()
        error = None
    except BaseException as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


def _sparse(path: Path, head: bytes, size: int) -> None:
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)  # a hole: no disk blocks, reads as zeros


@pytest.mark.parametrize(
    "head",
    [
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),  # garbage
        (3 * GIB - 8).to_bytes(8, "little") + b'{"__metadata__":{"fedmodel.sha256":"',  # a header "as big as the file"
        (2**63).to_bytes(8, "little") + b"{",  # a header bigger than any file
    ],
    ids=["garbage", "header-of-3GiB", "header-of-2**63"],
)
def test_a_3_gib_file_is_refused_without_being_read(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "huge.safetensors"
    _sparse(path, head, 3 * GIB)
    peak, error = _peak_while(lambda: load_checkpoint(path))
    assert isinstance(error, CheckpointError), error
    assert peak < 2**20  # bytes allocated while refusing it: far less than the file


def test_a_valid_checkpoint_grown_to_3_gib_is_refused_by_its_header_size(tmp_path: Path) -> None:
    weights, extra, metadata = _small()
    path = tmp_path / "grown.safetensors"
    save_checkpoint(path, weights, extra=extra, metadata=metadata)
    size = path.stat().st_size
    os.truncate(path, 3 * GIB)
    peak, error = _peak_while(lambda: load_checkpoint(path))
    assert isinstance(error, CheckpointError) and f"describes {size} bytes" in str(error), error
    assert peak < 2**20


_WRITER = """
import os, sys, time
import numpy as np
from fedmodel import ModelWeights
from fedmodel.checkpoint import save_checkpoint

def stall(fd):  # the save has written every byte of its temporary file: wait here to be killed
    print("written", flush=True)
    time.sleep(60)

os.fsync = stall
save_checkpoint(sys.argv[1], ModelWeights((np.zeros(250_000, np.float32),), ()))
"""


def _start_writer(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None and child.stdout.readline() == "written\n"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert child.stdout is not None
    child.stdout.close()


def _temporaries(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_a_save_removes_what_killed_saves_of_the_same_path_left(tmp_path: Path) -> None:
    path = tmp_path / "run.safetensors"
    weights, extra, metadata = _small()
    save_checkpoint(path, weights, extra=extra, metadata=metadata)
    for kill in range(4):
        _kill(_start_writer(path))  # each save first removes the temporary file the previous kill left
        assert len(_temporaries(tmp_path)) == 1, kill
    (tmp_path / ".other.safetensors.x.tmp").write_bytes(b"another path's")  # not ours to remove
    save_checkpoint(path, weights, extra=extra, metadata=metadata)
    assert _temporaries(tmp_path) == [".other.safetensors.x.tmp"]
    assert load_checkpoint(path).metadata == metadata


def test_a_save_leaves_the_temporary_file_of_a_live_writer_alone(tmp_path: Path) -> None:
    path = tmp_path / "run.safetensors"
    weights, _, _ = _small()
    child = _start_writer(path)
    try:
        (live,) = _temporaries(tmp_path)
        save_checkpoint(path, weights)
        assert _temporaries(tmp_path) == [live]
    finally:
        _kill(child)
    save_checkpoint(path, weights)  # the writer is dead now: its file goes
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize(
    "metadata",
    [{"round": float("nan")}, {"round": float("inf")}, {"round": 2**63}, {"round": -(2**63) - 1}, {"": [1]}, {1: 2}],
    ids=["nan", "inf", "2**63", "-2**63-1", "list", "int-key"],
)
def test_metadata_json_cannot_hold_is_refused_when_saving(tmp_path: Path, metadata: dict[Any, Any]) -> None:
    weights, _, _ = _small()
    with pytest.raises(CheckpointError, match="metadata"):
        save_checkpoint(tmp_path / "c.safetensors", weights, metadata=metadata)
    assert os.listdir(tmp_path) == []


def test_the_int64_range_and_unicode_round_trip(tmp_path: Path) -> None:
    weights, _, _ = _small()
    metadata = {"low": -(2**63), "high": 2**63 - 1, "name": "fédéré ✓", "small": 5e-324}
    save_checkpoint(tmp_path / "c.safetensors", weights, metadata=metadata)
    assert load_checkpoint(tmp_path / "c.safetensors").metadata == metadata


def test_a_big_endian_array_is_saved_as_little_endian_and_loads_native(tmp_path: Path) -> None:
    big = np.array([[1.5, -2.25], [3.0e38, -0.0]], ">f4")
    ints = np.array([1, -(2**40)], ">i8")
    save_checkpoint(tmp_path / "c.safetensors", ModelWeights((big,), (ints,), ("w",), ("n",)))
    raw = (tmp_path / "c.safetensors").read_bytes()
    assert np.array([1.5, -2.25, 3.0e38, -0.0], "<f4").tobytes() in raw  # the file holds little-endian bytes
    got = load_checkpoint(tmp_path / "c.safetensors").weights
    assert got.trainable[0].dtype == np.dtype("<f4") and got.trainable[0].dtype.isnative
    np.testing.assert_array_equal(got.trainable[0], big)
    assert got.non_trainable[0].dtype == np.dtype("<i8") and got.non_trainable[0].tolist() == [1, -(2**40)]


def test_every_tensor_starts_aligned_and_the_header_is_padded(tmp_path: Path) -> None:
    """As safetensors writes: widest dtypes first, so each offset is a multiple of its item size."""
    weights = ModelWeights((np.ones(3, np.float32), np.ones(1, np.int8)), (np.ones(2, np.float64),), ("a", "b"), ("c",))
    save_checkpoint(tmp_path / "c.safetensors", weights, extra={"h": np.ones(3, np.float16)})
    data = (tmp_path / "c.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    assert size % 8 == 0
    header = json.loads(data[8 : 8 + size])
    sizes = {"F64": 8, "F32": 4, "F16": 2, "I8": 1}
    for key, entry in header.items():
        if key != "__metadata__":
            assert entry["data_offsets"][0] % sizes[entry["dtype"]] == 0, key


def test_an_unaligned_but_consistent_file_loads_correct_aligned_arrays(
    tmp_path: Path, forge: Callable[..., bytes]
) -> None:
    entries = {
        "trainable/w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "trainable/v": {"dtype": "F64", "shape": [1], "data_offsets": [4, 12]},
    }
    header = checkpoint_header(trainable={"count": 2, "names": ["w", "v"]})
    path = tmp_path / "odd.safetensors"
    path.write_bytes(forge(entries, header, np.float32(1.5).tobytes() + np.float64(-2.25).tobytes()))
    w, v = load_checkpoint(path).weights.trainable
    assert (w.tolist(), v.tolist()) == ([1.5], [-2.25])
    assert w.flags.aligned and v.flags.aligned and v.flags.writeable


def test_repeated_names_are_stored_by_position_and_kept(tmp_path: Path) -> None:
    weights = ModelWeights((np.zeros(2, np.float32), np.ones(3, np.float32)), (), ("dense", "dense"))
    save_checkpoint(tmp_path / "c.safetensors", weights)
    got = load_checkpoint(tmp_path / "c.safetensors", like=weights).weights
    assert got.trainable_names == ("dense", "dense")
    assert [a.tolist() for a in got.trainable] == [[0.0, 0.0], [1.0, 1.0, 1.0]]


@pytest.mark.parametrize(
    ("weights", "extra", "message"),
    [
        ([np.zeros(2)], None, "expected fedmodel.ModelWeights, got list"),
        (ModelWeights((np.zeros(2),)), {1: np.zeros(2)}, "extra keys must be strings"),
    ],
    ids=["a-list-of-arrays", "an-int-key"],
)
def test_what_is_not_weights_or_has_non_string_keys_is_refused(
    tmp_path: Path, weights: Any, extra: Any, message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(tmp_path / "c.safetensors", weights, extra=extra)
    assert os.listdir(tmp_path) == []


def test_a_numpy_float_in_metadata_reads_back_as_a_float(tmp_path: Path) -> None:
    weights, _, _ = _small()
    save_checkpoint(tmp_path / "c.safetensors", weights, metadata={"lr": np.float64(0.5), "round": 3})
    metadata = load_checkpoint(tmp_path / "c.safetensors").metadata
    assert metadata == {"lr": 0.5, "round": 3} and type(metadata["lr"]) is float


def test_a_header_beyond_the_limit_is_refused_when_saving_and_when_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fedmodel._checkpoint_io as checkpoint_io

    weights, extra, metadata = _small()
    save_checkpoint(tmp_path / "ok.safetensors", weights, extra=extra, metadata=metadata)
    monkeypatch.setattr(checkpoint_io, "_MAX_HEADER", 256)
    with pytest.raises(CheckpointError, match=r"more than readers accept \(256\)"):
        save_checkpoint(tmp_path / "big.safetensors", weights, extra=extra, metadata=metadata)
    with pytest.raises(CheckpointError, match="a header of"):
        load_checkpoint(tmp_path / "ok.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["ok.safetensors"]


def test_a_file_that_shrinks_while_it_is_read_is_a_checkpoint_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, extra, metadata = _small()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, weights, extra=extra, metadata=metadata)
    real = path.read_bytes()
    size = len(real)
    path.write_bytes(real[: size - 4])  # what a reader that trusted its first look at the size meets
    fstat = os.fstat

    def stale_size(fd: int) -> os.stat_result:
        info = list(fstat(fd))
        info[6] = size  # st_size as it was before the file shrank
        return os.stat_result(info)

    monkeypatch.setattr(os, "fstat", stale_size)
    with pytest.raises(CheckpointError, match="ended after 28 of 32 bytes"):  # 8 + 8 + 16 bytes of tensors
        load_checkpoint(path)


def test_saving_below_a_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    weights, _, _ = _small()
    with pytest.raises(CheckpointError, match="Not a directory"):
        save_checkpoint(tmp_path / "file" / "c.safetensors", weights)
