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

Files are strict JSON: UTF-8, no duplicate keys, nothing after the top-level object, regular files of
at most :data:`MAX_FILE_BYTES`. Feature values must be finite numbers (not strings or booleans), labels
integers. A user without examples loads as an empty client of the task's shapes. Anything else is a
:class:`~fedmodel.data.DataError` naming the file and, where known, the user.
"""

from __future__ import annotations

import codecs
import json
import numbers
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import numpy as np

from fedmodel.data import text
from fedmodel.data._core import ClientData, ClientSequence, DataError

__all__ = [
    "MAX_CLASSES",
    "MAX_FILE_BYTES",
    "LeafClients",
    "LeafSpan",
    "LeafTask",
    "detect_task",
    "index_leaf_file",
    "leaf_task",
]

MAX_CLASSES = 100_000
"""The most classes a LEAF task may have (``num_classes``, or the count inferred from the training
labels): a model allocates one output per class, so a stray huge label must not size it."""

MAX_FILE_BYTES = 4 * 2**30
"""The largest LEAF file indexed (4 GiB). Indexing holds a file's bytes (twice) while it scans them;
LEAF's own files are at most a few hundred MB (FEMNIST's are 100-200 MB), so this only refuses what
cannot be a LEAF file, before reading it."""

_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_TYPES = {int, float}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_TASKS = ("femnist", "shakespeare", "sent140", "features")
_FIXED_CLASSES = {"femnist": 62, "shakespeare": len(text.LEAF_CHARS), "sent140": 2}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    entry = dict(pairs)
    if len(entry) < len(pairs):
        keys = [key for key, _ in pairs]
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return entry


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _loads(data: str, where: str) -> Any:
    """``data`` decoded as one JSON value; ``where`` (no trailing colon) prefixes error messages."""
    try:
        return _DECODER.decode(data)
    except RecursionError as exc:
        raise DataError(f"{where}: JSON nested too deeply to read") from exc
    except ValueError as exc:  # JSONDecodeError, a duplicate key, an integer of more than 4300 digits
        raise DataError(f"{where}: not valid JSON ({exc})") from exc


@dataclass(frozen=True)
class LeafSpan:
    """Where one user's ``user_data`` entry lies: the file and the byte range of its JSON value.

    ``file_size`` and ``file_mtime_ns`` are the file's as indexed (-1: unknown); a file that no longer
    matches them is refused rather than read at stale offsets.
    """

    path: str
    start: int
    end: int
    num_samples: int
    file_size: int = -1
    file_mtime_ns: int = -1


class _Scan:
    """One file's bytes walked as JSON; the text is their Latin-1 decoding, so offsets are byte offsets."""

    def __init__(self, raw: bytes, where: str) -> None:
        self.raw = raw
        self.text = raw.decode("latin-1")
        self.where = where

    def skip(self, pos: int) -> int:
        match = _SPACE.match(self.text, pos)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def utf8(self, start: int, end: int, where: str) -> str:
        try:
            return self.raw[start:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: not UTF-8 at byte {start + exc.start}") from exc

    def value(self, start: int, end: int, where: str) -> Any:
        return _loads(self.utf8(start, end, where), where)

    def value_end(self, pos: int, where: str, within: str = "") -> int:
        try:
            return int(_DECODER.raw_decode(self.text, pos)[1])
        except RecursionError as exc:
            raise DataError(f"{where}: JSON nested too deeply to read{within} (from byte {pos})") from exc
        except ValueError as exc:
            raise DataError(f"{where}: not valid JSON{within} ({exc})") from exc

    def walk_object(self, pos: int, where: str, member: Callable[[str, int], int]) -> int:
        """Walk the JSON object at ``pos``: ``member(key, value_start)`` returns where its value ends.
        Returns the position after the object's ``}``; a key seen twice is an error."""
        pos = self.skip(pos)
        if self.text[pos : pos + 1] != "{":
            raise DataError(f"{where}: expected a JSON object at byte {pos}")
        pos = self.skip(pos + 1)
        if self.text[pos : pos + 1] == "}":
            return pos + 1
        seen: set[str] = set()
        while True:
            key_end = self.value_end(pos, where)
            colon = self.skip(key_end)
            if self.text[pos : pos + 1] != '"' or self.text[colon : colon + 1] != ":":
                raise DataError(f"{where}: expected a string key and ':' at byte {pos}")
            key = self.value(pos, key_end, where)
            if key in seen:
                raise DataError(f"{where}: duplicate key {key!r} (at byte {pos})")
            seen.add(key)
            pos = self.skip(member(key, self.skip(colon + 1)))
            if self.text[pos : pos + 1] == "}":
                return pos + 1
            if self.text[pos : pos + 1] != ",":
                raise DataError(f"{where}: expected ',' or '}}' at byte {pos}")
            pos = self.skip(pos + 1)


def _read_file(path: Path, where: str) -> tuple[bytes, os.stat_result]:
    if not path.is_file():
        raise DataError(f"{where}: not a regular file (LEAF's data are plain .json files)")
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if info.st_size > MAX_FILE_BYTES:
                raise DataError(f"{where}: {info.st_size} bytes, more than the {MAX_FILE_BYTES} of MAX_FILE_BYTES")
            raw = f.read()  # sized from the file, not from the cap
    except OSError as exc:
        raise DataError(f"{where}: cannot read it ({exc.strerror or exc})") from exc
    except MemoryError as exc:
        raise DataError(f"{where}: too large to index in this machine's memory") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise DataError(f"{where}: more than the {MAX_FILE_BYTES} bytes of MAX_FILE_BYTES")
    return raw, info


def index_leaf_file(path: str | os.PathLike[str]) -> dict[str, LeafSpan]:
    """Each user of one LEAF JSON file, with the byte range of its ``user_data`` entry.

    The scan decodes one user's entry at a time (to find where it ends) and keeps none. The file is
    read as Latin-1, so character offsets are byte offsets whatever UTF-8 it holds; keys, kept values
    and each user's entry are checked to be UTF-8.

    Raises:
        DataError: for a file that is not a regular file of at most :data:`MAX_FILE_BYTES`, not strict
            JSON (UTF-8, no duplicate keys, nothing after the object), or not LEAF's layout: missing
            keys, ``users`` and ``num_samples`` of different lengths, or users without an entry in
            ``user_data`` (and the reverse).
    """
    where = os.fspath(path)
    raw, info = _read_file(Path(path), where)
    if raw.startswith(codecs.BOM_UTF8):
        raise DataError(f"{where}: starts with a UTF-8 byte order mark, which JSON does not allow")
    scan = _Scan(raw, where)
    top: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}

    def user(key: str, start: int) -> int:
        end = scan.value_end(start, where, f" in user {key!r}")
        scan.utf8(start, end, f"{where}: user {key!r}")
        spans[key] = (start, end)
        return end

    def member(key: str, start: int) -> int:
        if key == "user_data":
            top[key] = None
            return scan.walk_object(start, f"{where}: user_data", user)
        end = scan.value_end(start, where, f" in {key!r}")
        if key in ("users", "num_samples"):
            top[key] = scan.value(start, end, f"{where}: {key}")
        return end

    after = scan.skip(scan.walk_object(0, where, member))
    if after != len(raw):
        raise DataError(f"{where}: unexpected data after the JSON object at byte {after}")
    missing = [k for k in ("users", "num_samples", "user_data") if k not in top]
    if missing:
        raise DataError(f"{where}: not LEAF's layout, missing {missing}")
    users, counts = top["users"], top["num_samples"]
    if not isinstance(users, list) or not isinstance(counts, list):
        raise DataError(f"{where}: 'users' and 'num_samples' must be lists")
    if not all(type(n) is int and n >= 0 for n in counts):
        raise DataError(f"{where}: 'num_samples' must hold counts (integers >= 0, not booleans)")
    for u in users:
        if not isinstance(u, str) and type(u) is not int:
            raise DataError(f"{where}: 'users' must hold user ids (strings), got {u!r:.60}")
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
    stamp = (info.st_size, info.st_mtime_ns)
    return {u: LeafSpan(where, *spans[u], n, *stamp) for u, n in zip(users, counts, strict=True)}


