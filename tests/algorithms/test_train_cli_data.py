"""``fedmodel train --data``: every source end to end, the model its task asks for, and every usage error.

digits and synthetic run on the numpy reference backend; a LEAF directory and a TFF HDF5 file are written
by the tests in the published layouts (the writers of ``tests/data/conftest.py``). Image tasks (FEMNIST,
federated EMNIST) need a ``cnn28`` model: a fake backend, installed the way pip lays a package out (its
``BACKEND`` is the numpy reference's, its ``models.cnn28`` a softmax regression over the 784 pixels),
trains them in a fresh process, so the command line's model choice is tested before the real backends
offer ``cnn28``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedmodel import assign_weights, get_weights, train_cli
from fedmodel.checkpoint import load_checkpoint
from fedmodel.data import load_federated
from fedmodel.reference import SoftmaxRegression
from tests.data.conftest import write_leaf, write_tff

RUN = ["--backend", "numpy", "--rounds", "2", "--local-epochs", "1", "--batch-size", "4", "--no-progress"]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _final_model(out: Path, num_features: int, num_classes: int) -> SoftmaxRegression:
    model = SoftmaxRegression(num_features, num_classes)
    saved = load_checkpoint(out / "weights-numpy-fedavg.safetensors", like=get_weights(model)).weights
    assign_weights(model, saved)
    return model


def _test_loss(model: SoftmaxRegression, x: np.ndarray, y: np.ndarray) -> float:
    model.reset_metrics()
    model.forward_pass((x, y), training=False)
    total, count = model.report_local_outputs()["loss"]
    return float(total / count)


# -- the data sets the tests write -------------------------------------------------------------------------------

FEATURES, CLASSES = 4, 3


def _features_leaf(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Five LEAF users with 4 features and 3 classes; returns the pooled test set (users in sorted order)."""
    rng = np.random.default_rng(7)
    train, test = {}, {}
    for k in (3, 0, 4, 1, 2):  # written out of order: clients are the sorted user ids
        n = 6 + k
        train[f"u{k}"] = {"x": rng.normal(size=(n, FEATURES)).round(3).tolist(), "y": [i % CLASSES for i in range(n)]}
        test[f"u{k}"] = {"x": rng.normal(size=(2, FEATURES)).round(3).tolist(), "y": [k % CLASSES, (k + 1) % CLASSES]}
    write_leaf(root / "train" / "features_train.json", train)
    write_leaf(root / "test" / "features_test.json", test)
    ids = sorted(test)
    x = np.concatenate([np.asarray(test[u]["x"], np.float32) for u in ids])
    y = np.concatenate([np.asarray(test[u]["y"], np.int64) for u in ids])
    return x, y


TWEETS = ["good day good fun", "bad day", "fun fun good", "sad bad rain", "good sun", "bad bad day"]


def _sent140_leaf(root: Path, users: dict[str, list[int]] | None = None) -> None:
    """Sent140 users (rows [id, date, query, user, text], labels 0/1): each user's tweets by index in TWEETS;
    by default three users."""

    def rows(user: str, picks: list[int]) -> dict[str, list[Any]]:
        x = [[str(i), "Mon Apr 06 2009", "NO_QUERY", user, TWEETS[i]] for i in picks]
        return {"x": x, "y": [int(TWEETS[i].startswith(("good", "fun"))) for i in picks]}

    users = users or {"alice": [0, 1, 2, 3], "bob": [4, 5, 0], "carol": [1, 2, 3, 4, 5]}
    write_leaf(root / "train" / "s_train.json", {u: rows(u, p) for u, p in users.items()})
    write_leaf(root / "test" / "s_test.json", {u: rows(u, p[:2]) for u, p in users.items()})


def _femnist_leaf(root: Path) -> None:
    """Three FEMNIST writers (784 gray values per image, labels among 62 classes)."""
    rng = np.random.default_rng(3)

    def user(n: int) -> dict[str, list[Any]]:
        return {"x": rng.random((n, 784)).round(2).tolist(), "y": rng.integers(0, 62, n).tolist()}

    write_leaf(root / "data" / "train" / "all_data_0_train.json", {"f0001_41": user(5), "f0002_17": user(4)})
    write_leaf(root / "data" / "train" / "all_data_1_train.json", {"f3000_45": user(3)})
    write_leaf(root / "data" / "test" / "all_data_0_test.json", {w: user(2) for w in ("f0001_41", "f0002_17")})


