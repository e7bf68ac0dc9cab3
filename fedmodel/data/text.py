"""Text to token ids, with the published vocabularies and conventions of LEAF and TensorFlow Federated.

LEAF (``models/utils/language_utils.py``): Shakespeare examples are 80-character strings whose label
is the next character, both mapped to their index in LEAF's 80-character alphabet
(:data:`LEAF_CHARS`); Sent140 splits a tweet into words with ``[\\w']+|[.,!?;]`` and maps the first 25
to vocabulary ids, padding with the unknown id ``len(vocabulary)`` (or counts words: bag of words).

TensorFlow Federated (``simulation/baselines``): Shakespeare snippets become ``bos, chars..., eos``
ids over an 86-character vocabulary (:data:`TFF_CHARS`; 0 = pad, ``i + 1`` = character ``i``,
87 = out of vocabulary, 88 = bos, 89 = eos), padded to a multiple of 81 and cut into windows whose
input is the first 80 ids and target the last 80; StackOverflow sentences keep their first 20 words,
mapped to ``1 + rank`` in a 10,000-word vocabulary (0 = pad, ``V + 1`` = out of vocabulary,
``V + 2`` = bos, ``V + 3`` = eos), as ``bos words [eos]`` padded to 21 and split the same way.

Lengths are integers in [1, :data:`MAX_SEQUENCE_LENGTH`], a vocabulary maps each word to an id in
``[0, len(vocabulary))``; anything else is a :class:`~fedmodel.data.DataError` naming the argument.

>>> leaf_char_ids(["ab"], length=2).tolist()
[[53, 54]]
>>> x, y = tff_char_windows([b"hi"], length=4)
>>> x.tolist(), y.tolist()
([[88, 2, 66, 89]], [[2, 66, 89, 0]])
"""

from __future__ import annotations

import numbers
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fedmodel.data._core import DataError

__all__ = [
    "LEAF_CHARS",
    "MAX_SEQUENCE_LENGTH",
    "TFF_CHARS",
    "TFF_CHAR_TOKENS",
    "bag_of_words",
    "build_vocabulary",
    "leaf_char_ids",
    "leaf_word_ids",
    "split_words",
    "tff_char_windows",
    "tff_word_windows",
]

LEAF_CHARS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
"""LEAF's Shakespeare alphabet (80 characters); a character's id is its index."""

TFF_CHARS = "dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\naeimquyAEIMQUY]!%)-159\r"
"""TensorFlow Federated's Shakespeare vocabulary (86 characters); a character's id is its index + 1."""

MAX_SEQUENCE_LENGTH = 100_000
"""The longest sequence (characters, words or window) the helpers make: an array of this many ids per
example is already 800 kB, so a larger length is a mistake, not a model."""

_LEAF_INDEX = {c: i for i, c in enumerate(LEAF_CHARS)}
_WORDS = re.compile(r"[\w']+|[.,!?;]")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _length(value: object, name: str) -> int:
    """``value`` as a sequence length in [1, MAX_SEQUENCE_LENGTH], else a DataError naming ``name``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1 <= int(value) <= MAX_SEQUENCE_LENGTH:
        return int(value)
    raise DataError(f"{name} must be an integer in [1, {MAX_SEQUENCE_LENGTH}], got {value!r:.60}")


def _check_ids(vocabulary: Mapping[str, int], where: str) -> None:
    """Each word's id indexes the vocabulary: an integer in [0, len(vocabulary))."""
    size = len(vocabulary)
    for word, i in vocabulary.items():
        if not _is_int(i) or not 0 <= i < size:
            raise DataError(f"{where}vocabulary: word {word!r:.60} has id {i!r:.60}, not an integer in [0, {size})")


def _text(item: object, what: str, i: int, where: str) -> str:
    """A snippet or sentence as str: UTF-8 bytes decoded, str kept, anything else a DataError."""
    if isinstance(item, str):
        return item
    if not isinstance(item, bytes):
        raise DataError(f"{where}{what} {i} is {type(item).__name__}, not bytes or str")
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}{what} {i} is not UTF-8 (byte {exc.start})") from exc


def leaf_char_ids(strings: Sequence[str], *, length: int, where: str = "") -> np.ndarray:
    """Each string (of exactly ``length`` characters) as LEAF alphabet ids, int64 of shape (n, length).

    Raises:
        DataError: for a bad ``length``, a string of another length or a character outside
            :data:`LEAF_CHARS`.
    """
    length = _length(length, "length")
    out = np.empty((len(strings), length), np.int64)
    for i, text in enumerate(strings):
        if not isinstance(text, str) or len(text) != length:
            shown = len(text) if isinstance(text, str) else type(text).__name__
            raise DataError(f"{where}example {i}: expected a string of {length} characters, got {shown}")
        try:
            out[i] = [_LEAF_INDEX[c] for c in text]
        except KeyError as exc:
            raise DataError(f"{where}example {i}: character {exc.args[0]!r} is not in LEAF's alphabet") from None
    return out


def split_words(line: str) -> list[str]:
    """LEAF's Sent140 tokenizer: runs of word characters and apostrophes, and the marks ``. , ! ? ;``."""
    return _WORDS.findall(line)


