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
survives ``fork``) and converts the features with a :class:`H5Task`: images become float32 in [0, 1];
Shakespeare and StackOverflow become TFF's next-token windows (:mod:`fedmodel.data.text`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import numpy as np

from fedmodel.data import text
from fedmodel.data._core import ClientData, ClientSequence, DataError

__all__ = ["H5Clients", "H5Task", "detect_h5_task", "h5_task", "read_word_counts"]

_GROUP = "examples"
_KNOWN = {
    "emnist": {"pixels", "label"},
    "shakespeare": {"snippets"},
    "stackoverflow": {"tokens"},
    "cifar100": {"image", "label"},
}


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py ships with the data extra
        raise DataError("reading TFF's HDF5 files needs h5py: pip install 'fedmodel[data]'") from None
    return h5py


@dataclass(frozen=True)
class H5Task:
    """How one TFF data set's features become ``(x, y)``, and what they are (a picklable dataclass).

    ``name`` is emnist, shakespeare, stackoverflow or cifar100; ``vocabulary`` (StackOverflow) maps a
    word to its rank; ``sequence_length`` is the window of the text tasks.
    """

    name: str
    num_classes: int
    model_kind: str
    vocab_size: int | None = None
    vocabulary: Mapping[str, int] = field(default_factory=dict)
    sequence_length: int = 0

    def convert(self, features: Mapping[str, np.ndarray], where: str = "") -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of one client's features (as read from the file).

        Raises:
            DataError: for missing features or features of the wrong shape.
        """
        need = _KNOWN[self.name]
        if not need <= set(features):
            raise DataError(f"{where}{self.name} needs features {sorted(need)}, found {sorted(features)}")
        if self.name == "emnist":
            pixels = _shaped(features["pixels"], (28, 28), f"{where}pixels")
            return pixels.astype(np.float32), _labels(features["label"], self.num_classes, f"{where}label")
        if self.name == "cifar100":
            image = _shaped(features["image"], (32, 32, 3), f"{where}image")
            x = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
            return x, _labels(features["label"], self.num_classes, f"{where}label")
        if self.name == "shakespeare":
            return text.tff_char_windows(_strings(features["snippets"]), length=self.sequence_length)
        return text.tff_word_windows(_strings(features["tokens"]), self.vocabulary, length=self.sequence_length)


def _shaped(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    if array.shape[1:] != shape:
        raise DataError(f"{where}: expected examples of shape {shape}, got {array.shape[1:]}")
    return array


def _labels(array: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    labels = np.asarray(array).reshape(-1)
    if labels.dtype.kind not in "iu" or len(labels) != len(array):
        raise DataError(f"{where}: expected one integer label per example, got {array.dtype} {array.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def _strings(array: np.ndarray) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in np.asarray(array).reshape(-1).tolist()]


@final
class H5Clients(ClientSequence):
    """The clients of one TFF HDF5 file, lazy, in sorted client-id order (TFF's order).

    ``clients[i]`` opens the file, reads client ``i``'s features and converts them with ``task``.
    """

    def __init__(self, path: str | os.PathLike[str], task: H5Task | None = None) -> None:
        self.path = os.fspath(path)
        h5py = _h5py()
        try:
            with h5py.File(self.path, "r") as f:
                group = f.get(_GROUP)
                if not isinstance(group, h5py.Group):
                    raise DataError(f"{self.path}: no '/{_GROUP}' group; not TFF's HDF5 client data")
                self._ids = tuple(sorted(group.keys()))
        except OSError as exc:
            raise DataError(f"{self.path}: cannot open as HDF5 ({exc})") from None
        if not self._ids:
            raise DataError(f"{self.path}: '/{_GROUP}' holds no clients")
        self.task = task

    @property
    def client_ids(self) -> tuple[str, ...]:
        """The group names under ``/examples``, sorted."""
        return self._ids

    def features(self, client_id: str) -> dict[str, np.ndarray]:
        """Client ``client_id``'s datasets as stored, by feature name.

        Raises:
            DataError: for an unknown client, a member that is not a dataset, or features of unequal length.
        """
        h5py = _h5py()
        with h5py.File(self.path, "r") as f:
            group = f[_GROUP].get(client_id)
            if not isinstance(group, h5py.Group):
                raise DataError(f"{self.path}: no client {client_id!r}")
            out = {}
            for name, member in group.items():
                if not isinstance(member, h5py.Dataset) or member.ndim == 0:
                    raise DataError(f"{self.path}: /{_GROUP}/{client_id}/{name} is not a per-example dataset")
                out[name] = member[()]
        lengths = {name: len(v) for name, v in out.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{self.path}: client {client_id!r} features have different lengths {lengths}")
        return out

    def load(self, client_id: str) -> ClientData:
        """Client ``client_id``'s examples, converted by the task."""
        if self.task is None:
            raise DataError(f"{self.path}: no task set; pass one of {sorted(_KNOWN)}")
        x, y = self.task.convert(self.features(client_id), f"{self.path}: client {client_id!r}: ")
        return ClientData(x, y)


def detect_h5_task(clients: H5Clients) -> str:
    """The TFF data set whose features the first client has: emnist, shakespeare, stackoverflow or cifar100.

    Raises:
        DataError: when the features match none of them.
    """
    names = set(clients.features(clients.client_ids[0]))
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
        DataError: for a line that is not ``word count``.
    """
    words: list[str] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if len(words) == size:
                break
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(f"{os.fspath(path)}:{number}: expected 'word count', got {line.rstrip()!r}")
            words.append(parts[0])
    return words


def h5_task(
    name: str,
    path: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    vocabulary: Sequence[str] | None = None,
    word_counts: str | os.PathLike[str] | None = None,
    vocab_size: int = 10_000,
    sequence_length: int | None = None,
) -> H5Task:
    """The :class:`H5Task` called ``name`` for the file at ``path``.

    EMNIST has 62 classes, or 10 for a ``digitsonly`` file name (``num_classes`` overrides).
    Shakespeare windows are 80 characters, StackOverflow's 20 words over ``vocabulary``, or the first
    ``vocab_size`` words of ``word_counts`` (default: ``stackoverflow.word_count`` beside the file).

    Raises:
        DataError: for an unknown name or a StackOverflow file without a vocabulary.
    """
    if name == "emnist":
        classes = num_classes or (10 if "digitsonly" in Path(path).name else 62)
        return H5Task("emnist", classes, "cnn28")
    if name == "cifar100":
        return H5Task("cifar100", num_classes or 100, "cnn32")
    if name == "shakespeare":
        tokens = text.TFF_CHAR_TOKENS
        return H5Task("shakespeare", tokens, "char_rnn_seq", tokens, sequence_length=sequence_length or 80)
    if name == "stackoverflow":
        if vocabulary is None:
            counts = Path(word_counts) if word_counts is not None else Path(path).with_name("stackoverflow.word_count")
            if not counts.exists():
                raise DataError(
                    f"StackOverflow needs a vocabulary: pass vocabulary=[...] or word_counts=PATH "
                    f"(TFF's stackoverflow.word_count); {counts} does not exist"
                )
            vocabulary = read_word_counts(counts, vocab_size)
        vocab = {w: i for i, w in enumerate(dict.fromkeys(vocabulary))}
        tokens = len(vocab) + 4  # pad, words, oov, bos, eos
        return H5Task("stackoverflow", tokens, "word_rnn_seq", tokens, vocab, sequence_length or 20)
    raise DataError(f"unknown TFF data set {name!r}; choose {', '.join(sorted(_KNOWN))}")
