"""Bench 2: ``forward_pass`` and ``train_step`` through the contract vs the framework's native calls.

The model is the backend's built-in MLP: the digits MLP 64 -> 32 -> 10, where the fixed per-call cost
of the contract (validation, metrics, mode switching) shows most, and a wider 784 -> 256 -> 256 -> 10
(MNIST-sized), where it is amortized; batches of 32 numpy examples. The contract
side is what a federated client runs: ``model.forward_pass(batch, training=False)``, and
``backend.train_step(model, backend.to_native(model, batch), optimizer)`` with the neutral
``SGD(0.1)``, after the backend's optional ``seed_training`` (as ``train_client`` calls it). The native
side is a hand-written step on the model's own network doing the same work (logits, mean cross-entropy,
running loss/correct/count; for training also backward and an SGD step), from the same numpy arrays.
Bar: ratio <= 1.10 for both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import fedmodel
from benchmarks import _backends
from benchmarks._harness import Result, Sizes, Timing, UnavailableError, measure

__all__ = ["BAR", "run"]

BAR = 1.10
_LR = 0.1


MODELS: tuple[tuple[int, tuple[int, ...]], ...] = ((64, (32,)), (784, (256, 256)))
"""``(num_features, hidden)`` of the MLPs measured (10 classes)."""


def _batch(size: int, num_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, num_features)).astype(np.float32), rng.integers(0, 10, size).astype(np.int64)


def _label(backend: str, features: int, hidden: tuple[int, ...], batch: int) -> str:
    layers = "-".join(map(str, (features, *hidden, 10)))
    model = f"softmax regression {features}-10" if backend == "numpy" else f"MLP {layers}"
    return f"{model}, batch {batch}, per call"


def _repeated(
    fn: Callable[[np.ndarray, np.ndarray], Any], batch: tuple[np.ndarray, np.ndarray], calls: int
) -> Callable[[], None]:
    x, y = batch

    def loop() -> None:
        out: Any = None
        for _ in range(calls):
            out = fn(x, y)
        # reading the loss (BatchOutput.loss, or a native step's first output) waits for asynchronous frameworks (JAX)
        np.asarray(out.loss if isinstance(out, fedmodel.BatchOutput) else out[0])

    return loop


def run(sizes: Sizes, backends: tuple[str, ...] = _backends.BACKENDS) -> Iterator[Result | tuple[str, str]]:
    """Two rows per backend and model (forward, train step); or ``(backend, why skipped)``."""
    for name in backends:
        # numpy: the reference softmax regression, whatever the hidden sizes; tiny: one model for speed
        models = MODELS[:1] if sizes.name == "tiny" or name == "numpy" else MODELS
        for features, hidden in models:
            batch = _batch(sizes.step_batch, features)
            try:
                yield _forward(name, batch, sizes, hidden)
            except UnavailableError as exc:
                yield name, str(exc)
                break
            try:
                yield _train(name, batch, sizes, hidden)
            except UnavailableError as exc:
                yield name, f"train step: {exc}"


def _forward(name: str, batch: tuple[np.ndarray, np.ndarray], sizes: Sizes, hidden: tuple[int, ...]) -> Result:
    features = batch[0].shape[1]
    ours, theirs = _backends.mlp(name, features, hidden), _backends.mlp(name, features, hidden)
    native = _backends.native_forward(name, theirs)

    def contract(x: np.ndarray, y: np.ndarray) -> Any:
        return ours.forward_pass((x, y), training=False)

    timing = measure(
        {
            "fedmodel": _repeated(contract, batch, sizes.step_calls),
            "native": _repeated(native, batch, sizes.step_calls),
        },
        sizes.repeat,
    )
    label = _label(name, features, hidden, len(batch[1])) + _overhead(timing, sizes.step_calls)
    return timing.result("forward_pass (eval)", name, "fedmodel", "native", BAR, label, per=sizes.step_calls)


def _train(name: str, batch: tuple[np.ndarray, np.ndarray], sizes: Sizes, hidden: tuple[int, ...]) -> Result:
    features = batch[0].shape[1]
    ours, theirs = _backends.mlp(name, features, hidden), _backends.mlp(name, features, hidden)
    native = _backends.native_train_step(name, theirs, _LR)
    backend = fedmodel.backend_for(ours)
    seed_training = getattr(backend, "seed_training", None)
    if seed_training is not None:  # as train_client does: the step then draws from the model's own generator
        seed_training(ours, 0)
    optimizer = backend.make_optimizer(ours, fedmodel.SGD(_LR))

    def contract(x: np.ndarray, y: np.ndarray) -> Any:
        return backend.train_step(ours, backend.to_native(ours, (x, y)), optimizer)

    timing = measure(
        {
            "fedmodel": _repeated(contract, batch, sizes.step_calls),
            "native": _repeated(native, batch, sizes.step_calls),
        },
        sizes.repeat,
    )
    label = _label(name, features, hidden, len(batch[1])) + ", SGD" + _overhead(timing, sizes.step_calls)
    return timing.result("train_step", name, "fedmodel", "native", BAR, label, per=sizes.step_calls)


def _overhead(timing: Timing, calls: int) -> str:
    """The contract's cost per call in microseconds (difference of the medians): what the ratio hides."""
    return f", {(timing.median('fedmodel') - timing.median('native')) / calls * 1e6:+.1f} µs per call"
