"""Built-in models: canonical initial weights (backend_kit.initialize), the LEAF models cnn28, char_rnn and
word_rnn, and the CIFAR CNN cnn32."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fedmodel
from fedmodel import backend_kit
from fedmodel.layout import canonical

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
