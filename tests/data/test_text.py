"""The text helpers refuse lengths, vocabularies and items they cannot honour, naming the argument."""

from __future__ import annotations

from typing import Any

import pytest

from fedmodel.data import DataError, text


@pytest.mark.parametrize("length", [0, -1, -2, 1.5, True, 10**9])
def test_sequence_lengths_are_checked_naming_the_argument(length: Any) -> None:
    assert text.MAX_SEQUENCE_LENGTH == 100_000
    message = r"must be an integer in \[1, 100000\], got " + repr(length).replace(".", r"\.")
    with pytest.raises(DataError, match="length " + message):
        text.leaf_char_ids(["a"], length=length)
    with pytest.raises(DataError, match="length " + message):
        text.tff_char_windows([b"hi"], length=length)
    with pytest.raises(DataError, match="length " + message):
        text.tff_word_windows(["a b"], {"a": 0}, length=length)
    with pytest.raises(DataError, match="max_words " + message):
        text.leaf_word_ids(["a b"], {"a": 0}, max_words=length)


@pytest.mark.parametrize("size", [0, -1, True, 2.0])
def test_vocabulary_size_is_checked(size: Any) -> None:
    with pytest.raises(DataError, match=r"size must be an integer >= 1, got " + repr(size)):
        text.build_vocabulary(["a b c"], size)


@pytest.mark.parametrize("vocabulary", [{"a": 5}, {"a": -1}, {"a": "x"}, {"a": True}])
def test_vocabulary_ids_must_index_the_vocabulary(vocabulary: Any) -> None:
    for convert in (
        lambda: text.bag_of_words(["a"], vocabulary),
        lambda: text.leaf_word_ids(["a"], vocabulary),
        lambda: text.tff_word_windows(["a"], vocabulary, length=3),
    ):
        with pytest.raises(DataError, match=r"vocabulary: word 'a' has id .*, not an integer in \[0, 1\)"):
            convert()


def test_tff_windows_refuse_items_that_are_not_text() -> None:
    with pytest.raises(DataError, match=r"snippet 0 is int, not bytes or str"):
        text.tff_char_windows([5], length=4)  # type: ignore[list-item]
    with pytest.raises(DataError, match=r"sentence 1 is NoneType, not bytes or str"):
        text.tff_word_windows(["a", None], {"a": 0}, length=3)  # type: ignore[list-item]
    with pytest.raises(DataError, match=r"sentence 0 is not UTF-8"):
        text.tff_word_windows([b"\xff"], {"a": 0}, length=3)
    with pytest.raises(DataError, match=r"snippet 0 has no UTF-8 form"):
        text.tff_char_windows(["a\ud800"], length=4)


def test_the_published_conventions_are_unchanged() -> None:
    assert text.leaf_char_ids(["ab"], length=2).tolist() == [[53, 54]]
    x, y = text.tff_char_windows([b"hi"], length=4)
    assert (x.tolist(), y.tolist()) == ([[88, 2, 66, 89]], [[2, 66, 89, 0]])
    assert text.leaf_word_ids(["b a"], {"a": 0, "b": 1}, max_words=3).tolist() == [[1, 0, 2]]
    assert text.bag_of_words(["a a c"], {"a": 0, "b": 1}).tolist() == [[2.0, 0.0]]
