"""Checkpoints of :class:`~fedmodel.ModelWeights` (and server state): safetensors files, every byte checked.

A checkpoint is one safetensors file (readable by any safetensors tool): the tensors
``trainable/<name>``, ``non_trainable/<name>`` and ``extra/<key>`` (e.g. the server optimizer's state),
and a header whose ``__metadata__`` holds two entries, always first and in this order:

* ``fedmodel.sha256``: the SHA-256 of the whole file, read with these 64 hex digits as ``"0"``s. It
  covers the header length, every name, dtype, shape and offset, the metadata and every tensor byte.
* ``fedmodel``: JSON with the format tag, each group's count and names, and the caller's ``metadata``.

Nothing is pickled and nothing in a file is executed.

Guarantees:

* **Writes are atomic**: the file is written to a temporary file in the same directory (locked while
  it is written), flushed and fsynced, then renamed over ``path`` (and the directory fsynced). A failed
  write raises :class:`~fedmodel.CheckpointError` and leaves any old file intact; the temporary files
  of earlier saves of ``path`` that were killed are removed by the next save.
* **Reads are checked before they are believed**: only a regular file is opened (never waited on); its
  size must be the one its header describes before the tensors are read; the digest must match; then
  every field is checked for type and range, since a digest proves integrity, not authorship. Anything
  else raises :class:`~fedmodel.CheckpointError`. A valid checkpoint that does not fit the model
  (another architecture) raises :class:`~fedmodel.WeightsError`, as :func:`fedmodel.assign_weights`
  does. Either way nothing is changed: not the model, not the file.

>>> import tempfile, os
>>> w = ModelWeights((np.arange(3, dtype=np.float32),), (), trainable_names=("bias",))
>>> path = os.path.join(tempfile.mkdtemp(), "round-1.safetensors")
>>> save_checkpoint(path, w, metadata={"round": 1})
>>> ckpt = load_checkpoint(path, like=w)
>>> ckpt.weights.trainable[0], ckpt.metadata["round"]
(array([0., 1., 2.], dtype=float32), 1)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fedmodel._checkpoint_io import as_storable, is_count, read, strict_json, write
from fedmodel._errors import CheckpointError, WeightsError
from fedmodel._weights import ModelWeights, assign_weights

if TYPE_CHECKING:
    from fedmodel._backend import Backend

__all__ = ["FORMAT", "Checkpoint", "check_extra", "load_checkpoint", "restore", "save_checkpoint"]

FORMAT = "fedmodel.checkpoint/2"
"""The format tag written in every checkpoint's header; a file with another one is refused."""

