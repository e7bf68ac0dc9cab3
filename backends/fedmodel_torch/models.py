"""Built-in models, the same across backends: MLPs, a small CNN with BatchNorm, LEAF's FEMNIST CNN, a CIFAR CNN,
LEAF's Shakespeare and Sent140 LSTMs, and TFF's per-step next-character and next-word LSTMs.

All return logits, use the mean softmax cross-entropy and report :data:`fedmodel.metrics.STANDARD_METRICS`; the
per-step models (``char_rnn_seq``, ``word_rnn_seq``) use :func:`sequence_cross_entropy` and report
:func:`token_accuracy` instead of ``accuracy``.
Every model whose variables all have canonical names (``mlp``, ``frozen_mlp``, ``cnn_bn``, ``cnn28``,
``cnn32``) starts from :func:`fedmodel.backend_kit.initialize`'s weights: the same seed gives the same
canonical weights in every backend. Construction leaves torch's global random state untouched.

>>> model = mlp(num_features=4, hidden=(3,), num_classes=2)
>>> [tuple(v.shape) for v in model.trainable_variables]
[(3, 4), (3,), (2, 3), (2,)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from fedmodel.backend_kit import Metric, TensorSpec, classification_spec, initialize
from fedmodel.metrics import ratio
from fedmodel_torch.model import TorchModel, from_module

__all__ = [
    "char_rnn",
    "char_rnn_seq",
    "cnn28",
    "cnn32",
    "cnn_bn",
    "frozen_mlp",
    "input_spec",
    "mlp",
    "sequence_cross_entropy",
    "token_accuracy",
    "word_rnn",
    "word_rnn_seq",
]


input_spec = classification_spec
"""``(x: (None, num_features) float32, y: (None,) int64)``: :func:`fedmodel.classification_spec`."""


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with torch's generator seeded, and torch's global random state unchanged after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _canonical(build: Callable[[], nn.Module], spec: tuple[TensorSpec, TensorSpec], seed: int) -> TorchModel:
    """The module built (torch's global random state untouched), wrapped, and given the canonical initial weights."""
    model = from_module(_seeded(seed, build), nn.functional.cross_entropy, spec)
    initialize(model, seed)
    return model


def _layers(num_features: int, hidden: Sequence[int], num_classes: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    width = num_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return layers


def mlp(num_features: int = 64, hidden: Sequence[int] = (32,), num_classes: int = 10, seed: int = 0) -> TorchModel:
    """A multilayer perceptron ``Linear → ReLU → ... → Linear`` (no hidden layer: softmax regression).

    ``x: (None, num_features)`` float32, ``y: (None,)`` int64 in ``[0, num_classes)``. Variables are named
    ``0.weight``, ``0.bias``, ``2.weight``... (``nn.Sequential`` indices); a weight is ``(out, in)``, torch's layout.
    """
    return _canonical(
        lambda: nn.Sequential(*_layers(num_features, hidden, num_classes)), input_spec(num_features, num_classes), seed
    )


def frozen_mlp(
    num_features: int = 64, hidden: Sequence[int] = (32,), num_classes: int = 10, seed: int = 0
) -> TorchModel:
    """:func:`mlp` with its first layer frozen (a pre-trained feature extractor): non-trainable, still sent."""
    if not hidden:
        raise ValueError("frozen_mlp needs at least one hidden layer (the frozen one)")

    def build() -> nn.Module:
        module = nn.Sequential(*_layers(num_features, hidden, num_classes))
        module[0].requires_grad_(False)
        return module

    return _canonical(build, input_spec(num_features, num_classes), seed)


class _SmallCNN(nn.Module):
    """Two 3x3 conv blocks (conv, BatchNorm, ReLU) over a ``side x side`` image, global pooling, Dropout, Linear."""

    def __init__(self, side: int, channels: tuple[int, int], num_classes: int, dropout: float) -> None:
        super().__init__()
        self.side = side
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for flat images ``(batch, side * side)``."""
        h = x.reshape(-1, 1, self.side, self.side)
        h = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(h))), 2)
        h = torch.relu(self.bn2(self.conv2(h))).mean(dim=(2, 3))
        return self.head(self.dropout(h))  # type: ignore[no-any-return]


def cnn_bn(
    num_features: int = 64,
    num_classes: int = 10,
    channels: tuple[int, int] = (8, 16),
    dropout: float = 0.25,
    seed: int = 0,
) -> TorchModel:
    """A small CNN with BatchNorm and Dropout over square grey images given flat, ``x: (None, side * side)``.

    The 8x8 digits of scikit-learn are ``num_features=64``; the image is reshaped inside the module.
    Convolutions have no bias (BatchNorm follows). Non-trainable variables are the BatchNorm statistics
    (``bn1.running_mean``, ``bn1.running_var``, ``bn1.num_batches_tracked``, then ``bn2.*``).
    """
    side = round(num_features**0.5)
    if side * side != num_features:
        raise ValueError(f"num_features must be a square (side * side), got {num_features}")
    spec = input_spec(num_features, num_classes)
    return _canonical(lambda: _SmallCNN(side, channels, num_classes, dropout), spec, seed)


class _TwoBlockCNN(nn.Module):
    """Two (square conv "same", ReLU, 2x2 max-pool) blocks, a ReLU dense layer, the logits: LEAF's FEMNIST CNN
    (5x5 over gray 28x28 images ``(batch, 28, 28)``) and the CIFAR CNN (3x3 over colour 32x32 images
    ``(batch, 32, 32, 3)``, channels last)."""

    def __init__(
        self, side: int, colours: int, kernel: int, num_classes: int, channels: tuple[int, int], hidden: int
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(colours, c1, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(c1, c2, kernel, padding=kernel // 2)
        self.dense = nn.Linear((side // 4) ** 2 * c2, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images ``(batch, side, side)`` (gray) or ``(batch, side, side, colours)``."""
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # to (batch, channel, height, width)
        h = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        h = nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)
        # flattened as (height, width, channel), the order of Keras and Flax, so canonical weights mean one function
        h = h.permute(0, 2, 3, 1).flatten(1)
        return self.head(torch.relu(self.dense(h)))  # type: ignore[no-any-return]


def cnn28(num_classes: int = 62, channels: tuple[int, int] = (32, 64), hidden: int = 2048, seed: int = 0) -> TorchModel:
    """LEAF's FEMNIST CNN: ``x: (None, 28, 28)`` float32 in ``[0, 1]``, ``y: (None,)`` int64 in ``[0, num_classes)``.

    ``conv 5x5 same, ReLU -> max-pool 2 -> conv 5x5 same, ReLU -> max-pool 2 -> dense hidden, ReLU -> dense
    num_classes``; the channel axis is added inside the module, and the feature map is flattened in
    ``(height, width, channel)`` order like the other backends'.
    """
    spec = (
        TensorSpec((None, 28, 28), "float32", "x"),
        TensorSpec((None,), "int64", "y", minimum=0, maximum=num_classes - 1),
    )
    return _canonical(lambda: _TwoBlockCNN(28, 1, 5, num_classes, channels, hidden), spec, seed)


def cnn32(num_classes: int = 100, channels: tuple[int, int] = (32, 64), hidden: int = 512, seed: int = 0) -> TorchModel:
    """A small CIFAR CNN: ``x: (None, 32, 32, 3)`` float32 in ``[0, 1]`` (channels last, as TFF's CIFAR-100
    serves them), ``y: (None,)`` int64 in ``[0, num_classes)``.

    ``conv 3x3 same, ReLU -> max-pool 2 -> conv 3x3 same, ReLU -> max-pool 2 -> dense hidden, ReLU -> dense
    num_classes``: the layer plan of the CNN in McMahan et al., "Communication-Efficient Learning of Deep
    Networks from Decentralized Data" (FedAvg, 2017: two convolutions of 32 and 64 channels, each followed by
    2x2 max-pooling, a 512-unit ReLU layer, the output layer) with 3x3 kernels over colour images. It is
    neither that paper's CIFAR-10 model nor the ResNet-18 of Adaptive Federated Optimization (Reddi et al.,
    2021). The image is permuted to ``(batch, 3, 32, 32)`` inside the module, and the feature map is flattened
    in ``(height, width, channel)`` order like the other backends'.
    """
    spec = (
        TensorSpec((None, 32, 32, 3), "float32", "x"),
        TensorSpec((None,), "int64", "y", minimum=0, maximum=num_classes - 1),
    )
    return _canonical(lambda: _TwoBlockCNN(32, 3, 3, num_classes, channels, hidden), spec, seed)


class _LSTMStack(nn.Module):
    """The text models: embedding, stacked LSTM, an optional linear projection, dense logits from the last step
    (``char_rnn``, ``word_rnn``: LEAF's classifiers) or at every step (``char_rnn_seq``, ``word_rnn_seq``: TFF's
    next-token models)."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding: int,
        hidden: int,
        layers: int,
        per_step: bool,
        projection: int | None,
    ) -> None:
        super().__init__()
        self.per_step = per_step
        self.embedding = nn.Embedding(vocab_size, embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=layers, batch_first=True)
        self.projection = None if projection is None else nn.Linear(hidden, projection)
        self.head = nn.Linear(hidden if projection is None else projection, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for id sequences ``(batch, length)``: ``(batch, num_classes)`` from the last step, or
        ``(batch, length, num_classes)`` at every step."""
        states, _ = self.lstm(self.embedding(x))
        if not self.per_step:
            states = states[:, -1]
        if self.projection is not None:
            states = self.projection(states)
        return self.head(states)  # type: ignore[no-any-return]


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
) -> TorchModel:
    """:class:`_LSTMStack` over ``x: (None, length)`` ids, torch's own initialization seeded by ``seed``: labels
    ``(None,)`` and the standard loss and metrics, or per step ``(None, length)`` with
    :func:`sequence_cross_entropy` and :func:`token_accuracy`."""
    if layers < 1:
        raise ValueError(f"{name} needs at least one LSTM layer, got layers={layers}")
    module = _seeded(seed, lambda: _LSTMStack(vocab_size, num_classes, embedding, hidden, layers, per_step, projection))
    x = TensorSpec((None, length), "int64", "x", minimum=0, maximum=vocab_size - 1)
    y = TensorSpec((None, length) if per_step else (None,), "int64", "y", minimum=0, maximum=num_classes - 1)
    if not per_step:
        return from_module(module, nn.functional.cross_entropy, (x, y))
    return from_module(module, sequence_cross_entropy, (x, y), metrics=[token_accuracy()], accuracy=False)


