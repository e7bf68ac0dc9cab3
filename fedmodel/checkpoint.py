"""Checkpoints of :class:`~fedmodel.ModelWeights` (and server state) in safetensors, written atomically.

A checkpoint is one safetensors file: the tensors ``trainable/<name>``, ``non_trainable/<name>`` and
``extra/<key>`` (e.g. the server optimizer's state), and a header whose metadata holds, as JSON, the order
and names of every group, a SHA-256 digest of every tensor and the caller's own ``metadata`` (round number,
seed, ...). Nothing is pickled and nothing in a file is executed.

Guarantees:

* **Writes are atomic**: the file is written to a temporary file in the same directory, flushed and
  fsynced, then renamed over ``path`` (and the directory fsynced). A failed write (disk full, a value that
  cannot be serialized) raises :class:`~fedmodel.CheckpointError` and leaves any old file intact.
* **Reads are checked**: a missing, truncated or corrupted file, a file that is not a fedmodel
  checkpoint or whose tensors do not match their digests raises :class:`~fedmodel.CheckpointError`.
  A readable checkpoint that does not fit the model (another architecture: count, name, shape or dtype)
  raises :class:`~fedmodel.WeightsError`, as :func:`fedmodel.assign_weights` does. Either way nothing
  is changed: not the model, not the file.

>>> import tempfile, os
>>> w = ModelWeights((np.arange(3, dtype=np.float32),), (), trainable_names=("bias",))
>>> path = os.path.join(tempfile.mkdtemp(), "round-1.safetensors")
>>> save_checkpoint(path, w, metadata={"round": 1})
>>> ckpt = load_checkpoint(path, like=w)
>>> ckpt.weights.trainable[0], ckpt.metadata["round"]
(array([0., 1., 2.], dtype=float32), 1)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fedmodel._errors import CheckpointError, WeightsError
from fedmodel._weights import ModelWeights, assign_weights

if TYPE_CHECKING:
    from fedmodel._backend import Backend
    from fedmodel.layout import Layout

__all__ = ["FORMAT", "Checkpoint", "load_checkpoint", "restore", "save_checkpoint"]

FORMAT = "fedmodel.checkpoint/1"
"""The format tag written in every checkpoint's header; a file without it is refused."""

_HEADER_KEY = "fedmodel"
_GROUPS = ("trainable", "non_trainable", "extra")
# safetensors dtype codes <-> numpy dtype names (bfloat16 needs ml_dtypes, imported only when met)
_CODES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
_NAMES = {v: k for k, v in _CODES.items()}

