"""Built-in Keras models with the shared conventions of every fedmodel backend.

Each takes flat float32 features ``x: (None, num_features)`` and int64 labels ``y: (None,)``, outputs
logits, is trained on the mean sparse softmax cross-entropy and reports the standard metrics
(``loss``, ``accuracy``, ``num_examples``). Trainable variables are ordered layer by layer, kernel
``(in, out)`` then bias. Weights are seeded: one ``seed`` gives the same initial weights every time.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedmodel._specs import classification_spec
from fedmodel_tensorflow._compat import keras
from fedmodel_tensorflow.model import KerasModel, from_keras_model

__all__ = ["cnn_bn", "frozen_mlp", "mlp"]


def _loss() -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _dense(units: int, seed: int, activation: str | None = None, name: str | None = None) -> keras.layers.Dense:
    return keras.layers.Dense(
        units, activation=activation, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name=name
    )


def _mlp_layers(num_features: int, hidden: Sequence[int], num_classes: int, seed: int) -> list[keras.layers.Layer]:
    layers: list[keras.layers.Layer] = [keras.Input((num_features,), dtype="float32")]
    for i, units in enumerate(hidden):
        layers.append(_dense(units, seed + i, "relu", name=f"dense_{i}" if i else "dense"))
    layers.append(_dense(num_classes, seed + len(hidden), name=f"dense_{len(hidden)}" if hidden else "dense"))
    return layers


def mlp(
    num_features: int = 64,
    hidden: Sequence[int] = (32,),
    num_classes: int = 10,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
) -> KerasModel:
    """A ReLU multilayer perceptron: ``Dense(h) -> ReLU`` per hidden width, then ``Dense(num_classes)``."""
    keras_model = keras.Sequential(_mlp_layers(num_features, hidden, num_classes, seed))
    return from_keras_model(
        keras_model, _loss(), classification_spec(num_features, num_classes), run_eagerly=run_eagerly
    )


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
    layers = _mlp_layers(num_features, hidden, num_classes, seed)
    layers[1].trainable = False
    keras_model = keras.Sequential(layers)
    return from_keras_model(
        keras_model, _loss(), classification_spec(num_features, num_classes), run_eagerly=run_eagerly
    )


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
    ``Conv2D(c1, 3) -> BN -> ReLU -> MaxPool(2) -> Conv2D(c2, 3) -> BN -> ReLU -> global mean -> Dropout ->
    Dense(num_classes)`` (the layout of the other backends' ``cnn_bn``). BatchNormalization's moving
    statistics are non-trainable variables that change in training mode; dropout makes training-mode
    outputs random.
    """
    side = round(num_features**0.5)
    if side * side != num_features:
        raise ValueError(f"num_features must be a square (side * side), got {num_features}")
    first, second = channels
    layers: list[keras.layers.Layer] = [
        keras.Input((num_features,), dtype="float32"),
        keras.layers.Reshape((side, side, 1)),
    ]
    for i, width in enumerate((first, second)):
        init = keras.initializers.GlorotUniform(seed=seed + i)
        layers += [keras.layers.Conv2D(width, 3, padding="same", kernel_initializer=init)]
        layers += [keras.layers.BatchNormalization(), keras.layers.ReLU()]
        if i == 0:
            layers.append(keras.layers.MaxPooling2D(2))
    layers += [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(dropout, seed=seed),
        _dense(num_classes, seed + 2),
    ]
    return from_keras_model(
        keras.Sequential(layers), _loss(), classification_spec(num_features, num_classes), run_eagerly=run_eagerly
    )