def _index_directory(directory: Path) -> dict[str, LeafSpan]:
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (expected LEAF's train/ or test/ directory)")
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
    the number of input ids a text model embeds; ``num_features`` (features) is the width every
    example must have (``None``: any, but then a user without examples cannot be shaped). A plain
    frozen dataclass, so it pickles.
    """

    name: str
    num_classes: int
    model_kind: str
    vocab_size: int | None = None
    vocabulary: Mapping[str, int] = field(default_factory=dict)
    sent140_input: str = "bag"
    num_features: int | None = None

    def convert(self, xs: list[Any], ys: list[Any], where: str = "") -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` arrays of one user's raw lists; ``where`` prefixes error messages.

        A user without examples gives arrays of length 0 with the task's other dimensions.

        Raises:
            DataError: for examples that do not fit the task (shape, alphabet, non-finite or
                non-numeric values, label range).
        """
        if self.name == "femnist":
            pixels = _rows(xs, where, 784)
            if pixels.size and (pixels.min() < 0 or pixels.max() > 1):
                raise DataError(
                    f"{where}x: FEMNIST pixels are gray values in [0, 1], got {pixels.min()}..{pixels.max()} "
                    "(standardised features: task=features)"
                )
            return pixels.reshape(-1, 28, 28), _labels(ys, where, self.num_classes)
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
        if not xs and self.num_features is None:
            raise DataError(f"{where}x: no examples, and the task does not give their width (num_features)")
        return _rows(xs, where, self.num_features), _labels(ys, where, self.num_classes)


def _tweet(row: Any, where: str, i: int) -> str:
    if not isinstance(row, list) or len(row) < 5 or not isinstance(row[4], str):
        raise DataError(f"{where}x: example {i} is not a Sent140 row [id, date, query, user, text]")
    return row[4]


def _rows(xs: list[Any], where: str, width: int | None) -> np.ndarray:
    """float32 (n, width) of examples that are each ``width`` finite numbers (``None``: the first's width)."""
    for i, row in enumerate(xs):
        if not isinstance(row, list):
            raise DataError(f"{where}x: example {i} is {type(row).__name__}, not a flat list of numbers")
        if width is None:
            width = len(row)
        if len(row) != width:
            raise DataError(f"{where}x: example {i} has {len(row)} values, expected {width}")
        if not {type(v) for v in row} <= _NUMBER_TYPES:
            bad = next(v for v in row if type(v) not in _NUMBER_TYPES)
            raise DataError(f"{where}x: example {i} holds {bad!r:.60}, not a number")
    if not width:
        raise DataError(f"{where}x: examples without values")
    try:
        x = np.array(xs, np.float64).reshape(len(xs), width)
    except OverflowError as exc:  # an integer beyond float64
        raise DataError(f"{where}x: a value is too large for a float ({exc})") from exc
    bad_mask = ~(np.abs(x) <= _FLOAT32_MAX)  # NaN compares false
    if bad_mask.any():
        i, j = (int(k) for k in np.argwhere(bad_mask)[0])
        raise DataError(f"{where}x: example {i} value {j} is {xs[i][j]!r:.60}, not a finite float32 number")
    return x.astype(np.float32)


def _labels(ys: list[Any], where: str, num_classes: int, note: str = "") -> np.ndarray:
    for i, v in enumerate(ys):
        if not (type(v) is int or (type(v) is float and v.is_integer())):
            raise DataError(f"{where}y: example {i}: expected an integer class label, got {v!r:.60}")
    if ys:
        low, high = min(ys), max(ys)
        if low < 0 or high >= num_classes:
            raise DataError(f"{where}y: labels must be in [0, {num_classes}){note}, got {low!r}..{high!r}")
    return np.array(ys, np.int64).reshape(len(ys))


def _leaf_gray(xs: list[Any]) -> bool:
    """Whether every example is 784 numbers in [0, 1], as LEAF's FEMNIST pixels (gray / 255) are."""
    try:
        x = _rows(xs, "", 784)
    except DataError:
        return False
    return bool(x.size and x.min() >= 0 and x.max() <= 1)


def detect_task(user_data: Mapping[str, Any] | LeafClients) -> str:
    """The LEAF data set a user's raw data looks like: femnist, shakespeare, sent140 or features.

    Strings are Shakespeare, rows ending in a string Sent140, 784 gray values in [0, 1] FEMNIST, and
    anything else features (FedProx's standardised MNIST, with negative values, stays features). Given
    :class:`LeafClients`, detects from the first user (in id order) that has examples.

    Raises:
        DataError: for :class:`LeafClients` none of whose users has examples.
    """
    if isinstance(user_data, LeafClients):
        for client_id in user_data.client_ids:
            entry = user_data.raw(client_id)
            if entry["x"]:
                return detect_task(entry)
        raise DataError(f"{user_data.directory}: no user has examples to detect the LEAF task from")
    xs = user_data.get("x")
    first = xs[0] if isinstance(xs, list) and xs else None
    if isinstance(first, str):
        return "shakespeare"
    if isinstance(first, list) and first and isinstance(first[-1], str):
        return "sent140"
    if isinstance(xs, list) and isinstance(first, list) and len(first) == 784 and _leaf_gray(xs):
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

    def where(self, client_id: str) -> str:
        """The prefix of error messages about user ``client_id``: its file and id."""
        span = self._index.get(client_id)
        return f"{span.path if span else self.directory}: user {client_id!r}: "

    def raw(self, client_id: str) -> dict[str, Any]:
        """User ``client_id``'s ``user_data`` entry as stored: ``{"x": [...], "y": [...]}``.

        Raises:
            DataError: for an unknown user, a file changed since it was indexed, or an entry that is
                not valid JSON with lists ``x`` and ``y`` as long as ``num_samples`` says.
        """
        span = self._index.get(client_id)
        if span is None:
            raise DataError(f"{self.directory}: no user {client_id!r}")
        where = self.where(client_id)
        try:
            info = os.stat(span.path)
            if span.file_size >= 0 and (info.st_size, info.st_mtime_ns) != (span.file_size, span.file_mtime_ns):
                raise DataError(f"{where}the file changed after it was indexed; load the data set again")
            with open(span.path, "rb") as f:
                f.seek(span.start)
                chunk = f.read(span.end - span.start)
        except OSError as exc:
            raise DataError(f"{where}cannot read it ({exc.strerror or exc})") from exc
        try:
            decoded = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}not UTF-8 at byte {span.start + exc.start}") from exc
        entry = _loads(decoded, where.removesuffix(": "))
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
        x, y = self.task.convert(entry["x"], entry["y"], self.where(client_id))
        return ClientData(x, y)