def char_rnn(
    vocab_size: int = 80,
    num_classes: int = 80,
    embedding: int = 8,
    hidden: int = 256,
    layers: int = 2,
    seed: int = 0,
) -> TorchModel:
    """LEAF's Shakespeare next-character LSTM: ``x: (None, 80)`` int64 ids in ``[0, vocab_size)``, ``y: (None,)``
    int64 in ``[0, num_classes)``; ``embedding -> stacked LSTM (layers x hidden) -> dense`` on the last step.

    Starts from torch's own initialization seeded by ``seed`` (the canonical layout has no embedding or LSTM
    entries, so :func:`fedmodel.backend_kit.initialize` does not apply): its initial weights differ across
    backends.
    """
    return _lstm_stack("char_rnn", 80, vocab_size, num_classes, embedding, hidden, layers, seed)


def word_rnn(
    vocab_size: int = 10_001,
    num_classes: int = 2,
    embedding: int = 100,
    hidden: int = 100,
    layers: int = 2,
    seed: int = 0,
) -> TorchModel:
    """LEAF's Sent140 stacked LSTM: ``x: (None, 25)`` int64 word ids in ``[0, vocab_size)`` (the first 25 words,
    padded with the unknown-word id), ``y: (None,)`` int64 sentiment in ``[0, num_classes)``;
    ``embedding -> stacked LSTM (layers x hidden) -> dense`` on the last step.

    LEAF's sizes (``models/sent140/stacked_lstm.py`` with ``baseline_constants.py``): a 100-wide trainable
    embedding, two LSTM layers of 100 units, 2 classes. LEAF puts a 128-unit dense layer without activation
    before the logits; two linear maps in a row compute the same functions as one, so this model has one.
    ``vocab_size`` 10,001 is :func:`fedmodel.data.load_federated`'s default Sent140 vocabulary (10,000 words)
    plus the unknown-word id; ``fedmodel train`` passes the data's own. Starts from torch's own
    initialization seeded by ``seed``, as :func:`char_rnn` does: its initial weights differ across backends.
    """
    return _lstm_stack("word_rnn", 25, vocab_size, num_classes, embedding, hidden, layers, seed)