def build_vocabulary(lines: Iterable[str], size: int) -> dict[str, int]:
    """The ``size`` most frequent words of ``lines`` (ties in alphabetical order), each mapped to its rank.

    Raises:
        DataError: for a ``size`` that is not an integer >= 1.
    """
    if not _is_int(size) or size < 1:
        raise DataError(f"size must be an integer >= 1, got {size!r:.60}")
    counts = Counter(word for line in lines for word in split_words(line))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]
    return {word: rank for rank, (word, _) in enumerate(ranked)}


def leaf_word_ids(
    lines: Sequence[str], vocabulary: Mapping[str, int], *, max_words: int = 25, where: str = ""
) -> np.ndarray:
    """The first ``max_words`` words' ids, padded with the unknown id ``len(vocabulary)``: int64 (n, max_words).

    Raises:
        DataError: for a bad ``max_words`` or a vocabulary id outside ``[0, len(vocabulary))``.
    """
    max_words = _length(max_words, "max_words")
    _check_ids(vocabulary, where)
    unknown = len(vocabulary)
    out = np.full((len(lines), max_words), unknown, np.int64)
    for i, line in enumerate(lines):
        ids = [vocabulary.get(w, unknown) for w in split_words(line)[:max_words]]
        out[i, : len(ids)] = ids
    return out


def bag_of_words(lines: Sequence[str], vocabulary: Mapping[str, int], *, where: str = "") -> np.ndarray:
    """How often each vocabulary word occurs in each line: float32 of shape (n, len(vocabulary)).

    Raises:
        DataError: for a vocabulary id outside ``[0, len(vocabulary))``.
    """
    _check_ids(vocabulary, where)
    out = np.zeros((len(lines), len(vocabulary)), np.float32)
    for i, line in enumerate(lines):
        for word in split_words(line):
            j = vocabulary.get(word)
            if j is not None:
                out[i, j] += 1
    return out


_TFF_LOOKUP = np.full(256, len(TFF_CHARS) + 1, np.int64)  # bytes outside the vocabulary -> oov
for _i, _c in enumerate(TFF_CHARS):
    _TFF_LOOKUP[ord(_c)] = _i + 1
TFF_CHAR_TOKENS = len(TFF_CHARS) + 4  # pad, 86 characters, oov, bos, eos


def tff_char_windows(
    snippets: Iterable[bytes | str], *, length: int = 80, where: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """TFF's Shakespeare preprocessing: ``(x, y)`` int64 windows of ``length`` ids, ``y`` shifted by one.

    Each snippet's bytes become ``bos, ids..., eos``, padded with 0 to a multiple of ``length + 1``;
    all snippets are chained and cut into rows of ``length + 1``: ``x = row[:-1]``, ``y = row[1:]``.

    Raises:
        DataError: for a bad ``length`` or a snippet that is neither bytes nor str.
    """
    length = _length(length, "length")
    bos, eos = len(TFF_CHARS) + 2, len(TFF_CHARS) + 3
    pieces = []
    for i, snippet in enumerate(snippets):
        if not isinstance(snippet, bytes | str):
            raise DataError(f"{where}snippet {i} is {type(snippet).__name__}, not bytes or str")
        try:
            raw = snippet.encode("utf-8") if isinstance(snippet, str) else bytes(snippet)
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise DataError(f"{where}snippet {i} has no UTF-8 form ({exc.reason} at {exc.start})") from exc
        ids = np.concatenate([[bos], _TFF_LOOKUP[np.frombuffer(raw, np.uint8)], [eos]])
        pieces.append(np.concatenate([ids, np.zeros(-len(ids) % (length + 1), np.int64)]))
    rows = np.concatenate(pieces).reshape(-1, length + 1) if pieces else np.zeros((0, length + 1), np.int64)
    return rows[:, :-1].copy(), rows[:, 1:].copy()


def tff_word_windows(
    sentences: Iterable[bytes | str], vocabulary: Mapping[str, int], *, length: int = 20, where: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """TFF's StackOverflow next-word preprocessing: ``(x, y)`` int64 of shape (n, ``length``).

    ``vocabulary`` maps a word to its rank (0-based); ids are ``rank + 1``, 0 pads, ``V + 1`` is out of
    vocabulary, ``V + 2`` bos and ``V + 3`` eos (appended only when the sentence has fewer than
    ``length`` words). Words are split on single spaces, as TFF's ``tf.strings.split(sep=' ')``.

    Raises:
        DataError: for a bad ``length``, a vocabulary rank outside ``[0, len(vocabulary))``, or a
            sentence that is neither str nor UTF-8 bytes.
    """
    length = _length(length, "length")
    _check_ids(vocabulary, where)
    size = len(vocabulary)
    oov, bos, eos = size + 1, size + 2, size + 3
    rows = []
    for i, sentence in enumerate(sentences):
        words = _text(sentence, "sentence", i, where).split(" ")[:length]
        ids = [bos] + [vocabulary[w] + 1 if w in vocabulary else oov for w in words]
        if len(words) < length:
            ids.append(eos)
        rows.append(ids + [0] * (length + 1 - len(ids)))
    table = np.asarray(rows, np.int64).reshape(-1, length + 1)
    return table[:, :-1].copy(), table[:, 1:].copy()
