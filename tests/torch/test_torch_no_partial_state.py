"""Issue 18 item 2 on torch: a ``forward_pass``, ``predict_on_batch`` or ``train_step`` that raises changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fedmodel_torch  # noqa: E402
from fedmodel_torch import models  # noqa: E402

import fedmodel  # noqa: E402


def every_variable(model: Any) -> list[np.ndarray]:
    variables = model.trainable_variables + model.non_trainable_variables + model.local_variables
    return [v.detach().numpy().copy() for v in variables]


def assert_unchanged(model: Any, before: list[np.ndarray]) -> None:
    after = every_variable(model)
    assert len(after) == len(before)
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a, b)


def digits_like(rng: np.random.Generator, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((size, 64)).astype(np.float32), rng.integers(0, 10, size).astype(np.int64)


class LossFailingAtSecondCall:
    """Cross-entropy that raises from its second call on (after a first, successful, batch)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, predictions: Any, y: Any) -> Any:
        self.calls += 1
        if self.calls >= 2:
            raise FloatingPointError("loss failed")
        return torch.nn.functional.cross_entropy(predictions, y)


def nan_raising_metric() -> fedmodel.backend_kit.Metric:
    """A user metric that raises once it sees a NaN prediction (the second batch below has one)."""

    def per_example(y_true: Any, y_pred: Any) -> Any:
        if torch.isnan(y_pred).any():
            raise FloatingPointError("metric saw NaN")
        return y_pred[:, 0]

    return fedmodel_torch.mean_metric("first_logit", per_example)


def built(kind: str, *, loss: Any = torch.nn.functional.cross_entropy, metrics: tuple[Any, ...] = ()) -> Any:
    native = getattr(models, kind)(seed=1).module
    return fedmodel_torch.from_module(native, loss, models.input_spec(64, 10), metrics=metrics)


def train_step(model: Any, batch: Any) -> Any:
    backend = fedmodel.backend_for(model)
    return backend.train_step(model, batch, backend.make_optimizer(model, fedmodel.SGD(0.1, momentum=0.9)))


CALLS: dict[str, Callable[[Any, Any], Any]] = {
    "forward_pass(training=True)": lambda m, b: m.forward_pass(b, training=True),
    "forward_pass(training=False)": lambda m, b: m.forward_pass(b, training=False),
    "train_step": train_step,
}


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_loss_that_raises_at_the_second_call_changes_nothing(kind: str, call: str) -> None:
    rng = np.random.default_rng(0)
    model = built(kind, loss=LossFailingAtSecondCall())
    CALLS[call](model, digits_like(rng))  # the first call succeeds and changes state
    before = every_variable(model)
    with pytest.raises(FloatingPointError, match="loss failed"):
        CALLS[call](model, digits_like(rng))
    assert_unchanged(model, before)
    assert all(p.grad is None for p in model.trainable_variables)


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_user_metric_that_raises_changes_nothing(kind: str, call: str) -> None:
    rng = np.random.default_rng(1)
    model = built(kind, metrics=(nan_raising_metric(),))
    CALLS[call](model, digits_like(rng))
    before = every_variable(model)
    x, y = digits_like(rng)
    x[3, 5] = np.nan  # NaN input -> NaN logits in that row
    with pytest.raises(FloatingPointError, match="metric saw NaN"):
        CALLS[call](model, (x, y))
    assert_unchanged(model, before)


@pytest.mark.parametrize("kind", ["mlp", "cnn_bn"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_out_of_range_labels_are_refused_before_anything_changes(kind: str, call: str) -> None:
    rng = np.random.default_rng(2)
    model = getattr(models, kind)(seed=2)
    CALLS[call](model, digits_like(rng))
    before = every_variable(model)
    x, y = digits_like(rng)
    y[0] = 10
    with pytest.raises(fedmodel.SpecError, match="y"):
        CALLS[call](model, (x, y))
    assert_unchanged(model, before)


def test_a_module_that_raises_after_its_batch_norm_leaves_the_statistics_as_they_were() -> None:
    rng = np.random.default_rng(3)
    inner = models.cnn_bn(seed=3).module

    class FailsAfterForward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            self.fail = False

        def forward(self, x: Any) -> Any:
            out = self.inner(x)  # BatchNorm statistics are updated here, in training mode
            if self.fail:
                raise RuntimeError("module failed")
            return out

    module = FailsAfterForward()
    model = fedmodel_torch.from_module(module, torch.nn.functional.cross_entropy, models.input_spec(64, 10))
    x, y = digits_like(rng)
    model.predict_on_batch(x, training=True)
    before = every_variable(model)
    module.fail = True
    for call in (lambda: model.predict_on_batch(x, training=True), lambda: train_step(model, (x, y))):
        with pytest.raises(RuntimeError, match="module failed"):
            call()
        assert_unchanged(model, before)
    module.fail = False
    model.predict_on_batch(x, training=True)  # and a successful call still updates them
    assert not np.array_equal(every_variable(model)[-6], before[-6])  # bn2.running_mean
