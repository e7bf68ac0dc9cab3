"""Built-in Keras models with the shared conventions of every fedmodel backend: ``mlp``, ``frozen_mlp``,
``cnn_bn``, ``cnn28``, ``cnn32``, ``char_rnn``, ``word_rnn``, ``char_rnn_seq`` and ``word_rnn_seq``.

Each outputs logits, is trained on the mean sparse softmax cross-entropy and reports the standard
metrics (``loss``, ``accuracy``, ``num_examples``); labels are int64 of spec ``[0, num_classes - 1]``.
The next-token models ``char_rnn_seq`` and ``word_rnn_seq`` instead output logits at every step, are
trained on :func:`sequence_cross_entropy` (the mean over non-padding tokens) and report
:func:`token_accuracy` in place of ``accuracy``.
Trainable variables are ordered layer by layer, kernel ``(in, out)`` then bias. The models whose weights
all have canonical names (``mlp``, ``frozen_mlp``, ``cnn_bn``, ``cnn28``, ``cnn32``) start from
:func:`fedmodel.backend_kit.initialize`'s canonical weights: one ``seed`` gives the same weights here as
in the torch and JAX backends. The LSTM models keep Keras's seeded native initializers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedmodel.backend_kit import Metric, TensorSpec, classification_spec, initialize
from fedmodel.metrics import ratio
from fedmodel_tensorflow._compat import keras, tf
from fedmodel_tensorflow.model import KerasModel, from_keras_model

__all__ = [
    "char_rnn",
    "char_rnn_seq",
    "cnn28",
    "cnn32",
    "cnn_bn",
    "frozen_mlp",
    "mlp",
    "sequence_cross_entropy",
    "token_accuracy",
    "word_rnn",
    "word_rnn_seq",
]


def _loss() -> keras.losses.Loss:
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def sequence_cross_entropy(y_true: Any, y_pred: Any) -> tf.Tensor:
    """The softmax cross-entropy of a batch of sequences summed over its non-padding tokens and divided by
    ``batch * length`` (Keras's argument order).

    ``y_true`` holds int ids ``(batch, length)``, 0 the padding; ``y_pred`` the logits ``(batch, length,
    classes)``. With ``ce[b, t]`` the cross-entropy of ``y_pred[b, t]`` against ``y_true[b, t]`` and ``mask =
    y_true != 0``, the loss is ``mean(ce * mask)``.

    That is Keras's ``SparseCategoricalCrossentropy`` with the padding mask as ``sample_weight`` (its
    ``sum_over_batch_size`` reduction), as TFF's next-token baselines train, and a mean over examples (each
    sequence's summed token loss over ``length``), as the model contract requires of a loss: a mean over the
    batch's non-padding tokens would not be one. 0 for a batch of padding alone.

    >>> round(float(sequence_cross_entropy(tf.constant([[1, 0]]), tf.constant([[[0.0, 0.0], [5.0, 0.0]]]))), 6)
    0.346574
    """
    labels = tf.cast(y_true, tf.int64)
    logits = tf.convert_to_tensor(y_pred)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(ce * tf.cast(tf.not_equal(labels, 0), ce.dtype))


def _token_accuracy_init() -> tuple[tf.Tensor, tf.Tensor]:
    return tf.zeros((), tf.float64), tf.zeros((), tf.float64)


def _token_accuracy_update(
    state: Any, y_true: Any, y_pred: Any, sample_weight: Any = None
) -> tuple[tf.Tensor, tf.Tensor]:
    labels = tf.cast(y_true, tf.int64)
    tokens = tf.not_equal(labels, 0)
    hits = tf.logical_and(tokens, tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int64), labels))
    correct = tf.reduce_sum(tf.cast(hits, tf.float64), axis=-1)  # per sequence
    counted = tf.reduce_sum(tf.cast(tokens, tf.float64), axis=-1)
    if sample_weight is not None:  # one weight per sequence
        weight = tf.broadcast_to(tf.reshape(tf.cast(sample_weight, tf.float64), [-1]), tf.shape(correct))
        correct, counted = correct * weight, counted * weight
    total, count = state
    return total + tf.reduce_sum(correct), count + tf.reduce_sum(counted)


def token_accuracy() -> Metric:
    """The ``"token_accuracy"`` metric of the next-token models: state ``(Σ correct tokens, Σ tokens)`` in
    float64 over the non-padding tokens (``y_true != 0``), finalized by :func:`fedmodel.metrics.ratio`.

    A token is correct when the argmax of its logits is its label. ``update(state, y_true, y_pred,
    sample_weight=None)``: ``sample_weight`` holds one weight per sequence, multiplying that sequence's
    correct and token counts.

    >>> m = token_accuracy()
    >>> logits = tf.constant([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> [float(s) for s in m.update(m.init(), tf.constant([[1, 1, 0]]), logits)]
    [1.0, 2.0]
    """
    return Metric("token_accuracy", _token_accuracy_init, _token_accuracy_update, ratio)


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


def _lstm_stack(
    name: str,
    length: int,
    vocab_size: int,
    num_classes: int,
    embedding: int,
    hidden: int,
    layers: int,
    seed: int,
    run_eagerly: bool,
    *,
    per_step: bool = False,
    projection: int | None = None,
) -> KerasModel:
    """``Embedding -> LSTM x layers [-> Dense(projection)] -> Dense(num_classes)`` over ``x: (None, length)`` ids,
    with Keras's native initializers seeded from ``seed``.

    ``per_step=False``: the logits of the last step, labels ``(None,)``, the mean cross-entropy and the standard
    accuracy (LEAF's ``char_rnn`` and ``word_rnn``). ``per_step=True``: logits at every step, labels
    ``(None, length)``, :func:`sequence_cross_entropy` and :func:`token_accuracy` (``char_rnn_seq``,
    ``word_rnn_seq``).
    """
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
                return_sequences=per_step or i < layers - 1,
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2 * i + 1),
                recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 2 * i + 2),
            )
        )
    dense_seed = seed + 2 * layers + 1
    if projection is not None:
        stack.append(
            keras.layers.Dense(projection, kernel_initializer=keras.initializers.GlorotUniform(seed=dense_seed))
        )
        dense_seed += 1
    stack.append(keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=dense_seed)))
    x = TensorSpec((None, length), "int64", "x", minimum=0, maximum=vocab_size - 1)
    if not per_step:
        return from_keras_model(keras.Sequential(stack), _loss(), (x, _labels(num_classes)), run_eagerly=run_eagerly)
    y = TensorSpec((None, length), "int64", "y", minimum=0, maximum=num_classes - 1)
    return from_keras_model(
        keras.Sequential(stack),
        sequence_cross_entropy,
        (x, y),
        metrics=[token_accuracy()],
        accuracy=False,
        run_eagerly=run_eagerly,
    )


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
    return _lstm_stack("char_rnn", 80, vocab_size, num_classes, embedding, hidden, layers, seed, run_eagerly)


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
    return _lstm_stack("word_rnn", 25, vocab_size, num_classes, embedding, hidden, layers, seed, run_eagerly)


def char_rnn_seq(
    vocab_size: int = 90,
    num_classes: int = 90,
    embedding: int = 8,
    hidden: int = 256,
    layers: int = 2,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
    length: int = 80,
) -> KerasModel:
    """TensorFlow Federated's Shakespeare next-character model, predicting at every step: ``x: (None, length)`` (80)
    int64 character ids in ``[0, vocab_size)``, ``y: (None, 80)`` int64, ``x`` shifted by one; id 0 pads
    both at the end of a window.

    ``Embedding(vocab_size, embedding) -> LSTM(hidden)`` x ``layers`` (every step returned) ``->
    Dense(num_classes)`` at every step: logits ``(None, 80, num_classes)``. The sizes are TFF's simulation
    baseline (``simulation/baselines/shakespeare/char_prediction_models.py``) as in Reddi et al., "Adaptive
    Federated Optimization" (2021): an 8-wide embedding, two LSTM layers of 256 units, 80-character windows;
    ``vocab_size`` 90 is TFF's 86 characters plus 4 special ids (padding, out-of-vocabulary, beginning and
    end). Trained on :func:`sequence_cross_entropy`; reports :func:`token_accuracy` and no ``accuracy``
    (an example is a sequence). TFF's embedding masks id 0; here padding only follows the text, so the
    outputs at non-padding steps are the same without a mask, and the loss ignores the rest. Keeps Keras's
    native initializers seeded from ``seed``, as :func:`char_rnn` does.
    """
    return _lstm_stack(
        "char_rnn_seq", length, vocab_size, num_classes, embedding, hidden, layers, seed, run_eagerly, per_step=True
    )


def word_rnn_seq(
    vocab_size: int = 10_004,
    num_classes: int = 10_004,
    embedding: int = 96,
    hidden: int = 670,
    layers: int = 1,
    projection: int | None = 96,
    seed: int = 0,
    *,
    run_eagerly: bool = False,
    length: int = 20,
) -> KerasModel:
    """TensorFlow Federated's StackOverflow next-word model: ``x: (None, length)`` (20) int64 word ids in ``[0,
    vocab_size)``, ``y: (None, 20)`` int64, ``x`` shifted by one; id 0 pads both at the end of a window.

    ``Embedding(vocab_size, embedding) -> LSTM(hidden)`` x ``layers`` (every step returned) ``->
    Dense(projection)`` (no activation) ``-> Dense(num_classes)`` at every step: logits ``(None, 20,
    num_classes)``; ``projection=None`` drops the projection layer. The sizes are TFF's simulation baseline
    (``simulation/baselines/stackoverflow/word_prediction_models.py``) as in Reddi et al., "Adaptive
    Federated Optimization" (2021): a 96-wide embedding, one LSTM layer of 670 units, a 96-wide projection,
    20-word windows; ``vocab_size`` 10,004 is the 10,000 most frequent words plus 4 special ids (padding,
    out-of-vocabulary, beginning and end). Trained on :func:`sequence_cross_entropy`; reports
    :func:`token_accuracy` and no ``accuracy``. Keeps Keras's native initializers seeded from ``seed``.
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
        run_eagerly,
        per_step=True,
        projection=projection,
    )
