"""``mlp``: a two-layer tanh MLP whose variables are opaque handles into the model's store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import fedmodel
from fedmodel.metrics import SumThenFinalize, standard_output_computation

__all__ = ["Handle", "Store", "TinyMLP", "mlp"]


@dataclass
class Store:
    """Where the values live; a handle is a key into it."""

    values: dict[int, np.ndarray] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    def add(self, name: str, value: np.ndarray) -> Handle:
        key = len(self.values)
        self.values[key], self.names[key] = value, name
        return Handle(self, key)


class Handle:
    """An opaque variable: no shape, no dtype; only the backend reads or writes what it points to."""

    __slots__ = ("key", "store")

    def __init__(self, store: Store, key: int) -> None:
        self.store, self.key = store, key


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


class TinyMLP:
    """``logits = tanh(x @ w1 + b1) @ w2 + b2``, mean softmax cross-entropy, the standard metrics."""

    __fedmodel_backend__ = "tiny"  # found through the fedmodel.backends entry point

    def __init__(self, num_features: int, hidden: int, num_classes: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._store = Store()
        add = self._store.add
        self._params = (
            add("w1", (rng.standard_normal((num_features, hidden)) / np.sqrt(num_features)).astype(np.float32)),
            add("b1", np.zeros(hidden, np.float32)),
            add("w2", (rng.standard_normal((hidden, num_classes)) / np.sqrt(hidden)).astype(np.float32)),
            add("b2", np.zeros(num_classes, np.float32)),
        )
        self._metrics = (
            add("metrics/loss_sum", np.zeros((), np.float64)),
            add("metrics/correct", np.zeros((), np.int64)),
            add("metrics/count", np.zeros((), np.int64)),
        )
        self._spec = fedmodel.classification_spec(num_features)

    @property
    def trainable_variables(self) -> Sequence[Handle]:
        """``w1``, ``b1``, ``w2``, ``b2``."""
        return self._params

    @property
    def non_trainable_variables(self) -> Sequence[Handle]:
        """None."""
        return ()

    @property
    def local_variables(self) -> Sequence[Handle]:
        """The metric sums."""
        return self._metrics

    @property
    def input_spec(self) -> Any:
        """``(x: (None, features) float32, y: (None,) int64)``."""
        return self._spec

    @property
    def federated_output_computation(self) -> SumThenFinalize:
        """Sum, then ``loss`` and ``accuracy`` as ratios."""
        return standard_output_computation()

    def _value(self, h: Handle) -> np.ndarray:
        return self._store.values[h.key]

    def _hidden_and_logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w1, b1, w2, b2 = (self._value(h).astype(np.float64) for h in self._params)
        hidden = np.tanh(x.astype(np.float64) @ w1 + b1)
        return hidden, hidden @ w2 + b2

    def predict_on_batch(self, x: Any, training: bool = False) -> np.ndarray:
        """The logits (float32); changes nothing."""
        fedmodel.check_spec(self._spec[0], x, what="x")
        return self._hidden_and_logits(np.asarray(x))[1].astype(np.float32)

    def _forward(self, batch: Any) -> tuple[fedmodel.BatchOutput[Any], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x, y = fedmodel.check_batch(self._spec, batch)
        hidden, logits = self._hidden_and_logits(x)
        log_probs = _log_softmax(logits)
        n = len(y)
        loss = float(-log_probs[np.arange(n), y].mean())
        loss_sum, correct, count = self._metrics
        values = self._store.values
        values[loss_sum.key] = values[loss_sum.key] + loss * n
        values[correct.key] = values[correct.key] + np.int64(np.sum(logits.argmax(axis=1) == y))
        values[count.key] = values[count.key] + np.int64(n)
        out = fedmodel.BatchOutput(np.float32(loss), logits.astype(np.float32), n)
        return out, np.asarray(x, np.float64), y, hidden, np.exp(log_probs)

    def forward_pass(self, batch_input: Any, training: bool = True) -> fedmodel.BatchOutput[Any]:
        """Loss, logits and batch size; adds the batch to the metrics (the same in both modes)."""
        return self._forward(batch_input)[0]

    def output_and_gradients(self, batch: Any) -> tuple[fedmodel.BatchOutput[Any], list[np.ndarray]]:
        """What ``forward_pass(batch, training=True)`` returns, and the gradients of its loss (backprop by hand)."""
        out, x, y, hidden, probs = self._forward(batch)
        dlogits = probs.copy()
        dlogits[np.arange(len(y)), y] -= 1.0
        dlogits /= len(y)
        w2 = self._value(self._params[2]).astype(np.float64)
        dhidden = (dlogits @ w2.T) * (1.0 - hidden**2)
        grads = [x.T @ dhidden, dhidden.sum(axis=0), hidden.T @ dlogits, dlogits.sum(axis=0)]
        return out, grads

    def report_local_outputs(self) -> dict[str, Any]:
        """``loss`` and ``accuracy`` as ``(total, count)``, and ``num_examples``."""
        loss_sum, correct, count = (self._value(h).copy() for h in self._metrics)
        return {"loss": (loss_sum, count), "accuracy": (correct, count.copy()), "num_examples": count.copy()}

    def reset_metrics(self) -> None:
        """Zero the sums."""
        for h in self._metrics:
            self._store.values[h.key] = np.zeros_like(self._value(h))


def mlp(num_features: int = 64, hidden: int = 16, num_classes: int = 10, seed: int = 0) -> TinyMLP:
    """The model ``fedmodel train --backend tiny`` trains."""
    return TinyMLP(num_features, hidden, num_classes, seed)
