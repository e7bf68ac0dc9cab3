"""LEAF's JSON layout (Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018), read lazily.

LEAF writes a data set as ``train/`` and ``test/`` directories of ``.json`` files, each an object
``{"users": [...], "num_samples": [...], "user_data": {user: {"x": [...], "y": [...]}}}`` (plus
``"hierarchies"`` for some sets). One file holds up to hundreds of users, so reading a user must not
mean holding its file: :func:`index_leaf_file` reads a file once and records where each user's
``user_data`` entry starts and ends; :class:`LeafClients` then reads just those bytes when the user is
asked for. Each user's raw ``x``/``y`` lists become arrays through a :class:`LeafTask`:

- ``femnist``: ``x`` is 784 gray values in [0, 1] -> float32 (n, 28, 28); ``y`` in 0..61 -> int64;
- ``shakespeare``: ``x`` is an 80-character string, ``y`` the next character -> int64 ids (n, 80), (n,)
  in LEAF's alphabet (:data:`fedmodel.data.text.LEAF_CHARS`);
- ``sent140``: ``x`` is a row ``[id, date, query, user, text]``, ``y`` 0 or 1 -> bag-of-words float32
  (n, V) over a vocabulary, or the first 25 word ids int64 (n, 25) (LEAF's two Sent140 models);
- ``features``: ``x`` is a flat list of numbers (FedProx's synthetic and MNIST files) -> float32 (n, d).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import numpy as np

from fedmodel.data import text
from fedmodel.data._core import ClientData, ClientSequence, DataError

__all__ = ["LeafClients", "LeafSpan", "LeafTask", "detect_task", "index_leaf_file", "leaf_task"]

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class LeafSpan:
    """Where one user's ``user_data`` entry lies: the file and the byte range of its JSON value."""

    path: str
    start: int
    end: int
    num_samples: int


def _skip(text_: str, pos: int) -> int:
    match = _SPACE.match(text_, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _value_end(text_: str, pos: int, where: str) -> int:
    try:
        return int(_DECODER.raw_decode(text_, pos)[1])
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from None


def _walk_object(text_: str, pos: int, where: str, member: Callable[[int, int, int], int]) -> int:
    """Walk the JSON object at ``pos``: ``member(key_start, key_end, value_start)`` returns where its value
    ends (having decoded it, or walked it). Returns the position after the object's ``}``."""
    pos = _skip(text_, pos)
    if text_[pos : pos + 1] != "{":
        raise DataError(f"{where}: expected a JSON object at byte {pos}")
    pos = _skip(text_, pos + 1)
    if text_[pos : pos + 1] == "}":
        return pos + 1
    while True:
        key_end = _value_end(text_, pos, where)
        colon = _skip(text_, key_end)
        if text_[pos : pos + 1] != '"' or text_[colon : colon + 1] != ":":
            raise DataError(f"{where}: expected a string key and ':' at byte {pos}")
        pos = _skip(text_, member(pos, key_end, _skip(text_, colon + 1)))
        if text_[pos : pos + 1] == "}":
            return pos + 1
        if text_[pos : pos + 1] != ",":
            raise DataError(f"{where}: expected ',' or '}}' at byte {pos}")
        pos = _skip(text_, pos + 1)


def index_leaf_file(path: str | os.PathLike[str]) -> dict[str, LeafSpan]:
    """Each user of one LEAF JSON file, with the byte range of its ``user_data`` entry.

    The scan decodes one user's entry at a time (to find where it ends) and keeps none. The file is
    read as Latin-1, so character offsets are byte offsets whatever UTF-8 it holds; keys and kept
    values are decoded from the bytes as UTF-8.

    Raises:
        DataError: for a file that is not LEAF's layout: missing keys, ``users`` and ``num_samples`` of
            different lengths, or users without an entry in ``user_data`` (and the reverse).
    """
    where = os.fspath(path)
    raw = Path(path).read_bytes()
    text_ = raw.decode("latin-1")

    def value(start: int, end: int) -> Any:
        return json.loads(raw[start:end].decode("utf-8"))

    top: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}

    def user(key_start: int, key_end: int, start: int) -> int:
        end = _value_end(text_, start, where)
        spans[str(value(key_start, key_end))] = (start, end)
        return end

    def member(key_start: int, key_end: int, start: int) -> int:
        key = value(key_start, key_end)
        if key == "user_data":
            top[key] = None
            return _walk_object(text_, start, f"{where} user_data", user)
        end = _value_end(text_, start, where)
        if key in ("users", "num_samples"):
            top[key] = value(start, end)
        return end

    _walk_object(text_, 0, where, member)
    missing = [k for k in ("users", "num_samples", "user_data") if k not in top]
    if missing:
        raise DataError(f"{where}: not LEAF's layout, missing {missing}")
    users, counts = top["users"], top["num_samples"]
    if not isinstance(users, list) or not isinstance(counts, list):
        raise DataError(f"{where}: 'users' and 'num_samples' must be lists")
    if not all(isinstance(n, int) and n >= 0 for n in counts):
        raise DataError(f"{where}: 'num_samples' must hold counts (integers >= 0)")
    if len(users) != len(counts):
        raise DataError(f"{where}: {len(users)} users but {len(counts)} num_samples")
    users = [str(u) for u in users]
    if set(users) != set(spans) or len(set(users)) != len(users):
        extra = sorted(set(spans) - set(users))[:3]
        absent = sorted(set(users) - set(spans))[:3]
        twice = sorted({u for u in users if users.count(u) > 1})[:3]
        raise DataError(
            f"{where}: users and user_data disagree (without data: {absent}, unlisted: {extra}, listed twice: {twice})"
        )
    return {u: LeafSpan(where, *spans[u], n) for u, n in zip(users, counts, strict=True)}


