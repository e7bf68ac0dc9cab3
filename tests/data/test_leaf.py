"""LEAF's JSON layout: small files written exactly as LEAF's preprocessing writes them, read back lazily."""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fedmodel.data.leaf as leaf_module
from fedmodel.data import DataError
from fedmodel.data.leaf import LeafClients, detect_task, index_leaf_file, leaf_task
from fedmodel.data.text import LEAF_CHARS


def _image(value: int) -> list[float]:
    """784 gray values with pixel 0 = value / 255 and pixel 783 = 1 - value / 255 (LEAF divides by 255)."""
    pixels = [0.5] * 784
    pixels[0], pixels[783] = value / 255, 1 - value / 255
    return pixels


@pytest.fixture
def femnist(tmp_path: Path, leaf_file: Callable[..., Path]) -> Path:
    root = tmp_path / "femnist" / "data"
    leaf_file(
        root / "train" / "all_data_1_niid_0_keep_0_train_9.json",
        {"f3000_45": {"x": [_image(10), _image(20)], "y": [61, 0]}},
    )
    leaf_file(
        root / "train" / "all_data_0_niid_0_keep_0_train_9.json",
        {
            "f0001_41": {"x": [_image(1), _image(2), _image(3)], "y": [5, 36, 10]},
            "f0002_17": {"x": [_image(4)], "y": [9]},
        },
    )
    leaf_file(
        root / "test" / "all_data_0_niid_0_keep_0_test_9.json",
        {
            "f0001_41": {"x": [_image(7)], "y": [1]},
            "f0002_17": {"x": [_image(8)], "y": [2]},
            "f3000_45": {"x": [_image(9), _image(11)], "y": [3, 4]},
        },
    )
    return tmp_path / "femnist"


def test_femnist_users_are_the_sorted_writer_ids_with_leafs_counts(femnist: Path) -> None:
    clients = LeafClients(femnist / "data" / "train")
    assert clients.client_ids == ("f0001_41", "f0002_17", "f3000_45")
    assert clients.num_samples == (3, 1, 2)


def test_femnist_examples_become_28x28_float32_images_with_int64_labels(femnist: Path) -> None:
    train = LeafClients(femnist / "data" / "train")
    train.task = leaf_task(detect_task(train.raw("f0001_41")), train)
    first = train[0]
    assert first.x.shape == (3, 28, 28) and first.x.dtype == np.float32
    assert first.y.tolist() == [5, 36, 10] and first.y.dtype == np.int64
    assert first.x[2, 0, 0] == pytest.approx(3 / 255) and first.x[2, 27, 27] == pytest.approx(1 - 3 / 255)
    assert train[2].y.tolist() == [61, 0]
    assert train.task.num_classes == 62 and train.task.model_kind == "cnn28"


