"""Built-in Keras models with the shared conventions of every fedmodel backend.

Each outputs logits, is trained on the mean sparse softmax cross-entropy and reports the standard
metrics (``loss``, ``accuracy``, ``num_examples``); labels are int64 of spec ``[0, num_classes - 1]``.
Trainable variables are ordered layer by layer, kernel ``(in, out)`` then bias. The models whose weights
all have canonical names (``mlp``, ``frozen_mlp``, ``cnn_bn``, ``cnn28``, ``cnn32``) start from
:func:`fedmodel.backend_kit.initialize`'s canonical weights: one ``seed`` gives the same weights here as
in the torch and JAX backends. ``char_rnn`` and ``word_rnn`` keep Keras's seeded native initializers.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedmodel.backend_kit import TensorSpec, classification_spec, initialize
from fedmodel_tensorflow._compat import keras
from fedmodel_tensorflow.model import KerasModel, from_keras_model

__all__ = ["char_rnn", "cnn28", "cnn32", "cnn_bn", "frozen_mlp", "mlp", "word_rnn"]


def _loss() -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _labels(num_classes: int) -> TensorSpec:
    return classification_spec(1, num_classes)[1]


def _initialized(
    layers: list[keras.layers.Layer], input_spec: tuple[TensorSpec, TensorSpec], seed: int, run_eagerly: bool
) -> KerasModel:
    model = from_keras_model(keras.Sequential(layers), _loss(), input_spec, run_eagerly=run_eagerly)
    initialize(model, seed)
    return model


def _mlp_layers(num_features: int, hidden: Sequence[int], num_classes: int) -> list[keras.layers.Layer]:
    layers: list[keras.layers.Layer] = [keras.Input((num_features,), dtype="float32")]
    layers += [keras.layers.Dense(units, activation="relu") for units in hidden]
    layers.append(keras.layers.Dense(num_classes))
    return layers


def mlp(
    num_features: int = 64,
    hidden: Sequence[int] = (32,),
    num_classes: int = 10,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
) -> KerasModel:
    """A ReLU multilayer perceptron over ``x: (None, num_features)`` float32: ``Dense(h) -> ReLU`` per hidden
    width, then ``Dense(num_classes)``."""
    layers = _mlp_layers(num_features, hidden, num_classes)
    return _initialized(layers, classification_spec(num_features, num_classes), seed, run_eagerly)


def frozen_mlp(
    num_features: int = 64,
    hidden: Sequence[int] = (32,),
    num_classes: int = 10,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
) -> KerasModel:
    """:func:`mlp` with its first layer frozen: that layer's kernel and bias are non-trainable weights."""
    if not hidden:
        raise ValueError("frozen_mlp needs at least one hidden layer (the frozen one)")
    layers = _mlp_layers(num_features, hidden, num_classes)
    layers[1].trainable = False
    return _initialized(layers, classification_spec(num_features, num_classes), seed, run_eagerly)


def cnn_bn(
    num_features: int = 64,
    num_classes: int = 10,
    channels: tuple[int, int] = (8, 16),
    dropout: float = 0.25,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
) -> KerasModel:
    """A small CNN with BatchNorm and Dropout over square grey images given flat, ``x: (None, side * side)``.

    The 8x8 digits of scikit-learn are ``num_features=64``; the image is reshaped inside the model:
    ``Conv2D(c1, 3, no bias) -> BN -> ReLU -> MaxPool(2) -> Conv2D(c2, 3, no bias) -> BN -> ReLU -> global
    mean -> Dropout -> Dense(num_classes)`` (the layout of the other backends' ``cnn_bn``; batch norm's
    offset makes a convolution bias redundant). BatchNormalization's moving statistics are non-trainable
    variables that change in training mode; dropout makes training-mode outputs random.
    """
    side = round(num_features**0.5)
    if side * side != num_features:
        raise ValueError(f"num_features must be a square (side * side), got {num_features}")
    layers: list[keras.layers.Layer] = [
        keras.Input((num_features,), dtype="float32"),
        keras.layers.Reshape((side, side, 1)),
    ]
    for i, width in enumerate(channels):
        layers += [keras.layers.Conv2D(width, 3, padding="same", use_bias=False)]
        layers += [keras.layers.BatchNormalization(), keras.layers.ReLU()]
        if i == 0:
            layers.append(keras.layers.MaxPooling2D(2))
    layers += [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(dropout, seed=seed),
        keras.layers.Dense(num_classes),
    ]
    return _initialized(layers, classification_spec(num_features, num_classes), seed, run_eagerly)


