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


# --- malformed input: each a DataError naming the file (and user), never a bare exception -----------------------------


def _raw_leaf(path: Path, text: str | bytes) -> Path:
    """A LEAF file written byte for byte (for what ``json.dump`` cannot write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def _features(tmp_path: Path, leaf_file: Callable[..., Path], user_data: dict[str, Any]) -> LeafClients:
    leaf_file(tmp_path / "train" / "a.json", user_data)
    return LeafClients(tmp_path / "train")


def test_inferred_class_count_is_capped_naming_the_file_and_user(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    train = _features(tmp_path, leaf_file, {"u": {"x": [[1.0, 2.0]], "y": [4611686018427387903]}})
    with pytest.raises(DataError, match=r"a\.json: user 'u': y: labels must be in \[0, 100000\).*4611686018427387903"):
        leaf_task("features", train)
    assert leaf_module.MAX_CLASSES == 100_000


@pytest.mark.parametrize(("label", "shown"), [(-1, r"got -1\.\.-1"), (1e30, r"got 1e\+30\.\.1e\+30")])
def test_out_of_range_labels_are_reported_as_written(
    tmp_path: Path, leaf_file: Callable[..., Path], label: float, shown: str
) -> None:
    train = _features(tmp_path, leaf_file, {"u": {"x": [[1.0, 2.0]], "y": [label]}})
    with pytest.raises(DataError, match=r"a\.json: user 'u': y: labels must be in \[0, 100000\).*" + shown):
        leaf_task("features", train)
    train.task = leaf_task("features", train, num_classes=3)
    with pytest.raises(DataError, match=r"a\.json: user 'u': y: labels must be in \[0, 3\), " + shown):
        train[0]


def test_class_counting_errors_name_the_file_not_the_directory(tmp_path: Path, leaf_file: Callable[..., Path]) -> None:
    train = _features(tmp_path, leaf_file, {"u": {"x": [[1.0, 2.0]], "y": ["b"]}})
    with pytest.raises(DataError, match=r"train[/\\]a\.json: user 'u': y: example 0: expected an integer class label"):
        leaf_task("features", train)


def test_a_json_name_that_is_a_directory_or_a_device_is_refused(tmp_path: Path, leaf_file: Callable[..., Path]) -> None:
    leaf_file(tmp_path / "train" / "a.json", {"u": {"x": [[1.0]], "y": [0]}})
    (tmp_path / "train" / "b.json").mkdir()
    with pytest.raises(DataError, match=r"b\.json: not a regular file"):
        LeafClients(tmp_path / "train")
    with pytest.raises(DataError, match=r"b\.json: not a regular file"):
        index_leaf_file(tmp_path / "train" / "b.json")
    (tmp_path / "train" / "b.json").rmdir()
    if Path("/dev/zero").exists():
        (tmp_path / "train" / "z.json").symlink_to("/dev/zero")
        with pytest.raises(DataError, match=r"z\.json: not a regular file"):
            LeafClients(tmp_path / "train")


def test_a_file_above_the_size_cap_is_refused(
    tmp_path: Path, leaf_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = leaf_file(tmp_path / "a.json", {"u": {"x": [[1.0]], "y": [0]}})
    assert leaf_module.MAX_FILE_BYTES == 4 * 2**30
    monkeypatch.setattr(leaf_module, "MAX_FILE_BYTES", 20)
    with pytest.raises(DataError, match=r"a\.json: \d+ bytes, more than the 20"):
        index_leaf_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"users":["a"],"num_samples":[0],"user_data":{"\xff\xfe":{"x":[],"y":[]}}}',
            r"user_data: not UTF-8 at byte 47",
        ),
        (b'{"users":["\xff"],"num_samples":[0],"user_data":{"a":{"x":[],"y":[]}}}', r"users: not UTF-8 at byte 11"),
        (b'{"\xff":1, "users":[],"num_samples":[],"user_data":{}}', r"not UTF-8 at byte 2"),
        (
            b'{"users":["u"],"num_samples":[1],"user_data":{"u":{"x":["\xff' + b"a" * 79 + b'"],"y":["b"]}}}',
            r"user 'u': not UTF-8 at byte 57",
        ),
    ],
)
def test_bytes_that_are_not_utf8_are_named_with_the_file_and_place(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = _raw_leaf(tmp_path / "bad.json", content)
    with pytest.raises(DataError, match=r"bad\.json: " + message):
        index_leaf_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"users":' + "[" * 100_000 + "]" * 100_000 + ',"num_samples":[],"user_data":{}}',
            r"bad\.json: JSON nested too deeply to read in 'users' \(from byte 9\)",
        ),
        (
            '{"users":["a"],"num_samples":[0],"user_data":{"a":' + "[" * 100_000 + "]" * 100_000 + "}}",
            r"bad\.json: JSON nested too deeply to read in user 'a'",
        ),
        (
            '{"users":["a"],"num_samples":[1' + "0" * 5000 + '],"user_data":{"a":{"x":[[1]],"y":[0]}}}',
            r"bad\.json: not valid JSON in 'num_samples' \(Exceeds the limit",
        ),
    ],
)
def test_deep_nesting_and_huge_numbers_are_data_errors(tmp_path: Path, content: str, message: str) -> None:
    path = _raw_leaf(tmp_path / "bad.json", content)
    with pytest.raises(DataError, match=message):
        index_leaf_file(path)


def test_a_file_rewritten_after_indexing_is_a_data_error_naming_file_and_user(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    data = {"u": {"x": [[1.0, 2.0]], "y": [0]}, "v": {"x": [[1.0, 2.0]], "y": [1]}}
    path = leaf_file(tmp_path / "train" / "a.json", data)
    clients = LeafClients(tmp_path / "train")
    leaf_file(path, data, indent=4)
    with pytest.raises(DataError, match=r"a\.json: user 'u': .*changed"):
        clients.raw("u")
    path.write_bytes(b"\xff" * 200)
    with pytest.raises(DataError, match=r"a\.json: user 'u': "):
        clients.raw("u")


def test_sent140_rows_that_are_not_tweets_are_named_with_file_and_user(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    leaf_file(tmp_path / "train" / "a.json", {"u": {"x": [["1", "d", "q", "u", 5]], "y": [1]}})
    train = LeafClients(tmp_path / "train")
    with pytest.raises(DataError, match=r"a\.json: user 'u': x: example 0 is not a Sent140 row"):
        leaf_task("sent140", train)


def test_fedprox_mnist_standardised_pixels_stay_float32_features(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    rng = np.random.default_rng(0)
    standardised = {"f_00000": {"x": rng.normal(size=(3, 784)).tolist(), "y": [0, 9, 4]}}
    train = _features(tmp_path, leaf_file, standardised)
    assert detect_task(train.raw("f_00000")) == "features"
    assert detect_task(train) == "features"
    task = leaf_task("features", train)
    train.task = task
    assert (task.model_kind, task.num_classes) == ("mlp", 10)
    assert train[0].x.shape == (3, 784) and train[0].x.dtype == np.float32
    assert detect_task({"x": [_image(3)], "y": [4]}) == "femnist"  # LEAF's gray values in [0, 1]


def test_a_forced_femnist_task_refuses_pixels_outside_the_unit_range(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    """``task=femnist`` on standardised pixels trained a CNN on values LEAF's FEMNIST never holds."""
    rng = np.random.default_rng(0)
    train = _features(tmp_path, leaf_file, {"f_00000": {"x": rng.normal(size=(2, 784)).tolist(), "y": [0, 9]}})
    train.task = leaf_task("femnist", train)
    with pytest.raises(DataError, match=r"user 'f_00000': x: FEMNIST pixels are gray values in \[0, 1\], got -"):
        train[0]