def sequence_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The softmax cross-entropy of ``(batch, length, classes)`` logits against ``(batch, length)`` next-token
    labels, summed over the tokens that are not padding (``y != 0``) and divided by ``batch * length``.

    That is Keras's ``SparseCategoricalCrossentropy`` with the padding mask as ``sample_weight`` (its
    ``sum_over_batch_size`` reduction), as TFF's next-token baselines train, and it is a mean over examples
    (each sequence's summed token loss over ``length``), as the model contract requires of a loss: a mean over
    the non-padding tokens of the whole batch would not be. Every real token weighs the same within a batch.
    Over a client's data, the mean loss per real token is ``loss * length * num_examples / tokens``, with
    ``tokens`` the count of :func:`token_accuracy`.

    >>> float(sequence_cross_entropy(torch.zeros(1, 4, 4), torch.tensor([[2, 1, 0, 0]])))  # ln 4 on 2 of 4
    0.6931471824645996
    """
    per_token = nn.functional.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none")
    return (per_token * (y.flatten() != 0).to(per_token.dtype)).mean()


def token_accuracy() -> Metric:
    """``token_accuracy``: the share of non-padding tokens (``y != 0``) whose label is the argmax of the logits.

    State ``(Σ correct tokens, Σ tokens)`` in float64, finalized as their ratio (NaN without tokens). A
    ``sample_weight`` weighs each sequence's tokens.

    >>> m = token_accuracy()
    >>> [float(s) for s in m.update(m.init(), torch.tensor([[1, 2, 0]]), torch.eye(3)[[1, 0, 0]][None])]
    [1.0, 2.0]
    """

    def init() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)

    def update(
        state: tuple[torch.Tensor, torch.Tensor], y_true: torch.Tensor, y_pred: torch.Tensor, sample_weight: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        correct, count = state
        tokens = (y_true != 0).to(torch.float64)
        hits = (y_pred.argmax(-1) == y_true).to(torch.float64) * tokens
        if sample_weight is not None:
            weight = torch.as_tensor(sample_weight, dtype=torch.float64, device=tokens.device).reshape(-1, 1)
            tokens, hits = tokens * weight, hits * weight
        return correct + hits.sum().to(correct.device), count + tokens.sum().to(count.device)

    return Metric("token_accuracy", init, update, ratio)


def char_rnn_seq(
    vocab_size: int = 90,
    num_classes: int = 90,
    embedding: int = 8,
    hidden: int = 256,
    layers: int = 2,
    seed: int = 0,
    *,
    length: int = 80,
) -> TorchModel:
    """TFF's Shakespeare next-character model: ``x, y: (None, length)`` (80) int64 ids, ``y`` the character after
    each of ``x``'s, 0 pads; ``embedding -> stacked LSTM (layers x hidden) -> dense`` at every step.

    The sizes of Reddi et al., "Adaptive Federated Optimization" (2021) and TFF's simulation baselines: an
    8-wide character embedding, two LSTM layers of 256 units, 90 ids (86 characters, pad, out of vocabulary,
    beginning and end of snippet). Trained on :func:`sequence_cross_entropy`; reports :func:`token_accuracy`
    (the standard ``accuracy`` counts examples, and an example here is a sequence). Starts from torch's own
    initialization seeded by ``seed``: its initial weights differ across backends.
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
) -> TorchModel:
    """TFF's StackOverflow next-word model: ``x, y: (None, length)`` (20) int64 word ids, ``y`` the word after each of
    ``x``'s, 0 pads; ``embedding -> LSTM (layers x hidden) -> linear projection -> dense`` at every step.

    The sizes of Reddi et al., "Adaptive Federated Optimization" (2021) and TFF's simulation baselines: a
    96-wide embedding, one LSTM of 670 units, a 96-wide projection without activation (a low-rank factor of the
    output layer: ``projection=None`` drops it), 10,004 ids (10,000 words, pad, out of vocabulary, beginning and
    end of sentence). Trained on :func:`sequence_cross_entropy`; reports :func:`token_accuracy`. Starts from
    torch's own initialization seeded by ``seed``.
    """
    sizes = (vocab_size, num_classes, embedding, hidden, layers)
    return _lstm_stack("word_rnn_seq", length, *sizes, seed, per_step=True, projection=projection)
