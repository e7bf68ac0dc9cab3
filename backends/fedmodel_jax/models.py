"""Built-in models, the same across backends: ``mlp``, ``frozen_mlp`` (plain JAX), ``bn_mlp``, ``cnn_bn``,
``cnn28``, ``cnn32``, ``char_rnn``, ``word_rnn``, ``char_rnn_seq`` and ``word_rnn_seq`` (Flax).

Plain-JAX params are a tuple of :class:`Dense` layers, so trainable variables come layer by layer,
kernel ``(in, out)`` then bias: ``params/0/kernel``, ``params/0/bias``, ``params/1/kernel``...
Outputs are logits, the loss is the mean sparse softmax cross-entropy, the metrics ``STANDARD_METRICS``.
The next-token models ``char_rnn_seq`` and ``word_rnn_seq`` instead output logits at every step, are trained
on :func:`sequence_cross_entropy` (the mean over non-padding tokens) and report :func:`token_accuracy` in
place of ``accuracy``.
Every model whose variables all have canonical names (all but the LSTM models) starts from
:func:`fedmodel.backend_kit.initialize`'s weights: the same seed gives the same canonical weights in every
backend.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fedmodel.backend_kit import Metric, TensorSpec, classification_spec, initialize
from fedmodel.metrics import ratio
from fedmodel_jax.model import JaxModel, from_flax, from_functions

__all__ = [
    "Dense",
    "bn_mlp",
    "char_rnn",
    "char_rnn_seq",
    "cnn28",
    "cnn32",
    "cnn_bn",
    "cross_entropy",
    "frozen_mlp",
    "mlp",
    "mlp_apply",
    "sequence_cross_entropy",
    "token_accuracy",
    "word_rnn",
    "word_rnn_seq",
]


class Dense(NamedTuple):
    """One dense layer's params: ``kernel`` ``(in, out)`` then ``bias`` ``(out,)``."""

    kernel: jax.Array
    bias: jax.Array


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean sparse softmax cross-entropy of integer labels."""
    loss: jax.Array = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss


def sequence_cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """The softmax cross-entropy of a batch of sequences summed over its non-padding tokens and divided by
    ``batch * length``.

    ``logits`` ``(batch, length, classes)``, ``y`` int ids ``(batch, length)``, 0 the padding. With ``ce[b, t]``
    the cross-entropy of ``logits[b, t]`` against ``y[b, t]`` and ``mask = y != 0``, the loss is
    ``mean(ce * mask)``.

    That is Keras's ``SparseCategoricalCrossentropy`` with the padding mask as ``sample_weight`` (its
    ``sum_over_batch_size`` reduction), as TFF's next-token baselines train, and a mean over examples (each
    sequence's summed token loss over ``length``), as the model contract requires of a loss: a mean over the
    batch's non-padding tokens would not be one. 0 for a batch of padding alone.

    >>> round(float(sequence_cross_entropy(jnp.array([[[0.0, 0.0], [5.0, 0.0]]]), jnp.array([[1, 0]]))), 6)  # ln 2 / 2
    0.346574
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    loss: jax.Array = jnp.mean(ce * (y != 0).astype(ce.dtype))
    return loss


def _token_accuracy_init() -> tuple[jax.Array, jax.Array]:
    return jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)


def _token_accuracy_update(
    state: tuple[Any, ...], y_true: Any, y_pred: Any, sample_weight: Any = None
) -> tuple[jax.Array, jax.Array]:
    tokens = y_true != 0
    hits = tokens & (jnp.argmax(y_pred, axis=-1) == y_true)
    correct = jnp.sum(hits, axis=-1, dtype=jnp.float32)  # per sequence
    counted = jnp.sum(tokens, axis=-1, dtype=jnp.float32)
    if sample_weight is not None:  # one weight per sequence
        weight = jnp.broadcast_to(jnp.asarray(sample_weight, jnp.float32).reshape(-1), correct.shape)
        correct, counted = correct * weight, counted * weight
    total, count = state
    return total + jnp.sum(correct), count + jnp.sum(counted)


def token_accuracy() -> Metric:
    """The ``"token_accuracy"`` metric of the next-token models: state ``(Σ correct tokens, Σ tokens)`` over the
    non-padding tokens (``y_true != 0``), finalized by :func:`fedmodel.metrics.ratio`.

    The sums are ``float32``, as :func:`fedmodel_jax.metrics.mean_metric`'s (JAX has no float64 while x64 is
    off): exact counts up to 2**24 tokens per client. A token is correct when the argmax of its logits is its
    label. ``update(state, y_true, y_pred, sample_weight=None)``: ``sample_weight`` holds one weight per
    sequence, multiplying that sequence's correct and token counts. Every call returns an equal metric (equal
    models share compiled code).

    >>> m = token_accuracy()
    >>> logits = jnp.array([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> [float(s) for s in m.update(m.init(), jnp.array([[1, 1, 0]]), logits)]
    [1.0, 2.0]
    """
    return Metric("token_accuracy", _token_accuracy_init, _token_accuracy_update, ratio)