def _emnist_h5(folder: Path) -> Path:
    """TFF's federated EMNIST (digits only) train and test files, three clients each; returns the train file."""
    rng = np.random.default_rng(5)

    def clients(sizes: list[int]) -> dict[str, dict[str, np.ndarray]]:
        return {
            f"f{k:04d}_00": {
                "label": rng.integers(0, 10, n).astype(np.int32),
                "pixels": rng.random((n, 28, 28)).astype(np.float32),
            }
            for k, n in enumerate(sizes)
        }

    folder.mkdir(parents=True, exist_ok=True)
    write_tff(folder / "fed_emnist_digitsonly_test.h5", clients([2, 2, 2]))
    return write_tff(folder / "fed_emnist_digitsonly_train.h5", clients([4, 6, 5]))


def _cifar100_h5(folder: Path) -> Path:
    """TFF's CIFAR-100 train and test files (uint8 32x32x3 images, fine and coarse labels), two clients each (four
    training images each: one batch shape for JAX to compile)."""
    rng = np.random.default_rng(11)

    def clients(sizes: list[int]) -> dict[str, dict[str, np.ndarray]]:
        return {
            str(k): {
                "coarse_label": rng.integers(0, 20, n).astype(np.int64),
                "image": rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8),
                "label": rng.integers(0, 100, n).astype(np.int64),
            }
            for k, n in enumerate(sizes)
        }

    folder.mkdir(parents=True, exist_ok=True)
    write_tff(folder / "fed_cifar100_test.h5", clients([2, 2]))
    return write_tff(folder / "fed_cifar100_train.h5", clients([4, 4]))


def _shakespeare_h5(folder: Path) -> Path:
    """TFF's Shakespeare train and test files: two speaking parts each, snippets of bytes (one 80-id window
    per snippet under 79 characters)."""
    import h5py

    def part(*lines: str) -> dict[str, np.ndarray]:
        return {"snippets": np.array(lines, dtype=h5py.string_dtype(encoding="utf-8"))}

    folder.mkdir(parents=True, exist_ok=True)
    write_tff(folder / "shakespeare_test.h5", {"A_ROMEO": part("O Romeo."), "B_JULIET": part("Ay me!")})
    train = {"A_ROMEO": part("But soft, what light", "It is the east."), "B_JULIET": part("Wherefore art thou")}
    return write_tff(folder / "shakespeare_train.h5", train)


def _stackoverflow_h5(folder: Path) -> Path:
    """TFF's StackOverflow train and test files (two users each) and the word counts beside them (a vocabulary of
    five words: ids 1..5, oov 6, bos 7, eos 8)."""
    import h5py

    def user(*sentences: str) -> dict[str, np.ndarray]:
        return {"tokens": np.array(sentences, dtype=h5py.string_dtype(encoding="utf-8"))}

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stackoverflow.word_count").write_text("the 90\nto 80\na 70\nlist 60\nhow 50\n")
    write_tff(folder / "stackoverflow_test.h5", {"1": user("how to sort"), "2": user("the list")})
    train = {"1": user("how to sort a list", "a list to sort"), "2": user("the list the list", "to the")}
    return write_tff(folder / "stackoverflow_train.h5", train)


# -- digits and synthetic on the reference backend --------------------------------------------------------------


def test_data_digits_is_what_no_data_option_does_bit_for_bit(tmp_path: Path) -> None:
    argv = [*RUN, "--clients", "4"]
    assert train_cli.main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert train_cli.main([*argv, "--data", "digits", "--out", str(tmp_path / "digits")]) == 0
    plain, digits = (
        [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(tmp_path / d)] for d in ("plain", "digits")
    )
    assert plain == digits and len(plain) == 2
    a = _final_model(tmp_path / "plain", 64, 10)
    b = _final_model(tmp_path / "digits", 64, 10)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(get_weights(a).arrays, get_weights(b).arrays, strict=True))


