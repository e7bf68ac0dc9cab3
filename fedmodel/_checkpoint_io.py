"""The bytes of a checkpoint file: the safetensors layout with one SHA-256 digest over every byte.

The layout (the README's "Checkpoints" section documents it for other tools): 8 bytes of header length
(little-endian), the header (UTF-8 JSON padded with spaces to a multiple of 8 bytes), the tensors'
little-endian bytes. The header starts with ``PREFIX`` and 64 hex digits: the SHA-256 of the whole file
read with those digits as ``"0"``s. Then comes ``"fedmodel"``, the caller's header text, then one entry
per tensor (dtype, shape, data offsets). :mod:`fedmodel.checkpoint` gives the header its meaning.

Writing is atomic (a locked temporary file, fsynced, renamed; the temporary files of dead writers of the
same path are removed). Reading opens regular files only, checks the header's size before reading it and
the file's size before reading the tensors, then the digest, then every field, and raises nothing but
:class:`~fedmodel.CheckpointError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from fedmodel._errors import CheckpointError

__all__ = ["as_storable", "is_count", "read", "strict_json", "write"]

PREFIX = b'{"__metadata__":{"fedmodel.sha256":"'
_BLANK = b"0" * 64
_MAX_HEADER = 100_000_000  # bytes, as the safetensors library allows
_MAX_DIMS = 32
# safetensors dtype codes -> (numpy dtype name, bytes per item); bfloat16 needs ml_dtypes, imported when met
_CODES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
_NAMES = {name: code for code, (name, _) in _CODES.items()}
Layout = dict[str, tuple[str, tuple[int, ...], int]]  # key -> (dtype code, shape, offset in the data)


def _numpy_dtype(name: str) -> np.dtype[Any]:
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as exc:  # pragma: no cover - ml_dtypes comes with jax and tensorflow
            raise CheckpointError("a bfloat16 tensor needs the ml_dtypes package") from exc
        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(name)


def as_storable(key: str, value: Any) -> np.ndarray:
    """``value`` as a C-contiguous little-endian array of a dtype the format holds, or CheckpointError."""
    if not isinstance(value, (np.ndarray, np.generic)):
        raise CheckpointError(f"{key!r}: expected a numpy array, got {type(value).__name__}")
    arr = np.asarray(value)
    if arr.dtype.name not in _NAMES:
        raise CheckpointError(f"{key!r}: dtype {arr.dtype} cannot be stored (supported: {sorted(_NAMES)})")
    little = arr.dtype.newbyteorder("<")
    if arr.dtype != little:
        arr = arr.astype(little)  # the format is little-endian
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # np.ascontiguousarray would turn a 0-d array into 1-d
    return arr


def _encode(tensors: Mapping[str, np.ndarray], header_text: str) -> tuple[bytes, list[np.ndarray]]:
    """The file's first bytes (length and header, digest blank) and its tensors in file order."""
    order = sorted(tensors, key=lambda k: -tensors[k].dtype.itemsize)  # widest first: every offset aligned
    offsets, at = {}, 0
    for key in order:
        offsets[key], at = [at, at + tensors[key].nbytes], at + tensors[key].nbytes
    entries = {
        k: {"dtype": _NAMES[a.dtype.name], "shape": list(a.shape), "data_offsets": offsets[k]}
        for k, a in tensors.items()
    }
    meta = {"fedmodel.sha256": _BLANK.decode(), "fedmodel": header_text}
    text = json.dumps({"__metadata__": meta, **entries}, separators=(",", ":"), allow_nan=False).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header so that the data starts aligned
    if len(text) > _MAX_HEADER:
        raise CheckpointError(f"the header would be {len(text)} bytes, more than readers accept ({_MAX_HEADER})")
    return len(text).to_bytes(8, "little") + text, [tensors[k] for k in order]


def _bytes_of(arr: np.ndarray) -> memoryview:
    return arr.reshape(-1).view(np.uint8).data