def mlp_apply(params: Sequence[Dense], state: Any, x: jax.Array, training: bool, rng: jax.Array) -> tuple[Any, Any]:
    """Logits of a ReLU MLP; stateless and deterministic (``training`` and ``rng`` unused)."""
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer.kernel + layer.bias)
    last = params[-1]
    return x @ last.kernel + last.bias, state


def _mlp_init(sizes: Sequence[int]) -> Any:
    """Zero layers of the given sizes (the shapes; :func:`initialize` writes the values)."""

    def init(rng: jax.Array, x: Any) -> tuple[Dense, ...]:
        return tuple(
            Dense(jnp.zeros((n_in, n_out), jnp.float32), jnp.zeros((n_out,), jnp.float32))
            for n_in, n_out in itertools.pairwise(sizes)
        )

    return init


def _initialized(model: JaxModel, seed: int) -> JaxModel:
    initialize(model, seed)
    return model


def mlp(num_features: int = 64, hidden: Sequence[int] = (32,), num_classes: int = 10, seed: int = 0) -> JaxModel:
    """A ReLU MLP (canonical initial weights: Glorot-uniform kernels, zero biases); ``hidden=()`` is softmax
    regression.

    >>> [v.name for v in mlp(num_features=4, hidden=(3,), num_classes=2).trainable_variables]
    ['params/0/kernel', 'params/0/bias', 'params/1/kernel', 'params/1/bias']
    """
    sizes = [num_features, *hidden, num_classes]
    spec = classification_spec(num_features, num_classes)
    return _initialized(from_functions(_mlp_init(sizes), mlp_apply, cross_entropy, spec, seed=seed), seed)


def frozen_mlp(num_features: int = 64, hidden: Sequence[int] = (32,), num_classes: int = 10, seed: int = 0) -> JaxModel:
    """:func:`mlp` with its first layer frozen (a pre-trained feature extractor): non-trainable, still sent.

    ``params/0/kernel`` and ``params/0/bias`` are the non-trainable variables; training never moves them.
    """
    if not hidden:
        raise ValueError("frozen_mlp needs at least one hidden layer (the frozen one)")
    sizes = [num_features, *hidden, num_classes]
    spec = classification_spec(num_features, num_classes)
    model = from_functions(_mlp_init(sizes), mlp_apply, cross_entropy, spec, frozen="params/0", seed=seed)
    return _initialized(model, seed)


def bn_mlp(
    num_features: int = 64, hidden: int = 32, num_classes: int = 10, dropout: float = 0.25, seed: int = 0
) -> JaxModel:
    """A Flax MLP ``Dense -> BatchNorm -> ReLU -> Dropout -> Dense`` (canonical initial weights).

    The batch statistics (``batch_stats/BatchNorm_0/mean``, ``.../var``) are non-trainable state
    that training updates; dropout makes training outputs random (reproducible from ``seed``).
    """
    module = _bn_mlp_class()(hidden=hidden, num_classes=num_classes, dropout=dropout)
    return _initialized(
        from_flax(module, cross_entropy, classification_spec(num_features, num_classes), seed=seed), seed
    )


def cnn_bn(
    num_features: int = 64,
    num_classes: int = 10,
    channels: tuple[int, int] = (8, 16),
    dropout: float = 0.25,
    seed: int = 0,
) -> JaxModel:
    """A small Flax CNN with BatchNorm and Dropout over square grey images given flat, ``x: (None, side * side)``.

    Two blocks ``Conv 3x3 (no bias) -> BatchNorm -> ReLU`` (max-pooling 2x2 after the first), global mean
    pooling, Dropout, Dense: the same architecture and canonical initial weights as the other backends'
    ``cnn_bn``. Non-trainable variables are the batch statistics ``batch_stats/BatchNorm_{0,1}/{mean,var}``.
    """
    side = round(num_features**0.5)
    if side * side != num_features:
        raise ValueError(f"num_features must be a square (side * side), got {num_features}")
    module = _cnn_bn_class()(side=side, channels=tuple(channels), num_classes=num_classes, dropout=dropout)
    return _initialized(
        from_flax(module, cross_entropy, classification_spec(num_features, num_classes), seed=seed), seed
    )


