"""The built-in torch models: canonical initial weights, LEAF's models ``cnn28``, ``char_rnn`` and ``word_rnn``, and
the CIFAR CNN ``cnn32``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedmodel_torch import models  # noqa: E402

import fedmodel  # noqa: E402
from fedmodel import backend_kit  # noqa: E402
from fedmodel.layout import canonical  # noqa: E402

CANONICAL_KINDS: dict[str, Callable[[int], Any]] = {
    "mlp": lambda seed: models.mlp(seed=seed),
    "frozen_mlp": lambda seed: models.frozen_mlp(seed=seed),
    "cnn_bn": lambda seed: models.cnn_bn(seed=seed),
    "cnn28": lambda seed: models.cnn28(channels=(4, 8), hidden=16, seed=seed),
    "cnn32": lambda seed: models.cnn32(channels=(4, 8), hidden=16, seed=seed),
}


@pytest.mark.parametrize("kind", sorted(CANONICAL_KINDS))
@pytest.mark.parametrize("seed", [0, 7])
def test_built_in_models_start_from_the_kits_canonical_weights(kind: str, seed: int) -> None:
    weights = fedmodel.get_weights(canonical(CANONICAL_KINDS[kind](seed)))
    expected = backend_kit.initial_weights(weights, seed)
    assert weights.names == expected.names
    for name, got, want in zip(weights.names, weights.arrays, expected.arrays, strict=True):
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_another_seed_gives_other_weights_and_torchs_global_generator_is_untouched() -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = (fedmodel.get_weights(models.mlp(seed=s)).arrays[0] for s in (0, 1))
    c = models.char_rnn(hidden=16, layers=1, seed=0)
    assert not np.array_equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(
        fedmodel.get_weights(c).arrays[0], fedmodel.get_weights(models.char_rnn(hidden=16, layers=1, seed=0)).arrays[0]
    )


def femnist_like(size: int, rng: np.random.Generator, num_classes: int = 62) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] and labels, as LEAF's FEMNIST serves them."""
    return rng.random((size, 28, 28), dtype=np.float32), rng.integers(0, num_classes, size).astype(np.int64)


def shakespeare_like(size: int, rng: np.random.Generator, vocab: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """80-character id windows and the next character, as LEAF's Shakespeare serves them."""
    return rng.integers(0, vocab, (size, 80)).astype(np.int64), rng.integers(0, vocab, size).astype(np.int64)


SMALL: dict[str, tuple[Callable[[], Any], Callable[[int, np.random.Generator], Any]]] = {
    "cnn28": (lambda: models.cnn28(channels=(4, 8), hidden=16), femnist_like),
    "char_rnn": (lambda: models.char_rnn(hidden=16, layers=1), shakespeare_like),
}


def test_cnn28_has_leafs_layers_and_shapes() -> None:
    model = models.cnn28()
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    assert shapes == [(32, 1, 5, 5), (32,), (64, 32, 5, 5), (64,), (2048, 3136), (2048,), (62, 2048), (62,)]
    x, _ = femnist_like(3, np.random.default_rng(0))
    assert tuple(model.predict_on_batch(x).shape) == (3, 62)
    x_spec, y_spec = model.input_spec
    assert x_spec.shape == (None, 28, 28) and x_spec.dtype == "float32"
    assert (y_spec.dtype, y_spec.minimum, y_spec.maximum) == ("int64", 0, 61)


def test_cnn28_flattens_height_width_channel_like_keras_and_flax() -> None:
    model = models.cnn28(channels=(1, 2), hidden=3, num_classes=2)
    module = model.module
    x = np.random.default_rng(1).random((1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        h = torch.from_numpy(x).unsqueeze(1)
        h = torch.nn.functional.max_pool2d(torch.relu(module.conv1(h)), 2)
        h = torch.nn.functional.max_pool2d(torch.relu(module.conv2(h)), 2)  # (1, 2, 7, 7)
        hwc = h[0].permute(1, 2, 0).reshape(-1).numpy()
    weights = dict(fedmodel.get_weights(canonical(model)).items())
    kernel, bias = weights["dense_0/kernel"], weights["dense_0/bias"]  # kernel (7 * 7 * 2, 3): (in, out)
    hidden = np.maximum(hwc @ kernel + bias, 0)
    head = module.head.weight.detach().numpy().T
    expected = hidden @ head + module.head.bias.detach().numpy()
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x))[0], expected, rtol=1e-5, atol=1e-6)


