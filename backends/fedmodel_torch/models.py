"""Built-in models, the same across backends: an MLP, a small CNN with BatchNorm and Dropout, a frozen-layer MLP.

All take ``x`` of shape ``(None, num_features)`` float32 and ``y`` of shape ``(None,)`` int64, return
logits, use the mean softmax cross-entropy, and report :data:`fedmodel.metrics.STANDARD_METRICS`.
Initialization is seeded and leaves torch's global random state untouched.

>>> model = mlp(num_features=4, hidden=(3,), num_classes=2)
>>> [tuple(v.shape) for v in model.trainable_variables]
[(3, 4), (3,), (2, 3), (2,)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from fedmodel._specs import classification_spec
from fedmodel_torch.model import TorchModel, from_module

__all__ = ["cnn_bn", "frozen_mlp", "input_spec", "mlp"]


input_spec = classification_spec
"""``(x: (None, num_features) float32, y: (None,) int64)``: :func:`fedmodel.classification_spec`."""


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


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

    Variables are named ``0.weight``, ``0.bias``, ``2.weight``... (``nn.Sequential`` indices); a weight
    is ``(out, in)``, torch's layout.
    """
    module = _seeded(seed, lambda: nn.Sequential(*_layers(num_features, hidden, num_classes)))
    return from_module(module, nn.functional.cross_entropy, input_spec(num_features, num_classes))


def frozen_mlp(
    num_features: int = 64, hidden: Sequence[int] = (32,), num_classes: int = 10, seed: int = 0
) -> TorchModel:
    """:func:`mlp` with its first layer frozen (a pre-trained feature extractor): non-trainable, still sent."""
    if not hidden:
        raise ValueError("frozen_mlp needs at least one hidden layer (the frozen one)")
    module = _seeded(seed, lambda: nn.Sequential(*_layers(num_features, hidden, num_classes)))
    first: nn.Module = module[0]  # type: ignore[index]
    for p in first.parameters():
        p.requires_grad_(False)
    return from_module(module, nn.functional.cross_entropy, input_spec(num_features, num_classes))


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
    Non-trainable variables are the BatchNorm statistics (``bn1.running_mean``, ``bn1.running_var``,
    ``bn1.num_batches_tracked``, then ``bn2.*``).
    """
    side = round(num_features**0.5)
    if side * side != num_features:
        raise ValueError(f"num_features must be a square (side * side), got {num_features}")
    module = _seeded(seed, lambda: _SmallCNN(side, channels, num_classes, dropout))
    return from_module(module, nn.functional.cross_entropy, input_spec(num_features, num_classes))