def cnn28(num_classes: int = 62, channels: tuple[int, int] = (32, 64), hidden: int = 2048, seed: int = 0) -> JaxModel:
    """LEAF's FEMNIST CNN over 28x28 grey images: ``x (None, 28, 28)`` float32 in [0, 1], ``y (None,)`` int64 in
    ``[0, num_classes)``.

    ``Conv 5x5 same -> ReLU -> MaxPool 2`` twice (the channel axis is added inside), flatten (height, width,
    channel order, as Flax and Keras flatten), ``Dense hidden -> ReLU``, ``Dense num_classes``; canonical
    initial weights.

    >>> [v.shape for v in cnn28(channels=(2, 3), hidden=4).trainable_variables if v.name.endswith("kernel")]
    [(5, 5, 1, 2), (5, 5, 2, 3), (147, 4), (4, 62)]
    """
    module = _two_block_cnn_class()(kernel=5, channels=tuple(channels), hidden=hidden, num_classes=num_classes)
    spec = (
        TensorSpec((None, 28, 28), "float32", "x"),  # pixels in [0, 1] by convention, unbounded as all features
        TensorSpec((None,), "int64", "y", minimum=0, maximum=num_classes - 1),
    )
    return _initialized(from_flax(module, cross_entropy, spec, seed=seed), seed)


def cnn32(num_classes: int = 100, channels: tuple[int, int] = (32, 64), hidden: int = 512, seed: int = 0) -> JaxModel:
    """A small CIFAR CNN over 32x32 colour images: ``x (None, 32, 32, 3)`` float32 in [0, 1] (channels last, as
    TFF's CIFAR-100 serves them), ``y (None,)`` int64 in ``[0, num_classes)``.

    ``Conv 3x3 same -> ReLU -> MaxPool 2`` twice, flatten (height, width, channel order, as Flax and Keras
    flatten), ``Dense hidden -> ReLU``, ``Dense num_classes``; canonical initial weights. The layer plan of the
    CNN in McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data" (FedAvg,
    2017: convolutions of 32 and 64 channels, each followed by 2x2 max-pooling, a 512-unit ReLU layer, the
    output layer) with 3x3 kernels over colour images; neither that paper's CIFAR-10 model nor the ResNet-18
    of Adaptive Federated Optimization (Reddi et al., 2021).

    >>> [v.shape for v in cnn32(channels=(2, 3), hidden=4).trainable_variables if v.name.endswith("kernel")]
    [(3, 3, 3, 2), (3, 3, 2, 3), (192, 4), (4, 100)]
    """
    module = _two_block_cnn_class()(kernel=3, channels=tuple(channels), hidden=hidden, num_classes=num_classes)
    spec = (
        TensorSpec((None, 32, 32, 3), "float32", "x"),  # pixels in [0, 1] by convention, unbounded as all features
        TensorSpec((None,), "int64", "y", minimum=0, maximum=num_classes - 1),
    )
    return _initialized(from_flax(module, cross_entropy, spec, seed=seed), seed)


def _lstm_stack(
    name: str,
    length: int,
    vocab_size: int,
    num_classes: int,
    embedding: int,
    hidden: int,
    layers: int,
    seed: int,
    *,
    per_step: bool = False,
    projection: int | None = None,
) -> JaxModel:
    """``Embed -> layers x LSTM [-> Dense(projection)] -> Dense`` over ``x (None, length)`` ids, Flax's seeded init.

    ``per_step=False``: the logits of the last step, labels ``(None,)``, the mean cross-entropy and the standard
    accuracy (``char_rnn``, ``word_rnn``). ``per_step=True``: logits at every step, labels ``(None, length)``,
    :func:`sequence_cross_entropy` and :func:`token_accuracy` (``char_rnn_seq``, ``word_rnn_seq``).
    """
    if layers < 1:
        raise ValueError(f"{name} needs at least one LSTM layer, got layers={layers}")
    module = _lstm_stack_class()(
        vocab_size=vocab_size,
        num_classes=num_classes,
        embedding=embedding,
        hidden=hidden,
        layers=layers,
        per_step=per_step,
        projection=projection,
    )
    x = TensorSpec((None, length), "int64", "x", minimum=0, maximum=vocab_size - 1)
    if not per_step:
        y = TensorSpec((None,), "int64", "y", minimum=0, maximum=num_classes - 1)
        return from_flax(module, cross_entropy, (x, y), seed=seed)
    y = TensorSpec((None, length), "int64", "y", minimum=0, maximum=num_classes - 1)
    return from_flax(module, sequence_cross_entropy, (x, y), metrics=[token_accuracy()], accuracy=False, seed=seed)