def _count(value: Any, name: str, high: int | None = None) -> int:
    """``value`` as an int >= 1 (and <= ``high``), else a DataError naming option ``name``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < 1 or (high is not None and value > high):
        bound = f"an integer in [1, {high}]" if high is not None else "an integer >= 1"
        raise DataError(f"{name} must be {bound}, got {value!r:.60}")
    return int(value)


def _word_list(vocabulary: Any) -> dict[str, int]:
    if isinstance(vocabulary, str | bytes) or not isinstance(vocabulary, Sequence):
        raise DataError(f"vocabulary must be a list of words, got {vocabulary!r:.60}")
    for word in vocabulary:
        if not isinstance(word, str):
            raise DataError(f"vocabulary must hold strings, got {word!r:.60}")
    if not vocabulary:
        raise DataError("vocabulary is empty")
    return {w: i for i, w in enumerate(dict.fromkeys(vocabulary))}


def _tweets(train: LeafClients) -> Iterator[str]:
    for client_id in train.client_ids:
        where = train.where(client_id)
        for i, row in enumerate(train.raw(client_id)["x"]):
            yield _tweet(row, where, i)


def _features_task(train: LeafClients, num_classes: int | None) -> LeafTask:
    """Reads the training users for the class count unless given (1 + the highest label, at most
    :data:`MAX_CLASSES`) and for the feature width (the first example's; every example is checked
    against it when its user is loaded). With ``num_classes`` given, reading stops at the first user
    with examples, and a user that cannot be read is passed over: it fails alone, when loaded."""
    width: int | None = None
    highest = -1
    for client_id in train.client_ids:
        if width is not None and num_classes is not None:
            break
        where = train.where(client_id)
        try:
            entry = train.raw(client_id)
            if num_classes is None:
                labels = _labels(entry["y"], where, MAX_CLASSES, " (at most MAX_CLASSES are inferred)")
                highest = max(highest, int(labels.max(initial=-1)))
            first = entry["x"][0] if entry["x"] else None
            if width is None and first is not None:
                if not isinstance(first, list) or not first:
                    raise DataError(f"{where}x: example 0 is {first!r:.60}, not a flat list of numbers")
                width = len(first)  # the values are checked when the user is loaded
        except DataError:
            if num_classes is None:
                raise
            continue
    if width is None:
        raise DataError(f"{train.directory}: no training user has examples (that can be read)")
    return LeafTask("features", num_classes or highest + 1, "mlp", num_features=width)


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

    ``features`` reads the training users once to count the classes unless ``num_classes`` is given
    (and the first with examples for the feature width). ``sent140`` uses ``vocabulary`` (a word list,
    e.g. LEAF's ``embs.json`` ``vocab``), or the ``vocab_size`` most frequent words of the training
    tweets (read once); ``sent140_input`` is ``"bag"`` (bag of words, LEAF's logistic regression) or
    ``"words"`` (25 word ids, LEAF's LSTM). The other tasks have fixed classes; ``num_classes``, if
    given, must match them.

    Raises:
        DataError: for an unknown name, an option of the wrong type or range (``num_classes`` in
            [1, :data:`MAX_CLASSES`], ``vocab_size`` >= 1, ``vocabulary`` a non-empty list of strings
            for sent140 only, ``sent140_input``), or training data the task cannot be read from.
    """
    if not isinstance(name, str) or name not in _TASKS:
        raise DataError(f"unknown LEAF task {name!r:.60}; choose femnist, shakespeare, sent140 or features")
    if num_classes is not None:
        num_classes = _count(num_classes, "num_classes", MAX_CLASSES)
        fixed = _FIXED_CLASSES.get(name)
        if fixed is not None and num_classes != fixed:
            raise DataError(f"num_classes={num_classes} does not fit {name}, which has {fixed} classes")
    vocab_size = _count(vocab_size, "vocab_size")
    if not isinstance(sent140_input, str) or sent140_input not in ("bag", "words"):
        raise DataError(f"sent140_input must be 'bag' or 'words', got {sent140_input!r:.60}")
    if vocabulary is not None and name != "sent140":
        raise DataError(f"vocabulary applies to sent140 only, not {name}")
    if name == "femnist":
        return LeafTask("femnist", 62, "cnn28")
    if name == "shakespeare":
        return LeafTask("shakespeare", len(text.LEAF_CHARS), "char_rnn", len(text.LEAF_CHARS))
    if name == "features":
        return _features_task(train, num_classes)
    if vocabulary is not None:
        vocab = _word_list(vocabulary)
    else:
        vocab = text.build_vocabulary(_tweets(train), vocab_size)
        if not vocab:
            raise DataError(f"{train.directory}: the training tweets hold no words; pass vocabulary=[...]")
    if sent140_input == "bag":
        return LeafTask("sent140", 2, "mlp", None, vocab, "bag")
    return LeafTask("sent140", 2, "word_rnn", len(vocab) + 1, vocab, "words")
