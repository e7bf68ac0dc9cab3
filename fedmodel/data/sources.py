"""``load_federated(source)``: one string picks a data set, as ``fedmodel train --data SOURCE`` will.

=========================  ==============================================================================
``digits``                 scikit-learn's digits, split by Dirichlet label skew (``alpha``) or IID
``synthetic:ALPHA,BETA``   FedProx's synthetic(alpha, beta), 30 devices; ``synthetic:iid`` the IID variant
``leaf:DIR``               a LEAF data set: ``DIR`` holds ``train/`` and ``test/`` (or ``data/train`` ...)
``tff-h5:FILE``            a TFF HDF5 file; the test file is ``test_path`` or FILE with train -> test
=========================  ==============================================================================

The answer, a :class:`FederatedTask`, carries what a run needs besides the algorithm: the data (lazy
clients for files), the input spec of its batches, the number of classes and the model kind that fits
(:data:`MODEL_KINDS`).

>>> task = load_federated("synthetic:1,1")
>>> len(task.data.clients), task.num_classes, task.model_kind, task.input_spec[0].shape
(30, 10, 'mlp', (None, 60))
>>> load_federated("synthetic:1")
Traceback (most recent call last):
...
fedmodel._errors.DataError: data source 'synthetic:1' (the --data option): synthetic needs ALPHA,BETA ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedmodel._specs import TensorSpec, dtype_name
from fedmodel.data._core import ClientData, DataError, FederatedData, pool_clients

__all__ = ["MODEL_KINDS", "SOURCES", "FederatedTask", "load_federated"]

MODEL_KINDS = {
    "mlp": "a classifier over flat float32 features x (None, F); y (None,) int64",
    "cnn28": "a CNN over 28x28 gray images x (None, 28, 28) float32 in [0, 1]; y (None,) int64",
    "cnn32": "a CNN over 32x32 colour images x (None, 32, 32, 3) float32 in [0, 1]; y (None,) int64",
    "char_rnn": "embedding + LSTM/GRU over character ids x (None, 80) int64; y (None,) int64, the next character",
    "char_rnn_seq": "embedding + LSTM/GRU, a next-character prediction at every step: x, y (None, 80) int64; 0 pads",
    "word_rnn": "embedding + LSTM over word ids x (None, 25) int64; y (None,) int64 (Sent140 sentiment)",
    "word_rnn_seq": "embedding + LSTM, a next-word prediction at every step: x, y (None, 20) int64; 0 pads",
}
"""Each model kind a source can ask for, with the batches it must accept."""

SOURCES = ("digits", "synthetic:ALPHA,BETA", "synthetic:iid", "leaf:DIR", "tff-h5:FILE")

_OPTIONS = {
    "digits": {"num_clients", "alpha", "test_fraction"},
    "synthetic": {"num_devices", "train_fraction"},
    "leaf": {"task", "num_classes", "vocabulary", "vocab_size", "sent140_input", "max_test_clients"},
    "tff-h5": {
        "task",
        "test_path",
        "num_classes",
        "vocabulary",
        "word_counts",
        "vocab_size",
        "sequence_length",
        "max_test_clients",
    },
}


@dataclass(frozen=True)
class FederatedTask:
    """A loaded data set and what fits it.

    Attributes:
        source: the source string it was loaded from.
        data: the clients (a list, or lazy for files), the pooled test set and per-client test sets.
        input_spec: the ``(x, y)`` spec of its batches.
        num_classes: the number of classes (tokens, for next-token tasks).
        model_kind: a key of :data:`MODEL_KINDS`.
        vocab_size: for text, the number of input ids an embedding needs; None otherwise.
    """

    source: str
    data: FederatedData
    input_spec: tuple[TensorSpec, TensorSpec]
    num_classes: int
    model_kind: str
    vocab_size: int | None = None


def load_federated(source: str, *, seed: int = 0, **options: Any) -> FederatedTask:
    """The data set named by ``source`` (see the table above), with per-source ``options``.

    Options: ``digits``: ``num_clients`` (20), ``alpha`` (0.5; None for IID), ``test_fraction`` (0.2).
    ``synthetic``: ``num_devices`` (30), ``train_fraction`` (0.9). ``leaf``: ``task`` (femnist,
    shakespeare, sent140, features; detected from the first user by default), ``num_classes``,
    ``vocabulary``, ``vocab_size``, ``sent140_input`` ("bag" or "words"), ``max_test_clients`` (pool only
    a seeded random subset of the test users). ``tff-h5``: ``task`` (emnist, shakespeare,
    stackoverflow, cifar100; detected from the features), ``test_path``, ``num_classes``,
    ``vocabulary``, ``word_counts``, ``vocab_size``, ``sequence_length``, ``max_test_clients``.

    Raises:
        DataError: for an unknown source, a malformed one, an option the source does not take, or a
            missing file; the message names the source and the ``--data`` option.
    """
    kind, _, argument = source.partition(":")
    if kind not in _OPTIONS:
        raise _error(source, f"unknown source {kind!r}; choose one of {', '.join(SOURCES)}")
    unknown = sorted(set(options) - _OPTIONS[kind])
    if unknown:
        raise _error(source, f"{kind} takes no option {unknown}; its options are {sorted(_OPTIONS[kind])}")
    try:
        if kind == "digits":
            if argument:
                raise DataError(f"digits takes no argument, got {argument!r}")
            return _digits(source, seed, **options)
        if kind == "synthetic":
            return _synthetic(source, argument, seed, **options)
        if not argument:
            raise DataError(f"{kind} needs a path: {kind}:{'DIR' if kind == 'leaf' else 'FILE'}")
        if kind == "leaf":
            return _leaf(source, Path(argument), seed, **options)
        return _tff(source, Path(argument), seed, **options)
    except DataError as exc:
        if str(exc).startswith("data source"):
            raise
        raise _error(source, str(exc)) from None


def _error(source: str, message: str) -> DataError:
    return DataError(f"data source {source!r} (the --data option): {message}")


def _spec(example: ClientData) -> tuple[TensorSpec, TensorSpec]:
    x, y = example.x, example.y
    return (
        TensorSpec((None, *x.shape[1:]), dtype_name(x.dtype), "x"),
        TensorSpec((None, *y.shape[1:]), dtype_name(y.dtype), "y"),
    )


def _digits(
    source: str, seed: int, *, num_clients: int = 20, alpha: float | None = 0.5, test_fraction: float = 0.2
) -> FederatedTask:
    from fedmodel.data.digits import federated_digits

    data = federated_digits(num_clients, alpha=alpha, test_fraction=test_fraction, seed=seed)
    return FederatedTask(source, data, _spec(data.test), 10, "mlp")


def _synthetic(
    source: str, argument: str, seed: int, *, num_devices: int = 30, train_fraction: float = 0.9
) -> FederatedTask:
    from fedmodel.data.synthetic import NUM_CLASSES, federated_synthetic

    if argument == "iid":
        alpha, beta = None, None
    else:
        try:
            alpha, beta = (float(v) for v in argument.split(","))
        except ValueError:
            raise DataError(
                f"synthetic needs ALPHA,BETA (two numbers, e.g. synthetic:1,1) or iid, got {argument!r}"
            ) from None
    data = federated_synthetic(alpha, beta, num_devices=num_devices, train_fraction=train_fraction, seed=seed)
    return FederatedTask(source, data, _spec(data.test), NUM_CLASSES, "mlp")


def _pooled(test_clients: Sequence[ClientData], max_clients: int | None, seed: int) -> ClientData:
    positions = np.arange(len(test_clients))
    if max_clients is not None:
        if type(max_clients) is not int or max_clients < 1:
            raise DataError(f"max_test_clients must be an int >= 1, got {max_clients!r}")
        if max_clients < len(positions):
            positions = np.sort(np.random.default_rng([seed, 2]).choice(positions, max_clients, replace=False))
    return pool_clients(test_clients[int(i)] for i in positions)


def _split_dirs(root: Path) -> tuple[Path, Path]:
    for base in (root, root / "data"):
        if (base / "train").is_dir() and (base / "test").is_dir():
            return base / "train", base / "test"
    if not root.exists():
        raise DataError(f"{root} does not exist")
    raise DataError(f"{root} has no train/ and test/ directories (LEAF's layout), nor data/train and data/test")


def _leaf(
    source: str,
    root: Path,
    seed: int,
    *,
    task: str | None = None,
    max_test_clients: int | None = None,
    **task_options: Any,
) -> FederatedTask:
    from fedmodel.data.leaf import LeafClients, detect_task, leaf_task

    train_dir, test_dir = _split_dirs(root)
    train = LeafClients(train_dir)
    if not train.client_ids:
        raise DataError(f"{train_dir}: its LEAF files hold no users")
    name = task or detect_task(train)
    spec = leaf_task(name, train, **task_options)
    train.task = spec
    test = LeafClients(test_dir, spec)
    data = FederatedData(train, _pooled(test, max_test_clients, seed), test_clients=test)
    return FederatedTask(source, data, _spec(data.test), spec.num_classes, spec.model_kind, spec.vocab_size)


def _tff(
    source: str,
    path: Path,
    seed: int,
    *,
    task: str | None = None,
    test_path: str | os.PathLike[str] | None = None,
    max_test_clients: int | None = None,
    **task_options: Any,
) -> FederatedTask:
    from fedmodel.data.tff_h5 import H5Clients, detect_h5_task, h5_task

    if not path.is_file():
        raise DataError(f"{path} is not a file")
    if test_path is None:
        guess = path.with_name(path.name.replace("train", "test"))
        if guess == path or not guess.is_file():
            raise DataError(f"no test file beside {path} (looked for {guess.name}); pass test_path=...")
        test_path = guess
    train = H5Clients(path)
    name = task or detect_h5_task(train)
    spec = h5_task(name, path, **task_options)
    train.task = spec
    test = H5Clients(test_path, spec)
    data = FederatedData(train, _pooled(test, max_test_clients, seed), test_clients=test)
    return FederatedTask(source, data, _spec(data.test), spec.num_classes, spec.model_kind, spec.vocab_size)
