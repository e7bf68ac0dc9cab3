"""Built-in models: canonical initial weights (backend_kit.initialize), the LEAF models cnn28, char_rnn and
word_rnn, the CIFAR CNN cnn32, and TFF's next-token models char_rnn_seq and word_rnn_seq."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fedmodel
from fedmodel import backend_kit
from fedmodel.layout import canonical
from tests._next_token import masked_cross_entropy, next_token_batch, token_counts

tf = pytest.importorskip("tensorflow")
fmtf = pytest.importorskip("fedmodel_tensorflow")

CANONICAL: dict[str, Callable[[int], Any]] = {
    "mlp": lambda s: fmtf.models.mlp(seed=s),
    "frozen_mlp": lambda s: fmtf.models.frozen_mlp(seed=s),
    "cnn_bn": lambda s: fmtf.models.cnn_bn(seed=s),
    "cnn28": lambda s: fmtf.models.cnn28(channels=(4, 8), hidden=16, seed=s),
    "cnn32": lambda s: fmtf.models.cnn32(channels=(4, 8), hidden=16, seed=s),
}


@pytest.mark.parametrize("kind", sorted(CANONICAL))
@pytest.mark.parametrize("seed", [0, 7])
def test_builtin_models_start_from_the_kits_canonical_initial_weights(kind: str, seed: int) -> None:
    weights = fedmodel.get_weights(canonical(CANONICAL[kind](seed)))
    expected = backend_kit.initial_weights(weights, seed)
    assert weights.names == expected.names
    for got, want in zip(weights.arrays, expected.arrays, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_cnn_bn_convolutions_have_no_bias_before_batch_norm() -> None:
    names = fedmodel.get_weights(canonical(fmtf.models.cnn_bn())).names
    assert "conv_0/kernel" in names and "conv_0/bias" not in names and "conv_1/bias" not in names


def femnist_batch(size: int, rng: np.random.Generator, num_classes: int = 62) -> tuple[np.ndarray, np.ndarray]:
    return rng.random((size, 28, 28), dtype=np.float32), rng.integers(0, num_classes, size).astype(np.int64)


def shakespeare_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 80, (size, 80)).astype(np.int64), rng.integers(0, 80, size).astype(np.int64)


def test_cnn28_is_leafs_femnist_cnn() -> None:
    model = fmtf.models.cnn28(channels=(4, 8), hidden=16)
    assert model.input_spec == (
        fedmodel.TensorSpec((None, 28, 28), "float32", "x"),
        fedmodel.TensorSpec((None,), "int64", "y", minimum=0, maximum=61),
    )
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    assert shapes == [(5, 5, 1, 4), (4,), (5, 5, 4, 8), (8,), (7 * 7 * 8, 16), (16,), (16, 62), (62,)]
    out = model.forward_pass(femnist_batch(3, np.random.default_rng(0)), training=False)
    assert tuple(out.predictions.shape) == (3, 62)
    with pytest.raises(fedmodel.SpecError, match="'y'"):
        model.forward_pass((np.zeros((1, 28, 28), np.float32), np.array([62])))


def test_char_rnn_predicts_the_next_character_from_the_last_step() -> None:
    model = fmtf.models.char_rnn(hidden=16, layers=2, embedding=4)
    assert model.input_spec[0] == fedmodel.TensorSpec((None, 80), "int64", "x", minimum=0, maximum=79)
    names = fedmodel.get_weights(model).names
    assert names[0] == "embedding/embeddings" and sum("recurrent_kernel" in n for n in names) == 2
    x, y = shakespeare_batch(4, np.random.default_rng(1))
    assert tuple(model.predict_on_batch(x).shape) == (4, 80)
    same = fmtf.models.char_rnn(hidden=16, layers=2, embedding=4)
    for a, b in zip(fedmodel.get_weights(model).arrays, fedmodel.get_weights(same).arrays, strict=True):
        np.testing.assert_array_equal(a, b)  # seeded native initializers
    opt = fmtf.BACKEND.make_optimizer(model, fedmodel.Adam(0.05))
    losses = [float(fmtf.BACKEND.train_step(model, (x, y), opt).loss) for _ in range(15)]
    assert losses[-1] < losses[0] * 0.8  # it fits four sequences
    with pytest.raises(fedmodel.SpecError, match="'x'"):
        model.predict_on_batch(np.full((1, 80), 80, np.int64))


def test_cnn32_takes_channels_last_colour_images() -> None:
    model = fmtf.models.cnn32(channels=(4, 8), hidden=16)
    assert model.input_spec == (
        fedmodel.TensorSpec((None, 32, 32, 3), "float32", "x"),
        fedmodel.TensorSpec((None,), "int64", "y", minimum=0, maximum=99),
    )
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    assert shapes == [(3, 3, 3, 4), (4,), (3, 3, 4, 8), (8,), (8 * 8 * 8, 16), (16,), (16, 100), (100,)]
    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    assert tuple(model.predict_on_batch(x).shape) == (3, 100)


def test_word_rnn_has_leafs_sent140_sizes() -> None:
    model = fmtf.models.word_rnn()
    assert model.input_spec == (
        fedmodel.TensorSpec((None, 25), "int64", "x", minimum=0, maximum=10_000),
        fedmodel.TensorSpec((None,), "int64", "y", minimum=0, maximum=1),
    )
    weights = fedmodel.get_weights(model)
    assert weights.names[0] == "embedding/embeddings" and sum("recurrent_kernel" in n for n in weights.names) == 2
    shapes = [tuple(a.shape) for a in weights.arrays]
    assert shapes[0] == (10_001, 100) and (100, 4 * 100) in shapes and shapes[-2:] == [(100, 2), (2,)]
    x = np.random.default_rng(0).integers(0, 10_001, (2, 25))
    assert tuple(model.predict_on_batch(x).shape) == (2, 2)


# -- the next-token models of TFF's Shakespeare and StackOverflow tasks (Reddi et al. 2021) ------------------


def small_char_rnn_seq(**kwargs: Any) -> Any:
    return fmtf.models.char_rnn_seq(**{"vocab_size": 12, "num_classes": 12, "embedding": 4, "hidden": 8, **kwargs})


def test_char_rnn_seq_predicts_every_step_with_per_token_labels() -> None:
    model = small_char_rnn_seq(layers=2)
    assert model.input_spec == (
        fedmodel.TensorSpec((None, 80), "int64", "x", minimum=0, maximum=11),
        fedmodel.TensorSpec((None, 80), "int64", "y", minimum=0, maximum=11),
    )
    assert [m.name for m in model.metrics] == ["token_accuracy"]
    names = fedmodel.get_weights(model).names
    assert names[0] == "embedding/embeddings" and sum("recurrent_kernel" in n for n in names) == 2
    assert list(names[-2:]) == ["dense/kernel", "dense/bias"]  # no projection
    x, _ = next_token_batch(4, 80, 12, np.random.default_rng(0))
    assert tuple(model.predict_on_batch(x).shape) == (4, 80, 12)
    same = small_char_rnn_seq(layers=2)
    for a, b in zip(fedmodel.get_weights(model).arrays, fedmodel.get_weights(same).arrays, strict=True):
        np.testing.assert_array_equal(a, b)  # seeded native initializers
    with pytest.raises(ValueError, match="char_rnn_seq needs at least one LSTM layer"):
        small_char_rnn_seq(layers=0)
    with pytest.raises(ValueError, match="word_rnn_seq needs at least one LSTM layer"):
        fmtf.models.word_rnn_seq(vocab_size=12, num_classes=12, embedding=4, hidden=8, projection=4, layers=0)


def test_char_rnn_seq_loss_is_the_mean_over_non_padding_tokens_and_reports_token_accuracy() -> None:
    model = small_char_rnn_seq(layers=1)
    x, y = next_token_batch(4, 80, 12, np.random.default_rng(1))
    assert 0 < (y == 0).sum() < y.size  # some padding, not all
    logits = np.asarray(model.predict_on_batch(x))
    out = model.forward_pass((x, y), training=False)
    assert float(out.loss) == pytest.approx(masked_cross_entropy(logits, y), rel=1e-5)
    np.testing.assert_array_equal(np.asarray(out.predictions), logits)
    report = model.report_local_outputs()
    assert "accuracy" not in report and int(report["num_examples"]) == 4
    correct, tokens = token_counts(logits, y)
    assert 0 < correct < tokens  # the check below can tell a wrong count
    assert [float(v) for v in report["token_accuracy"]] == [correct, tokens]
    assert all(np.asarray(v).dtype == np.float64 for v in report["token_accuracy"])
    final = model.federated_output_computation([report])
    assert final["token_accuracy"] == pytest.approx(correct / tokens)
    # padding alone: loss 0, nothing counted, an undefined (NaN) accuracy
    model.reset_metrics()
    out = model.forward_pass((x, np.zeros_like(y)), training=False)
    assert float(out.loss) == 0.0
    report = model.report_local_outputs()
    assert [float(v) for v in report["token_accuracy"]] == [0.0, 0.0]
    assert np.isnan(model.federated_output_computation([report])["token_accuracy"])


def test_token_accuracy_weighs_each_sequence_by_its_sample_weight() -> None:
    metric = fmtf.models.token_accuracy()
    y = np.array([[1, 2, 0], [3, 0, 0]], np.int64)
    logits = np.zeros((2, 3, 4), np.float32)
    logits[0, 0, 1] = logits[0, 1, 3] = logits[1, 0, 3] = 1.0  # correct: (0, 0) and (1, 0); (0, 1) wrong
    state = metric.update(metric.init(), tf.constant(y), tf.constant(logits))
    assert [float(s) for s in state] == [2.0, 3.0]
    state = metric.update(metric.init(), tf.constant(y), tf.constant(logits), sample_weight=tf.constant([2.0, 0.5]))
    assert [float(s) for s in state] == [2.0 * 1 + 0.5 * 1, 2.0 * 2 + 0.5 * 1]


def test_char_rnn_seq_one_training_step_lowers_the_loss() -> None:
    model = small_char_rnn_seq(layers=1)
    batch = next_token_batch(4, 80, 12, np.random.default_rng(2))
    before = float(model.forward_pass(batch, training=False).loss)
    opt = fmtf.BACKEND.make_optimizer(model, fedmodel.Adam(0.01))
    fmtf.BACKEND.train_step(model, batch, opt)
    assert float(model.forward_pass(batch, training=False).loss) < before


def test_word_rnn_seq_has_tffs_stackoverflow_sizes() -> None:
    model = fmtf.models.word_rnn_seq()
    assert model.input_spec == (
        fedmodel.TensorSpec((None, 20), "int64", "x", minimum=0, maximum=10_003),
        fedmodel.TensorSpec((None, 20), "int64", "y", minimum=0, maximum=10_003),
    )
    weights = fedmodel.get_weights(model)
    assert [(n, tuple(a.shape)) for n, a in zip(weights.names, weights.arrays, strict=True)] == [
        ("embedding/embeddings", (10_004, 96)),
        ("lstm/lstm_cell/kernel", (96, 4 * 670)),
        ("lstm/lstm_cell/recurrent_kernel", (670, 4 * 670)),
        ("lstm/lstm_cell/bias", (4 * 670,)),
        ("dense/kernel", (670, 96)),  # the projection, no activation
        ("dense/bias", (96,)),
        ("dense_1/kernel", (96, 10_004)),
        ("dense_1/bias", (10_004,)),
    ]
    no_projection = fmtf.models.word_rnn_seq(vocab_size=12, num_classes=12, embedding=4, hidden=8, projection=None)
    assert [tuple(v.shape) for v in no_projection.trainable_variables][-2:] == [(8, 12), (12,)]
    assert tuple(no_projection.predict_on_batch(np.ones((2, 20), np.int64)).shape) == (2, 20, 12)