def test_reading_a_user_reads_only_that_users_bytes(femnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clients = LeafClients(femnist / "data" / "train", leaf_task("femnist", LeafClients(femnist / "data" / "train")))
    reads: list[int] = []
    real_open = builtins.open

    class Spy:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.f = real_open(*args, **kwargs)

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def seek(self, pos: int) -> int:
            return int(self.f.seek(pos))

        def read(self, n: int) -> bytes:
            reads.append(n)
            data: bytes = self.f.read(n)
            return data

    monkeypatch.setattr(leaf_module, "open", Spy, raising=False)
    clients[1]  # f0002_17: one image of a file that holds four
    size = (femnist / "data" / "train" / "all_data_0_niid_0_keep_0_train_9.json").stat().st_size
    assert len(reads) == 1 and 784 * 3 < reads[0] < size / 3


def test_a_user_whose_entry_contradicts_num_samples_fails_alone_naming_file_user_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "train" / "a.json"
    record = {
        "users": ["ok", "bad"],
        "num_samples": [1, 3],
        "user_data": {"ok": {"x": [[1.0, 2.0]], "y": [0]}, "bad": {"x": [[1.0, 2.0]], "y": [1]}},
    }
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    clients = LeafClients(tmp_path / "train", leaf_task("features", LeafClients(tmp_path / "train"), num_classes=2))
    assert clients.client_ids == ("bad", "ok")
    np.testing.assert_array_equal(clients[1].x, [[1.0, 2.0]])  # the lazy read of one user is unaffected
    with pytest.raises(DataError, match=r"a\.json: user 'bad': num_samples says 3, x has 1 and y 1"):
        clients[0]


@pytest.fixture
def shakespeare(tmp_path: Path, leaf_file: Callable[..., Path]) -> Path:
    line = "To be, or not to be: that is the question. Whether 'tis nobler in the mind to suf"
    assert len(line) == 81
    windows = [line[i : i + 80] for i in range(2)]
    targets = [line[80], "f"]
    user = "THE_TRAGEDY_OF_HAMLET_PRINCE_OF_DENMARK_HAMLET"
    leaf_file(tmp_path / "train" / "all_data_niid_0_keep_0_train_9.json", {user: {"x": windows, "y": targets}})
    leaf_file(tmp_path / "test" / "all_data_niid_0_keep_0_test_9.json", {user: {"x": windows[:1], "y": ["f"]}})
    return tmp_path


def test_shakespeare_windows_are_80_character_ids_in_leafs_alphabet(shakespeare: Path) -> None:
    train = LeafClients(shakespeare / "train")
    assert detect_task(train.raw(train.client_ids[0])) == "shakespeare"
    train.task = leaf_task("shakespeare", train)
    client = train[0]
    assert client.x.shape == (2, 80) and client.x.dtype == np.int64
    assert (
        "".join(LEAF_CHARS[i] for i in client.x[0])
        == "To be, or not to be: that is the question. Whether 'tis nobler in the mind to su"
    )
    assert client.x[0, :3].tolist() == [44, 67, 1]  # 'T', 'o', ' ' by hand from LEAF's ALL_LETTERS
    assert client.y.tolist() == [58, 58] and LEAF_CHARS[58] == "f"
    np.testing.assert_array_equal(client.x[1, :-1], client.x[0, 1:])
    assert train.task.num_classes == 80 and train.task.vocab_size == 80 and train.task.model_kind == "char_rnn"


def test_a_character_outside_leafs_alphabet_is_named_with_its_user_and_example(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    leaf_file(tmp_path / "train" / "a.json", {"u": {"x": ["a" * 79 + "é"], "y": ["b"]}})
    clients = LeafClients(tmp_path / "train")
    clients.task = leaf_task("shakespeare", clients)
    with pytest.raises(DataError, match=r"user 'u': x: example 0: character 'é' is not in LEAF's alphabet"):
        clients[0]


@pytest.fixture
def sent140(tmp_path: Path, leaf_file: Callable[..., Path]) -> Path:
    def row(i: int, user: str, text: str) -> list[str]:
        return [str(1467810369 + i), "Mon Apr 06 22:19:45 PDT 2009", "NO_QUERY", user, text]

    leaf_file(
        tmp_path / "train" / "all_data_niid_0_keep_0_train_9.json",
        {
            "_TheSpecialOne_": {
                "x": [row(0, "_TheSpecialOne_", "good good day!"), row(1, "_TheSpecialOne_", "bad day")],
                "y": [1, 0],
            },
            "scotthamilton": {"x": [row(2, "scotthamilton", "is upset... can't update")], "y": [0]},
        },
    )
    leaf_file(
        tmp_path / "test" / "all_data_niid_0_keep_0_test_9.json",
        {"scotthamilton": {"x": [row(3, "scotthamilton", "a good one")], "y": [1]}},
    )
    return tmp_path


def test_sent140_bag_of_words_counts_the_training_vocabulary(sent140: Path) -> None:
    train = LeafClients(sent140 / "train")
    assert detect_task(train.raw(train.client_ids[0])) == "sent140"
    task = leaf_task("sent140", train)
    train.task = task
    # by count, ties alphabetical: '.' 3 (each dot of '...' is a word), day 2, good 2, then the singles
    assert list(task.vocabulary) == [".", "day", "good", "!", "bad", "can't", "is", "update", "upset"]
    first = train[0]
    assert first.x.dtype == np.float32 and first.x.shape == (2, 9)
    assert first.x[0].tolist() == [0, 1, 2, 1, 0, 0, 0, 0, 0] and first.y.tolist() == [1, 0]
    assert train[1].x[0].tolist() == [3, 0, 0, 0, 0, 1, 1, 1, 1]
    assert (task.num_classes, task.model_kind) == (2, "mlp")


def test_sent140_word_ids_follow_leafs_line_to_indices(sent140: Path) -> None:
    train = LeafClients(sent140 / "train")
    task = leaf_task("sent140", train, vocabulary=["good", "day"], sent140_input="words")
    train.task = task
    ids = train[0].x
    assert ids.shape == (2, 25) and ids.dtype == np.int64
    assert ids[0, :5].tolist() == [0, 0, 1, 2, 2]  # good good day ! <pad>: unknown and padding are len(vocab) = 2
    assert (task.vocab_size, task.model_kind) == (3, "word_rnn")


def test_flat_features_count_their_classes_from_the_training_labels(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    leaf_file(
        tmp_path / "train" / "mytrain.json",
        {"f_00000": {"x": [[0.5, 1.5], [2.0, 3.0]], "y": [3, 1]}, "f_00001": {"x": [[1.0, 1.0]], "y": [6]}},
    )
    train = LeafClients(tmp_path / "train")
    assert detect_task(train.raw("f_00000")) == "features"
    task = leaf_task("features", train)
    train.task = task
    assert task.num_classes == 7 and task.model_kind == "mlp"
    np.testing.assert_array_equal(train[0].x, np.array([[0.5, 1.5], [2.0, 3.0]], np.float32))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"users": ["a"], "user_data": {"a": {"x": [], "y": []}}}, r"missing \['num_samples'\]"),
        ({"users": ["a", "b"], "num_samples": [0], "user_data": {}}, "2 users but 1 num_samples"),
        ({"users": ["a"], "num_samples": [0], "user_data": {"b": {"x": [], "y": []}}}, r"without data: \['a'\]"),
        ([1, 2], "expected a JSON object"),
        (
            {"users": ["a", "a"], "num_samples": [0, 0], "user_data": {"a": {"x": [], "y": []}}},
            r"listed twice: \['a'\]",
        ),
        ({"users": ["a"], "num_samples": ["1"], "user_data": {"a": {"x": [], "y": []}}}, "counts"),
        ({"users": "a", "num_samples": [1], "user_data": {"a": {"x": [], "y": []}}}, "must be lists"),
    ],
)
def test_a_file_that_is_not_leafs_layout_is_named_with_what_is_wrong(tmp_path: Path, record: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(DataError, match=message):
        index_leaf_file(path)


def test_truncated_json_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"users": ["a"], "num_samples": [1], "user_data": {"a": {"x": [[1.0]], "y": [')
    with pytest.raises(DataError, match=r"cut\.json: not valid JSON"):
        index_leaf_file(path)


def test_a_user_in_two_files_is_an_error_naming_both(tmp_path: Path, leaf_file: Callable[..., Path]) -> None:
    leaf_file(tmp_path / "train" / "a.json", {"u": {"x": [[1.0]], "y": [0]}})
    leaf_file(tmp_path / "train" / "b.json", {"u": {"x": [[2.0]], "y": [0]}})
    with pytest.raises(DataError, match=r"'u' appears in both .*a\.json and .*b\.json"):
        LeafClients(tmp_path / "train")


def test_labels_out_of_range_name_the_user_and_the_range(tmp_path: Path, leaf_file: Callable[..., Path]) -> None:
    leaf_file(tmp_path / "train" / "a.json", {"u": {"x": [_image(1)], "y": [62]}})
    clients = LeafClients(tmp_path / "train")
    clients.task = leaf_task("femnist", clients)
    with pytest.raises(DataError, match=r"user 'u': y: labels must be in \[0, 62\), got 62..62"):
        clients[0]


_IDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    users=st.dictionaries(_IDS, st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=4), min_size=1, max_size=6),
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
)
def test_the_index_finds_every_user_whatever_the_ids_and_formatting(
    tmp_path: Path, leaf_file: Callable[..., Path], users: dict[str, list[float]], indent: int | None, ascii_only: bool
) -> None:
    data = {u: {"x": [[v, v] for v in values], "y": [0] * len(values)} for u, values in users.items()}
    path = leaf_file(tmp_path / "h.json", data, indent=indent, ensure_ascii=ascii_only)
    index = index_leaf_file(path)
    assert set(index) == set(users)
    raw = path.read_bytes()
    for user, span in index.items():
        assert json.loads(raw[span.start : span.end].decode("utf-8")) == data[user]
        assert span.num_samples == len(users[user])