MetadataValue = str | int | float


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` returns: the weights, the extra arrays and the caller's metadata."""

    weights: ModelWeights
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, MetadataValue] = field(default_factory=dict)


def _numpy_dtype(name: str) -> np.dtype[Any]:
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as exc:  # pragma: no cover - ml_dtypes comes with jax and tensorflow
            raise CheckpointError("a bfloat16 tensor needs the ml_dtypes package") from exc
        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(name)


def _as_array(group: str, key: str, value: Any) -> np.ndarray:
    if not isinstance(value, (np.ndarray, np.generic)):
        raise CheckpointError(f"{group} {key!r}: expected a numpy array, got {type(value).__name__}")
    arr = np.asarray(value)
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # np.ascontiguousarray would turn a 0-d array into 1-d
    if arr.dtype.name not in _NAMES:
        raise CheckpointError(f"{group} {key!r}: dtype {arr.dtype} cannot be stored (supported: {sorted(_NAMES)})")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


def _digest(arr: np.ndarray | bytes | bytearray) -> str:
    data = arr.reshape(-1).view(np.uint8).data if isinstance(arr, np.ndarray) else arr
    return hashlib.sha256(data).hexdigest()


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, MetadataValue]:
    out: dict[str, MetadataValue] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise CheckpointError(f"metadata {key!r}: expected str keys and str, int or float values, got {value!r}")
        out[key] = value
    return out


def _group_keys(group: str, names: Sequence[str] | None, count: int) -> list[str]:
    if names is not None and len(set(names)) == len(names):
        return [f"{group}/{n}" for n in names]
    return [f"{group}/#{i}" for i in range(count)]  # positional or duplicate names: index keys


def _plan(
    weights: ModelWeights, extra: Mapping[str, np.ndarray] | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every tensor by key, and the header describing them; raises CheckpointError before any write."""
    if not isinstance(weights, ModelWeights):
        raise CheckpointError(f"expected fedmodel.ModelWeights, got {type(weights).__name__}")
    tensors: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {"format": FORMAT}
    groups: list[tuple[str, Sequence[str] | None, Sequence[Any]]] = [
        ("trainable", weights.trainable_names, weights.trainable),
        ("non_trainable", weights.non_trainable_names, weights.non_trainable),
    ]
    extra = dict(extra or {})
    if any(not isinstance(k, str) for k in extra):
        raise CheckpointError("extra keys must be strings")
    groups.append(("extra", list(extra), list(extra.values())))
    for group, names, values in groups:
        keys = _group_keys(group, names, len(values))
        for key, value in zip(keys, values, strict=True):
            tensors[key] = _as_array(group, key, value)
        header[group] = {"keys": keys, "names": None if names is None else list(names)}
    header["sha256"] = {k: _digest(a) for k, a in tensors.items()}
    return tensors, header


def _write(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    import safetensors

    specs = {
        k: safetensors.TensorSpec(dtype=a.dtype.name, shape=a.shape, data_ptr=a.ctypes.data, data_len=a.nbytes)
        for k, a in tensors.items()
    }
    safetensors.serialize_file(specs, path, metadata=metadata)


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(
    path: str | os.PathLike[str],
    weights: ModelWeights,
    *,
    extra: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping[str, MetadataValue] | None = None,
) -> None:
    """Write ``weights`` (and ``extra`` arrays, ``metadata``) to ``path`` atomically.

    Args:
        path: the checkpoint file (conventionally ``*.safetensors``); its directory must exist.
        weights: the weights; their names (or positions) are recorded.
        extra: more arrays to keep, e.g. :func:`fedmodel.server_optimizers.state_to_arrays` output.
        metadata: ``str`` keys to ``str``, ``int`` or ``float`` values (round, seed, ...), types preserved.

    Raises:
        CheckpointError: a value cannot be stored, or the write failed; an old file at ``path`` is intact.
    """
    path = os.fspath(path)
    tensors, header = _plan(weights, extra)
    header["metadata"] = _check_metadata(metadata)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint in {directory!r}: {exc}") from exc
    try:
        os.close(fd)
        _write(tmp, tensors, {_HEADER_KEY: json.dumps(header)})
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, Exception):
            raise CheckpointError(f"writing the checkpoint {path!r} failed (any old file is intact): {exc}") from exc
        raise
    _fsync_directory(directory)


def _read(path: str) -> tuple[dict[str, Any], dict[str, tuple[str, list[int], bytearray]]]:
    import safetensors

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise CheckpointError(f"no checkpoint at {path!r}") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint {path!r}: {exc}") from exc
    try:
        tensors = {k: (v["dtype"], list(v["shape"]), v["data"]) for k, v in safetensors.deserialize(data)}  # type: ignore[no-untyped-call]
        size = int.from_bytes(data[:8], "little")  # the layout safetensors just validated
        raw_meta = json.loads(data[8 : 8 + size]).get("__metadata__") or {}
    except Exception as exc:  # safetensors raises SafetensorError, or others on a mangled header
        raise CheckpointError(f"{path!r} is not a valid safetensors file (truncated or corrupted?): {exc}") from exc
    try:
        header = json.loads(raw_meta[_HEADER_KEY])
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path!r} is a safetensors file but not a fedmodel checkpoint") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else header
        raise CheckpointError(f"{path!r}: unknown checkpoint format {found!r}, expected {FORMAT!r}")
    return header, tensors


def _group(path: str, header: dict[str, Any], group: str) -> tuple[list[str], list[str] | None]:
    entry = header.get(group)
    keys = entry.get("keys") if isinstance(entry, dict) else None
    names = entry.get("names") if isinstance(entry, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError(f"{path!r}: the header has no valid key list for {group!r}")
    if names is not None and (
        not isinstance(names, list) or len(names) != len(keys) or not all(isinstance(n, str) for n in names)
    ):
        raise CheckpointError(f"{path!r}: the header has invalid names for {group!r}")
    return keys, names


def _decode(path: str, header: dict[str, Any], key: str, raw: tuple[str, list[int], bytearray]) -> np.ndarray:
    code, shape, data = raw
    if code not in _CODES:
        raise CheckpointError(f"{path!r}: tensor {key!r} has dtype {code}, which fedmodel does not read")
    digests = header.get("sha256")
    if not isinstance(digests, dict) or digests.get(key) != _digest(data):
        raise CheckpointError(f"{path!r}: tensor {key!r} does not match its SHA-256 digest (the file is corrupted)")
    return np.frombuffer(data, dtype=_numpy_dtype(_CODES[code])).reshape(shape)


def _check_like(path: str, like: ModelWeights, got: ModelWeights) -> None:
    """Raise WeightsError unless ``got`` has ``like``'s counts, names, shapes and dtypes."""
    for group in ("trainable", "non_trainable"):
        want_arrays, got_arrays = getattr(like, group), getattr(got, group)
        want_names, got_names = getattr(like, f"{group}_names"), getattr(got, f"{group}_names")
        if len(want_arrays) != len(got_arrays):
            raise WeightsError(
                f"checkpoint {path!r} has {len(got_arrays)} {group} arrays, the model has {len(want_arrays)}"
            )
        for i, (want, arr) in enumerate(zip(want_arrays, got_arrays, strict=True)):
            name = want_names[i] if want_names is not None else f"#{i}"
            if want_names is not None and got_names is not None and got_names[i] != want_names[i]:
                raise WeightsError(f"checkpoint {path!r}: {group}[{i}] is named {got_names[i]!r}, expected {name!r}")
            if arr.shape != np.shape(want):
                raise WeightsError(
                    f"checkpoint {path!r}: {group} {name!r} has shape {arr.shape}, expected {np.shape(want)}"
                )
            if arr.dtype != np.asarray(want).dtype:
                raise WeightsError(
                    f"checkpoint {path!r}: {group} {name!r} has dtype {arr.dtype}, expected {np.asarray(want).dtype}"
                )


def load_checkpoint(path: str | os.PathLike[str], *, like: ModelWeights | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; every tensor is checked against its digest.

    Args:
        path: the checkpoint file.
        like: when given, the loaded weights must match its counts, names, shapes and dtypes.

    Returns:
        A :class:`Checkpoint` whose arrays are writable and owned by the caller.

    Raises:
        CheckpointError: a missing, unreadable, truncated or corrupted file, or not a fedmodel checkpoint.
        WeightsError: the file is a valid checkpoint that does not match ``like``.
    """
    path = os.fspath(path)
    header, tensors = _read(path)
    layout = {group: _group(path, header, group) for group in _GROUPS}
    listed = [k for keys, _ in layout.values() for k in keys]
    if sorted(listed) != sorted(tensors):
        missing, unexpected = sorted(set(listed) - set(tensors)), sorted(set(tensors) - set(listed))
        raise CheckpointError(f"{path!r}: tensors missing {missing}, unexpected {unexpected}")
    arrays = {group: [_decode(path, header, k, tensors[k]) for k in keys] for group, (keys, _) in layout.items()}
    weights = ModelWeights(
        tuple(arrays["trainable"]),
        tuple(arrays["non_trainable"]),
        None if layout["trainable"][1] is None else tuple(layout["trainable"][1]),
        None if layout["non_trainable"][1] is None else tuple(layout["non_trainable"][1]),
    )
    extra_names = layout["extra"][1] or [k.removeprefix("extra/") for k in layout["extra"][0]]
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path!r}: the header's metadata is not a mapping")
    if like is not None:
        _check_like(path, like, weights)
    return Checkpoint(weights, dict(zip(extra_names, arrays["extra"], strict=True)), _check_metadata(metadata))


def restore(
    model: Any, path: str | os.PathLike[str], *, backend: Backend | None = None, layout: Layout | None = None
) -> Checkpoint:
    """Load ``path`` and assign its weights to ``model``, all or nothing.

    The counts, names, shapes and dtypes are checked against the model's variables before the first write
    (by :func:`fedmodel.assign_weights`, which also receives ``backend`` and ``layout``).

    Returns:
        The loaded :class:`Checkpoint` (its ``extra`` arrays and ``metadata`` for resuming a run).

    Raises:
        CheckpointError: as :func:`load_checkpoint`; the model is untouched.
        WeightsError: the checkpoint is of another architecture; the model is untouched.
    """
    ckpt = load_checkpoint(path)
    try:
        assign_weights(model, ckpt.weights, backend=backend, layout=layout)
    except WeightsError as exc:
        raise WeightsError(f"checkpoint {os.fspath(path)!r} does not fit the model: {exc}") from exc
    return ckpt