def _index_directory(directory: Path) -> dict[str, LeafSpan]:
    files = sorted(p for p in directory.iterdir() if p.suffix == ".json")
    if not files:
        raise DataError(f"{directory}: no .json files (expected LEAF's train/ or test/ directory)")
    index: dict[str, LeafSpan] = {}
    for path in files:
        for user, span in index_leaf_file(path).items():
            if user in index:
                raise DataError(f"user {user!r} appears in both {index[user].path} and {span.path}")
            index[user] = span
    return index


@dataclass(frozen=True)
class LeafTask:
    """How a LEAF data set's raw ``x``/``y`` lists become arrays, and what they are.

    ``name`` is femnist, shakespeare, sent140 or features; ``vocabulary`` (Sent140) maps words to ids
    and ``sent140_input`` picks bag-of-words (``"bag"``) or word ids (``"words"``); ``vocab_size`` is
    the number of input ids a text model embeds. A plain frozen dataclass, so it pickles.
    """

    name: str
    num_classes: int
    model_kind: str
    vocab_size: int | None = None
    vocabulary: Mapping[str, int] = field(default_factory=dict)
    sent140_input: str = "bag"

    def convert(self, xs: list[Any], ys: list[Any], where: str = "") -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` arrays of one user's raw lists; ``where`` prefixes error messages.

        Raises:
            DataError: for examples that do not fit the task (shape, alphabet, label range).
        """
        if self.name == "femnist":
            x = _numbers(xs, where)
            if x.ndim != 2 or x.shape[1] != 784:
                raise DataError(f"{where}x: FEMNIST examples are 784 gray values, got shape {x.shape[1:]}")
            return x.reshape(-1, 28, 28), _labels(ys, where, self.num_classes)
        if self.name == "shakespeare":
            x = text.leaf_char_ids(xs, length=80, where=f"{where}x: ")
            return x, text.leaf_char_ids(ys, length=1, where=f"{where}y: ")[:, 0]
        if self.name == "sent140":
            lines = [_tweet(row, where, i) for i, row in enumerate(xs)]
            if self.sent140_input == "bag":
                x = text.bag_of_words(lines, self.vocabulary)
            else:
                x = text.leaf_word_ids(lines, self.vocabulary)
            return x, _labels(ys, where, 2)
        x = _numbers(xs, where)
        if x.ndim != 2:
            raise DataError(f"{where}x: expected flat feature vectors, got shape {x.shape[1:]}")
        return x, _labels(ys, where, self.num_classes)


def _tweet(row: Any, where: str, i: int) -> str:
    if not isinstance(row, list) or len(row) < 5 or not isinstance(row[4], str):
        raise DataError(f"{where}x: example {i} is not a Sent140 row [id, date, query, user, text]")
    return row[4]


def _numbers(xs: list[Any], where: str) -> np.ndarray:
    try:
        return np.asarray(xs, np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}x: not a rectangular array of numbers ({exc})") from None


def _labels(ys: list[Any], where: str, num_classes: int) -> np.ndarray:
    y = np.asarray(ys)
    if y.ndim != 1 or y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(y == np.round(y))):
        raise DataError(f"{where}y: expected integer class labels, got {y.dtype} of shape {y.shape}")
    labels = y.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}y: labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return labels


def detect_task(user_data: Mapping[str, Any]) -> str:
    """The LEAF data set a user's raw data looks like: femnist, shakespeare, sent140 or features."""
    xs = user_data.get("x") or []
    first = xs[0] if xs else None
    if isinstance(first, str):
        return "shakespeare"
    if isinstance(first, list) and first and isinstance(first[-1], str):
        return "sent140"
    if isinstance(first, list) and len(first) == 784:
        return "femnist"
    return "features"


@final
class LeafClients(ClientSequence):
    """A directory of LEAF JSON files as lazy clients, in sorted user-id order.

    ``clients[i]`` reads user ``i``'s bytes from its file and converts them with ``task``; the
    instance holds only the index (picklable, no open file).
    """

    def __init__(self, directory: str | os.PathLike[str], task: LeafTask | None = None) -> None:
        self.directory = Path(directory)
        self._index = _index_directory(self.directory)
        self._ids = tuple(sorted(self._index))
        self.task = task

    @property
    def client_ids(self) -> tuple[str, ...]:
        """The LEAF user ids, sorted."""
        return self._ids

    @property
    def num_samples(self) -> tuple[int, ...]:
        """Each user's example count as the files' ``num_samples`` list states it (no user is read)."""
        return tuple(self._index[u].num_samples for u in self._ids)

    def raw(self, client_id: str) -> dict[str, Any]:
        """User ``client_id``'s ``user_data`` entry as stored: ``{"x": [...], "y": [...]}``."""
        span = self._index.get(client_id)
        if span is None:
            raise DataError(f"{self.directory}: no user {client_id!r}")
        with open(span.path, "rb") as f:
            f.seek(span.start)
            entry = json.loads(f.read(span.end - span.start).decode("utf-8"))
        where = f"{span.path}: user {client_id!r}: "
        if not isinstance(entry, dict) or not isinstance(entry.get("x"), list) or not isinstance(entry.get("y"), list):
            raise DataError(f"{where}user_data entry needs lists 'x' and 'y'")
        if not len(entry["x"]) == len(entry["y"]) == span.num_samples:
            raise DataError(
                f"{where}num_samples says {span.num_samples}, x has {len(entry['x'])} and y {len(entry['y'])}"
            )
        return entry

    def load(self, client_id: str) -> ClientData:
        """User ``client_id``'s examples, converted by the task."""
        if self.task is None:
            raise DataError(f"{self.directory}: no task set; pass one of femnist, shakespeare, sent140, features")
        entry = self.raw(client_id)
        x, y = self.task.convert(entry["x"], entry["y"], f"{self._index[client_id].path}: user {client_id!r}: ")
        return ClientData(x, y)


def leaf_task(
    name: str,
    train: LeafClients,
    *,
    num_classes: int | None = None,
    vocabulary: Sequence[str] | None = None,
    vocab_size: int = 10_000,
    sent140_input: str = "bag",
) -> LeafTask:
    """The :class:`LeafTask` called ``name`` for the training users ``train``.

    ``features`` reads every training user once to count the classes unless ``num_classes`` is given.
    ``sent140`` uses ``vocabulary`` (a word list, e.g. LEAF's ``embs.json`` ``vocab``), or the
    ``vocab_size`` most frequent words of the training tweets (read once); ``sent140_input`` is
    ``"bag"`` (bag of words, LEAF's logistic regression) or ``"words"`` (25 word ids, LEAF's LSTM).

    Raises:
        DataError: for an unknown name or ``sent140_input``.
    """
    if name == "femnist":
        return LeafTask("femnist", 62, "cnn28")
    if name == "shakespeare":
        return LeafTask("shakespeare", len(text.LEAF_CHARS), "char_rnn", len(text.LEAF_CHARS))
    if name == "features":
        classes = num_classes or 1 + max(
            int(np.max(_labels(train.raw(u)["y"], f"{train.directory}: user {u!r}: ", 2**62), initial=0))
            for u in train.client_ids
        )
        return LeafTask("features", classes, "mlp")
    if name == "sent140":
        if sent140_input not in ("bag", "words"):
            raise DataError(f"sent140_input must be 'bag' or 'words', got {sent140_input!r}")
        if vocabulary is not None:
            vocab = {w: i for i, w in enumerate(dict.fromkeys(vocabulary))}
        else:
            lines = (_tweet(row, "", i) for u in train.client_ids for i, row in enumerate(train.raw(u)["x"]))
            vocab = text.build_vocabulary(lines, vocab_size)
        if sent140_input == "bag":
            return LeafTask("sent140", 2, "mlp", None, vocab, "bag")
        return LeafTask("sent140", 2, "word_rnn", len(vocab) + 1, vocab, "words")
    raise DataError(f"unknown LEAF task {name!r}; choose femnist, shakespeare, sent140 or features")
