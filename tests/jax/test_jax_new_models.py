"""Issue 20's built-in models on JAX: ``cnn28`` (LEAF's FEMNIST CNN), ``char_rnn`` (LEAF's Shakespeare LSTM),
``cnn32`` (a CIFAR CNN) and ``word_rnn`` (LEAF's Sent140 LSTM), the canonical initial weights of the built-in
models (issue 17), and TFF's next-token models ``char_rnn_seq`` and ``word_rnn_seq``."""

from __future__ import annotations

from typing import Any

import fedmodel_jax
import numpy as np
import pytest
from fedmodel_jax import models

import fedmodel
from fedmodel.backend_kit import initial_weights
from fedmodel.layout import canonical
from tests._next_token import masked_cross_entropy, next_token_batch, token_counts


def femnist_like(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.random((size, 28, 28), dtype=np.float32), rng.integers(0, 62, size).astype(np.int64)


def shakespeare_like(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 80, (size, 80)).astype(np.int64), rng.integers(0, 80, size).astype(np.int64)


def _small_cnn28() -> Any:
    return models.cnn28(channels=(4, 8), hidden=16)


def _small_char_rnn() -> Any:
    return models.char_rnn(hidden=16, layers=1)


def test_cnn28_has_leafs_layers_and_learns_one_batch() -> None:
    model = _small_cnn28()
    assert [(v.name, v.shape) for v in model.trainable_variables] == [
        ("params/Conv_0/bias", (4,)),
        ("params/Conv_0/kernel", (5, 5, 1, 4)),
        ("params/Conv_1/bias", (8,)),
        ("params/Conv_1/kernel", (5, 5, 4, 8)),
        ("params/Dense_0/bias", (16,)),
        ("params/Dense_0/kernel", (7 * 7 * 8, 16)),  # two 2x2 poolings: 28 -> 14 -> 7
        ("params/Dense_1/bias", (62,)),
        ("params/Dense_1/kernel", (16, 62)),
    ]
    assert [e.canonical for e in fedmodel_jax.BACKEND.canonical_layout(model).entries][:2] == [
        "conv_0/bias",
        "conv_0/kernel",
    ]
    batch = femnist_like(8, np.random.default_rng(0))
    assert np.asarray(model.predict_on_batch(batch[0])).shape == (8, 62)
    optimizer = fedmodel_jax.BACKEND.make_optimizer(model, fedmodel.SGD(learning_rate=0.1))
    losses = [float(fedmodel_jax.BACKEND.train_step(model, batch, optimizer).loss) for _ in range(15)]
    assert losses[-1] < losses[0]
    with pytest.raises(fedmodel.SpecError, match=r"'y': expected values in \[0, 61\]"):
        model.forward_pass((batch[0], batch[1] + 62))  # 62 classes: labels 0..61


def test_char_rnn_embeds_ids_runs_an_lstm_and_learns_one_batch() -> None:
    model = _small_char_rnn()
    names = [v.name for v in model.trainable_variables]
    assert names[:3] == ["params/Dense_0/bias", "params/Dense_0/kernel", "params/Embed_0/embedding"]
    assert "params/OptimizedLSTMCell_0/hi/kernel" in names
    entries = {e.canonical for e in fedmodel_jax.BACKEND.canonical_layout(model).entries}
    assert "dense_0/kernel" in entries and "params/OptimizedLSTMCell_0/hi/kernel" in entries  # gates: own names
    x, y = shakespeare_like(4, np.random.default_rng(1))
    assert np.asarray(model.predict_on_batch(x)).shape == (4, 80)
    optimizer = fedmodel_jax.BACKEND.make_optimizer(model, fedmodel.Adam(learning_rate=0.05))
    losses = [float(fedmodel_jax.BACKEND.train_step(model, (x, y), optimizer).loss) for _ in range(10)]
    assert losses[-1] < losses[0]
    with pytest.raises(fedmodel.SpecError, match=r"'x': expected values in \[0, 79\]"):
        model.forward_pass((np.full((2, 80), 80, np.int64), y[:2]))  # id 80 is outside the vocabulary
    two_layers = models.char_rnn(hidden=8, layers=2, vocab_size=30, num_classes=5)
    assert "params/OptimizedLSTMCell_1/hi/kernel" in [v.name for v in two_layers.trainable_variables]


def test_cnn32_takes_channels_last_colour_images() -> None:
    model = models.cnn32(channels=(4, 8), hidden=16)
    assert [(v.name, v.shape) for v in model.trainable_variables] == [
        ("params/Conv_0/bias", (4,)),
        ("params/Conv_0/kernel", (3, 3, 3, 4)),
        ("params/Conv_1/bias", (8,)),
        ("params/Conv_1/kernel", (3, 3, 4, 8)),
        ("params/Dense_0/bias", (16,)),
        ("params/Dense_0/kernel", (8 * 8 * 8, 16)),  # two 2x2 poolings: 32 -> 16 -> 8
        ("params/Dense_1/bias", (100,)),
        ("params/Dense_1/kernel", (16, 100)),
    ]
    assert model.input_spec[0] == fedmodel.TensorSpec((None, 32, 32, 3), "float32", "x")
    assert model.input_spec[1] == fedmodel.TensorSpec((None,), "int64", "y", minimum=0, maximum=99)
    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    assert np.asarray(model.predict_on_batch(x)).shape == (3, 100)


def test_word_rnn_has_leafs_sent140_sizes() -> None:
    model = models.word_rnn()
    shapes = {v.name: v.shape for v in model.trainable_variables}
    assert shapes["params/Embed_0/embedding"] == (10_001, 100)
    assert shapes["params/OptimizedLSTMCell_1/hi/kernel"] == (100, 100)  # a second layer of 100 units
    assert "params/OptimizedLSTMCell_2/hi/kernel" not in shapes
    assert shapes["params/Dense_0/kernel"] == (100, 2)
    assert model.input_spec[0] == fedmodel.TensorSpec((None, 25), "int64", "x", minimum=0, maximum=10_000)
    assert model.input_spec[1] == fedmodel.TensorSpec((None,), "int64", "y", minimum=0, maximum=1)
    x = np.random.default_rng(0).integers(0, 10_001, (2, 25))
    assert np.asarray(model.predict_on_batch(x)).shape == (2, 2)


@pytest.mark.parametrize(
    "build",
    [
        lambda seed: models.mlp(seed=seed),
        lambda seed: models.frozen_mlp(seed=seed),
        lambda seed: models.bn_mlp(seed=seed),
        lambda seed: models.cnn_bn(seed=seed),
        lambda seed: models.cnn28(channels=(2, 3), hidden=4, seed=seed),
        lambda seed: models.cnn32(channels=(2, 3), hidden=4, seed=seed),
    ],
    ids=["mlp", "frozen_mlp", "bn_mlp", "cnn_bn", "cnn28", "cnn32"],
)
@pytest.mark.parametrize("seed", [0, 7])
def test_builtin_models_start_from_the_kits_canonical_initial_weights(build: Any, seed: int) -> None:
    got = fedmodel.get_weights(canonical(build(seed)))
    want = initial_weights(got, seed)
    assert got.names == want.names
    for a, b in zip(got.arrays, want.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    other = fedmodel.get_weights(canonical(build(seed + 1)))
    assert not np.array_equal(got.trainable[-1], other.trainable[-1]) or not np.array_equal(
        got.trainable[0], other.trainable[0]
    )


# -- the next-token models of TFF's Shakespeare and StackOverflow tasks (Reddi et al. 2021) ------------------


def small_char_rnn_seq(**kwargs: Any) -> Any:
    return models.char_rnn_seq(**{"vocab_size": 12, "num_classes": 12, "embedding": 4, "hidden": 8, **kwargs})


def test_char_rnn_seq_predicts_every_step_with_per_token_labels() -> None:
    model = small_char_rnn_seq(layers=2)
    assert model.input_spec == (
        fedmodel.TensorSpec((None, 80), "int64", "x", minimum=0, maximum=11),
        fedmodel.TensorSpec((None, 80), "int64", "y", minimum=0, maximum=11),
    )
    names = [v.name for v in model.trainable_variables]
    assert names[:3] == ["params/Dense_0/bias", "params/Dense_0/kernel", "params/Embed_0/embedding"]
    assert "params/OptimizedLSTMCell_1/hi/kernel" in names and "params/Dense_1/kernel" not in names  # no projection
    assert [v.name for v in model.local_variables] == [
        "metrics/count",
        "metrics/loss_sum",
        "metrics/token_accuracy/0",
        "metrics/token_accuracy/1",
    ]
    x, _ = next_token_batch(4, 80, 12, np.random.default_rng(0))
    assert np.asarray(model.predict_on_batch(x)).shape == (4, 80, 12)
    same = small_char_rnn_seq(layers=2)
    for a, b in zip(fedmodel.get_weights(model).arrays, fedmodel.get_weights(same).arrays, strict=True):
        np.testing.assert_array_equal(a, b)  # seeded native initialization
    assert models.token_accuracy() == models.token_accuracy()  # equal models share compiled code
    with pytest.raises(ValueError, match="char_rnn_seq needs at least one LSTM layer"):
        small_char_rnn_seq(layers=0)
    with pytest.raises(ValueError, match="word_rnn_seq needs at least one LSTM layer"):
        models.word_rnn_seq(vocab_size=12, num_classes=12, embedding=4, hidden=8, projection=4, layers=0)


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
    assert all(np.asarray(v).dtype == np.float32 for v in report["token_accuracy"])  # mean_metric's dtype
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
    metric = models.token_accuracy()
    y = np.array([[1, 2, 0], [3, 0, 0]], np.int32)
    logits = np.zeros((2, 3, 4), np.float32)
    logits[0, 0, 1] = logits[0, 1, 3] = logits[1, 0, 3] = 1.0  # correct: (0, 0) and (1, 0); (0, 1) wrong
    state = metric.update(metric.init(), y, logits)
    assert [float(s) for s in state] == [2.0, 3.0]
    state = metric.update(metric.init(), y, logits, sample_weight=np.array([2.0, 0.5]))
    assert [float(s) for s in state] == [2.0 * 1 + 0.5 * 1, 2.0 * 2 + 0.5 * 1]


def test_char_rnn_seq_one_training_step_lowers_the_loss() -> None:
    model = small_char_rnn_seq(layers=1)
    batch = next_token_batch(4, 80, 12, np.random.default_rng(2))
    before = float(model.forward_pass(batch, training=False).loss)
    optimizer = fedmodel_jax.BACKEND.make_optimizer(model, fedmodel.Adam(learning_rate=0.01))
    fedmodel_jax.BACKEND.train_step(model, batch, optimizer)
    assert float(model.forward_pass(batch, training=False).loss) < before


def test_word_rnn_seq_has_tffs_stackoverflow_sizes() -> None:
    model = models.word_rnn_seq()
    assert model.input_spec == (
        fedmodel.TensorSpec((None, 20), "int64", "x", minimum=0, maximum=10_003),
        fedmodel.TensorSpec((None, 20), "int64", "y", minimum=0, maximum=10_003),
    )
    shapes = {v.name: v.shape for v in model.trainable_variables}
    lstm = "params/OptimizedLSTMCell_0"
    assert shapes == {
        "params/Embed_0/embedding": (10_004, 96),
        **{f"{lstm}/i{gate}/kernel": (96, 670) for gate in "ifgo"},
        **{f"{lstm}/h{gate}/kernel": (670, 670) for gate in "ifgo"},
        **{f"{lstm}/h{gate}/bias": (670,) for gate in "ifgo"},
        "params/Dense_0/kernel": (670, 96),  # the projection, no activation
        "params/Dense_0/bias": (96,),
        "params/Dense_1/kernel": (96, 10_004),
        "params/Dense_1/bias": (10_004,),
    }
    no_projection = models.word_rnn_seq(vocab_size=12, num_classes=12, embedding=4, hidden=8, projection=None)
    no_projection_shapes = {v.name: v.shape for v in no_projection.trainable_variables}
    assert (
        no_projection_shapes["params/Dense_0/kernel"] == (8, 12) and "params/Dense_1/kernel" not in no_projection_shapes
    )
    assert np.asarray(no_projection.predict_on_batch(np.ones((2, 20), np.int64))).shape == (2, 20, 12)