def cnn28(
    num_classes: int = 62,
    channels: tuple[int, int] = (32, 64),
    hidden: int = 2048,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
) -> KerasModel:
    """LEAF's FEMNIST CNN over 28x28 grey images ``x: (None, 28, 28)`` float32 in [0, 1], labels
    ``y: (None,)`` int64 in ``[0, num_classes)``.

    ``Conv2D(c1, 5, same) -> ReLU -> MaxPool(2) -> Conv2D(c2, 5, same) -> ReLU -> MaxPool(2) -> flatten ->
    Dense(hidden) -> ReLU -> Dense(num_classes)``; the channel axis is added inside the model. The flatten
    is channels-last: ``(row, column, channel)`` order, the rows of ``dense_0/kernel``.
    """
    first, second = channels
    layers: list[keras.layers.Layer] = [
        keras.Input((28, 28), dtype="float32"),
        keras.layers.Reshape((28, 28, 1)),
        keras.layers.Conv2D(first, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(second, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(num_classes),
    ]
    spec = (TensorSpec((None, 28, 28), "float32", "x"), _labels(num_classes))
    return _initialized(layers, spec, seed, run_eagerly)


def cnn32(
    num_classes: int = 100,
    channels: tuple[int, int] = (32, 64),
    hidden: int = 512,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
) -> KerasModel:
    """A small CIFAR CNN over 32x32 colour images ``x: (None, 32, 32, 3)`` float32 in [0, 1] (channels last, as
    TFF's CIFAR-100 serves them), labels ``y: (None,)`` int64 in ``[0, num_classes)``.

    ``Conv2D(c1, 3, same) -> ReLU -> MaxPool(2) -> Conv2D(c2, 3, same) -> ReLU -> MaxPool(2) -> flatten ->
    Dense(hidden) -> ReLU -> Dense(num_classes)``: the layer plan of the CNN in McMahan et al.,
    "Communication-Efficient Learning of Deep Networks from Decentralized Data" (FedAvg, 2017: convolutions of
    32 and 64 channels, each followed by 2x2 max-pooling, a 512-unit ReLU layer, the output layer) with 3x3
    kernels over colour images; neither that paper's CIFAR-10 model nor the ResNet-18 of Adaptive Federated
    Optimization (Reddi et al., 2021). The flatten is channels-last: ``(row, column, channel)`` order, the rows
    of ``dense_0/kernel``.
    """
    first, second = channels
    layers: list[keras.layers.Layer] = [
        keras.Input((32, 32, 3), dtype="float32"),
        keras.layers.Conv2D(first, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(second, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(num_classes),
    ]
    spec = (TensorSpec((None, 32, 32, 3), "float32", "x"), _labels(num_classes))
    return _initialized(layers, spec, seed, run_eagerly)


def _last_step_lstm(
    name: str,
    length: int,
    vocab_size: int,
    num_classes: int,
    embedding: int,
    hidden: int,
    layers: int,
    seed: int,
    run_eagerly: bool,
) -> KerasModel:
    """``Embedding -> LSTM x layers -> Dense`` on the last step over ``x: (None, length)`` ids, with Keras's
    native initializers seeded from ``seed`` (LEAF's ``char_rnn`` and ``word_rnn``)."""
    if layers < 1:
        raise ValueError(f"{name} needs at least one LSTM layer, got layers={layers}")
    stack: list[keras.layers.Layer] = [
        keras.Input((length,), dtype="int64"),
        keras.layers.Embedding(
            vocab_size, embedding, embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=seed)
        ),
    ]
    for i in range(layers):
        stack.append(
            keras.layers.LSTM(
                hidden,
                return_sequences=i < layers - 1,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2 * i + 1),
                recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 2 * i + 2),
            )
        )
    stack.append(
        keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2 * layers + 1))
    )
    x = TensorSpec((None, length), "int64", "x", minimum=0, maximum=vocab_size - 1)
    return from_keras_model(keras.Sequential(stack), _loss(), (x, _labels(num_classes)), run_eagerly=run_eagerly)


def char_rnn(
    vocab_size: int = 80,
    num_classes: int = 80,
    embedding: int = 8,
    hidden: int = 256,
    layers: int = 2,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
) -> KerasModel:
    """LEAF's Shakespeare next-character model: ``x: (None, 80)`` int64 character ids in ``[0, vocab_size)``,
    ``y: (None,)`` int64, the next character.

    ``Embedding(vocab_size, embedding) -> LSTM(hidden)`` x ``layers`` ``-> Dense(num_classes)`` on the last
    step. The canonical layout has no embedding or LSTM entries, so this model keeps Keras's native
    initializers, seeded from ``seed`` (the same weights for one seed in this backend only).
    """
    return _last_step_lstm("char_rnn", 80, vocab_size, num_classes, embedding, hidden, layers, seed, run_eagerly)


def word_rnn(
    vocab_size: int = 10_001,
    num_classes: int = 2,
    embedding: int = 100,
    hidden: int = 100,
    layers: int = 2,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
) -> KerasModel:
    """LEAF's Sent140 stacked LSTM: ``x: (None, 25)`` int64 word ids in ``[0, vocab_size)`` (the first 25 words,
    padded with the unknown-word id), ``y: (None,)`` int64 sentiment in ``[0, num_classes)``.

    ``Embedding(vocab_size, embedding) -> LSTM(hidden)`` x ``layers`` ``-> Dense(num_classes)`` on the last
    step, at LEAF's sizes (``models/sent140/stacked_lstm.py`` with ``baseline_constants.py``): a 100-wide
    trainable embedding, two LSTM layers of 100 units, 2 classes. LEAF puts a 128-unit dense layer without
    activation before the logits; two linear maps in a row compute the same functions as one, so this model
    has one. ``vocab_size`` 10,001 is :func:`fedmodel.data.load_federated`'s default Sent140 vocabulary
    (10,000 words) plus the unknown-word id; ``fedmodel train`` passes the data's own. Keeps Keras's native
    initializers seeded from ``seed``, as :func:`char_rnn` does.
    """
    return _last_step_lstm("word_rnn", 25, vocab_size, num_classes, embedding, hidden, layers, seed, run_eagerly)