_GROUPS = ("trainable", "non_trainable", "extra")
_INT64 = 2**63
MetadataValue = str | int | float


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` returns: the weights, the extra arrays and the caller's metadata."""

    weights: ModelWeights
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, MetadataValue] = field(default_factory=dict)


def _check_metadata(where: str, metadata: object) -> dict[str, MetadataValue]:
    """``metadata`` as ``str`` keys to ``str``, 64-bit ``int`` or finite ``float`` values, or CheckpointError."""
    if not isinstance(metadata, Mapping):
        raise CheckpointError(f"{where}: metadata must be a mapping, got {type(metadata).__name__}")
    out: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise CheckpointError(
                f"{where}: metadata {key!r}: expected str keys and str, int or float values, got {value!r}"
            )
        if isinstance(value, int) and not -_INT64 <= value < _INT64:
            raise CheckpointError(f"{where}: metadata {key!r}: {value} is outside the 64-bit integer range")
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(f"{where}: metadata {key!r}: {value} is not a finite number")
        out[key] = value
    return out


def _group_keys(group: str, names: Sequence[str] | None, count: int) -> list[str]:
    if names is not None and len(set(names)) == len(names):
        return [f"{group}/{n}" for n in names]
    return [f"{group}/#{i}" for i in range(count)]  # positional or duplicate names: index keys


def _plan(weights: ModelWeights, extra: Mapping[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every tensor by key, and the fedmodel header; raises CheckpointError before any write."""
    if not isinstance(weights, ModelWeights):
        raise CheckpointError(f"expected fedmodel.ModelWeights, got {type(weights).__name__}")
    extra = dict(extra or {})
    if any(not isinstance(k, str) for k in extra):
        raise CheckpointError("extra keys must be strings")
    tensors: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {"format": FORMAT}
    groups: list[tuple[str, Sequence[str] | None, Sequence[Any]]] = [
        ("trainable", weights.trainable_names, weights.trainable),
        ("non_trainable", weights.non_trainable_names, weights.non_trainable),
        ("extra", list(extra), list(extra.values())),
    ]
    for group, names, values in groups:
        for key, value in zip(_group_keys(group, names, len(values)), values, strict=True):
            tensors[key] = as_storable(key, value)
        header[group] = {"count": len(values), "names": None if names is None else list(names)}
    return tensors, header


def save_checkpoint(
    path: str | os.PathLike[str],
    weights: ModelWeights,
    *,
    extra: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping[str, MetadataValue] | None = None,
) -> None:
    """Write ``weights`` (and ``extra`` arrays, ``metadata``) to ``path`` atomically.

    Args:
        path: the checkpoint file (conventionally ``*.safetensors``); its directory must exist, and an
            existing ``path`` must be a regular file.
        weights: the weights; their names (or positions) are recorded.
        extra: more arrays to keep, e.g. :func:`fedmodel.server_optimizers.state_to_arrays` output.
        metadata: ``str`` keys to ``str``, 64-bit ``int`` or finite ``float`` values (round, seed, ...),
            types preserved.

    Raises:
        CheckpointError: a value cannot be stored, or the write failed; an old file at ``path`` is intact.
    """
    path = os.fspath(path)
    tensors, header = _plan(weights, extra)
    header["metadata"] = _check_metadata(path, metadata or {})
    write(path, tensors, json.dumps(header, separators=(",", ":"), allow_nan=False))


def _group(path: str, header: dict[str, Any], group: str) -> tuple[list[str], list[str] | None]:
    """The tensor keys and names of ``group`` (names None: positional)."""
    entry = header.get(group)
    if not isinstance(entry, dict) or set(entry) != {"count", "names"} or not is_count(entry["count"]):
        raise CheckpointError(f"{path!r}: the header has no valid count and names for {group!r}")
    count: int = entry["count"]
    names = entry["names"]
    if names is not None and (
        not isinstance(names, list) or len(names) != count or not all(isinstance(n, str) for n in names)
    ):
        raise CheckpointError(f"{path!r}: the header's names for {group!r} are not {count} strings")
    if group == "extra" and (names is None or len(set(names)) != len(names)):
        raise CheckpointError(f"{path!r}: the extra arrays need distinct names, got {names!r}")
    return _group_keys(group, names, count), names


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


def check_extra(path: str | os.PathLike[str], extra: Mapping[str, np.ndarray], like: Mapping[str, Any]) -> None:
    """Raise CheckpointError unless ``extra`` has exactly ``like``'s keys, dtypes and shapes.

    What a resumed run checks before it trusts a checkpoint's server state (``path`` names the file).
    """
    path = os.fspath(path)
    if set(like) != set(extra):
        missing, unexpected = sorted(set(like) - set(extra)), sorted(set(extra) - set(like))
        raise CheckpointError(f"{path!r}: extra arrays missing {missing}, unexpected {unexpected}")
    for key, want in like.items():
        want, got = np.asarray(want), extra[key]
        if got.dtype != want.dtype:
            raise CheckpointError(f"{path!r}: extra {key!r} has dtype {got.dtype}, expected {want.dtype}")
        if got.shape != want.shape:
            raise CheckpointError(f"{path!r}: extra {key!r} has shape {got.shape}, expected {want.shape}")


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    like: ModelWeights | None = None,
    extra_like: Mapping[str, np.ndarray] | None = None,
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; every byte is checked against the digest.

    Args:
        path: the checkpoint file.
        like: when given, the loaded weights must match its counts, names, shapes and dtypes.
        extra_like: when given, the extra arrays must have exactly its keys, dtypes and shapes.

    Returns:
        A :class:`Checkpoint` whose arrays are writable and owned by the caller.

    Raises:
        CheckpointError: a missing, unreadable, special, truncated, corrupted or malformed file, not a
            fedmodel checkpoint, or extra arrays unlike ``extra_like``.
        WeightsError: the file is a valid checkpoint whose weights do not match ``like``.
    """
    path = os.fspath(path)
    text, tensors = read(path)
    header = strict_json(path, "the fedmodel header", text)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else header
        raise CheckpointError(f"{path!r}: unknown checkpoint format {found!r}, expected {FORMAT!r}")
    groups = {group: _group(path, header, group) for group in _GROUPS}
    listed = [k for keys, _ in groups.values() for k in keys]
    if sorted(listed) != sorted(tensors):
        missing, unexpected = sorted(set(listed) - set(tensors)), sorted(set(tensors) - set(listed))
        raise CheckpointError(f"{path!r}: tensors missing {missing}, unexpected {unexpected}")
    arrays = {group: [tensors[k] for k in keys] for group, (keys, _) in groups.items()}
    names = {group: None if n is None else tuple(n) for group, (_, n) in groups.items()}
    weights = ModelWeights(
        tuple(arrays["trainable"]), tuple(arrays["non_trainable"]), names["trainable"], names["non_trainable"]
    )
    extra = dict(zip(names["extra"] or (), arrays["extra"], strict=True))
    metadata = _check_metadata(path, header.get("metadata"))
    if like is not None:
        _check_like(path, like, weights)
    if extra_like is not None:
        check_extra(path, extra, extra_like)
    return Checkpoint(weights, extra, metadata)


def restore(model: Any, path: str | os.PathLike[str], *, backend: Backend | None = None) -> Checkpoint:
    """Load ``path`` and assign its weights to ``model``, all or nothing.

    The counts, names, shapes and dtypes are checked against the model's variables before the first write
    (by :func:`fedmodel.assign_weights`, which also receives ``backend``). A checkpoint in canonical names
    and axes is restored into ``fedmodel.layout.canonical(model)``.

    Returns:
        The loaded :class:`Checkpoint` (its ``extra`` arrays and ``metadata`` for resuming a run).

    Raises:
        CheckpointError: as :func:`load_checkpoint`; the model is untouched.
        WeightsError: the checkpoint is of another architecture; the model is untouched.
    """
    ckpt = load_checkpoint(path)
    try:
        assign_weights(model, ckpt.weights, backend=backend)
    except WeightsError as exc:
        raise WeightsError(f"checkpoint {os.fspath(path)!r} does not fit the model: {exc}") from exc
    return ckpt