@pytest.mark.parametrize("source", ["synthetic:1,1", "synthetic:iid"])
def test_synthetic_trains_the_60_feature_model_and_evaluates_on_the_pooled_test_set(
    tmp_path: Path, source: str
) -> None:
    assert train_cli.main([*RUN, "--data", source, "--clients", "6", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path)
    assert [(r["run"], r["round"], r["clients_ok"]) for r in rows] == [
        ("numpy/fedavg", "1", "6"),
        ("numpy/fedavg", "2", "6"),
    ]
    model = _final_model(tmp_path, 60, 10)  # load_checkpoint(like=) checks the (60, 10) kernel
    test = load_federated(source, num_devices=6, seed=0).data.test
    assert float(rows[-1]["test_loss"]) == pytest.approx(_test_loss(model, test.x, test.y), rel=1e-6)


def test_synthetic_without_clients_has_the_papers_30_devices(tmp_path: Path) -> None:
    argv = [*RUN, "--rounds", "1", "--data", "synthetic:0.5,0.5", "--data-option", "train_fraction=0.8"]
    assert train_cli.main([*argv, "--out", str(tmp_path)]) == 0
    (row,) = _rows(tmp_path)
    assert row["clients_ok"] == "30"
    test = load_federated("synthetic:0.5,0.5", train_fraction=0.8, seed=0).data.test
    assert float(row["test_loss"]) == pytest.approx(
        _test_loss(_final_model(tmp_path, 60, 10), test.x, test.y), rel=1e-6
    )


# -- LEAF and TFF files ------------------------------------------------------------------------------------------


def test_a_leaf_features_directory_trains_its_natural_clients(tmp_path: Path) -> None:
    x, y = _features_leaf(tmp_path / "leaf")
    out = tmp_path / "out"
    argv = [*RUN, "--data", f"leaf:{tmp_path / 'leaf'}", "--clients-per-round", "2", "--out", str(out)]
    assert train_cli.main(argv) == 0
    rows = _rows(out)
    assert [r["clients_ok"] for r in rows] == ["2", "2"]
    model = _final_model(out, FEATURES, CLASSES)
    assert float(rows[-1]["test_loss"]) == pytest.approx(_test_loss(model, x, y), rel=1e-6)  # all 10 test examples


def test_a_sent140_bag_of_words_takes_its_vocabulary_size_from_a_data_option(tmp_path: Path) -> None:
    _sent140_leaf(tmp_path / "s")
    out = tmp_path / "out"
    argv = [*RUN, "--data", f"leaf:{tmp_path / 's'}", "--data-option", "vocab_size=5", "--out", str(out)]
    assert train_cli.main(argv) == 0
    assert [r["clients_ok"] for r in _rows(out)] == ["3", "3"]
    assert get_weights(_final_model(out, 5, 2)).trainable[0].shape == (5, 2)


def test_the_header_names_the_source_and_its_client_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _features_leaf(tmp_path / "leaf")
    assert train_cli.main([*RUN, "--rounds", "1", "--data", f"leaf:{tmp_path / 'leaf'}", "--out", str(tmp_path)]) == 0
    assert f"numpy/fedavg: leaf:{tmp_path / 'leaf'}, 5 clients, 1 rounds" in capsys.readouterr().out


# -- usage errors: exit 2, one line, nothing written --------------------------------------------------------------

LEAF = "leaf:LEAF"  # the features directory
FEMNIST = "leaf:FEMNIST"

# (id, arguments after RUN (LEAF, FEMNIST, H5: the test's data), what stderr says)
USAGE: list[tuple[str, list[str], str]] = [
    ("unknown source", ["--data", "mnist"], "data source 'mnist' (the --data option): unknown source 'mnist'"),
    ("missing dir", ["--data", "leaf:NOPE"], "does not exist"),
    ("leaf without a path", ["--data", "leaf"], "leaf needs a path: leaf:DIR"),
    ("synthetic, one number", ["--data", "synthetic:1"], "synthetic needs ALPHA,BETA"),
    ("tff-h5, not a file", ["--data", "tff-h5:LEAF"], "is not a file"),
    (
        "femnist on numpy",
        ["--data", FEMNIST],
        "--backend numpy has no model of kind cnn28 (a CNN over 28x28 gray images",
    ),
    ("emnist h5 on numpy", ["--data", "tff-h5:H5"], "--backend numpy has no model of kind cnn28"),
    ("femnist on numpy names the source", ["--data", FEMNIST], "for --data leaf:"),
    ("clients with file data", ["--data", LEAF, "--clients", "3"], "--clients: leaf:"),
    ("clients-per-round above the file's", ["--data", LEAF, "--clients-per-round", "6"], "exceeds the 5 clients"),
    ("alpha with synthetic", ["--data", "synthetic:1,1", "--alpha", "0.3"], "--alpha applies only to --data digits"),
    ("test-fraction with leaf", ["--data", LEAF, "--test-fraction", "0.3"], "--test-fraction applies only to --data"),
    ("data-option without =", ["--data-option", "task"], "--data-option: expected KEY=VALUE"),
    ("data-option unknown key", ["--data-option", "colour=red"], "--data-option: unknown KEY 'colour'"),
    ("data-option bad value", ["--data-option", "max_test_clients=0"], "max_test_clients: expected an integer >= 1"),
    ("data-option bad fraction", ["--data-option", "train_fraction=1"], "train_fraction: expected a number in (0, 1)"),
    ("data-option for another source", ["--data-option", "task=features"], "--data-option task: --data digits"),
    ("data-option twice", ["--data", LEAF, "--data-option", "task=features", "--data-option", "task=x"], "twice"),
    ("leaf without users", ["--data", "leaf:EMPTY"], "its LEAF files hold no users"),
    ("leaf without users, features", ["--data", "leaf:EMPTY", "--data-option", "task=features"], "hold no users"),
    ("unknown leaf task", ["--data", LEAF, "--data-option", "task=cifar"], "unknown LEAF task 'cifar'"),
    ("labels beyond num_classes", ["--data", LEAF, "--data-option", "num_classes=2"], "labels must be in [0, 2)"),
    ("sent140_input not bag or words", ["--data-option", "sent140_input=bits"], "sent140_input: expected bag or"),
]


@pytest.fixture
def data_dirs(tmp_path: Path) -> dict[str, str]:
    _features_leaf(tmp_path / "leaf")
    _femnist_leaf(tmp_path / "femnist")
    for part in ("train", "test"):
        write_leaf(tmp_path / "empty" / part / f"{part}.json", {})
    return {
        "LEAF": str(tmp_path / "leaf"),
        "FEMNIST": str(tmp_path / "femnist"),
        "H5": str(_emnist_h5(tmp_path / "h5")),
        "NOPE": str(tmp_path / "nope"),
        "EMPTY": str(tmp_path / "empty"),
    }


def _fill(argv: list[str], paths: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for name, path in paths.items():
            arg = arg.replace(f":{name}", f":{path}")
        out.append(arg)
    return out


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in USAGE], ids=[c[0] for c in USAGE])
def test_each_data_usage_error_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data_dirs: dict[str, str], argv: list[str], message: str
) -> None:
    out = tmp_path / "out"
    status = train_cli.main([*RUN, "--out", str(out), *_fill(argv, data_dirs)])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("fedmodel train: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_a_kind_the_backend_lacks_names_the_backend_the_kind_and_its_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _femnist_leaf(tmp_path / "femnist")
    source = f"leaf:{tmp_path / 'femnist'}"
    assert train_cli.main([*RUN, "--data", source, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "fedmodel train: error: --backend numpy has no model of kind cnn28 (a CNN over 28x28 gray images x "
        f"(None, 28, 28) float32 in [0, 1]; y (None,) int64) for --data {source}; its kinds: mlp\n"
    )


def test_every_new_option_has_help_that_shows_its_default() -> None:
    text = " ".join(train_cli._parser().format_help().split())
    assert "--data SOURCE" in text and "(default: digits)" in text
    for source in ("digits", "synthetic:ALPHA,BETA", "synthetic:iid", "leaf:DIR", "tff-h5:FILE"):
        assert source in text
    assert "--data-option KEY=VALUE" in text


# -- resume ------------------------------------------------------------------------------------------------------


def test_resume_with_another_data_source_is_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*RUN, "--rounds", "1", "--clients", "4", "--out", str(tmp_path)]
    assert train_cli.main([*argv, "--data", "synthetic:1,1", "--checkpoint"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    resume = [*RUN, "--rounds", "2", "--clients", "4", "--out", str(tmp_path), "--resume"]
    assert train_cli.main([*resume, "--data", "synthetic:0.5,0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data 'synthetic:0.5,0.5' (the checkpoint's: 'synthetic:1,1')" in err, err
    assert train_cli.main([*resume, "--data", "synthetic:1,1", "--data-option", "train_fraction=0.5"]) == 2
    assert "--data-option train_fraction 0.5 (not in the checkpoint)" in capsys.readouterr().err
    assert train_cli.main(resume) == 2  # digits: another model too (64 features), still named by its option
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data missing (the checkpoint's: 'synthetic:1,1')" in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert train_cli.main([*resume, "--data", "synthetic:1,1"]) == 0
    assert [r["round"] for r in _rows(tmp_path)] == ["1", "2"]


def test_a_resumed_leaf_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    _features_leaf(tmp_path / "leaf")
    argv = [*RUN, "--data", f"leaf:{tmp_path / 'leaf'}", "--clients-per-round", "2", "--algorithm", "fedadam"]
    assert train_cli.main([*argv, "--rounds", "3", "--out", str(tmp_path / "whole")]) == 0
    assert train_cli.main([*argv, "--rounds", "2", "--checkpoint", "--out", str(tmp_path / "part")]) == 0
    assert train_cli.main([*argv, "--rounds", "3", "--resume", "--out", str(tmp_path / "part")]) == 0
    like = get_weights(SoftmaxRegression(FEATURES, CLASSES))
    whole = load_checkpoint(tmp_path / "whole" / "weights-numpy-fedadam.safetensors", like=like).weights
    part = load_checkpoint(tmp_path / "part" / "weights-numpy-fedadam.safetensors", like=like).weights
    assert all(a.tobytes() == b.tobytes() for a, b in zip(whole.arrays, part.arrays, strict=True))


# -- a backend with cnn28: a fake one, installed as pip would, in a fresh process ---------------------------------

FAKE_INIT = '''"""A fake fedmodel backend: the numpy reference backend, with a cnn28 and a deliberately wrong mlp."""
from fedmodel.reference import NUMPY_BACKEND as BACKEND
from fake_fedbackend import models as models
'''

FAKE_MODELS = '''"""cnn28: softmax regression over the 784 pixels of each 28x28 image (a stand-in for a CNN)."""
import numpy as np
from fedmodel import TensorSpec, check_batch
from fedmodel.reference import SoftmaxRegression


class FlatImages(SoftmaxRegression):
    def __init__(self, num_classes, seed):
        super().__init__(784, num_classes, seed=seed)
        self._flat = self._spec
        self._spec = (TensorSpec((None, 28, 28), "float32", "x"), self._flat[1])

    def _logits(self, x):
        return super()._logits(np.asarray(x).reshape(len(x), -1))

    def value_and_grad(self, batch):
        x, y = check_batch(self._spec, batch)
        images, self._spec = self._spec, self._flat
        try:
            return super().value_and_grad((x.reshape(len(x), -1), y))
        finally:
            self._spec = images


def cnn28(*, num_classes, seed=0):
    return FlatImages(num_classes, seed)


def mlp(*, num_features, num_classes, seed=0):  # wrong on purpose: it wants images, whatever the features
    return FlatImages(num_classes, seed)


def char_rnn(*, num_classes, seed=0):  # wrong on purpose: no vocab_size
    raise AssertionError("not reached: the call itself fails")
'''


@pytest.fixture
def fake_site(tmp_path: Path) -> Path:
    """A directory laid out as pip installs ``fake_fedbackend``, registered as the backend ``fake``."""
    site = tmp_path / "site"
    package = site / "fake_fedbackend"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_INIT)
    (package / "models.py").write_text(FAKE_MODELS)
    info = site / "fake_fedbackend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake_fedbackend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fedmodel.backends]\nfake = fake_fedbackend\n")
    return site


def _fedmodel_train(site: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(site), *sys.path])
    env = {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    cmd = [sys.executable, "-m", "fedmodel", "train", *argv]
    return subprocess.run(cmd, cwd=site, capture_output=True, text=True, env=env, timeout=300)


FAKE_RUN = ["--backend", "fake", "--rounds", "2", "--local-epochs", "1", "--batch-size", "4", "--no-progress"]


@pytest.mark.parametrize("fmt", ["leaf", "tff-h5"])
def test_image_data_trains_the_backends_cnn28(tmp_path: Path, fake_site: Path, fmt: str) -> None:
    if fmt == "leaf":
        _femnist_leaf(tmp_path / "femnist")
        source, classes, clients = f"leaf:{tmp_path / 'femnist'}", 62, "3"
    else:
        source, classes, clients = f"tff-h5:{_emnist_h5(tmp_path / 'h5')}", 10, "3"
    out = tmp_path / "out"
    run = _fedmodel_train(fake_site, *FAKE_RUN, "--data", source, "--out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(out)
    assert [(r["run"], r["round"], r["clients_ok"]) for r in rows] == [
        ("fake/fedavg", "1", clients),
        ("fake/fedavg", "2", clients),
    ]
    model = SoftmaxRegression(784, classes)  # the fake cnn28's variables: a (784, C) kernel
    saved = load_checkpoint(out / "weights-fake-fedavg.safetensors", like=get_weights(model)).weights
    assign_weights(model, saved)
    test = load_federated(source).data.test
    expected = _test_loss(model, test.x.reshape(len(test.x), -1), test.y)
    assert float(rows[-1]["test_loss"]) == pytest.approx(expected, rel=1e-6)


def test_a_model_whose_input_spec_does_not_fit_the_data_is_a_usage_error(tmp_path: Path, fake_site: Path) -> None:
    out = tmp_path / "out"
    run = _fedmodel_train(fake_site, *FAKE_RUN, "--data", "synthetic:1,1", "--clients", "3", "--out", str(out))
    assert run.returncode == 2 and run.stdout == "", run.stdout + run.stderr
    assert run.stderr.startswith("fedmodel train: error: --backend fake: its mlp model does not fit --data synthetic")
    assert run.stderr.count("\n") == 1 and "expected shape (None, 28, 28), got" in run.stderr
    assert not out.exists()


def test_a_kind_a_third_party_backend_lacks_lists_the_kinds_it_has(tmp_path: Path, fake_site: Path) -> None:
    source = f"leaf:{tmp_path / 'leaf'}"
    _sent140_leaf(tmp_path / "leaf")
    run = _fedmodel_train(fake_site, *FAKE_RUN, "--data", source, "--data-option", "sent140_input=words")
    assert run.returncode == 2
    assert run.stderr == (
        "fedmodel train: error: --backend fake has no model of kind word_rnn (embedding + LSTM over word ids x "
        f"(None, 25) int64; y (None,) int64 (Sent140 sentiment)) for --data {source}; its kinds: mlp, cnn28, char_rnn\n"
    )


def test_a_factory_that_does_not_take_the_kinds_arguments_is_a_usage_error(tmp_path: Path, fake_site: Path) -> None:
    lines = ["to be or not to be that is the question whether tis nobler in the mind to suffer ", "the slings"]
    users = {u: {"x": [line[:80].ljust(80) for line in lines], "y": ["t", "e"]} for u in ("hamlet", "ophelia")}
    write_leaf(tmp_path / "shakespeare" / "train" / "s.json", users)
    write_leaf(tmp_path / "shakespeare" / "test" / "s.json", users)
    source = f"leaf:{tmp_path / 'shakespeare'}"
    run = _fedmodel_train(fake_site, *FAKE_RUN, "--data", source, "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stdout + run.stderr
    assert run.stderr.startswith("fedmodel train: error: --backend fake: its models.char_rnn cannot build the model:")
    assert "vocab_size" in run.stderr and not (tmp_path / "out").exists()


# -- the real backends' LEAF models ---------------------------------------------------------------------------


def _shakespeare_leaf(root: Path) -> None:
    """One LEAF Shakespeare speaker: two 80-character windows and the character after each."""
    line = "To be, or not to be: that is the question. Whether 'tis nobler in the mind to suf"
    user = {"x": [line[i : i + 80] for i in range(2)], "y": [line[80], "f"]}
    write_leaf(root / "data" / "train" / "all_data_0_train.json", {"HAMLET": user})
    write_leaf(root / "data" / "test" / "all_data_0_test.json", {"HAMLET": {"x": user["x"][:1], "y": ["f"]}})


def _sent140_words(root: Path) -> None:
    """Two Sent140 users of four tweets each, every tweet among them (7 words): one batch shape for JAX to
    compile."""
    _sent140_leaf(root, {"alice": [0, 1, 2, 3], "bob": [4, 5, 0, 1]})


def _leaf_source(write: Any, *options: str) -> Any:
    """Write a LEAF data set with ``write`` under a folder; return the ``--data`` arguments that read it."""

    def source(root: Path) -> list[str]:
        write(root)
        return ["--data", f"leaf:{root}", *(arg for option in options for arg in ("--data-option", option))]

    return source


# data set -> (write it under a folder, returning its --data arguments; the model of its kind, from the backend's
# models, at the sizes the data gives: 7 distinct words in the Sent140 tweets, plus the unknown-word id)
REAL_DATA: dict[str, tuple[Any, Any]] = {
    "femnist": (_leaf_source(_femnist_leaf), lambda m: m.cnn28(num_classes=62)),
    "shakespeare": (_leaf_source(_shakespeare_leaf), lambda m: m.char_rnn(vocab_size=80, num_classes=80)),
    "sent140": (_leaf_source(_sent140_words, "sent140_input=words"), lambda m: m.word_rnn(vocab_size=8)),
    "cifar100": (lambda root: ["--data", f"tff-h5:{_cifar100_h5(root)}"], lambda m: m.cnn32(num_classes=100)),
    "shakespeare-tff": (lambda root: ["--data", f"tff-h5:{_shakespeare_h5(root)}"], lambda m: m.char_rnn_seq()),
    "shakespeare-tff-40": (  # --data-option sequence_length reaches the model: 40-character windows
        lambda root: ["--data", f"tff-h5:{_shakespeare_h5(root)}", "--data-option", "sequence_length=40"],
        lambda m: m.char_rnn_seq(length=40),
    ),
    "stackoverflow": (
        lambda root: ["--data", f"tff-h5:{_stackoverflow_h5(root)}"],
        lambda m: m.word_rnn_seq(vocab_size=9, num_classes=9),
    ),
}


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
@pytest.mark.parametrize("task", sorted(REAL_DATA))
def test_file_data_trains_the_real_backends_model_of_its_kind(tmp_path: Path, backend: str, task: str) -> None:
    """FEMNIST picks each backend's ``cnn28``, Shakespeare its ``char_rnn``, Sent140's word ids its ``word_rnn``,
    TFF's CIFAR-100 its ``cnn32``, TFF's Shakespeare and StackOverflow the next-token ``char_rnn_seq`` and
    ``word_rnn_seq`` (their accuracy column is the token accuracy; a ``sequence_length`` option reaches the
    model as its ``length``): one round, a finite test loss, final weights of
    that model's names and shapes."""
    package = pytest.importorskip(f"fedmodel_{backend}")
    write, build = REAL_DATA[task]
    data = write(tmp_path / task)
    out = tmp_path / "out"
    argv = ["--backend", backend, *data, "--rounds", "1", "--local-epochs", "1", "--batch-size", "4", "--lr", "0.05"]
    assert train_cli.main([*argv, "--no-progress", "--out", str(out)]) == 0
    (row,) = _rows(out)
    assert np.isfinite(float(row["test_loss"])) and 0.0 <= float(row["test_accuracy"]) <= 1.0
    like = get_weights(build(package.models))
    saved = load_checkpoint(out / f"weights-{backend}-fedavg.safetensors", like=like).weights  # names, shapes
    assert any(not np.array_equal(a, b) for a, b in zip(saved.arrays, like.arrays, strict=True))  # it trained
