"""Specification of ``fedmodel_torch.from_module`` and the contract of the model it returns."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import fedmodel_torch  # noqa: E402
from fedmodel_torch import models  # noqa: E402

import fedmodel  # noqa: E402
from fedmodel import TensorSpec  # noqa: E402

SPEC = (TensorSpec((None, 4), "float32", "x"), TensorSpec((None,), "int64", "y"))


def batch(rng: np.random.Generator, size: int = 5, features: int = 4, classes: int = 3) -> tuple[np.ndarray, ...]:
    x = rng.standard_normal((size, features)).astype(np.float32)
    return x, rng.integers(0, classes, size).astype(np.int64)


def snapshot(variables: list[torch.Tensor]) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in variables]


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# -- construction ---------------------------------------------------------------------------------
def test_from_module_gives_an_object_with_the_whole_protocol() -> None:
    model = fedmodel_torch.from_module(torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, SPEC)
    assert fedmodel.check_protocol(model) == []
    assert isinstance(model, fedmodel.Model)
    assert fedmodel.backend_for(model) is fedmodel_torch.BACKEND


@pytest.mark.parametrize(
    ("module", "loss", "spec", "error", "words"),
    [
        ("not a module", torch.nn.functional.cross_entropy, SPEC, TypeError, "torch.nn.Module"),
        (torch.nn.Linear(4, 3), "not callable", SPEC, TypeError, "loss must be callable"),
        (torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, SPEC[0], TypeError, "pair"),
        (torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, ((None, 4), "float32"), TypeError, "TensorSpec"),
        (torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, {"x": SPEC[0]}, TypeError, "pair"),
    ],
)
def test_from_module_rejects_bad_arguments_with_a_clear_error(
    module: object, loss: object, spec: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        fedmodel_torch.from_module(module, loss, spec)  # type: ignore[arg-type]


def test_from_module_rejects_a_lazy_module_whose_variables_do_not_exist_yet() -> None:
    with pytest.raises(ValueError, match="lazy"):
        fedmodel_torch.from_module(torch.nn.LazyLinear(3), torch.nn.functional.cross_entropy, SPEC)


def test_from_module_rejects_duplicate_or_reserved_metric_names() -> None:
    mae = fedmodel_torch.mean_metric("mae", lambda y, p: p[:, 0])
    with pytest.raises(ValueError, match="two metrics are named"):
        fedmodel_torch.from_module(torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, SPEC, metrics=[mae, mae])
    with pytest.raises(ValueError, match="taken"):
        fedmodel_torch.mean_metric("loss", lambda y, p: p[:, 0])


# -- variables ------------------------------------------------------------------------------------
def test_variables_are_grouped_by_requires_grad_and_buffers_with_the_modules_names() -> None:
    model = models.frozen_mlp(num_features=4, hidden=(5,), num_classes=3)
    backend = fedmodel.backend_for(model)
    assert backend.variable_names(model, model.trainable_variables) == ["2.weight", "2.bias"]
    assert backend.variable_names(model, model.non_trainable_variables) == ["0.weight", "0.bias"]
    assert backend.variable_names(model, model.local_variables) == [
        "metrics/loss_sum",
        "metrics/correct",
        "metrics/count",
    ]
    module = model.module
    assert model.trainable_variables[0] is module[2].weight
    assert model.non_trainable_variables[0] is module[0].weight


def test_names_follow_variables_replaced_after_wrapping_and_a_replaced_one_belongs_to_the_model_no_more() -> None:
    model = models.cnn_bn()
    backend = fedmodel.backend_for(model)
    names = backend.variable_names(model, model.non_trainable_variables)  # the lookup is built and used
    trainable = backend.variable_names(model, model.trainable_variables)
    old_mean, old_weight = model.module.bn1.running_mean, model.module.head.weight
    model.module.double()  # replaces every buffer; parameters keep their objects
    model.module.head.weight = torch.nn.Parameter(old_weight.detach().double().clone())  # a parameter replaced
    assert model.module.bn1.running_mean is not old_mean
    for stale in (old_mean, old_weight):  # they were the model's variables, and are not any more
        with pytest.raises(ValueError, match="does not belong"):
            backend.variable_names(model, [stale])
    assert backend.variable_names(model, model.non_trainable_variables) == names
    assert backend.variable_names(model, model.trainable_variables) == trainable
    with pytest.raises(ValueError, match="does not belong"):
        backend.variable_names(model, [torch.zeros(3)])


def test_batchnorm_statistics_are_non_trainable_and_non_persistent_buffers_are_not_weights() -> None:
    model = models.cnn_bn()
    names = fedmodel.get_weights(model).non_trainable_names
    assert names == (
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "bn2.running_mean",
        "bn2.running_var",
        "bn2.num_batches_tracked",
    )
    module = torch.nn.Linear(4, 3)
    module.register_buffer("cache", torch.zeros(2), persistent=False)
    module.register_buffer("scale", torch.ones(4))
    wrapped = fedmodel_torch.from_module(module, torch.nn.functional.cross_entropy, SPEC)
    assert fedmodel.get_weights(wrapped).non_trainable_names == ("scale",)


def test_variable_lists_are_the_same_objects_in_the_same_order_on_every_access() -> None:
    model = models.cnn_bn()
    for group in ("trainable_variables", "non_trainable_variables", "local_variables"):
        first, second = getattr(model, group), getattr(model, group)
        assert [id(v) for v in first] == [id(v) for v in second]
    ids = [id(v) for g in (model.trainable_variables, model.non_trainable_variables, model.local_variables) for v in g]
    assert len(ids) == len(set(ids))


def test_variables_follow_module_to_which_replaces_buffers_and_may_replace_parameters() -> None:
    """The variables are found once, at wrapping, but read from their owners on every access: after
    ``module.to(dtype)`` (new buffer tensors; new parameter objects when torch is told to overwrite them) the
    model's variables are the module's current tensors, under the same names, and a frozen parameter moves to
    the non-trainable group as ``requires_grad`` says."""
    model = models.cnn_bn(channels=(2, 2))
    module = model.module
    names = fedmodel.get_weights(model).names
    module.to(torch.float64)
    assert model.non_trainable_variables[0] is module.get_buffer("bn1.running_mean")
    assert {a.dtype for a in fedmodel.get_weights(model).arrays} >= {np.dtype(np.float64)}
    previous = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        module.to(torch.float32)
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(previous)
    assert [id(v) for v in model.trainable_variables] == [id(p) for p in module.parameters()]
    assert fedmodel.get_weights(model).names == names and model.device == torch.device("cpu")
    first = next(module.parameters())
    first.requires_grad_(False)
    assert model.non_trainable_variables[0] is first and all(v is not first for v in model.trainable_variables)


def test_variables_are_what_named_parameters_and_named_buffers_hold_now() -> None:
    """A slot is read from its owner's own table, as ``named_parameters()`` reads it: a parameter or buffer set to
    None or deleted after wrapping is no variable any more, a new one assigned to the slot is."""
    model = models.cnn_bn(channels=(2, 2))
    module = model.module
    module.head.bias = None
    del module.conv1.weight
    module.bn2.num_batches_tracked = None
    module.bn1.weight = torch.nn.Parameter(torch.full((2,), 3.0))
    assert [id(v) for v in model.trainable_variables] == [id(p) for p in module.parameters()]
    assert [id(v) for v in model.non_trainable_variables] == [id(b) for b in module.buffers()]
    names = fedmodel.get_weights(model).names
    assert "head.bias" not in names and "conv1.weight" not in names and "bn2.num_batches_tracked" not in names
    assert "bn1.weight" in names and model.trainable_variables[0] is module.bn1.weight


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))], ids=["deepcopy", "pickle"])
def test_a_copied_model_reads_its_own_modules_variables(clone: Any) -> None:
    """Slots hold their owner's table: a copy's slots must hold the copy's tables, not the original's."""
    model = models.cnn_bn(channels=(2, 2))
    copied = clone(model)
    assert [id(v) for v in copied.trainable_variables] == [id(p) for p in copied.module.parameters()]
    copied.module.head.weight = torch.nn.Parameter(torch.zeros_like(copied.module.head.weight))
    assert any(v is copied.module.head.weight for v in copied.trainable_variables)
    assert all(v is not copied.module.head.weight for v in model.trainable_variables)


def test_two_models_from_one_factory_share_no_variable_but_start_equal() -> None:
    a, b = models.mlp(seed=3), models.mlp(seed=3)
    ids_a = {id(v) for v in a.trainable_variables + a.local_variables}
    assert ids_a.isdisjoint({id(v) for v in b.trainable_variables + b.local_variables})
    assert_same(snapshot(a.trainable_variables), snapshot(b.trainable_variables))


def test_seeded_construction_leaves_torchs_global_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    models.mlp(seed=7)
    torch.testing.assert_close(torch.rand(3), expected)


# -- forward_pass ---------------------------------------------------------------------------------
def test_forward_pass_changes_no_trainable_variable_and_returns_detached_cpu_outputs(
    rng: np.random.Generator,
) -> None:
    model = models.mlp(num_features=4, hidden=(5,), num_classes=3)
    before = snapshot(model.trainable_variables)
    out = model.forward_pass(batch(rng), training=True)
    assert_same(snapshot(model.trainable_variables), before)
    assert out.num_examples == 5
    assert out.loss.shape == () and not out.loss.requires_grad and out.loss.grad_fn is None
    assert out.predictions.shape == (5, 3) and not out.predictions.requires_grad
    assert all(p.grad is None for p in model.trainable_variables)
    assert np.isfinite(np.asarray(out.loss))


def test_a_call_leaves_the_module_in_its_mode_as_module_train_does(rng: np.random.Generator) -> None:
    model = models.cnn_bn()
    model.module.train()
    model.module.bn1.eval()  # a user's mixed mode: one frozen BatchNorm inside a training model
    x = rng.standard_normal((4, 64)).astype(np.float32)
    y = np.arange(4, dtype=np.int64)
    for training in (False, True, False):
        model.forward_pass((x, y), training=training)
        assert [m.training for m in model.module.modules()] == [training] * len(list(model.module.modules()))
    for training in (True, False):
        model.predict_on_batch(x, training=training)
        assert all(m.training is training for m in model.module.modules())
    # the same mode twice in a row switches nothing: a module that counts its train() calls sees one
    calls: list[bool] = []
    model.module.train = lambda mode=True: calls.append(mode) or torch.nn.Module.train(model.module, mode)  # type: ignore[method-assign]
    for _ in range(3):
        model.forward_pass((x, y), training=True)
    assert calls == [True]


def test_a_failing_call_puts_every_submodules_mode_back(rng: np.random.Generator) -> None:
    model = models.cnn_bn()
    model.module.train()
    model.module.bn1.eval()
    modes = [m.training for m in model.module.modules()]
    x = rng.standard_normal((4, 64)).astype(np.float32)
    bad_labels = np.array([0, 1, 2, 99], dtype=np.int64)  # out of the label spec's range
    for training in (False, True):
        with pytest.raises(fedmodel.SpecError):
            model.forward_pass((x, bad_labels), training=training)
        assert [m.training for m in model.module.modules()] == modes


def test_submodules_added_after_the_first_call_are_switched_too(rng: np.random.Generator) -> None:
    model = models.mlp(num_features=4, hidden=(5,), num_classes=3)
    x, y = batch(rng, size=64)
    model.forward_pass((x, y), training=False)  # the submodule list is cached here
    model.module.append(torch.nn.Dropout(0.9))  # Sequential.append registers through add_module
    model.module[1] = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Dropout(0.9))  # and __setitem__ through setattr
    model.module.train()
    first, second = (model.forward_pass((x, y), training=False).predictions for _ in range(2))
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # both dropouts were in eval mode for the call
    assert not any(m.training for m in model.module.modules())  # and stay in eval mode after it
    train_a, train_b = (model.forward_pass((x, y), training=True).predictions for _ in range(2))
    assert not torch.equal(train_a, train_b)


def test_grad_mode_and_module_modes_are_restored_even_when_the_module_raises(rng: np.random.Generator) -> None:
    class Failing(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert not torch.is_grad_enabled() and not self.training  # what forward_pass promised
            raise RuntimeError("boom")

    spec = (TensorSpec((None, 4), "float32"), TensorSpec((None,), "int64"))
    model = fedmodel_torch.from_module(Failing().train(), torch.nn.functional.cross_entropy, spec)
    x, y = batch(rng)
    for outer in (True, False):
        with torch.set_grad_enabled(outer):
            with pytest.raises(RuntimeError, match="boom"):
                model.forward_pass((x, y), training=False)
            assert torch.is_grad_enabled() is outer
        assert model.module.training
    assert [float(np.asarray(v)) for v in model.local_variables] == [0.0, 0.0, 0.0]


def test_a_replaced_module_gets_its_own_modes(rng: np.random.Generator) -> None:
    model = models.mlp(num_features=4, hidden=(5,), num_classes=3)
    x, y = batch(rng, size=64)
    model.forward_pass((x, y), training=False)
    model.module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.9)).train()
    first, second = (model.forward_pass((x, y), training=False).predictions for _ in range(2))
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_forward_pass_in_eval_mode_is_deterministic_and_keeps_batchnorm_statistics(rng: np.random.Generator) -> None:
    model = models.cnn_bn()
    x, y = rng.standard_normal((6, 64)).astype(np.float32), np.arange(6, dtype=np.int64)
    stats = snapshot(model.non_trainable_variables)
    first, second = model.forward_pass((x, y), training=False), model.forward_pass((x, y), training=False)
    assert_same(snapshot(model.non_trainable_variables), stats)
    torch.testing.assert_close(first.loss, second.loss, rtol=0, atol=0)
    torch.testing.assert_close(first.predictions, second.predictions, rtol=0, atol=0)
    model.forward_pass((x, y), training=True)
    assert int(model.module.bn1.num_batches_tracked) == 1
    np.testing.assert_array_equal(model.module.bn1.running_mean.numpy() != stats[0], True)


def test_forward_pass_accepts_numpy_torch_and_mapping_batches_alike(rng: np.random.Generator) -> None:
    model = models.mlp(num_features=4, hidden=(5,), num_classes=3)
    x, y = batch(rng)
    outs = [
        model.forward_pass((x, y), training=False),
        model.forward_pass({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, training=False),
        model.forward_pass([x, torch.from_numpy(y)], training=False),
    ]
    for out in outs[1:]:
        torch.testing.assert_close(out.loss, outs[0].loss, rtol=0, atol=0)
    x_ro = x.copy()
    x_ro.flags.writeable = False  # read-only input: no torch warning (warnings are errors here)
    torch.testing.assert_close(model.forward_pass((x_ro, y), training=False).loss, outs[0].loss, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (lambda x, y: (x.astype(np.float64), y), "dtype"),
        (lambda x, y: (x[:, :3], y), "shape"),
        (lambda x, y: (x,), "pair"),
        (lambda x, y: {"x": x, "label": y}, "'x' and 'y'"),
    ],
)
def test_an_incompatible_batch_raises_spec_error_and_changes_nothing(
    rng: np.random.Generator, bad: object, words: str
) -> None:
    model = models.mlp(num_features=4, hidden=(5,), num_classes=3)
    before = snapshot(model.trainable_variables + model.local_variables)
    with pytest.raises(fedmodel.SpecError, match=words):
        model.forward_pass(bad(*batch(rng)), training=True)  # type: ignore[operator]
    assert_same(snapshot(model.trainable_variables + model.local_variables), before)


def test_a_loss_that_does_not_reduce_is_refused_with_a_clear_error(rng: np.random.Generator) -> None:
    def per_example(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(p, y, reduction="none")

    model = fedmodel_torch.from_module(torch.nn.Linear(4, 3), per_example, SPEC)
    with pytest.raises(ValueError, match="scalar"):
        model.forward_pass(batch(rng))


def test_predict_on_batch_changes_no_variable_metrics_included(rng: np.random.Generator) -> None:
    model = models.cnn_bn()
    x = rng.standard_normal((4, 64)).astype(np.float32)
    every = model.trainable_variables + model.non_trainable_variables + model.local_variables
    before = snapshot(every)
    preds = model.predict_on_batch(x)
    assert tuple(preds.shape) == (4, 10) and not preds.requires_grad
    assert_same(snapshot(every), before)
    model.predict_on_batch(x, training=True)  # BatchNorm statistics may move, metrics never
    assert_same(snapshot(model.local_variables), before[-3:])
    assert int(model.module.bn1.num_batches_tracked) == 1
    with pytest.raises(fedmodel.SpecError):
        model.predict_on_batch(x.astype(np.float64))


# -- metrics --------------------------------------------------------------------------------------
def test_standard_metrics_are_exact_sums_and_aggregate_to_the_mean(rng: np.random.Generator) -> None:
    model = models.mlp(num_features=4, hidden=(), num_classes=3)
    with torch.no_grad():
        model.module[0].weight.zero_()
        model.module[0].bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    x, _ = batch(rng, size=4)
    y = np.array([2, 2, 0, 1], np.int64)
    model.forward_pass((x, y), training=False)
    report = model.report_local_outputs()
    # logits (0, 0, 1) for every example: class 2 is predicted, right twice
    nll = np.log(2 + np.e) - np.array([1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(report["loss"][0], nll.sum(), rtol=1e-6)
    assert report["loss"][1] == 4 and report["accuracy"] == (2, 4) and report["num_examples"] == 4
    final = model.federated_output_computation([report])
    np.testing.assert_allclose(final["loss"], nll.mean(), rtol=1e-6)
    assert final["accuracy"] == 0.5 and final["num_examples"] == 4


def test_report_local_outputs_is_pure_and_reset_metrics_restores_zeros(rng: np.random.Generator) -> None:
    model = models.mlp(num_features=4, hidden=(5,), num_classes=3)
    model.forward_pass(batch(rng))
    first = model.report_local_outputs()
    second = model.report_local_outputs()
    assert first["num_examples"] == second["num_examples"] == 5
    model.forward_pass(batch(rng))
    assert first["num_examples"] == 5  # an earlier report is a copy, not a live view
    model.reset_metrics()
    report = model.report_local_outputs()
    assert report["loss"] == (0.0, 0) and report["accuracy"] == (0, 0) and report["num_examples"] == 0


def test_user_metrics_are_reported_unfinalized_and_finalized_after_summing_clients(rng: np.random.Generator) -> None:
    def first_logit(y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return p[:, 0]

    def factory() -> fedmodel_torch.TorchModel:
        return fedmodel_torch.from_module(
            torch.nn.Linear(4, 3),
            torch.nn.functional.cross_entropy,
            SPEC,
            metrics=[
                fedmodel_torch.mean_metric("mean_first_logit", first_logit),
                fedmodel_torch.sum_metric("label_counts", lambda y, p: torch.bincount(y, minlength=3), shape=(3,)),
            ],
        )

    a, b = factory(), factory()
    fedmodel.assign_weights(b, fedmodel.get_weights(a))
    b1, b2 = batch(rng, size=3), batch(rng, size=5)
    a.forward_pass(b1, training=False)
    b.forward_pass(b2, training=False)
    report = a.report_local_outputs()
    assert set(report) == {"loss", "accuracy", "num_examples", "mean_first_logit", "label_counts"}
    final = a.federated_output_computation([report, b.report_local_outputs()])
    preds = np.concatenate([np.asarray(a.predict_on_batch(b1[0])), np.asarray(a.predict_on_batch(b2[0]))])
    np.testing.assert_allclose(final["mean_first_logit"], preds[:, 0].mean(), rtol=1e-6)
    np.testing.assert_array_equal(final["label_counts"], np.bincount(np.concatenate([b1[1], b2[1]]), minlength=3))
    assert final["num_examples"] == 8
    names = fedmodel.backend_for(a).variable_names(a, a.local_variables)
    assert names[3:] == ["metrics/mean_first_logit/0", "metrics/mean_first_logit/1", "metrics/label_counts/0"]


def test_regression_models_report_no_accuracy(rng: np.random.Generator) -> None:
    spec = (TensorSpec((None, 4), "float32"), TensorSpec((None, 1), "float32"))
    model = fedmodel_torch.from_module(torch.nn.Linear(4, 1), torch.nn.functional.mse_loss, spec)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    model.forward_pass((x, np.zeros((3, 1), np.float32)))
    assert set(model.report_local_outputs()) == {"loss", "num_examples"}


class _TwoInputs(torch.nn.Module):
    """A module whose input is a mapping: it receives the whole structure as one argument."""

    def __init__(self) -> None:
        super().__init__()
        self.image = torch.nn.Linear(4, 3)
        self.meta = torch.nn.Linear(2, 3, bias=False)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.image(x["image"]) + self.meta(x["meta"])


def test_nested_inputs_reach_the_module_as_one_structure_of_tensors(rng: np.random.Generator) -> None:
    spec = {
        "x": {"image": TensorSpec((None, 4), "float32"), "meta": TensorSpec((None, 2), "float32")},
        "y": TensorSpec((None,), "int64"),
    }
    model = fedmodel_torch.from_module(_TwoInputs(), torch.nn.functional.cross_entropy, spec)
    x = {
        "image": rng.standard_normal((3, 4)).astype(np.float32),
        "meta": rng.standard_normal((3, 2)).astype(np.float32),
    }
    out = model.forward_pass({"x": x, "y": np.array([0, 1, 2])}, training=False)
    expected = model.module({k: torch.from_numpy(v) for k, v in x.items()}).detach()
    torch.testing.assert_close(out.predictions, expected, rtol=0, atol=0)
    assert out.num_examples == 3
    with pytest.raises(fedmodel.SpecError, match="x/meta"):
        model.forward_pass({"x": {**x, "meta": x["meta"][:, :1]}, "y": np.array([0, 1, 2])})


def test_a_metric_whose_init_is_not_a_tuple_of_tensors_is_refused() -> None:
    bad = fedmodel_torch.Metric("bad", init=lambda: torch.zeros(()), update=lambda s, y, p: s)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="tuple of tensors"):
        fedmodel_torch.from_module(torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, SPEC, metrics=[bad])


@settings(max_examples=15, deadline=None, derandomize=True)
@given(sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=4))
def test_metrics_count_every_example_of_batches_of_any_size(sizes: list[int]) -> None:
    model = models.mlp(num_features=4, hidden=(5,), num_classes=3)
    rng = np.random.default_rng(len(sizes))
    for size in sizes:
        assert model.forward_pass(batch(rng, size=size), training=False).num_examples == size
    report = model.report_local_outputs()
    assert report["num_examples"] == sum(sizes) and report["loss"][1] == sum(sizes)
    assert 0 <= report["accuracy"][0] <= sum(sizes)


class _TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.body(x)
        return {"logits": logits, "probabilities": logits.softmax(-1)}


def test_structured_predictions_come_back_detached_and_train(rng: np.random.Generator) -> None:
    model = fedmodel_torch.from_module(
        _TwoHeads(), lambda p, y: torch.nn.functional.cross_entropy(p["logits"], y), SPEC, accuracy=False
    )
    out = model.forward_pass(batch(rng), training=False)
    assert set(out.predictions) == {"logits", "probabilities"}
    assert not out.predictions["logits"].requires_grad
    torch.testing.assert_close(out.predictions["probabilities"].sum(-1), torch.ones(5))
    before = model.module.body.weight.detach().clone()
    backend = fedmodel.backend_for(model)
    step = backend.train_step(model, batch(rng), backend.make_optimizer(model, fedmodel.SGD(0.5)))
    assert step.predictions["logits"].grad_fn is None
    assert not torch.equal(model.module.body.weight, before)
    assert set(model.predict_on_batch(batch(rng)[0])) == {"logits", "probabilities"}


def test_importing_the_backend_installs_no_process_wide_module_hook() -> None:
    import torch.nn.modules.module as torch_module  # fedmodel_torch was imported with this test module

    hooks = [
        torch_module._global_module_registration_hooks,
        torch_module._global_forward_hooks,
        torch_module._global_forward_pre_hooks,
    ]
    assert [len(h) for h in hooks] == [0, 0, 0]
