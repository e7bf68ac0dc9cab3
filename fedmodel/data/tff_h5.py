"""TensorFlow Federated's HDF5 client data, streamed one client at a time with ``h5py``.

TFF published its simulation data sets (``tff.simulation.datasets``, ``HDF5ClientData``) as HDF5 files
with one group per client, ``/examples/<client_id>/<feature>``, each feature a dataset whose first
axis runs over the client's examples; client ids are the sorted group names. The files and features:

- federated EMNIST (``fed_emnist[_digitsonly]_{train,test}.h5``): ``pixels`` float32 (n, 28, 28) in
  [0, 1] (1.0 is background), ``label`` int32 (0-9 digits, 10-35 upper, 36-61 lower case);
- Shakespeare (``shakespeare_{train,test}.h5``): ``snippets``, byte strings of contiguous lines;
- StackOverflow (``stackoverflow_{train,held_out,test}.h5``): ``tokens`` (space-separated words),
  ``title``, ``tags`` ('|'-separated), ``type``, ``creation_date`` (strings) and ``score`` (int64);
- CIFAR-100 by Pachinko allocation (``fed_cifar100_{train,test}.h5``): ``image`` uint8 (n, 32, 32, 3),
  ``label`` (0-99) and ``coarse_label`` (0-19), int64.

:class:`H5Clients` opens the file for each client it reads (nothing stays open, so it pickles and
survives ``fork``), reads only the features its :class:`H5Task` needs and converts them: images become
float32 in [0, 1] (integer pixels, such as uint8, are divided by 255; float pixels must already lie in
[0, 1]; bool and other kinds are refused); Shakespeare and StackOverflow become TFF's next-token
windows (:mod:`fedmodel.data.text`) of UTF-8 strings (fixed- or variable-length HDF5 strings only).

What a file may hold is checked before it is read: a client may declare at most
:data:`MAX_CLIENT_BYTES` (its datasets' shape times item size), client groups and features must be hard
links under ``/examples`` (no soft or external links), and datasets must be stored in the file itself
(no external storage, no virtual datasets). Anything else is a :class:`DataError` naming the file,
client and feature.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import numpy as np

from fedmodel.data import text
from fedmodel.data._core import ClientData, ClientSequence, DataError
from fedmodel.data.leaf import MAX_CLASSES

__all__ = [
    "MAX_CLIENT_BYTES",
    "MAX_SEQUENCE_LENGTH",
    "H5Clients",
    "H5Task",
    "detect_h5_task",
    "h5_task",
    "read_word_counts",
]

MAX_CLIENT_BYTES = 2**30
"""The most one client may declare (the features read: shape times item size, a variable-length element
counted as 64 bytes) or need for its text windows: 1 GiB. TFF's largest clients hold a few MB."""
_VLEN_BYTES = 64  # a variable-length string read: HDF5's 16-byte handle, then a Python bytes object

MAX_SEQUENCE_LENGTH = 100_000
"""The longest text window ``sequence_length`` may ask for (TFF's are 80 characters and 20 words)."""

_GROUP = "examples"
_KNOWN = {
    "emnist": {"pixels", "label"},
    "shakespeare": {"snippets"},
    "stackoverflow": {"tokens"},
    "cifar100": {"image", "label"},
}
_TEXT_TASKS = ("shakespeare", "stackoverflow")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py ships with the data extra
        raise DataError("reading TFF's HDF5 files needs h5py: pip install 'fedmodel[data]'") from None
    return h5py