def test_detection_uses_the_first_user_with_examples(tmp_path: Path, leaf_file: Callable[..., Path]) -> None:
    leaf_file(tmp_path / "train" / "a.json", {"a": {"x": [], "y": []}, "b": {"x": ["a" * 80], "y": ["b"]}})
    train = LeafClients(tmp_path / "train")
    assert detect_task(train) == "shakespeare"
    leaf_file(tmp_path / "none" / "a.json", {"a": {"x": [], "y": []}})
    with pytest.raises(DataError, match=r"none: no user has examples"):
        detect_task(LeafClients(tmp_path / "none"))


@pytest.mark.parametrize(
    ("task", "row", "message"),
    [
        ("features", "[NaN, 1.0]", r"example 0 value 0 is nan"),
        ("features", "[Infinity, 1.0]", r"example 0 value 0 is inf"),
        ("features", '["1.5", 2]', r"example 0 holds '1\.5', not a number"),
        ("features", "[true, false]", r"example 0 holds True, not a number"),
        ("features", "[1e300, 1.0]", r"example 0 value 0 is 1e\+300, not a finite float32"),
        ("femnist", "[" + ", ".join(["NaN"] + ["0.5"] * 783) + "]", r"example 0 value 0 is nan"),
        ("femnist", "[" + ", ".join(['"0.1"'] + ["0.5"] * 783) + "]", r"example 0 holds '0\.1'"),
    ],
)
def test_features_must_be_finite_real_numbers(tmp_path: Path, task: str, row: str, message: str) -> None:
    _raw_leaf(
        tmp_path / "train" / "a.json",
        f'{{"users":["u"],"num_samples":[1],"user_data":{{"u":{{"x":[{row}],"y":[0]}}}}}}',
    )
    train = LeafClients(tmp_path / "train")
    train.task = leaf_task(task, train, num_classes=2) if task == "features" else leaf_task(task, train)
    with pytest.raises(DataError, match=r"a\.json: user 'u': x: " + message):
        train[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"users":["a"],"num_samples":[1],"user_data":{"a":{"x":[[1]],"y":[0]},"a":{"x":[[2]],"y":[1]}}}',
            r"duplicate key 'a'",
        ),
        (
            '{"users":["a","b"],"num_samples":[1,1],"user_data":{"a":{"x":[[1]],"y":[0]}},'
            '"user_data":{"b":{"x":[[2]],"y":[1]}}}',
            r"duplicate key 'user_data'",
        ),
        (
            '{"users":["zzz"],"users":["a"],"num_samples":[1],"user_data":{"a":{"x":[[1]],"y":[0]}}}',
            "duplicate key 'users'",
        ),
        (
            '{"users":["a"],"num_samples":[1],"user_data":{"a":{"x":[[1]],"x":[[2]],"y":[0]}}}',
            r"user 'a'.*duplicate key 'x'",
        ),
        ('{"users":[],"num_samples":[],"user_data":{}} GARBAGE {', r"unexpected data after the JSON object at byte 45"),
        (
            '{"users":["a"],"num_samples":[true],"user_data":{"a":{"x":[[1]],"y":[0]}}}',
            r"'num_samples' must hold counts",
        ),
    ],
)
def test_duplicate_keys_trailing_data_and_bool_counts_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = _raw_leaf(tmp_path / "bad.json", content)
    with pytest.raises(DataError, match=r"bad\.json.*" + message):
        index_leaf_file(path)