def char_rnn(
    vocab_size: int = 80, num_classes: int = 80, embedding: int = 8, hidden: int = 256, layers: int = 2, seed: int = 0
) -> JaxModel:
    """LEAF's Shakespeare next-character model: ``x (None, 80)`` int64 ids in ``[0, vocab_size)``, ``y (None,)``
    int64 next character in ``[0, num_classes)``.

    ``Embed -> layers x LSTM (flax OptimizedLSTMCell) -> Dense`` on the last step. The LSTM gates have no
    canonical names (the canonical layout has no recurrent entries: they keep their Flax names, e.g.
    ``params/OptimizedLSTMCell_0/hi/kernel``), so this model keeps Flax's native initialization, seeded.
    """
    return _lstm_stack("char_rnn", 80, vocab_size, num_classes, embedding, hidden, layers, seed)


def word_rnn(
    vocab_size: int = 10_001,
    num_classes: int = 2,
    embedding: int = 100,
    hidden: int = 100,
    layers: int = 2,
    seed: int = 0,
) -> JaxModel:
    """LEAF's Sent140 stacked LSTM: ``x (None, 25)`` int64 word ids in ``[0, vocab_size)`` (the first 25 words,
    padded with the unknown-word id), ``y (None,)`` int64 sentiment in ``[0, num_classes)``.

    ``Embed -> layers x LSTM (flax OptimizedLSTMCell) -> Dense`` on the last step, at LEAF's sizes
    (``models/sent140/stacked_lstm.py`` with ``baseline_constants.py``): a 100-wide trainable embedding, two
    LSTM layers of 100 units, 2 classes. LEAF puts a 128-unit dense layer without activation before the
    logits; two linear maps in a row compute the same functions as one, so this model has one. ``vocab_size``
    10,001 is :func:`fedmodel.data.load_federated`'s default Sent140 vocabulary (10,000 words) plus the
    unknown-word id; ``fedmodel train`` passes the data's own. Keeps Flax's native initialization, seeded, as
    :func:`char_rnn` does (the LSTM gates have no canonical names).
    """
    return _lstm_stack("word_rnn", 25, vocab_size, num_classes, embedding, hidden, layers, seed)


def char_rnn_seq(
    vocab_size: int = 90,
    num_classes: int = 90,
    embedding: int = 8,
    hidden: int = 256,
    layers: int = 2,
    seed: int = 0,
    *,
    length: int = 80,
) -> JaxModel:
    """TensorFlow Federated's Shakespeare next-character model, predicting at every step: ``x (None, length)``
    (80) int64 character ids in ``[0, vocab_size)``, ``y`` the same shape, ``x`` shifted by one; id 0 pads both
    at the end of a window.

    ``Embed -> layers x LSTM (flax OptimizedLSTMCell, every step) -> Dense`` at every step: logits ``(None, 80,
    num_classes)``. The sizes are TFF's simulation baseline (``simulation/baselines/shakespeare/
    char_prediction_models.py``) as in Reddi et al., "Adaptive Federated Optimization" (2021): an 8-wide
    embedding, two LSTM layers of 256 units, 80-character windows; ``vocab_size`` 90 is TFF's 86 characters plus
    4 special ids (padding, out-of-vocabulary, beginning and end). Trained on :func:`sequence_cross_entropy`;
    reports :func:`token_accuracy` and no ``accuracy`` (an example is a sequence). TFF's embedding masks id 0;
    here padding only follows the text, so the outputs at non-padding steps are the same without a mask, and
    the loss ignores the rest. Keeps Flax's native initialization, seeded, as :func:`char_rnn` does.
    """
    return _lstm_stack("char_rnn_seq", length, vocab_size, num_classes, embedding, hidden, layers, seed, per_step=True)


