"""load_federated: one string per data set, what a run needs, and errors that name the --data option."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedmodel.algorithms import fedavg
from fedmodel.data import DataError, FederatedTask, load_federated
from fedmodel.data._core import ClientSequence
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, run_simulation


def _fits(task: FederatedTask) -> None:
    """Every client's arrays match the task's input spec."""
    x_spec, y_spec = task.input_spec
    for client in [*task.data.clients[:3], task.data.test]:
        assert x_spec.is_compatible_with(client.x) and y_spec.is_compatible_with(client.y)


def test_digits_keeps_the_defaults_of_fedmodel_train() -> None:
    task = load_federated("digits", num_clients=5, alpha=None, seed=1)
    assert len(task.data.clients) == 5 and {len(c) for c in task.data.clients} <= {287, 288}
    assert (task.num_classes, task.model_kind, task.input_spec[0].shape) == (10, "mlp", (None, 64))
    _fits(task)


def test_synthetic_parses_alpha_and_beta_and_the_iid_variant() -> None:
    task = load_federated("synthetic:0.5,0.25", num_devices=12, seed=3)
    assert len(task.data.clients) == 12 and task.input_spec[0].shape == (None, 60)
    assert task.input_spec[1].dtype == "int64" and task.num_classes == 10
    iid = load_federated("synthetic:iid", seed=3)
    assert len(iid.data.clients) == 30
    _fits(task)


def test_leaf_finds_train_and_test_under_data_and_detects_the_task(
    tmp_path: Path, leaf_file: Callable[..., Path]
) -> None:
    pixels = [[0.0] * 784, [1.0] * 784]
    leaf_file(
        tmp_path / "data" / "train" / "a.json", {"w2": {"x": pixels, "y": [1, 2]}, "w1": {"x": pixels[:1], "y": [0]}}
    )
    leaf_file(
        tmp_path / "data" / "test" / "a.json", {"w2": {"x": pixels[1:], "y": [3]}, "w1": {"x": pixels, "y": [4, 5]}}
    )
    task = load_federated(f"leaf:{tmp_path}")
    assert isinstance(task.data.clients, ClientSequence) and task.data.clients.client_ids == ("w1", "w2")
    assert (task.num_classes, task.model_kind, task.input_spec[0].shape) == (62, "cnn28", (None, 28, 28))
    assert task.data.test.y.tolist() == [4, 5, 3]  # test users pooled in sorted order
    assert task.data.test_clients is not None and task.data.test_clients[1].y.tolist() == [3]
    _fits(task)
    sampled = load_federated(f"leaf:{tmp_path / 'data'}", max_test_clients=1, seed=0)
    assert len(sampled.data.test) in (1, 2)


def test_a_lazy_leaf_federation_trains_in_the_simulation_runner(
    tmp_path: Path, leaf_file: Callable[..., Path], rng: np.random.Generator
) -> None:
    users = {
        f"f_{k:05d}": {"x": rng.normal(size=(6, 5)).tolist(), "y": rng.integers(0, 3, 6).tolist()} for k in range(4)
    }
    leaf_file(tmp_path / "train" / "mytrain.json", users)
    leaf_file(tmp_path / "test" / "mytest.json", users)
    task = load_federated(f"leaf:{tmp_path}", task="features", num_classes=3)
    assert task.input_spec[0].shape == (None, 5)
    result = run_simulation(
        lambda: SoftmaxRegression(5, 3),
        task.data.clients,
        fedavg(batch_size=2),
        SimulationConfig(rounds=2, clients_per_round=2, progress=False),
        test_data=task.data.test,
    )
    assert [r.num_ok for r in result.rounds] == [2, 2] and "accuracy" in result.rounds[-1].test


def test_tff_h5_finds_the_test_file_beside_the_train_file(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    def emnist(*labels: int) -> dict[str, np.ndarray]:
        return {"label": np.array(labels, np.int32), "pixels": np.zeros((len(labels), 28, 28), np.float32)}

    train = tff_file(tmp_path / "fed_emnist_digitsonly_train.h5", {"f1": emnist(1, 2), "f0": emnist(3)})
    tff_file(tmp_path / "fed_emnist_digitsonly_test.h5", {"f1": emnist(9), "f0": emnist(8)})
    task = load_federated(f"tff-h5:{train}")
    assert task.data.clients.client_ids == ("f0", "f1")  # type: ignore[attr-defined]
    assert task.data.test.y.tolist() == [8, 9] and (task.num_classes, task.model_kind) == (10, "cnn28")
    _fits(task)
    other = tff_file(tmp_path / "elsewhere.h5", {"f5": emnist(4)})
    explicit = load_federated(f"tff-h5:{train}", test_path=other)
    assert explicit.data.test.y.tolist() == [4]


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("mnist", {}, r"unknown source 'mnist'; choose one of digits, synthetic:ALPHA,BETA"),
        ("synthetic:1", {}, r"synthetic needs ALPHA,BETA \(two numbers, e\.g\. synthetic:1,1\) or iid, got '1'"),
        ("synthetic:a,b", {}, "got 'a,b'"),
        ("synthetic:-1,1", {}, r"both finite and >= 0"),
        ("synthetic:1e400,1", {}, r"finite"),
        ("synthetic:1,inf", {}, r"finite"),
        ("digits", {"num_clients": "20"}, r"num_clients must be an int"),
        ("synthetic:1,1", {"num_devices": 1.5}, r"num_devices must be an int"),
        ("digits:5", {}, "digits takes no argument"),
        ("leaf:", {}, "leaf needs a path: leaf:DIR"),
        ("tff-h5:", {}, "tff-h5 needs a path: tff-h5:FILE"),
        ("digits", {"vocabulary": ["a"]}, r"digits takes no option \['vocabulary'\]; its options are"),
        ("leaf:/nonexistent/leaf", {}, "/nonexistent/leaf does not exist"),
        ("tff-h5:/nonexistent.h5", {}, "is not a file"),
    ],
)
def test_a_bad_source_is_a_data_error_naming_the_source_and_the_option(
    source: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError, match=rf"data source '{source}' \(the --data option\): .*{message}"):
        load_federated(source, **options)


def test_a_leaf_directory_without_train_and_test_says_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no train/ and test/ directories"):
        load_federated(f"leaf:{tmp_path}")


def test_a_tff_file_without_a_test_file_asks_for_test_path(tmp_path: Path, tff_file: Callable[..., Path]) -> None:
    path = tff_file(tmp_path / "mine.h5", {"a": {"snippets": np.array([b"x"], dtype=object)}})
    with pytest.raises(DataError, match=r"no test file beside .*mine\.h5.*pass test_path="):
        load_federated(f"tff-h5:{path}")


def test_file_backed_clients_survive_a_round_trip_to_a_worker_process(
    tmp_path: Path, leaf_file: Callable[..., Path], tff_file: Callable[..., Path]
) -> None:
    """Parallel runners ship the client sequence to worker processes (multiprocessing pickles it)."""
    import pickle  # our own objects, as multiprocessing would send them; never another party's bytes

    leaf_file(tmp_path / "train" / "a.json", {"u": {"x": ["a" * 80], "y": ["b"]}})
    leaf_file(tmp_path / "test" / "a.json", {"u": {"x": ["c" * 80], "y": ["d"]}})
    snippets = {"a": {"snippets": np.array([b"to be"], dtype=object)}}
    train = tff_file(tmp_path / "shakespeare_train.h5", snippets)
    tff_file(tmp_path / "shakespeare_test.h5", snippets)
    for source in (f"leaf:{tmp_path}", f"tff-h5:{train}"):
        clients = load_federated(source).data.clients
        copied = pickle.loads(pickle.dumps(clients))
        assert copied.client_ids == clients.client_ids  # type: ignore[attr-defined]
        np.testing.assert_array_equal(copied[0].x, clients[0].x)


@pytest.mark.parametrize("count", [0, 1.5, "1", True])
def test_max_test_clients_must_be_a_positive_int(tmp_path: Path, leaf_file: Callable[..., Path], count: object) -> None:
    for split in ("train", "test"):
        leaf_file(tmp_path / split / "a.json", {"w1": {"x": [[0.5, 0.25]], "y": [0]}})
    with pytest.raises(DataError, match=rf"max_test_clients must be an int >= 1, got {count!r}"):
        load_federated(f"leaf:{tmp_path}", max_test_clients=count)
