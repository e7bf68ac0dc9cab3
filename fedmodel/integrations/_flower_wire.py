"""The wire format of fedmodel over Flower: weights as Flower records, metric reports as metric records.

Weights travel as one :class:`flwr.app.ArrayRecord` (key ``"arrays"``: variable name -> ``Array``, NPY
encoded by Flower itself) next to one :class:`flwr.app.ConfigRecord` (key ``"fedmodel.weights"``) that
carries what the arrays cannot: which names are trainable and which non-trainable, in order, and the
original dtype of every array that had to be widened. Flower's NPY encoding cannot carry the
``ml_dtypes`` floats (``bfloat16``, ``float8_*``): ``np.save`` writes them as opaque ``|V2`` / ``|V1``
bytes and ``Array.numpy()`` returns void bytes, silently. fedmodel therefore sends them as ``float32``
(exact: every bfloat16 and float8 value is a float32 value), records the original dtype, and casts back on
arrival after checking that each value is representable. Integer buffers (``num_batches_tracked``) travel
as themselves.

Unfinalized metric reports (``model.report_local_outputs()``) are flattened with fedmodel's tree paths
into scalar or list entries ``"report/<path>"`` of a :class:`flwr.app.MetricRecord`; the receiver rebuilds
them against a template report of its own model (same structure, shapes and integer/float kinds).

Every decoding function raises :class:`MessageError` with the offending name, expected and actual.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedmodel import tree as _tree
from fedmodel._errors import FedModelError
from fedmodel._weights import ModelWeights

__all__ = [
    "ARRAYS_KEY",
    "CONFIG_KEY",
    "METRICS_KEY",
    "REPORT_PREFIX",
    "WEIGHTS_META_KEY",
    "WIDENED_DTYPES",
    "MessageError",
    "decode_weights",
    "encode_weights",
    "flatten_report",
    "read_weights",
    "unflatten_report",
    "write_weights",
]

ARRAYS_KEY = "arrays"
"""Key of the :class:`~flwr.app.ArrayRecord` of weights (Flower's own convention)."""
WEIGHTS_META_KEY = "fedmodel.weights"
"""Key of the :class:`~flwr.app.ConfigRecord` with the names, groups and widened dtypes of the weights."""
METRICS_KEY = "metrics"
"""Key of the reply's :class:`~flwr.app.MetricRecord` (``num-examples`` and the flattened report)."""
CONFIG_KEY = "config"
"""Key of the instruction's :class:`~flwr.app.ConfigRecord` (``server-round``, ``seed``)."""
REPORT_PREFIX = "report/"
"""Prefix of the flattened report's entries in the reply's metric record."""
WIDENED_DTYPES = frozenset(
    {"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e4m3b11fnuz", "float8_e5m2", "float8_e5m2fnuz"}
)
"""``ml_dtypes`` floats that Flower's NPY encoding cannot carry and that travel as exact ``float32``."""

_FORMAT = "fedmodel-weights/1"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class MessageError(FedModelError, ValueError):
    """A Flower message does not carry what fedmodel expects (the message names what, expected, actual)."""


def _npy_safe(dtype: np.dtype[Any]) -> bool:
    return bool(dtype.isbuiltin == 1) and dtype.kind in "biuf"


def encode_weights(weights: ModelWeights) -> tuple[ArrayRecord, ConfigRecord]:
    """``weights`` as Flower records: an ArrayRecord keyed by variable name and its metadata ConfigRecord.

    Raises:
        MessageError: for duplicate names or a dtype that neither NPY nor a float32 widening can carry.
    """
    named = weights.names is not None
    names = [name for name, _ in weights.items()]
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise MessageError(f"weights: variable names must be unique to travel as an ArrayRecord, got {duplicates}")
    record = ArrayRecord()
    cast_names, cast_dtypes = [], []
    for name, value in weights.items():
        array = np.asarray(value, order="C")  # (np.ascontiguousarray would make a 0-d counter 1-d)
        if not _npy_safe(array.dtype):
            if array.dtype.name not in WIDENED_DTYPES:
                raise MessageError(f"weights {name!r}: dtype {array.dtype.name} cannot travel in a Flower Array")
            cast_names.append(name)
            cast_dtypes.append(array.dtype.name)
            array = array.astype(np.float32)
        record[name] = Array(array)
    n = len(weights.trainable)
    meta = ConfigRecord(
        {
            "format": _FORMAT,
            "named": named,
            "trainable": names[:n],
            "non-trainable": names[n:],
            "cast-names": cast_names,
            "cast-dtypes": cast_dtypes,
        }
    )
    return record, meta


def _str_list(meta: ConfigRecord, key: str) -> list[str]:
    value = meta.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MessageError(f"{WEIGHTS_META_KEY}[{key!r}]: expected a list of strings, got {value!r}")
    return [str(v) for v in value]


def _ml_dtype(name: str) -> np.dtype[Any]:
    try:
        import ml_dtypes
    except ImportError as exc:  # pragma: no cover - ml_dtypes ships with jax and tensorflow
        raise MessageError(f"weights were sent as {name}, which needs the ml_dtypes package") from exc
    dtype: np.dtype[Any] = np.dtype(getattr(ml_dtypes, name))
    return dtype


def _decode_array(name: str, array: Any) -> np.ndarray:
    if not isinstance(array, Array):
        raise MessageError(f"arrays[{name!r}]: expected a flwr.app.Array, got {type(array).__name__}")
    try:
        value = array.numpy()
    except Exception as exc:  # corrupt bytes, a foreign stype, a pickled payload (never loaded)
        raise MessageError(f"arrays[{name!r}]: cannot be decoded as NPY ({type(exc).__name__}: {exc})") from exc
    if value.dtype.name != array.dtype or tuple(value.shape) != tuple(array.shape):
        raise MessageError(
            f"arrays[{name!r}]: declared {array.dtype}{list(array.shape)} but the payload is "
            f"{value.dtype.name}{list(value.shape)} (Flower's NPY cannot carry {array.dtype}; "
            "fedmodel sends such arrays widened to float32)"
        )
    if not _npy_safe(value.dtype):
        raise MessageError(f"arrays[{name!r}]: dtype {value.dtype.name} is not a plain numeric dtype")
    return value


def decode_weights(arrays: ArrayRecord, meta: ConfigRecord) -> ModelWeights:
    """The inverse of :func:`encode_weights`: checks every name, payload, shape and dtype declaration.

    Raises:
        MessageError: naming the variable, expected and actual.
    """
    if meta.get("format") != _FORMAT:
        raise MessageError(f"{WEIGHTS_META_KEY}['format']: expected {_FORMAT!r}, got {meta.get('format')!r}")
    trainable, non_trainable = _str_list(meta, "trainable"), _str_list(meta, "non-trainable")
    cast_names, cast_dtypes = _str_list(meta, "cast-names"), _str_list(meta, "cast-dtypes")
    names = trainable + non_trainable
    if len(set(names)) != len(names):
        raise MessageError(f"{WEIGHTS_META_KEY}: variable names are not unique: {names}")
    missing, extra = [n for n in names if n not in arrays], sorted(set(arrays) - set(names))
    if missing or extra:
        raise MessageError(f"arrays: missing {missing}, unexpected {extra} (expected exactly {names})")
    if len(cast_names) != len(cast_dtypes) or not set(cast_names) <= set(names):
        raise MessageError(f"{WEIGHTS_META_KEY}: inconsistent cast-names {cast_names} / cast-dtypes {cast_dtypes}")
    casts = dict(zip(cast_names, cast_dtypes, strict=True))
    values = []
    for name in names:
        value = _decode_array(name, arrays[name])
        if name in casts:
            if casts[name] not in WIDENED_DTYPES or value.dtype != np.float32:
                raise MessageError(f"arrays[{name!r}]: cannot restore {casts[name]} from {value.dtype.name}")
            restored = value.astype(_ml_dtype(casts[name]))
            if not np.array_equal(restored.astype(np.float32), value, equal_nan=True):
                raise MessageError(f"arrays[{name!r}]: float32 values are not exactly representable in {casts[name]}")
            value = restored
        values.append(value)
    named = meta.get("named", True) is True
    n = len(trainable)
    return ModelWeights(
        tuple(values[:n]),
        tuple(values[n:]),
        tuple(trainable) if named else None,
        tuple(non_trainable) if named else None,
    )


def write_weights(content: RecordDict, weights: ModelWeights) -> None:
    """Put ``weights`` into a message's content under :data:`ARRAYS_KEY` and :data:`WEIGHTS_META_KEY`."""
    content[ARRAYS_KEY], content[WEIGHTS_META_KEY] = encode_weights(weights)


def read_weights(content: RecordDict) -> ModelWeights:
    """The weights a message's content carries (see :func:`decode_weights`).

    Raises:
        MessageError: when a record is missing or malformed.
    """
    arrays = content.array_records.get(ARRAYS_KEY)
    meta = content.config_records.get(WEIGHTS_META_KEY)
    if arrays is None or meta is None:
        raise MessageError(
            f"the message carries no fedmodel weights: expected ArrayRecord {ARRAYS_KEY!r} and ConfigRecord "
            f"{WEIGHTS_META_KEY!r}, found records {sorted(content)}"
        )
    return decode_weights(arrays, meta)


def _scalar_or_list(path: str, leaf: Any) -> int | float | list[int] | list[float]:
    array = np.asarray(leaf)
    if array.dtype.kind in "biu":
        wide: np.ndarray = array.astype(np.int64)
    elif array.dtype.kind == "f" or array.dtype.name in WIDENED_DTYPES:
        wide = array.astype(np.float64)
    else:
        raise MessageError(f"report {path!r}: dtype {array.dtype.name} cannot travel in a MetricRecord")
    out: int | float | list[int] | list[float] = wide.item() if wide.ndim == 0 else wide.ravel().tolist()
    return out


def flatten_report(report: Mapping[str, Any], prefix: str = REPORT_PREFIX) -> dict[str, Any]:
    """A metric report as flat MetricRecord entries ``prefix + tree path`` (scalars, or flat lists).

    >>> flatten_report({"accuracy": (np.int64(3), np.int64(4)), "num_examples": np.int64(4)})
    {'report/accuracy/0': 3, 'report/accuracy/1': 4, 'report/num_examples': 4}
    """
    out: dict[str, Any] = {}
    for name, value in report.items():
        paths, leaves, _ = _tree.flatten_with_paths(value)
        for path, leaf in zip(paths, leaves, strict=True):
            key = f"{prefix}{name}" if path == "<root>" else f"{prefix}{name}/{path}"
            if key in out:
                raise MessageError(f"report: two values flatten to the same key {key!r}")
            out[key] = _scalar_or_list(key, leaf)
    return out


def unflatten_report(values: Mapping[str, Any], like: Mapping[str, Any], prefix: str = REPORT_PREFIX) -> dict[str, Any]:
    """Rebuild a report from :func:`flatten_report` entries, shaped like the template report ``like``.

    Leaves come back as numpy arrays of the template's shapes, int64 where the template is integer and
    float64 otherwise; entries of ``values`` without ``prefix`` are ignored.

    Raises:
        MessageError: for a missing, unexpected or mis-sized entry, or a float where an integer is due.
    """
    template = flatten_report(like, prefix)
    received = {k for k in values if k.startswith(prefix)}
    if received != set(template):
        raise MessageError(
            f"report: missing {sorted(set(template) - received)}, unexpected {sorted(received - set(template))}"
        )
    out: dict[str, Any] = {}
    for name, value in like.items():
        paths, leaves, treedef = _tree.flatten_with_paths(value)
        rebuilt = []
        for path, leaf in zip(paths, leaves, strict=True):
            key = f"{prefix}{name}" if path == "<root>" else f"{prefix}{name}/{path}"
            want = np.asarray(leaf)
            integer = want.dtype.kind in "biu"
            got = values[key]
            flat = got if isinstance(got, list) else [got]
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
                raise MessageError(f"report {key!r}: expected numbers, got {got!r}")
            if integer and not all(isinstance(v, int) for v in flat):
                raise MessageError(f"report {key!r}: expected integers, got {got!r}")
            if not all(_INT64_MIN <= v <= _INT64_MAX for v in flat if isinstance(v, int)):
                raise MessageError(f"report {key!r}: integers beyond int64, got {got!r}")  # the wire carries uint64
            if isinstance(got, list) != (want.ndim > 0) or len(flat) != want.size:
                raise MessageError(f"report {key!r}: expected {want.size} value(s) of shape {want.shape}, got {got!r}")
            rebuilt.append(np.asarray(flat, np.int64 if integer else np.float64).reshape(want.shape))
        out[name] = _tree.unflatten(treedef, rebuilt)
    return out