def _try_lock(fd: int) -> bool:
    """Lock ``fd`` exclusively without waiting; False while another open file (a live writer) holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: a file open in another process cannot be removed anyway
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _temporary_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def _remove_stale_temporaries(directory: str, path: str) -> None:
    """Remove the temporary files of earlier saves of ``path`` whose writer died (their lock is free)."""
    prefix = _temporary_prefix(path)
    with contextlib.suppress(OSError):
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")]
        for name in names:
            full = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
                try:
                    if stat.S_ISREG(os.fstat(fd).st_mode) and _try_lock(fd):
                        os.unlink(full)
                finally:
                    os.close(fd)


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write(path: str, tensors: Mapping[str, np.ndarray], header_text: str) -> None:
    """Write ``tensors`` (from :func:`as_storable`) and ``header_text`` to ``path`` atomically, digested.

    Raises:
        CheckpointError: ``path`` is not a regular file, or the write failed; an old file is intact.
    """
    head, ordered = _encode(tensors, header_text)
    digest = hashlib.sha256(head)
    for arr in ordered:
        digest.update(_bytes_of(arr))
    at = 8 + len(PREFIX)
    head = head[:at] + digest.hexdigest().encode() + head[at + 64 :]
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise CheckpointError(f"cannot write the checkpoint {path!r}: {exc}") from exc
    if mode is not None and not stat.S_ISREG(mode):
        raise CheckpointError(f"{path!r} exists and is not a regular file; refusing to replace it")
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(directory, path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint in {directory!r}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            _try_lock(fd)  # a new file: nobody else holds it; released when the file is closed
            f.write(head)
            for arr in ordered:
                f.write(_bytes_of(arr))
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


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@contextlib.contextmanager
def _open_regular(path: str) -> Iterator[tuple[io.FileIO, int]]:
    """The open file and its size; never blocks (O_NONBLOCK: a FIFO opens at once, then is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise CheckpointError(f"no checkpoint at {path!r}") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint {path!r}: {exc}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
        raise CheckpointError(f"{path!r} is not a regular file but {kind}; refusing to read it")
    with os.fdopen(fd, "rb", buffering=0) as f:
        yield f, info.st_size


def _read_exact(path: str, f: io.FileIO, size: int) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = f.readinto(view[got:])
        if not n:
            raise CheckpointError(f"{path!r} ended after {got} of {size} bytes (truncated while being read?)")
        got += n
    return buffer


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CheckpointError(f"a key appears twice: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    return dict(pairs)


def strict_json(path: str, what: str, text: str | bytes) -> Any:
    """Parse UTF-8 JSON with no NaN or Infinity and no repeated key; any failure is a CheckpointError."""

    def refuse(constant: str) -> None:
        raise CheckpointError(f"{constant} is not a number a checkpoint holds")

    try:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        return json.loads(text, parse_constant=refuse, object_pairs_hook=_unique_keys)
    except CheckpointError as exc:
        raise CheckpointError(f"{path!r}: {what}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{path!r}: {what} is not valid JSON (corrupted?): {exc}") from None


def is_count(value: object) -> bool:
    """An ``int`` (not a ``bool``) >= 0."""
    return type(value) is int and value >= 0


def _layout(path: str, entries: dict[str, Any]) -> tuple[Layout, int]:
    """Every tensor's dtype code, shape and offset, checked; and the size of the data they cover."""
    out: Layout = {}
    spans = []
    for key, entry in entries.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{path!r}: tensor {key!r} needs exactly dtype, shape and data_offsets")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(code, str) or code not in _CODES:
            raise CheckpointError(f"{path!r}: tensor {key!r} has dtype {code!r}, which fedmodel does not read")
        if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(is_count(d) for d in shape):
            raise CheckpointError(f"{path!r}: tensor {key!r} has shape {shape!r}, not up to {_MAX_DIMS} sizes >= 0")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_count(o) for o in offsets):
            raise CheckpointError(f"{path!r}: tensor {key!r} has data_offsets {offsets!r}, not two offsets >= 0")
        nbytes = math.prod(shape) * _CODES[code][1]
        if offsets[1] - offsets[0] != nbytes:
            raise CheckpointError(
                f"{path!r}: tensor {key!r} ({code}, shape {tuple(shape)}) needs {nbytes} bytes, "
                f"its offsets span {offsets[1] - offsets[0]}"
            )
        out[key] = (code, tuple(shape), offsets[0])
        spans.append((offsets[0], offsets[1], key))
    end = 0
    for begin, stop, key in sorted(spans):
        if begin != end:
            raise CheckpointError(f"{path!r}: tensor {key!r} starts at {begin}, expected {end} (a gap or overlap)")
        end = stop
    return out, end


def _decode(path: str, key: str, code: str, shape: tuple[int, ...], offset: int, data: bytearray) -> np.ndarray:
    dtype = _numpy_dtype(_CODES[code][0]).newbyteorder("<")
    try:
        arr = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
    except ValueError as exc:  # e.g. a zero-size array whose other sizes overflow numpy's
        raise CheckpointError(f"{path!r}: tensor {key!r} of shape {shape} cannot be an array: {exc}") from exc
    if not arr.dtype.isnative or not arr.flags.aligned:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def read(path: str) -> tuple[str, dict[str, np.ndarray]]:
    """The header text that :func:`write` was given, and every tensor by key (writable, sharing one buffer).

    Raises:
        CheckpointError: not a regular file, a size that disagrees with the header, a digest that does not
            match, or any malformed field.
    """
    head_size = 8 + len(PREFIX) + 64
    with _open_regular(path) as (f, size):
        first = _read_exact(path, f, min(size, head_size))
        if len(first) < head_size or first[8 : 8 + len(PREFIX)] != PREFIX:
            raise CheckpointError(f"{path!r} is not a fedmodel checkpoint (truncated, or another kind of file)")
        header_size = int.from_bytes(first[:8], "little")
        if not head_size - 8 <= header_size <= min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path!r}: a header of {header_size} bytes in a file of {size} (corrupted?)")
        rest = _read_exact(path, f, header_size - (head_size - 8))
        header = strict_json(path, "the header", bytes(first[8:] + rest))
        if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
            raise CheckpointError(f"{path!r}: the header is not a safetensors header")
        meta = header.pop("__metadata__")
        layout, data_size = _layout(path, header)
        if 8 + header_size + data_size != size:
            raise CheckpointError(
                f"{path!r}: its header describes {8 + header_size + data_size} bytes, the file has {size} "
                "(truncated or extended?)"
            )
        data = _read_exact(path, f, data_size)
    digest = hashlib.sha256(first[: 8 + len(PREFIX)] + _BLANK)
    digest.update(rest)
    digest.update(data)
    if digest.hexdigest().encode() != bytes(first[8 + len(PREFIX) :]):
        raise CheckpointError(f"{path!r}: the SHA-256 digest does not match its content (the file is corrupted)")
    if set(meta) != {"fedmodel.sha256", "fedmodel"} or not isinstance(meta["fedmodel"], str):
        raise CheckpointError(f"{path!r}: the header's metadata is not a fedmodel checkpoint's")
    return meta["fedmodel"], {key: _decode(path, key, *where, data) for key, where in layout.items()}