def _empty_user_dir(tmp_path: Path, leaf_file: Callable[..., Path], task: str) -> LeafClients:
    rows: dict[str, list[Any]] = {
        "features": [[1.0, 2.0, 3.0]],
        "femnist": [_image(1)],
        "shakespeare": ["a" * 80],
        "sent140": [["1", "d", "q", "u", "good day"]],
    }
    label: dict[str, list[Any]] = {"features": [1], "femnist": [1], "shakespeare": ["b"], "sent140": [1]}
    leaf_file(tmp_path / "train" / "a.json", {"a": {"x": [], "y": []}, "b": {"x": rows[task], "y": label[task]}})
    return LeafClients(tmp_path / "train")


@pytest.mark.parametrize(
    ("task", "options", "shape", "dtype"),
    [
        ("features", {}, (0, 3), np.float32),
        ("features", {"num_classes": 4}, (0, 3), np.float32),
        ("femnist", {}, (0, 28, 28), np.float32),
        ("shakespeare", {}, (0, 80), np.int64),
        ("sent140", {}, (0, 2), np.float32),
        ("sent140", {"sent140_input": "words"}, (0, 25), np.int64),
    ],
)
def test_a_user_without_examples_loads_as_an_empty_client_of_the_tasks_shape(
    tmp_path: Path,
    leaf_file: Callable[..., Path],
    task: str,
    options: dict[str, Any],
    shape: tuple[int, ...],
    dtype: Any,
) -> None:
    train = _empty_user_dir(tmp_path, leaf_file, task)
    train.task = leaf_task(task, train, **options)
    empty, full = train[0], train[1]
    assert empty.x.shape == shape and empty.x.dtype == dtype == full.x.dtype and empty.x.shape[1:] == full.x.shape[1:]
    assert empty.y.shape == (0,) and empty.y.dtype == np.int64


