"""Hostile batches at every backend's door: refused with a SpecError before any variable, metric or statistic moves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fedmodel
from fedmodel.reference import SoftmaxRegression

BACKENDS = ("numpy", "torch", "tensorflow", "jax")


def _model(backend: str, kind: str = "mlp") -> Any:
    if backend == "numpy":
        return SoftmaxRegression(8, 10, seed=0)
    models = pytest.importorskip(f"fedmodel_{backend}").models
    return getattr(models, kind)(num_features=8, num_classes=10, seed=0) if kind == "mlp" else getattr(models, kind)()


def _good(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 8), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)


def _labels(values: list[int]) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    return lambda: (_good(len(values))[0], np.array(values, np.int64))


BAD_BATCHES: dict[str, tuple[Callable[[], Any], str]] = {
    "label = number of classes": (_labels([1, 10, 2]), r"expected values in \[0, 9\], got values in \[1, 10\]"),
    "label -1": (_labels([1, -1, 2]), r"expected values in \[0, 9\], got values in \[-1, 2\]"),
    "label 2**40": (_labels([1, 2**40, 2]), r"expected values in \[0, 9\]"),
    "big-endian x": (lambda: (_good()[0].astype(">f4"), _good()[1]), "native byte order, got big-endian float32"),
    "x and y of different lengths": (lambda: (_good(6)[0], _good(5)[1]), "x holds 6 examples but y holds 5"),
    "an empty batch": (lambda: (_good(0)[0], _good(0)[1]), "holds 0 examples"),
    "an object array": (lambda: (_good()[0].astype(object), _good()[1]), "expected dtype float32, got object"),
    "float labels": (lambda: (_good()[0], _good()[1].astype(np.float64)), "expected dtype int64, got float64"),
}


def _everything(model: Any, backend: Any) -> list[np.ndarray]:
    variables = [*model.trainable_variables, *model.non_trainable_variables, *model.local_variables]
    return [np.array(v, copy=True) for v in backend.read_variables(variables)]


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("bad", sorted(BAD_BATCHES))
def test_a_hostile_batch_is_refused_and_changes_nothing(backend_name: str, bad: str) -> None:
    make, message = BAD_BATCHES[bad]
    model = _model(backend_name)
    backend = fedmodel.backend_for(model)
    optimizer = backend.make_optimizer(model, fedmodel.SGD(0.1))
    backend.train_step(model, backend.to_native(model, _good()), optimizer)  # warm: caches and traces exist
    model.forward_pass(_good(), training=False)
    before = _everything(model, backend)
    batch = make()
    calls = {
        "forward_pass(training=True)": lambda: model.forward_pass(batch, training=True),
        "forward_pass(training=False)": lambda: model.forward_pass(batch, training=False),
        "train_step": lambda: backend.train_step(model, batch, optimizer),
    }
    for name, call in calls.items():
        with pytest.raises(fedmodel.SpecError, match=message):
            call()
        after = _everything(model, backend)
        for old, new in zip(before, after, strict=True):
            np.testing.assert_array_equal(old, new, err_msg=f"{backend_name}: {name} changed a variable")


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_label_out_of_range_is_refused_in_the_framework_s_own_tensors_too(backend_name: str) -> None:
    model = _model(backend_name)
    backend = fedmodel.backend_for(model)
    native = backend.to_native(model, (_good(3)[0], np.array([0, 10, 1], np.int64)))
    with pytest.raises(fedmodel.SpecError, match=r"expected values in \[0, 9\]"):
        backend.train_step(model, native, backend.make_optimizer(model, fedmodel.SGD(0.1)))


def test_a_bounded_float_spec_rejects_nan() -> None:
    spec = fedmodel.TensorSpec((None,), "float32", minimum=0.0, maximum=1.0)
    assert "got values in [nan, nan]" in (spec.mismatch(np.array([0.5, np.nan], np.float32)) or "")