def _count(option: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in [minimum, maximum]; a DataError naming ``option`` otherwise."""
    if type(value) is int and minimum <= value and (maximum is None or value <= maximum):
        return value
    wanted = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    raise DataError(f"{option} must be an integer {wanted}, got {value!r}")


@dataclass(frozen=True)
class H5Task:
    """How one TFF data set's features become ``(x, y)``, and what they are (a picklable dataclass).

    ``name`` is emnist, shakespeare, stackoverflow or cifar100; ``vocabulary`` (StackOverflow) maps a
    word to its rank; ``sequence_length`` is the window of the text tasks (1 to :data:`MAX_SEQUENCE_LENGTH`).
    """

    name: str
    num_classes: int
    model_kind: str
    vocab_size: int | None = None
    vocabulary: Mapping[str, int] = field(default_factory=dict)
    sequence_length: int = 0

    def __post_init__(self) -> None:
        if self.name not in _KNOWN:
            raise DataError(f"unknown TFF data set {self.name!r}; choose {', '.join(sorted(_KNOWN))}")
        _count("num_classes", self.num_classes)
        if self.name in _TEXT_TASKS:
            _count("sequence_length", self.sequence_length, maximum=MAX_SEQUENCE_LENGTH)

    @property
    def features(self) -> frozenset[str]:
        """The feature names this task reads from each client."""
        return frozenset(_KNOWN[self.name])

    def convert(self, features: Mapping[str, np.ndarray], where: str = "") -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of one client's features (as read from the file).

        Raises:
            DataError: for missing features, or features of the wrong shape, dtype or values.
        """
        need = _KNOWN[self.name]
        if not need <= set(features):
            raise DataError(f"{where}{self.name} needs features {sorted(need)}, found {sorted(features)}")
        if self.name == "emnist":
            pixels = _image(features["pixels"], (28, 28), f"{where}pixels")
            return pixels, _labels(features["label"], self.num_classes, f"{where}label")
        if self.name == "cifar100":
            image = _image(features["image"], (32, 32, 3), f"{where}image")
            return image, _labels(features["label"], self.num_classes, f"{where}label")
        feature = "snippets" if self.name == "shakespeare" else "tokens"
        strings = _strings(features[feature], f"{where}{feature}")
        length = self.sequence_length
        # Shakespeare: each snippet's bos, bytes and eos padded to rows of length + 1; StackOverflow: a row each
        windows = (-(-(len(s) + 2) // (length + 1)) if self.name == "shakespeare" else 1 for s in strings)
        rows = sum(windows)
        need_bytes = 2 * rows * (length + 1) * 8
        if need_bytes > MAX_CLIENT_BYTES:
            raise DataError(
                f"{where}{feature}: {rows} windows of sequence_length={length} need {need_bytes} bytes, "
                f"over the per-client cap MAX_CLIENT_BYTES={MAX_CLIENT_BYTES}"
            )
        if self.name == "shakespeare":
            return text.tff_char_windows(strings, length=length)
        return text.tff_word_windows(strings, self.vocabulary, length=length)


def _dtype_name(dtype: np.dtype[Any]) -> str:
    h5py = _h5py()
    if h5py.check_string_dtype(dtype) is not None and dtype.kind == "O":
        return "vlen str"
    base = h5py.check_vlen_dtype(dtype)
    if base is not None:
        return f"vlen {np.dtype(base)}"
    if h5py.check_ref_dtype(dtype) is not None:
        return "object reference"
    return str(dtype).lstrip("|")


def _a_link(link: object) -> str:
    """ "a SoftLink", "an ExternalLink", ...: what a name that is not a hard link is."""
    kind = type(link).__name__ if link is not None else "missing link"
    return f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind}"


def _shaped(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    if array.shape[1:] != shape:
        raise DataError(f"{where}: expected examples of shape {shape}, got {array.shape[1:]}")
    return array


def _image(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Float32 images in [0, 1]: integer pixels in [0, 255] divided by 255, float pixels finite and in [0, 1]."""
    _shaped(array, shape, where)
    kind = array.dtype.kind
    if kind not in "iuf":
        raise DataError(f"{where}: expected integer or float pixels, got {_dtype_name(array.dtype)}")
    if kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{where}: pixels are not finite (NaN or infinity)")
    low, high = (0, 255) if kind in "iu" else (0, 1)
    if array.size and (array.min() < low or array.max() > high):
        raise DataError(
            f"{where}: {'integer' if kind in 'iu' else 'float'} pixels must be in [{low}, {high}], "
            f"got {array.min()}..{array.max()}"
        )
    x = array.astype(np.float32)
    return x / np.float32(255) if kind in "iu" else x


def _labels(array: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    labels = np.asarray(array).reshape(-1)
    if labels.dtype.kind not in "iu" or len(labels) != len(array):
        raise DataError(f"{where}: expected one integer label per example, got {array.dtype} {array.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def _strings(array: np.ndarray, where: str) -> list[bytes]:
    """One UTF-8 byte string per example, from fixed-length (``S``) or variable-length HDF5 strings."""
    is_text = array.dtype.kind in "SU" or (array.dtype.kind == "O" and _h5py().check_string_dtype(array.dtype))
    if not is_text:
        raise DataError(f"{where}: expected strings (bytes or UTF-8 text), got dtype {_dtype_name(array.dtype)}")
    if array.ndim != 1:
        raise DataError(f"{where}: expected one string per example, got shape {array.shape}")
    out: list[bytes] = []
    for i, value in enumerate(array.tolist()):
        try:
            raw = value.encode("utf-8") if isinstance(value, str) else value
            if not isinstance(raw, bytes):
                raise DataError(f"{where}: example {i} is a {type(value).__name__}, not a string")
            raw.decode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError) as exc:
            raise DataError(f"{where}: example {i} is not valid UTF-8 ({exc.reason})") from None
        out.append(raw)
    return out


@final
class H5Clients(ClientSequence):
    """The clients of one TFF HDF5 file, lazy, in sorted client-id order (TFF's order).

    ``clients[i]`` opens the file, reads client ``i``'s features the task needs and converts them.

    Raises:
        DataError: for a file that is not HDF5, has no (hard-linked) ``/examples`` group, no clients, or
            a client name that is not UTF-8.
    """

    def __init__(self, path: str | os.PathLike[str], task: H5Task | None = None) -> None:
        self.path = os.fspath(path)
        with self._open() as f:
            try:
                names = list(self._examples(f).keys())
            except (OSError, KeyError, RuntimeError) as exc:
                raise DataError(f"{self.path}: cannot list the clients in /{_GROUP} ({exc})") from exc
        for name in names:
            if not isinstance(name, str):
                raise DataError(f"{self.path}: client name {name!r} under /{_GROUP} is not UTF-8")
        self._ids = tuple(sorted(names))
        self._known = frozenset(self._ids)
        if not self._ids:
            raise DataError(f"{self.path}: '/{_GROUP}' holds no clients")
        self.task = task

    @property
    def client_ids(self) -> tuple[str, ...]:
        """The group names under ``/examples``, sorted."""
        return self._ids

    def _open(self) -> Any:
        h5py = _h5py()
        try:
            return h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot open as HDF5 ({exc})") from exc

    def _examples(self, f: Any) -> Any:
        h5py = _h5py()
        link = f.get(_GROUP, getlink=True)
        if link is not None and not isinstance(link, h5py.HardLink):
            raise DataError(f"{self.path}: '/{_GROUP}' is {_a_link(link)}; only a group in the file is read")
        group = f.get(_GROUP)
        if not isinstance(group, h5py.Group):
            raise DataError(f"{self.path}: no '/{_GROUP}' group; not TFF's HDF5 client data")
        return group

    def _datasets(self, f: Any, client_id: str) -> dict[str, Any]:
        """Client ``client_id``'s datasets, by name, checked from metadata only (nothing is read)."""
        h5py = _h5py()
        if not isinstance(client_id, str) or client_id not in self._known:
            raise DataError(f"{self.path}: no client {client_id!r} among the {len(self._ids)} in /{_GROUP}")
        examples = self._examples(f)
        link = examples.get(client_id, getlink=True)
        where = f"{self.path}: client {client_id!r}"
        if not isinstance(link, h5py.HardLink):
            raise DataError(f"{where} is {_a_link(link)}, not a group stored in /{_GROUP}")
        group = examples[client_id]
        if not isinstance(group, h5py.Group):
            raise DataError(f"{where} is not a group of features")
        out: dict[str, Any] = {}
        for name in group:
            if not isinstance(name, str):
                raise DataError(f"{where}: feature name {name!r} is not UTF-8")
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise DataError(f"{where}: {name} is {_a_link(link)}, not a dataset stored in this group")
            member = group[name]
            if not isinstance(member, h5py.Dataset) or member.shape is None or member.ndim == 0:
                raise DataError(f"{self.path}: /{_GROUP}/{client_id}/{name} is not a per-example dataset")
            if member.is_virtual:
                raise DataError(f"{where}: {name}: a virtual dataset (data in other files); not read")
            if member.external is not None:
                raise DataError(f"{where}: {name}: stored in external files {member.external}; not read")
            out[name] = member
        lengths = {name: member.shape[0] for name, member in out.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{self.path}: client {client_id!r} features have different lengths {lengths}")
        return out

    def feature_names(self, client_id: str) -> tuple[str, ...]:
        """Client ``client_id``'s feature names, sorted, from the file's metadata (no data is read).

        Raises:
            DataError: as :meth:`features`.
        """
        with self._open() as f:
            try:
                return tuple(sorted(self._datasets(f, client_id)))
            except (OSError, KeyError, RuntimeError) as exc:
                raise DataError(f"{self.path}: client {client_id!r}: cannot read ({exc})") from exc

    def features(self, client_id: str, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Client ``client_id``'s datasets as stored, by feature name: those in ``names``, or all.

        Raises:
            DataError: for an id not in :attr:`client_ids`, a missing feature, a member that is not a
                per-example dataset stored in this group, features of unequal length, more than
                :data:`MAX_CLIENT_BYTES` declared, or a read error (a corrupted chunk, ...).
        """
        where = f"{self.path}: client {client_id!r}: "
        if isinstance(names, str):
            names = [names]
        out: dict[str, np.ndarray] = {}
        with self._open() as f:
            try:
                datasets = self._datasets(f, client_id)
                wanted = sorted(datasets) if names is None else sorted(set(names))
                missing = [name for name in wanted if name not in datasets]
                if missing:
                    raise DataError(f"{where}needs features {wanted}, found {sorted(datasets)}")
                total = 0
                for name in wanted:
                    member = datasets[name]
                    itemsize = _VLEN_BYTES if member.dtype.kind == "O" else member.dtype.itemsize
                    total += math.prod(member.shape) * itemsize
                    if total > MAX_CLIENT_BYTES:
                        raise DataError(
                            f"{where}{name}: declares shape {member.shape} {_dtype_name(member.dtype)}, "
                            f"{total} bytes in all, over the per-client cap MAX_CLIENT_BYTES={MAX_CLIENT_BYTES}"
                        )
                for name in wanted:
                    try:
                        out[name] = datasets[name][()]
                    except (OSError, KeyError, RuntimeError) as exc:
                        raise DataError(f"{where}{name}: cannot read ({exc})") from exc
            except (OSError, KeyError, RuntimeError) as exc:
                raise DataError(f"{where}cannot read ({exc})") from exc
        return out

    def load(self, client_id: str) -> ClientData:
        """Client ``client_id``'s examples, converted by the task (only the task's features are read)."""
        if self.task is None:
            raise DataError(f"{self.path}: no task set; pass one of {sorted(_KNOWN)}")
        where = f"{self.path}: client {client_id!r}: "
        features = self.features(client_id, self.task.features)
        x, y = self.task.convert(features, where)
        return ClientData(x, y)


def detect_h5_task(clients: H5Clients) -> str:
    """The TFF data set whose features the first client has: emnist, shakespeare, stackoverflow or cifar100.

    Only the feature names are looked at; no data is read.

    Raises:
        DataError: when the features match none of them.
    """
    names = set(clients.feature_names(clients.client_ids[0]))
    for task, need in _KNOWN.items():
        if need <= names and (task != "emnist" or "image" not in names):
            return task
    raise DataError(
        f"{clients.path}: features {sorted(names)} match no TFF data set ("
        + ", ".join(f"{k}: {sorted(v)}" for k, v in _KNOWN.items())
        + ")"
    )


def read_word_counts(path: str | os.PathLike[str], size: int) -> list[str]:
    """The first ``size`` words of TFF's ``stackoverflow.word_count`` (lines ``word count``, most frequent first).

    Raises:
        DataError: for a ``size`` that is not an integer >= 0, a file that cannot be read or is not
            UTF-8, or a line that is not ``word count``.
    """
    _count("size", size, minimum=0)
    words: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if len(words) == size:
                    break
                parts = line.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    raise DataError(f"{os.fspath(path)}:{number}: expected 'word count', got {line.rstrip()!r}")
                words.append(parts[0])
    except UnicodeDecodeError as exc:
        raise DataError(f"{os.fspath(path)}: not UTF-8 text ({exc.reason} near line {len(words) + 1})") from None
    except OSError as exc:
        raise DataError(f"{os.fspath(path)}: cannot read the word counts ({exc})") from exc
    return words


def h5_task(
    name: str,
    path: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    vocabulary: Sequence[str] | None = None,
    word_counts: str | os.PathLike[str] | None = None,
    vocab_size: int | None = None,
    sequence_length: int | None = None,
) -> H5Task:
    """The :class:`H5Task` called ``name`` for the file at ``path``.

    EMNIST has 62 classes, or 10 for a ``digitsonly`` file name (``num_classes``, an integer from 1 to
    :data:`~fedmodel.data.leaf.MAX_CLASSES`, overrides; it does not apply to the text tasks, whose classes
    are their tokens). Shakespeare windows are 80 characters, StackOverflow's 20 words
    (``sequence_length``: 1 to :data:`MAX_SEQUENCE_LENGTH`), over ``vocabulary`` (words), or the first
    ``vocab_size`` (10,000) words of ``word_counts`` (default: ``stackoverflow.word_count`` beside the
    file). An option that does not apply to ``name`` is refused, not ignored.

    Raises:
        DataError: for an unknown name, an option of the wrong type, range or task, or a StackOverflow
            file without a vocabulary.
    """
    if name not in _KNOWN:
        raise DataError(f"unknown TFF data set {name!r}; choose {', '.join(sorted(_KNOWN))}")
    if num_classes is not None:
        _count("num_classes", num_classes, maximum=MAX_CLASSES)
        if name in _TEXT_TASKS:
            raise DataError(f"num_classes does not apply to {name} (its classes are its tokens), got {num_classes!r}")
    if sequence_length is not None:
        _count("sequence_length", sequence_length, maximum=MAX_SEQUENCE_LENGTH)
        if name not in _TEXT_TASKS:
            raise DataError(f"sequence_length does not apply to {name} (only to {' and '.join(_TEXT_TASKS)})")
    given = {"vocabulary": vocabulary, "word_counts": word_counts, "vocab_size": vocab_size}
    stray = [option for option, value in given.items() if value is not None]
    if stray and name != "stackoverflow":
        verb = "applies" if len(stray) == 1 else "apply"
        raise DataError(f"{', '.join(stray)} {verb} only to stackoverflow (its vocabulary), not to {name}")
    if name == "emnist":
        classes = num_classes or (10 if "digitsonly" in Path(path).name else 62)
        return H5Task("emnist", classes, "cnn28")
    if name == "cifar100":
        return H5Task("cifar100", num_classes or 100, "cnn32")
    if name == "shakespeare":
        tokens = text.TFF_CHAR_TOKENS
        return H5Task("shakespeare", tokens, "char_rnn_seq", tokens, sequence_length=sequence_length or 80)
    if vocabulary is not None and (word_counts is not None or vocab_size is not None):
        raise DataError("give vocabulary=, or word_counts= and vocab_size=, not both")
    vocab_size = _count("vocab_size", 10_000 if vocab_size is None else vocab_size, maximum=MAX_CLASSES - 4)
    if vocabulary is None:
        counts = Path(word_counts) if word_counts is not None else Path(path).with_name("stackoverflow.word_count")
        if not counts.exists():
            raise DataError(
                f"StackOverflow needs a vocabulary: pass vocabulary=[...] or word_counts=PATH "
                f"(TFF's stackoverflow.word_count); {counts} does not exist"
            )
        vocabulary = read_word_counts(counts, vocab_size)
    if isinstance(vocabulary, str | bytes) or not all(isinstance(w, str) for w in vocabulary):
        raise DataError(f"vocabulary must be a sequence of words (str), got {vocabulary!r:.200}")
    vocab = {w: i for i, w in enumerate(dict.fromkeys(vocabulary))}
    tokens = len(vocab) + 4  # pad, words, oov, bos, eos
    return H5Task("stackoverflow", tokens, "word_rnn_seq", tokens, vocab, sequence_length or 20)
