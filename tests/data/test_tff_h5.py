"""TensorFlow Federated's HDF5 client data: files written in TFF's layout, read one client at a time."""

from __future__ import annotations

import re
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


def _h5(path: Path, build: Callable[[Any, Any], object]) -> Path:
    """A file with an ``/examples`` group that ``build(file, examples)`` fills (for layouts write_tff cannot make)."""
    with h5py.File(path, "w") as f:
        build(f, f.create_group("examples"))
    return path


def _declared_only(f: Any, examples: Any) -> None:
    client = examples.create_group("a")  # 584 GiB of pixels declared, none written: the file stays a few KB
    client.create_dataset("label", shape=(2 * 10**8,), dtype="i4", chunks=(10**6,), compression="gzip")
    client.create_dataset("pixels", shape=(2 * 10**8, 28, 28), dtype="f4", chunks=(1000, 28, 28), compression="gzip")


def test_a_huge_declared_client_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    path = _h5(tmp_path / "bomb.h5", _declared_only)
    assert path.stat().st_size < 100_000
    clients = H5Clients(path, h5_task("emnist", path))
    assert detect_h5_task(clients) == "emnist"  # from the feature names alone
    with pytest.raises(DataError, match=r"bomb\.h5: client 'a': pixels: declares shape \(200000000, 28, 28\) float32"):
        clients[0]
    with pytest.raises(DataError, match=r"client 'a': (label|pixels): declares shape"):
        clients.features("a")


def test_a_huge_declared_string_feature_is_refused_before_it_is_read(tmp_path: Path) -> None:
    def build(f: Any, examples: Any) -> None:
        examples.create_group("a").create_dataset("snippets", shape=(10**8,), dtype=VLEN, chunks=(10**5,))

    path = _h5(tmp_path / "s.h5", build)
    with pytest.raises(DataError, match=r"s\.h5: client 'a': snippets: declares shape \(100000000,\) vlen str"):
        H5Clients(path, h5_task("shakespeare", path))[0]


def test_features_the_task_does_not_use_are_never_read(tmp_path: Path) -> None:
    def build(f: Any, examples: Any) -> None:
        client = examples.create_group("a")
        client.create_dataset("label", data=np.array([4], np.int32))
        client.create_dataset("pixels", data=np.zeros((1, 28, 28), np.float32))
        client.create_dataset("extra", shape=(1, 10**6, 10**4), dtype="f8", chunks=(1, 1000, 1000))

    path = _h5(tmp_path / "fed_emnist_train.h5", build)
    clients = H5Clients(path, h5_task("emnist", path))
    assert clients[0].y.tolist() == [4]
    assert set(clients.features("a", ["label"])) == {"label"}


def _store(dtype_or_data: Any) -> Callable[[Any, Any], object]:
    def build(f: Any, examples: Any) -> None:
        client = examples.create_group("a")
        if isinstance(dtype_or_data, np.ndarray):
            client.create_dataset("snippets", data=dtype_or_data)
            client.create_dataset("tokens", data=dtype_or_data)
        elif dtype_or_data == "ref":
            for name in ("snippets", "tokens"):
                client.create_dataset(name, (2,), dtype=h5py.ref_dtype)[0] = examples.ref
        else:
            for name in ("snippets", "tokens"):
                client.create_dataset(name, (2,), dtype=h5py.vlen_dtype(np.int64))[0] = np.arange(3)

    return build


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (np.arange(3), "int64"),
        (np.array([1.5, np.nan]), "float64"),
        ("vlen-int", "vlen int64"),
        ("ref", "object reference"),
        (np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), r"\[\('a'"),
        (np.array([np.void(b"\x80\x04K\x01.")]), "V5"),
    ],
    ids=["int", "float", "vlen-int", "reference", "compound", "opaque"],
)
@pytest.mark.parametrize("task", ["shakespeare", "stackoverflow"])
def test_text_features_that_are_not_strings_are_named_with_their_dtype(
    tmp_path: Path, stored: Any, shown: str, task: str
) -> None:
    path = _h5(tmp_path / "t.h5", _store(stored))
    clients = H5Clients(path, h5_task(task, path, **({"vocabulary": ["a"]} if task == "stackoverflow" else {})))
    feature = "snippets" if task == "shakespeare" else "tokens"
    with pytest.raises(DataError, match=rf"t\.h5: client 'a': {feature}: expected strings.*dtype {shown}"):
        clients[0]