def test_char_rnn_has_leafs_layers_and_shapes() -> None:
    model = models.char_rnn()
    names = fedmodel.get_weights(model).names
    assert names[0] == "embedding.weight" and names[-2:] == ("head.weight", "head.bias")
    assert sum("lstm" in n for n in names) == 8  # 2 layers x (w_ih, w_hh, b_ih, b_hh)
    assert tuple(model.module.embedding.weight.shape) == (80, 8)
    assert tuple(model.module.lstm.weight_hh_l1.shape) == (4 * 256, 256)
    x, _ = shakespeare_like(2, np.random.default_rng(0))
    assert tuple(model.predict_on_batch(x).shape) == (2, 80)
    x_spec, _ = model.input_spec
    assert (x_spec.shape, x_spec.dtype, x_spec.minimum, x_spec.maximum) == ((None, 80), "int64", 0, 79)
    with pytest.raises(fedmodel.SpecError, match="x"):
        model.predict_on_batch(np.full((1, 80), 80, np.int64))


def test_cnn32_takes_channels_last_colour_images() -> None:
    model = models.cnn32()
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    assert shapes == [(32, 3, 3, 3), (32,), (64, 32, 3, 3), (64,), (512, 8 * 8 * 64), (512,), (100, 512), (100,)]
    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    assert tuple(model.predict_on_batch(x).shape) == (3, 100)
    x_spec, y_spec = model.input_spec
    assert (x_spec.shape, x_spec.dtype) == ((None, 32, 32, 3), "float32")
    assert (y_spec.dtype, y_spec.minimum, y_spec.maximum) == ("int64", 0, 99)
    with pytest.raises(fedmodel.SpecError, match="x"):
        model.predict_on_batch(x.transpose(0, 3, 1, 2))  # channels first is not the spec


def test_word_rnn_has_leafs_sent140_sizes() -> None:
    model = models.word_rnn()
    names = fedmodel.get_weights(model).names
    assert names[0] == "embedding.weight" and names[-2:] == ("head.weight", "head.bias")
    assert sum("lstm" in n for n in names) == 8  # 2 layers x (w_ih, w_hh, b_ih, b_hh)
    assert tuple(model.module.embedding.weight.shape) == (10_001, 100)
    assert tuple(model.module.lstm.weight_hh_l1.shape) == (4 * 100, 100)
    assert tuple(model.module.head.weight.shape) == (2, 100)
    x_spec, y_spec = model.input_spec
    assert (x_spec.shape, x_spec.dtype, x_spec.minimum, x_spec.maximum) == ((None, 25), "int64", 0, 10_000)
    assert (y_spec.minimum, y_spec.maximum) == (0, 1)
    x = np.random.default_rng(0).integers(0, 10_001, (2, 25))
    assert tuple(model.predict_on_batch(x).shape) == (2, 2)
    same = models.word_rnn(vocab_size=30, hidden=8, embedding=4, seed=3)
    again = models.word_rnn(vocab_size=30, hidden=8, embedding=4, seed=3)
    for a, b in zip(fedmodel.get_weights(same).arrays, fedmodel.get_weights(again).arrays, strict=True):
        np.testing.assert_array_equal(a, b)  # torch's own initialization, seeded


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_a_few_train_steps_lower_the_loss_on_a_tiny_batch(kind: str) -> None:
    make_model, make_batch = SMALL[kind]
    model = make_model()
    batch = make_batch(8, np.random.default_rng(4))
    backend = fedmodel.backend_for(model)
    optimizer = backend.make_optimizer(model, fedmodel.Adam(0.01))
    before = float(model.forward_pass(batch, training=False).loss)
    for _ in range(10):
        backend.train_step(model, batch, optimizer)
    after = float(model.forward_pass(batch, training=False).loss)
    assert after < 0.9 * before
