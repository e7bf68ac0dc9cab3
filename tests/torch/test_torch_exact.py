"""Exact numbers: a one-layer torch model against the hand computation and the numpy reference model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedmodel_torch import BACKEND, TorchModel, models  # noqa: E402

import fedmodel  # noqa: E402
from fedmodel.reference import NUMPY_BACKEND, SoftmaxRegression  # noqa: E402

X = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 3.0, 2.0], [2.0, 0.5, -0.5, 1.0]], np.float32)
Y = np.array([0, 2, 1], np.int64)


def pair(seed: int = 0) -> tuple[TorchModel, SoftmaxRegression]:
    """A torch linear model holding the reference's weights (kernel = weight.T, input_scale ones)."""
    reference = SoftmaxRegression(num_features=4, num_classes=3, seed=seed)
    kernel = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)
    bias = np.array([0.1, -0.2, 0.3], np.float32)
    fedmodel.assign_weights(reference, fedmodel.ModelWeights((kernel, bias), (np.ones(4, np.float32),)))
    torch_model = models.mlp(num_features=4, hidden=(), num_classes=3)
    fedmodel.assign_weights(torch_model, fedmodel.ModelWeights((np.ascontiguousarray(kernel.T), bias)))
    return torch_model, reference


def hand_loss_and_gradient(kernel: np.ndarray, bias: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean cross-entropy and its gradient: ``d logits = (softmax - onehot) / n``, ``d kernel = x^T d logits``."""
    logits = X.astype(np.float64) @ kernel + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.log(p[np.arange(3), Y]).mean())
    dlogits = (p - np.eye(3)[Y]) / 3
    return loss, X.T.astype(np.float64) @ dlogits, dlogits.sum(axis=0)


def test_zero_weights_give_log3_loss_and_the_closed_form_gradient() -> None:
    model = models.mlp(num_features=4, hidden=(), num_classes=3)
    fedmodel.assign_weights(model, fedmodel.ModelWeights((np.zeros((3, 4), np.float32), np.zeros(3, np.float32))))
    out = model.forward_pass((X, Y), training=False)
    np.testing.assert_allclose(float(out.loss), np.log(3.0), rtol=1e-7)
    BACKEND.train_step(model, (X, Y), BACKEND.make_optimizer(model, fedmodel.SGD(learning_rate=1.0)))
    w1, b1 = fedmodel.get_weights(model).trainable
    dlogits = (np.full((3, 3), 1 / 3) - np.eye(3)[Y]) / 3  # softmax of zeros is uniform
    np.testing.assert_allclose(-w1, (X.T @ dlogits).T, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(-b1, dlogits.sum(axis=0), atol=1e-7)


def test_loss_and_predictions_equal_the_hand_computation_and_the_reference_model() -> None:
    torch_model, reference = pair()
    kernel, bias = (a.astype(np.float64) for a in fedmodel.get_weights(reference).trainable)
    ours, theirs = torch_model.forward_pass((X, Y), training=False), reference.forward_pass((X, Y), training=False)
    hand_loss, _, _ = hand_loss_and_gradient(kernel, bias)
    np.testing.assert_allclose(float(ours.loss), hand_loss, rtol=1e-6)
    np.testing.assert_allclose(float(ours.loss), float(theirs.loss), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.predictions), X @ kernel + bias, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.predictions), theirs.predictions, rtol=1e-6, atol=1e-6)
    ours_report, theirs_report = torch_model.report_local_outputs(), reference.report_local_outputs()
    np.testing.assert_allclose(ours_report["loss"][0], theirs_report["loss"][0], rtol=1e-6)
    assert ours_report["accuracy"] == theirs_report["accuracy"]


def test_one_sgd_step_with_unit_learning_rate_moves_by_the_hand_gradient_and_the_references_step() -> None:
    torch_model, reference = pair()
    w0 = fedmodel.get_weights(torch_model).trainable
    kernel, bias = (a.astype(np.float64) for a in fedmodel.get_weights(reference).trainable)
    _, grad_kernel, grad_bias = hand_loss_and_gradient(kernel, bias)
    spec = fedmodel.SGD(learning_rate=1.0)
    BACKEND.train_step(torch_model, (X, Y), BACKEND.make_optimizer(torch_model, spec))
    NUMPY_BACKEND.train_step(reference, (X, Y), NUMPY_BACKEND.make_optimizer(reference, spec))
    w1 = fedmodel.get_weights(torch_model).trainable
    np.testing.assert_allclose(w0[0] - w1[0], grad_kernel.T, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w0[1] - w1[1], grad_bias, rtol=1e-5, atol=1e-7)
    ref_kernel, ref_bias = fedmodel.get_weights(reference).trainable
    np.testing.assert_allclose(w1[0], ref_kernel.T, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w1[1], ref_bias, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "spec",
    [
        fedmodel.SGD(learning_rate=0.5),
        fedmodel.SGD(learning_rate=0.1, momentum=0.9),
        fedmodel.SGD(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        fedmodel.SGD(learning_rate=0.5, proximal_mu=0.3),
        fedmodel.Adam(learning_rate=0.05),
        fedmodel.Adam(learning_rate=0.05, beta1=0.8, beta2=0.99, epsilon=1e-6, proximal_mu=0.2),
    ],
    ids=repr,
)
def test_every_optimizer_spec_follows_the_reference_trajectory_step_by_step(
    spec: fedmodel.OptimizerSpec, rng: np.random.Generator
) -> None:
    torch_model, reference = pair(seed=1)
    ours, theirs = BACKEND.make_optimizer(torch_model, spec), NUMPY_BACKEND.make_optimizer(reference, spec)
    for _ in range(4):
        batch = (rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5).astype(np.int64))
        out = BACKEND.train_step(torch_model, batch, ours)
        ref_out = NUMPY_BACKEND.train_step(reference, batch, theirs)
        np.testing.assert_allclose(float(out.loss), float(ref_out.loss), rtol=1e-5)
        (w, b), (k, rb) = fedmodel.get_weights(torch_model).trainable, fedmodel.get_weights(reference).trainable
        np.testing.assert_allclose(w, k.T, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, rb, rtol=1e-5, atol=1e-6)


def test_fedprox_pulls_back_towards_the_weights_at_optimizer_creation() -> None:
    model = models.mlp(num_features=4, hidden=(), num_classes=3)
    zeros = fedmodel.ModelWeights((np.zeros((3, 4), np.float32), np.zeros(3, np.float32)))
    fedmodel.assign_weights(model, zeros)
    optimizer = BACKEND.make_optimizer(model, fedmodel.SGD(learning_rate=1.0, proximal_mu=0.5))
    moved = fedmodel.ModelWeights((np.full((3, 4), 2.0, np.float32), np.full(3, 2.0, np.float32)))
    fedmodel.assign_weights(model, moved)
    x0 = np.zeros((3, 4), np.float32)  # zero inputs: the kernel's data gradient is exactly 0
    BACKEND.train_step(model, (x0, Y), optimizer)
    w1, _ = fedmodel.get_weights(model).trainable
    np.testing.assert_allclose(w1, np.full((3, 4), 2.0 - 0.5 * 2.0), rtol=0, atol=0)  # w - lr * mu * (w - w0)


# -- the plain SGD step taken without torch.optim's per-call machinery ------------------------------
def _sgd_pair(dtype: torch.dtype, **options: object) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    gen = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype)) for shape in ((7, 5), (5,), (3,))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    return ours, theirs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_the_plain_sgd_step_is_torchs_sgd_step_bit_for_bit(dtype: torch.dtype) -> None:
    from fedmodel_torch.optimizers import plain_sgd_step

    ours, theirs = _sgd_pair(dtype)
    mine, native = torch.optim.SGD(ours, lr=0.37), torch.optim.SGD(theirs, lr=0.37)
    gen = torch.Generator().manual_seed(1)
    for step in range(5):
        for a, b in zip(ours[:2], theirs[:2], strict=True):  # the last parameter never has a gradient
            grad = torch.randn(a.shape, generator=gen, dtype=dtype) * 10.0**step
            a.grad, b.grad = grad.clone(), grad.clone()
        assert plain_sgd_step(mine)
        native.step()
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a.detach(), b.detach()), step


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), id="momentum"),
        pytest.param(lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=0.01), id="weight-decay"),
        pytest.param(lambda ps: torch.optim.SGD(ps, lr=0.1, maximize=True), id="maximize"),
        pytest.param(lambda ps: torch.optim.SGD(ps, lr=torch.tensor(0.1)), id="tensor-lr"),
        pytest.param(lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=True), id="foreach"),
        pytest.param(lambda ps: torch.optim.SGD([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.1), id="two-groups"),
        pytest.param(lambda ps: torch.optim.Adam(ps, lr=0.1), id="adam"),
    ],
)
def test_any_other_optimizer_is_left_to_its_own_step(make: object) -> None:
    from fedmodel_torch.optimizers import plain_sgd_step

    ours, _ = _sgd_pair(torch.float32)
    for p in ours:
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in ours]
    assert not plain_sgd_step(make(ours))  # type: ignore[operator]
    assert all(torch.equal(p.detach(), b) for p, b in zip(ours, before, strict=True))


def test_a_plain_sgd_with_a_hook_or_a_scheduler_takes_torchs_own_step_which_calls_them() -> None:
    from fedmodel_torch.optimizers import ClientOptimizer
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    ours, _ = _sgd_pair(torch.float32)
    for p in ours:
        p.grad = torch.ones_like(p)
    calls: list[str] = []
    handle = register_optimizer_step_pre_hook(lambda *_: calls.append("global hook"))
    try:
        ClientOptimizer(torch.optim.SGD(ours, lr=0.1), ours).step()
    finally:
        handle.remove()
    hooked = torch.optim.SGD(ours, lr=0.1)
    hooked.register_step_post_hook(lambda *_: calls.append("instance hook"))
    ClientOptimizer(hooked, ours).step()
    assert calls == ["global hook", "instance hook"]
    scheduled = torch.optim.SGD(ours, lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(scheduled, step_size=1, gamma=0.5)
    ClientOptimizer(scheduled, ours).step()
    assert scheduled._opt_called  # type: ignore[attr-defined]  # the scheduler saw its optimizer step
    scheduler.step()
    assert scheduled.param_groups[0]["lr"] == 0.05


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_a_plain_sgd_made_from_a_spec_steps_as_torchs_sgd_without_building_it(dtype: torch.dtype) -> None:
    """``make_optimizer`` builds a plain SGD's ``torch.optim.SGD`` only when asked for it; the steps taken before are
    that optimizer's, bit for bit, and once it is built (and changed) its own settings rule the next steps."""
    from fedmodel_torch.optimizers import make_optimizer

    ours, theirs = _sgd_pair(dtype)
    mine, native = make_optimizer(ours, fedmodel.SGD(0.37)), torch.optim.SGD(theirs, lr=0.37)
    gen = torch.Generator().manual_seed(1)

    def step() -> None:
        for a, b in zip(ours[:2], theirs[:2], strict=True):  # the last parameter never has a gradient
            grad = torch.randn(a.shape, generator=gen, dtype=dtype)
            a.grad, b.grad = grad.clone(), grad.clone()
        mine.step()
        native.step()
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a.detach(), b.detach())

    for _ in range(3):
        step()
    assert mine._native is None  # never built: nothing asked for it
    assert isinstance(mine.native, torch.optim.SGD) and mine.native.param_groups[0]["params"] == ours
    mine.native.param_groups[0]["lr"] = native.param_groups[0]["lr"] = 0.05  # what a user may do with it
    step()
    assert make_optimizer(ours, fedmodel.SGD(0.1, momentum=0.5))._native is not None  # any other: built at once


def test_a_plain_sgd_made_from_a_spec_calls_a_global_hook_through_torchs_own_step() -> None:
    from fedmodel_torch.optimizers import make_optimizer
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    ours, _ = _sgd_pair(torch.float32)
    for p in ours:
        p.grad = torch.ones_like(p)
    calls: list[str] = []
    optimizer = make_optimizer(ours, fedmodel.SGD(0.1))
    handle = register_optimizer_step_pre_hook(lambda *_: calls.append("global hook"))
    try:
        optimizer.step()
    finally:
        handle.remove()
    assert calls == ["global hook"] and optimizer._native is not None
    assert torch.equal(ours[0].detach(), _sgd_pair(torch.float32)[1][0].detach() - 0.1)


def test_a_plain_sgd_made_from_a_spec_leaves_parameters_off_the_cpu_to_torchs_own_step() -> None:
    from fedmodel_torch.optimizers import make_optimizer

    params = [torch.nn.Parameter(torch.ones(3, device="meta"))]
    params[0].grad = torch.ones(3, device="meta")
    optimizer = make_optimizer(params, fedmodel.SGD(0.1))
    optimizer.step()
    assert optimizer._native is not None  # built: the plain update is for CPU tensors only