def test_text_features_must_be_one_string_per_example(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    path = tff_file(tmp_path / "s.h5", {"a": {"snippets": np.array([[b"ab", b"cd"]])}})
    with pytest.raises(DataError, match=r"client 'a': snippets: expected one string per example, got shape \(1, 2\)"):
        H5Clients(path, h5_task("shakespeare", path))[0]


@pytest.mark.parametrize("dtype", [VLEN, "S4", h5py.string_dtype("ascii")], ids=["vlen-utf8", "fixed", "vlen-ascii"])
@pytest.mark.parametrize("task", ["shakespeare", "stackoverflow"])
def test_text_that_is_not_utf8_is_named_by_client_feature_and_example(
    tmp_path: Path, tff_file: Callable[..., Path], dtype: Any, task: str
) -> None:
    feature = "snippets" if task == "shakespeare" else "tokens"
    path = tff_file(tmp_path / "t.h5", {"a": {feature: np.array([b"ok", b"\xff\xfe a"], dtype=dtype)}})
    with pytest.raises(DataError, match=rf"t\.h5: client 'a': {feature}: example 1 is not valid UTF-8"):
        H5Clients(path, h5_task(task, path, **({"vocabulary": ["a"]} if task == "stackoverflow" else {})))[0]


@pytest.mark.parametrize(
    ("pixels", "shown"),
    [
        (np.array([[["x"] * 28] * 28], dtype=VLEN), "vlen str"),
        (np.array([[[b"x"] * 28] * 28], dtype="S1"), "S1"),
        (np.zeros((1, 28, 28), np.bool_), "bool"),
        (np.zeros((1, 28, 28), np.complex64), "complex64"),
    ],
    ids=["vlen-str", "fixed-bytes", "bool", "complex"],
)
def test_pixels_that_are_not_numbers_are_named_with_their_dtype(
    tmp_path: Path, tff_file: Callable[..., Path], pixels: np.ndarray, shown: str
) -> None:
    path = tff_file(tmp_path / "e.h5", {"a": {"label": np.array([1], np.int32), "pixels": pixels}})
    with pytest.raises(DataError, match=rf"e\.h5: client 'a': pixels: expected integer or float pixels, got {shown}"):
        H5Clients(path, h5_task("emnist", path))[0]


def test_emnist_pixels_are_in_the_unit_range_like_cifars(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    def client(pixels: np.ndarray) -> dict[str, np.ndarray]:
        return {"label": np.array([1], np.int32), "pixels": pixels}

    bright = np.zeros((1, 28, 28), np.uint8)
    bright[0, 0, 0] = 255
    path = tff_file(
        tmp_path / "e.h5",
        {
            "bytes": client(bright),
            "nan": client(np.full((1, 28, 28), np.nan, np.float32)),
            "inf": client(np.full((1, 28, 28), np.inf, np.float64)),
            "big": client(np.full((1, 28, 28), 255.0, np.float32)),
            "wide": client(np.full((1, 28, 28), 300, np.int16)),
        },
    )
    clients = H5Clients(path, h5_task("emnist", path))
    x = clients[clients.index_of("bytes")].x
    assert x.dtype == np.float32 and x[0, 0, 0] == 1.0 and x[0, 0, 1] == 0.0
    for name in ("nan", "inf"):
        with pytest.raises(DataError, match=rf"e\.h5: client '{name}': pixels: .*not finite"):
            clients[clients.index_of(name)]
    with pytest.raises(DataError, match=r"client 'big': pixels: float pixels must be in \[0, 1\], got 255\.0\.\."):
        clients[clients.index_of("big")]
    with pytest.raises(DataError, match=r"client 'wide': pixels: integer pixels must be in \[0, 255\], got 300\.\.300"):
        clients[clients.index_of("wide")]


def test_a_corrupted_compressed_chunk_names_the_file_client_and_feature(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.h5"
    with h5py.File(path, "w") as f:
        client = f.create_group("examples").create_group("a")
        client.create_dataset("label", data=np.arange(100, dtype=np.int32) % 10)
        pixels = np.random.default_rng(0).random((100, 28, 28), np.float32)
        stored = client.create_dataset("pixels", data=pixels, chunks=(100, 28, 28), compression="gzip")
        chunk = stored.id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    raw[chunk.byte_offset + 100 : chunk.byte_offset + 400] = bytes(300)
    path.write_bytes(bytes(raw))
    clients = H5Clients(path, h5_task("emnist", path))
    with pytest.raises(DataError, match=r"corrupt\.h5: client 'a': pixels: cannot read") as caught:
        clients[0]
    assert isinstance(caught.value.__cause__, OSError)


def test_a_client_name_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    def build(f: Any, examples: Any) -> None:
        h5py.h5g.create(examples.id, b"\xff\xfeclient")
        examples.create_group("normal")

    with pytest.raises(DataError, match=r"names\.h5: client name b'\\xff\\xfeclient' under /examples is not UTF-8"):
        H5Clients(_h5(tmp_path / "names.h5", build))


def test_a_feature_name_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    def build(f: Any, examples: Any) -> None:
        client = examples.create_group("a")
        client.create_dataset("snippets", data=np.array([b"hi"], dtype=VLEN))
        h5py.h5d.create(client.id, b"\xff", h5py.h5t.NATIVE_INT32, h5py.h5s.create_simple((1,)))

    path = _h5(tmp_path / "names.h5", build)
    with pytest.raises(DataError, match=r"names\.h5: client 'a': feature name b'\\xff' is not UTF-8"):
        H5Clients(path, h5_task("shakespeare", path))[0]


def test_data_stored_outside_the_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"top secret bytes of another file")
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other.create_dataset("snippets", data=np.array([b"from another file"], dtype=VLEN))

    def build(f: Any, examples: Any) -> None:
        examples.create_group("ext").create_dataset("snippets", (32,), "S1", external=[(str(secret), 0, 32)])
        layout = h5py.VirtualLayout(shape=(1,), dtype=VLEN)
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "snippets", shape=(1,))
        examples.create_group("vds").create_virtual_dataset("snippets", layout)

    path = _h5(tmp_path / "t.h5", build)
    clients = H5Clients(path, h5_task("shakespeare", path))
    with pytest.raises(DataError, match=r"t\.h5: client 'ext': snippets: stored in external files"):
        clients[clients.index_of("ext")]
    with pytest.raises(DataError, match=r"t\.h5: client 'vds': snippets: a virtual dataset"):
        clients.features("vds")


def test_links_out_of_examples_are_refused(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other.create_group("g").create_dataset("snippets", data=np.array([b"from another file"], dtype=VLEN))

    def build(f: Any, examples: Any) -> None:
        f.create_group("hidden").create_dataset("snippets", data=np.array([b"hidden"], dtype=VLEN))
        examples["external"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/g")
        examples["soft"] = h5py.SoftLink("/hidden")
        examples.create_group("feature")["snippets"] = h5py.SoftLink("/hidden/snippets")

    path = _h5(tmp_path / "t.h5", build)
    clients = H5Clients(path, h5_task("shakespeare", path))
    assert clients.client_ids == ("external", "feature", "soft")
    with pytest.raises(DataError, match=r"t\.h5: client 'external' is an ExternalLink, not a group stored in"):
        clients[0]
    with pytest.raises(DataError, match=r"t\.h5: client 'soft' is a SoftLink"):
        clients.features("soft")
    with pytest.raises(DataError, match=r"t\.h5: client 'feature': snippets is a SoftLink"):
        clients.features("feature")

    def linked_examples(f: Any, examples: Any) -> None:
        del f["examples"]
        f["examples"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/")

    with pytest.raises(DataError, match=r"u\.h5: '/examples' is an ExternalLink"):
        H5Clients(_h5(tmp_path / "u.h5", linked_examples))


@pytest.mark.parametrize("client_id", ["/secret", ".", "/", "../examples/a", "/examples/a", "a/label", ""])
def test_only_the_listed_client_ids_are_read(tmp_path: Path, client_id: str) -> None:
    def build(f: Any, examples: Any) -> None:
        examples.create_group("a").create_dataset("label", data=np.array([1], np.int32))
        f.create_group("secret").create_dataset("label", data=np.array([2], np.int32))

    clients = H5Clients(_h5(tmp_path / "t.h5", build))
    assert clients.features("a")["label"].tolist() == [1]
    with pytest.raises(DataError, match=rf"t\.h5: no client {re.escape(repr(client_id))}"):
        clients.features(client_id)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("emnist", {"num_classes": "3"}, r"num_classes must be an integer in \[1, 100000\], got '3'"),
        ("emnist", {"num_classes": 1.5}, r"num_classes must be an integer in \[1, 100000\], got 1\.5"),
        ("emnist", {"num_classes": True}, r"num_classes must be an integer in \[1, 100000\], got True"),
        ("emnist", {"num_classes": 0}, r"num_classes must be an integer in \[1, 100000\], got 0"),
        ("cifar100", {"num_classes": -1}, r"num_classes must be an integer in \[1, 100000\], got -1"),
        ("emnist", {"num_classes": 10**9}, r"num_classes must be an integer in \[1, 100000\], got 1000000000"),
        ("emnist", {"word_counts": "/x"}, r"word_counts applies only to stackoverflow"),
        ("shakespeare", {"vocab_size": 5}, r"vocab_size applies only to stackoverflow"),
        ("stackoverflow", {"vocabulary": ["a"], "vocab_size": 5}, r"give vocabulary=, or word_counts= and vocab_size="),
        ("shakespeare", {"num_classes": 10}, r"num_classes does not apply to shakespeare"),
        ("emnist", {"sequence_length": 80}, r"sequence_length does not apply to emnist"),
        ("shakespeare", {"sequence_length": -1}, r"sequence_length must be an integer in \[1, 100000\], got -1"),
        ("shakespeare", {"sequence_length": 0}, r"sequence_length must be an integer in \[1, 100000\], got 0"),
        ("stackoverflow", {"sequence_length": -5}, r"sequence_length must be an integer in \[1, 100000\], got -5"),
        ("stackoverflow", {"sequence_length": 10**9}, r"sequence_length must be .*, got 1000000000"),
        ("shakespeare", {"sequence_length": 2.0}, r"sequence_length must be an integer in \[1, 100000\], got 2\.0"),
        ("stackoverflow", {"vocab_size": 0}, r"vocab_size must be an integer in \[1, 99996\], got 0"),
        ("stackoverflow", {"vocab_size": "5"}, r"vocab_size must be an integer in \[1, 99996\], got '5'"),
        ("stackoverflow", {"vocabulary": "abc"}, r"vocabulary must be a sequence of words"),
        ("stackoverflow", {"vocabulary": ["a", 1]}, r"vocabulary must be a sequence of words.*1"),
    ],
)
def test_options_are_checked_and_named(tmp_path: Path, name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        h5_task(name, tmp_path / "train.h5", **options)


def test_long_windows_over_a_client_are_refused_before_they_are_built(
    tmp_path: Path, tff_file: Callable[..., Path]
) -> None:
    path = tff_file(tmp_path / "s.h5", {"a": {"snippets": np.array([b"hi"] * 2000, dtype=VLEN)}})
    clients = H5Clients(path, h5_task("shakespeare", path, sequence_length=100_000))
    with pytest.raises(DataError, match=r"s\.h5: client 'a': snippets: 2000 windows of sequence_length=100000 need"):
        clients[0]
    assert H5Clients(path, h5_task("shakespeare", path, sequence_length=100))[0].x.shape == (2000, 100)


def test_a_word_count_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    counts = tmp_path / "wc"
    counts.write_bytes(b"the 9\n\xff 3\n")
    with pytest.raises(DataError, match=r"wc: not UTF-8 text"):
        read_word_counts(counts, 10)
    with pytest.raises(DataError, match=r"size must be an integer >= 0, got -1"):
        read_word_counts(counts, -1)
