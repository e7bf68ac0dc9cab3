"""TensorFlow Federated's HDF5 client data: files written in TFF's layout, read one client at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedmodel.data import DataError
from fedmodel.data.text import TFF_CHARS
from fedmodel.data.tff_h5 import H5Clients, detect_h5_task, h5_task, read_word_counts

h5py = pytest.importorskip("h5py", reason="h5py comes with the data extra")

VLEN = h5py.string_dtype(encoding="utf-8")


def _emnist(write: Callable[..., Path], path: Path) -> Path:
    def pixels(*values: float) -> np.ndarray:
        images = np.ones((len(values), 28, 28), np.float32)  # 1.0 is the background in TFF's EMNIST
        images[:, 14, 14] = values
        return images

    return write(
        path,
        {
            "f0002_10": {"label": np.array([7], np.int32), "pixels": pixels(0.25)},
            "f0000_14": {"label": np.array([3, 1], np.int32), "pixels": pixels(0.0, 0.5)},
        },
    )


def test_emnist_clients_are_sorted_ids_with_28x28_pixels_and_int64_labels(
    tmp_path: Path, tff_file: Callable[..., Path]
) -> None:
    clients = H5Clients(_emnist(tff_file, tmp_path / "fed_emnist_digitsonly_train.h5"))
    assert clients.client_ids == ("f0000_14", "f0002_10")
    assert detect_h5_task(clients) == "emnist"
    clients.task = h5_task("emnist", clients.path)
    first = clients[0]
    assert first.x.shape == (2, 28, 28) and first.x.dtype == np.float32
    assert first.x[:, 14, 14].tolist() == [0.0, 0.5] and first.x[0, 0, 0] == 1.0
    assert first.y.tolist() == [3, 1] and first.y.dtype == np.int64
    assert clients[1].y.tolist() == [7]
    assert (clients.task.num_classes, clients.task.model_kind) == (10, "cnn28")
    assert h5_task("emnist", tmp_path / "fed_emnist_train.h5").num_classes == 62


def test_reading_a_client_leaves_no_file_open(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    path = _emnist(tff_file, tmp_path / "fed_emnist_train.h5")
    clients = H5Clients(path, h5_task("emnist", path))
    clients[0]
    with h5py.File(path, "a") as f:  # HDF5 refuses a writer while a reader holds the file
        f["examples"].create_group("f9999_00")


def test_one_malformed_client_fails_alone_naming_the_file_client_and_feature(
    tmp_path: Path, tff_file: Callable[..., Path]
) -> None:
    path = tff_file(
        tmp_path / "train.h5",
        {
            "good": {"label": np.array([1], np.int32), "pixels": np.zeros((1, 28, 28), np.float32)},
            "wide": {"label": np.array([1], np.int32), "pixels": np.zeros((1, 28, 29), np.float32)},
            "uneven": {"label": np.array([1, 2], np.int32), "pixels": np.zeros((1, 28, 28), np.float32)},
        },
    )
    clients = H5Clients(path, h5_task("emnist", path))
    assert clients[clients.index_of("good")].y.tolist() == [1]
    with pytest.raises(
        DataError, match=r"client 'wide': pixels: expected examples of shape \(28, 28\), got \(28, 29\)"
    ):
        clients[clients.index_of("wide")]
    with pytest.raises(DataError, match=r"'uneven' features have different lengths"):
        clients[clients.index_of("uneven")]


def test_shakespeare_snippets_become_tffs_81_token_windows(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    snippets = np.array([b"dh", b"x" * 100], dtype=object)
    path = tff_file(tmp_path / "shakespeare_train.h5", {"ALL_S_WELL_THAT_ENDS_WELL_BERTRAM": {"snippets": snippets}})
    clients = H5Clients(path)
    assert detect_h5_task(clients) == "shakespeare"
    clients.task = h5_task("shakespeare", path)
    x, y = clients[0].x, clients[0].y
    # "dh": bos=88, d=1, h=2, eos=89, then 77 pads: one row; "x"*100: 102 ids padded to 162: two rows
    assert x.shape == (3, 80) and y.shape == (3, 80) and x.dtype == np.int64
    assert x[0, :5].tolist() == [88, 1, 2, 89, 0] and y[0, :4].tolist() == [1, 2, 89, 0]
    assert TFF_CHARS.index("x") + 1 == 6 and x[1, 0] == 88 and set(x[1, 1:].tolist()) == {6}
    assert y[1, -1] == 6 and x[2, :20].tolist() == [6] * 20 and x[2, 20] == 89 and not x[2, 21:].any()
    assert (clients.task.num_classes, clients.task.model_kind) == (90, "char_rnn_seq")


@pytest.mark.parametrize("dtype", [VLEN, "S3"], ids=["variable-length", "fixed-length"])
def test_characters_outside_tffs_vocabulary_are_the_oov_id(
    tmp_path: Path, tff_file: Callable[..., Path], dtype: Any
) -> None:
    path = tff_file(tmp_path / "s.h5", {"a": {"snippets": np.array(["é~".encode()], dtype=dtype)}})
    clients = H5Clients(path, h5_task("shakespeare", path))
    assert clients[0].x[0, :5].tolist() == [88, 87, 87, 87, 89]  # two UTF-8 bytes of 'é' and '~' are oov


def _stackoverflow(write: Callable[..., Path], path: Path) -> Path:
    def strings(*values: str) -> np.ndarray:
        return np.array(values, dtype=VLEN)

    return write(
        path,
        {
            "00000042": {
                "tokens": strings("how to sort a list", " ".join(["the"] * 25)),
                "title": strings("sorting", "long"),
                "tags": strings("python|list", "c"),
                "type": strings("question", "answer"),
                "creation_date": strings("2010-01-01 00:00:00+00:00", "2011-01-01 00:00:00+00:00"),
                "score": np.array([3, 0], np.int64),
            }
        },
    )


def test_stackoverflow_next_word_windows_use_the_word_count_vocabulary(
    tmp_path: Path, tff_file: Callable[..., Path]
) -> None:
    path = _stackoverflow(tff_file, tmp_path / "stackoverflow_train.h5")
    (tmp_path / "stackoverflow.word_count").write_text("the 900\nto 800\na 700\nlist 600\nhow 500\n")
    clients = H5Clients(path)
    assert detect_h5_task(clients) == "stackoverflow"
    clients.task = h5_task("stackoverflow", path, vocab_size=4)  # the, to, a, list
    x, y = clients[0].x, clients[0].y
    # V = 4: ids 1..4, oov 5, bos 6, eos 7; "how to sort a list" -> bos oov to oov a list eos
    assert x.shape == (2, 20) and x[0, :7].tolist() == [6, 5, 2, 5, 3, 4, 7] and not x[0, 7:].any()
    assert y[0, :6].tolist() == [5, 2, 5, 3, 4, 7]
    assert x[1].tolist() == [6] + [1] * 19 and y[1].tolist() == [1] * 20  # 25 words: cut to 20, no eos
    assert (clients.task.num_classes, clients.task.model_kind, clients.task.vocab_size) == (8, "word_rnn_seq", 8)


def test_stackoverflow_without_a_vocabulary_says_how_to_give_one(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    path = _stackoverflow(tff_file, tmp_path / "stackoverflow_train.h5")
    with pytest.raises(DataError, match=r"vocabulary=\[...\] or word_counts=PATH"):
        h5_task("stackoverflow", path)
    assert h5_task("stackoverflow", path, vocabulary=["a", "a", "b"]).num_classes == 6


def test_a_malformed_word_count_line_is_named_by_file_and_line(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    counts = tmp_path / "wc"
    counts.write_text("the 9\nbroken\n")
    with pytest.raises(DataError, match=r"wc:2: expected 'word count'"):
        read_word_counts(counts, 10)
    assert read_word_counts(counts, 1) == ["the"]


def test_cifar100_images_become_float32_in_the_unit_range(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    image = np.zeros((2, 32, 32, 3), np.uint8)
    image[1, 0, 0] = [255, 51, 0]
    path = tff_file(
        tmp_path / "fed_cifar100_train.h5",
        {"7": {"image": image, "label": np.array([99, 4], np.int64), "coarse_label": np.array([19, 3], np.int64)}},
    )
    clients = H5Clients(path)
    assert detect_h5_task(clients) == "cifar100"
    clients.task = h5_task("cifar100", path)
    client = clients[0]
    assert client.x.dtype == np.float32 and np.allclose(client.x[1, 0, 0], [1.0, 0.2, 0.0])
    assert client.y.tolist() == [99, 4] and clients.task.model_kind == "cnn32"


def test_a_file_without_tffs_layout_is_named(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(DataError, match=r"other\.h5: no '/examples' group"):
        H5Clients(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match=r"text\.h5: cannot open as HDF5"):
        H5Clients(tmp_path / "text.h5")


def test_unknown_features_list_what_each_data_set_needs(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    path = tff_file(tmp_path / "t.h5", {"a": {"feature": np.zeros(2), "target": np.zeros(2)}})
    with pytest.raises(DataError, match=r"features \['feature', 'target'\] match no TFF data set.*snippets"):
        detect_h5_task(H5Clients(path))