def word_rnn_seq(
    vocab_size: int = 10_004,
    num_classes: int = 10_004,
    embedding: int = 96,
    hidden: int = 670,
    layers: int = 1,
    projection: int | None = 96,
    seed: int = 0,
    *,
    length: int = 20,
) -> JaxModel:
    """TensorFlow Federated's StackOverflow next-word model: ``x (None, length)`` (20) int64 word ids in ``[0,
    vocab_size)``, ``y (None, 20)`` int64, ``x`` shifted by one; id 0 pads both at the end of a window.

    ``Embed -> layers x LSTM (flax OptimizedLSTMCell, every step) -> Dense(projection)`` (no activation, named
    ``Dense_0``) ``-> Dense(num_classes)`` at every step: logits ``(None, 20, num_classes)``;
    ``projection=None`` drops the projection layer. The sizes are TFF's simulation baseline
    (``simulation/baselines/stackoverflow/word_prediction_models.py``) as in Reddi et al., "Adaptive Federated
    Optimization" (2021): a 96-wide embedding, one LSTM layer of 670 units, a 96-wide projection, 20-word
    windows; ``vocab_size`` 10,004 is the 10,000 most frequent words plus 4 special ids (padding,
    out-of-vocabulary, beginning and end). Trained on :func:`sequence_cross_entropy`; reports
    :func:`token_accuracy` and no ``accuracy``. Keeps Flax's native initialization, seeded.
    """
    return _lstm_stack(
        "word_rnn_seq",
        length,
        vocab_size,
        num_classes,
        embedding,
        hidden,
        layers,
        seed,
        per_step=True,
        projection=projection,
    )


@functools.cache
def _cnn_bn_class() -> Any:
    """The linen module class of :func:`cnn_bn`, defined once (equal modules share compiled code)."""
    import flax.linen as nn

    class SmallCNN(nn.Module):
        side: int
        channels: tuple[int, int]
        num_classes: int
        dropout: float

        @nn.compact
        def __call__(self, x: jax.Array, training: bool) -> jax.Array:
            h = x.reshape(-1, self.side, self.side, 1)
            for i, width in enumerate(self.channels):
                h = nn.Conv(width, (3, 3), padding="SAME", use_bias=False)(h)
                h = nn.relu(nn.BatchNorm(use_running_average=not training, momentum=0.9)(h))
                if i == 0:
                    h = nn.max_pool(h, (2, 2), strides=(2, 2))  # type: ignore[no-untyped-call]
            h = nn.Dropout(self.dropout, deterministic=not training)(h.mean(axis=(1, 2)))
            return nn.Dense(self.num_classes)(h)

    return SmallCNN


@functools.cache
def _bn_mlp_class() -> Any:
    """The linen module class of :func:`bn_mlp`, defined once (equal modules share compiled code)."""
    import flax.linen as nn

    class BNMLP(nn.Module):
        hidden: int
        num_classes: int
        dropout: float

        @nn.compact
        def __call__(self, x: jax.Array, training: bool) -> jax.Array:
            x = nn.Dense(self.hidden)(x)
            x = nn.BatchNorm(use_running_average=not training, momentum=0.9)(x)
            x = nn.Dropout(self.dropout, deterministic=not training)(nn.relu(x))
            return nn.Dense(self.num_classes)(x)

    return BNMLP


@functools.cache
def _two_block_cnn_class() -> Any:
    """The linen module class of :func:`cnn28` (5x5 over gray images ``(batch, 28, 28)``) and :func:`cnn32` (3x3
    over colour images ``(batch, 32, 32, 3)``), defined once (equal modules share compiled code)."""
    import flax.linen as nn

    class TwoBlockCNN(nn.Module):
        kernel: int
        channels: tuple[int, int]
        hidden: int
        num_classes: int

        @nn.compact
        def __call__(self, x: jax.Array, training: bool) -> jax.Array:
            h = x[..., None] if x.ndim == 3 else x  # gray images get their channel axis
            for width in self.channels:
                h = nn.relu(nn.Conv(width, (self.kernel, self.kernel), padding="SAME")(h))
                h = nn.max_pool(h, (2, 2), strides=(2, 2))  # type: ignore[no-untyped-call]
            h = nn.relu(nn.Dense(self.hidden)(h.reshape(h.shape[0], -1)))
            return nn.Dense(self.num_classes)(h)

    return TwoBlockCNN


@functools.cache
def _lstm_stack_class() -> Any:
    """The linen module class of :func:`char_rnn`, :func:`word_rnn` (last step) and :func:`char_rnn_seq`,
    :func:`word_rnn_seq` (every step), defined once (equal modules share compiled code)."""
    import flax.linen as nn

    class LSTMStack(nn.Module):
        vocab_size: int
        num_classes: int
        embedding: int
        hidden: int
        layers: int
        per_step: bool = False  # logits at every step, else at the last one
        projection: int | None = None  # a Dense of this width without activation before the logits

        @nn.compact
        def __call__(self, x: jax.Array, training: bool) -> jax.Array:
            h = nn.Embed(self.vocab_size, self.embedding)(x)
            for _ in range(self.layers):
                h = nn.RNN(nn.OptimizedLSTMCell(self.hidden))(h)
            if not self.per_step:
                h = h[:, -1]
            if self.projection is not None:
                h = nn.Dense(self.projection)(h)
            return nn.Dense(self.num_classes)(h)

    return LSTMStack