def test_a_test_user_of_another_width_than_training_is_named(tmp_path: Path, leaf_file: Callable[..., Path]) -> None:
    train = _features(tmp_path, leaf_file, {"u": {"x": [[1.0, 2.0]], "y": [1]}})
    leaf_file(tmp_path / "test" / "t.json", {"v": {"x": [[1.0, 2.0, 3.0]], "y": [0]}})
    test = LeafClients(tmp_path / "test", leaf_task("features", train))
    with pytest.raises(DataError, match=r"t\.json: user 'v': x: example 0 has 3 values, expected 2"):
        test[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"vocab_size": 0}, r"vocab_size must be an integer >= 1, got 0"),
        ({"vocab_size": -1}, r"vocab_size must be an integer >= 1, got -1"),
        ({"vocab_size": True}, r"vocab_size must be an integer >= 1, got True"),
        ({"vocabulary": "abc"}, r"vocabulary must be a list of words, got 'abc'"),
        ({"vocabulary": ["a", 1, None]}, r"vocabulary must hold strings, got 1"),
        ({"vocabulary": []}, r"vocabulary is empty"),
        ({"sent140_input": 5}, r"sent140_input must be 'bag' or 'words', got 5"),
    ],
)
def test_sent140_options_are_checked_naming_the_option(sent140: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        leaf_task("sent140", LeafClients(sent140 / "train"), **options)


def test_tweets_without_words_are_an_error_not_an_empty_vocabulary(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    leaf_file(tmp_path / "train" / "a.json", {"u": {"x": [["1", "d", "q", "u", ""]], "y": [1]}})
    with pytest.raises(DataError, match=r"train: the training tweets hold no words"):
        leaf_task("sent140", LeafClients(tmp_path / "train"))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("features", {"num_classes": "3"}, r"num_classes must be an integer in \[1, 100000\], got '3'"),
        ("features", {"num_classes": 0}, r"num_classes must be an integer in \[1, 100000\], got 0"),
        ("features", {"num_classes": 1.5}, r"num_classes must be an integer in \[1, 100000\], got 1\.5"),
        ("features", {"num_classes": True}, r"num_classes must be an integer in \[1, 100000\], got True"),
        ("features", {"num_classes": 10**6}, r"num_classes must be an integer in \[1, 100000\], got 1000000"),
        ("femnist", {"num_classes": 10}, r"num_classes=10 does not fit femnist, which has 62 classes"),
        ("femnist", {"vocabulary": ["a"]}, r"vocabulary applies to sent140 only"),
        (5, {}, r"unknown LEAF task 5"),
    ],
)
def test_leaf_task_options_are_checked_up_front(
    tmp_path: Path, leaf_file: Callable[..., Path], name: Any, options: dict[str, Any], message: str
) -> None:
    train = _features(tmp_path, leaf_file, {"u": {"x": [[1.0, 2.0]], "y": [1]}})
    with pytest.raises(DataError, match=message):
        leaf_task(name, train, **options)
    assert leaf_task("femnist", train, num_classes=62).num_classes == 62
