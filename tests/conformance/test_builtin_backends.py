"""The whole suite on every built-in model of every backend: one sweep over backend x model kind, one batch maker.

A case whose framework is not installed is skipped with the reason (CI installs all of them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fedmodel_conformance import Case, ConformanceTests, run_checks

import fedmodel
from tests._next_token import next_token_batch

BATCH_NORM = {"training_changes_non_trainable": True, "stochastic_training": True, "min_training_batch_size": 2}


def digits_like(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A batch shaped like scikit-learn's digits: 64 standard-normal features, labels 0..9."""
    return rng.standard_normal((size, 64)).astype(np.float32), rng.integers(0, 10, size).astype(np.int64)


def femnist_like(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A batch shaped like FEMNIST: 28x28 gray values in [0, 1], labels 0..61."""
    return rng.random((size, 28, 28), dtype=np.float32), rng.integers(0, 62, size).astype(np.int64)


def cifar_like(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A batch shaped like TFF's CIFAR-100: 32x32 colour images (channels last) in [0, 1], labels 0..99."""
    return rng.random((size, 32, 32, 3), dtype=np.float32), rng.integers(0, 100, size).astype(np.int64)


def id_sequences(length: int, vocab_size: int, num_classes: int) -> Callable[[int, np.random.Generator], Any]:
    """A maker of batches of ``length`` ids in ``0..vocab_size - 1`` with labels in ``0..num_classes - 1``."""

    def make(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, vocab_size, (size, length)).astype(np.int64)
        return x, rng.integers(0, num_classes, size).astype(np.int64)

    return make


def next_token_sequences(length: int, vocab_size: int) -> Callable[[int, np.random.Generator], Any]:
    """A maker of TFF-style next-token batches (:func:`tests._next_token.next_token_batch`)."""
    return lambda size, rng: next_token_batch(size, length, vocab_size, rng)


shakespeare_like = id_sequences(80, 80, 80)
"""LEAF's Shakespeare: 80 character ids in 0..79, the next one as the label."""
SENT140_VOCAB = 50
sent140_like = id_sequences(25, SENT140_VOCAB, 2)
"""LEAF's Sent140 as word ids: 25 ids in a (small) vocabulary, the sentiment 0 or 1 as the label."""

# the data sets' models (LEAF's, TFF CIFAR-100's) at small sizes: the same layers, a fraction of the compute
DATA_SET_KINDS = {
    "cnn28": (lambda m: m.cnn28(channels=(4, 8), hidden=16), femnist_like),
    "cnn32": (lambda m: m.cnn32(channels=(4, 8), hidden=16), cifar_like),
    "char_rnn": (lambda m: m.char_rnn(hidden=16, layers=1), shakespeare_like),
    "word_rnn": (lambda m: m.word_rnn(vocab_size=SENT140_VOCAB, embedding=8, hidden=16, layers=1), sent140_like),
    "char_rnn_seq": (lambda m: m.char_rnn_seq(hidden=16, layers=1), next_token_sequences(80, 90)),
    "word_rnn_seq": (
        lambda m: m.word_rnn_seq(vocab_size=60, num_classes=60, embedding=8, hidden=16, projection=8),
        next_token_sequences(20, 60),
    ),
}

# backend, model kind -> (package, factory of the model from the package's models, Case options)
KINDS: dict[tuple[str, str], tuple[str, Callable[[Any], Any], dict[str, Any]]] = {
    ("torch", "mlp"): ("fedmodel_torch", lambda m: m.mlp(), {}),
    ("torch", "cnn_bn"): (
        "fedmodel_torch",
        lambda m: m.cnn_bn(),
        {**BATCH_NORM, "optimizer": fedmodel.SGD(learning_rate=0.1, momentum=0.9)},
    ),
    ("torch", "frozen_mlp"): ("fedmodel_torch", lambda m: m.frozen_mlp(), {"optimizer": fedmodel.Adam(0.01)}),
    ("tensorflow", "mlp"): ("fedmodel_tensorflow", lambda m: m.mlp(hidden=(16,)), {}),
    ("tensorflow", "mlp_eager"): ("fedmodel_tensorflow", lambda m: m.mlp(hidden=(8,), run_eagerly=True), {}),
    ("tensorflow", "cnn_bn"): ("fedmodel_tensorflow", lambda m: m.cnn_bn(channels=(4, 4)), BATCH_NORM),
    ("tensorflow", "frozen_mlp"): (
        "fedmodel_tensorflow",
        lambda m: m.frozen_mlp(hidden=(16,)),
        {"optimizer": fedmodel.SGD(learning_rate=0.1, momentum=0.9)},
    ),
    ("jax", "mlp"): ("fedmodel_jax", lambda m: m.mlp(), {}),
    # jax cnn_bn has the clauses of bn_mlp (Flax, batch statistics, dropout) at many times the compile time
    ("jax", "bn_mlp"): (
        "fedmodel_jax",
        lambda m: m.bn_mlp(),
        {**BATCH_NORM, "optimizer": fedmodel.SGD(learning_rate=0.1, momentum=0.9)},
    ),
    ("jax", "frozen_mlp"): ("fedmodel_jax", lambda m: m.frozen_mlp(), {"optimizer": fedmodel.Adam(0.01)}),
}
# The four LSTM models share their code within each backend: one LSTM stack, read at the last step (char_rnn,
# word_rnn: the standard loss and metrics, which mlp proves) or at every step (char_rnn_seq, word_rnn_seq: the
# next-token loss and token accuracy; word_rnn_seq adds the projection). The full suite runs all four on torch
# (seconds); on TensorFlow and JAX, where each LSTM case costs about 45 s of CPU (a compilation per batch shape),
# it runs word_rnn_seq, which goes through every line of that code the others do
_SHARED_CODE = {(b, k) for b in ("tensorflow", "jax") for k in ("char_rnn", "word_rnn", "char_rnn_seq")}
for _backend in ("torch", "tensorflow", "jax"):
    for _kind, (_build, _batch) in DATA_SET_KINDS.items():
        if (_backend, _kind) in _SHARED_CODE:
            continue
        KINDS[_backend, _kind] = (
            f"fedmodel_{_backend}",
            _build,
            {"make_batch": _batch, "optimizer": fedmodel.Adam(0.01)},
        )


def builtin_case(backend: str, kind: str) -> Case:
    """The case of one built-in model (skips the test when its framework is not installed)."""
    package, build, options = KINDS[backend, kind]
    models = pytest.importorskip(package).models
    options = {"make_batch": digits_like, **options}
    return Case(name=f"{backend}-{kind}", make_model=lambda: build(models), **options)


@pytest.mark.parametrize(("backend", "kind"), sorted(KINDS), ids=[f"{b}-{k}" for b, k in sorted(KINDS)])
def test_the_built_in_model_passes_every_conformance_check(backend: str, kind: str) -> None:
    case = builtin_case(backend, kind)
    if backend == "torch":
        importlib.import_module("torch").manual_seed(0)  # dropout draws from torch's global generator
    report = run_checks(case)
    assert report.ok, report.format()
    skipped = {r.name for r in report.results if r.status == "skip"}
    declared = case.stochastic_training
    assert (
        not skipped
        if not declared
        else skipped
        <= {
            "gradients_match_finite_differences",
            "optimizer_update_rules",
            "fedprox_anchor",
            "sgd_steps_are_independent",
            "optimizers_share_no_state",
        }
    )


def _init(rng: Any, x: Any) -> dict[str, Any]:
    import jax

    return {"w": 0.1 * jax.random.normal(rng, (x.shape[1], 3)), "b": jax.numpy.zeros(3)}


def _apply(params: Any, state: Any, x: Any, training: bool, rng: Any) -> tuple[Any, Any]:
    return x @ params["w"] + params["b"], state


class TestJaxUserFunctionsThroughTheBaseClass(ConformanceTests):
    """A third party's own JAX functions, checked one pytest test per clause."""

    def make_case(self) -> Case:
        fedmodel_jax = pytest.importorskip("fedmodel_jax")
        spec = (fedmodel.TensorSpec((None, 5), "float32"), fedmodel.TensorSpec((None,), "int64"))
        return Case(
            name="jax-user-functions",
            make_model=lambda: fedmodel_jax.from_functions(_init, _apply, fedmodel_jax.models.cross_entropy, spec),
            make_batch=lambda size, rng: (
                rng.standard_normal((size, 5)).astype(np.float32),
                rng.integers(0, 3, size).astype(np.int64),
            ),
        )
