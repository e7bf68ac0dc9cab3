"""Specification of ``fedmodel_torch.BACKEND``: weights in and out, batches in, one optimizer step."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fedmodel_torch  # noqa: E402
from fedmodel_torch import BACKEND, models  # noqa: E402

import fedmodel  # noqa: E402
from fedmodel import ModelWeights  # noqa: E402


def digits_batch(rng: np.random.Generator, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((size, 64)).astype(np.float32), rng.integers(0, 10, size).astype(np.int64)


def every_value(model: fedmodel_torch.TorchModel) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in model.trainable_variables + model.non_trainable_variables]


# -- weights --------------------------------------------------------------------------------------
def test_get_then_assign_round_trips_bit_identically_batchnorm_counters_included(rng: np.random.Generator) -> None:
    source, target = models.cnn_bn(seed=1), models.cnn_bn(seed=2)
    source.forward_pass(digits_batch(rng), training=True)  # move the statistics off their defaults
    weights = fedmodel.get_weights(source)
    assert weights.non_trainable[2].dtype == np.int64 and weights.non_trainable[2] == 1
    fedmodel.assign_weights(target, weights)
    for got, want in zip(every_value(target), every_value(source), strict=True):
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()


def test_assign_writes_in_place_so_tensors_and_optimizers_keep_their_references(rng: np.random.Generator) -> None:
    model = models.mlp()
    ids = [id(v) for v in model.trainable_variables]
    optimizer = BACKEND.make_optimizer(model, fedmodel.SGD(learning_rate=0.1))
    fedmodel.assign_weights(model, fedmodel.get_weights(models.mlp(seed=5)))
    assert [id(v) for v in model.trainable_variables] == ids
    assert all(a is b for a, b in zip(optimizer.params, model.trainable_variables, strict=True))


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda w: w.with_arrays([*w.arrays[:-1], w.arrays[-1][:-1]]), id="shape"),
        pytest.param(lambda w: w.with_arrays([*w.arrays[:-1], w.arrays[-1].astype(np.float64)]), id="dtype"),
        pytest.param(lambda w: ModelWeights(w.trainable[:-1], w.non_trainable), id="count"),
        pytest.param(
            lambda w: ModelWeights(w.trainable, w.non_trainable, ("a", "b", "c", "d"), w.non_trainable_names),
            id="names",
        ),
    ],
)
def test_a_bad_assign_raises_weights_error_and_changes_nothing(corrupt: object) -> None:
    model = models.mlp()
    before = every_value(model)
    new = fedmodel.get_weights(models.mlp(seed=9))
    with pytest.raises(fedmodel.WeightsError):
        fedmodel.assign_weights(model, corrupt(new))  # type: ignore[operator]
    for got, want in zip(every_value(model), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_write_variables_called_directly_checks_every_value_before_the_first_write() -> None:
    model = models.mlp()
    before = every_value(model)
    values = [np.zeros(v.shape, np.float32) for v in model.trainable_variables]
    values[-1] = np.zeros(3, np.float32)  # the last one is wrong: the first three must stay untouched
    with pytest.raises(fedmodel.WeightsError, match="variable 3"):
        BACKEND.write_variables(model.trainable_variables, values)
    for got, want in zip(every_value(model), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_copies_are_independent_and_copy_false_views_are_read_only_and_live(rng: np.random.Generator) -> None:
    model = models.mlp()
    copies = fedmodel.get_weights(model)
    views = fedmodel.get_weights(model, copy=False)
    assert np.shares_memory(views.trainable[0], model.trainable_variables[0].detach().numpy())
    assert not np.shares_memory(copies.trainable[0], model.trainable_variables[0].detach().numpy())
    with pytest.raises(ValueError, match="read-only"):
        views.trainable[0][0, 0] = 1.0
    kept = views.trainable[0].copy()
    BACKEND.train_step(model, digits_batch(rng), BACKEND.make_optimizer(model, fedmodel.SGD(learning_rate=0.5)))
    assert not np.array_equal(views.trainable[0], kept)  # live: shows the step
    np.testing.assert_array_equal(views.trainable[0], model.trainable_variables[0].detach().numpy())
    np.testing.assert_array_equal(copies.trainable[0], kept)  # a copy does not move


def test_read_only_views_of_one_model_can_be_assigned_to_another_without_warnings() -> None:
    source, target = models.mlp(seed=1), models.mlp(seed=2)
    fedmodel.assign_weights(target, fedmodel.get_weights(source, copy=False))
    for got, want in zip(every_value(target), every_value(source), strict=True):
        np.testing.assert_array_equal(got, want)


def test_bfloat16_variables_round_trip_through_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    spec = fedmodel_torch.models.input_spec(4)
    model = fedmodel_torch.from_module(
        torch.nn.Linear(4, 3).to(torch.bfloat16), torch.nn.functional.cross_entropy, spec
    )
    weights = fedmodel.get_weights(model)
    assert weights.trainable[0].dtype == ml_dtypes.bfloat16
    new = weights.with_arrays([(a.astype(np.float32) + 1).astype(ml_dtypes.bfloat16) for a in weights.arrays])
    fedmodel.assign_weights(model, new)
    np.testing.assert_array_equal(model.module.weight.detach().float().numpy(), new.trainable[0].astype(np.float32))
    assert fedmodel.get_weights(model).trainable[0].tobytes() == new.trainable[0].tobytes()


def test_reads_resolve_lazy_conjugate_and_negative_views_and_copies_never_alias_the_tensor() -> None:
    z = torch.tensor([1 + 2j, -3 - 4j], dtype=torch.complex64)
    conj, neg = z.conj(), torch._neg_view(z)  # views with a bit set, which .numpy() refuses
    assert conj.is_conj() and neg.is_neg()
    for copy in (True, False):
        got_conj, got_neg = BACKEND.read_variables([conj, neg], copy=copy)
        np.testing.assert_array_equal(got_conj, np.array([1 - 2j, -3 + 4j], np.complex64))
        np.testing.assert_array_equal(got_neg, np.array([-1 - 2j, 3 + 4j], np.complex64))
    plain = torch.ones(3)
    [copied] = BACKEND.read_variables([plain], copy=True)
    [view] = BACKEND.read_variables([plain], copy=False)
    assert not np.shares_memory(copied, plain.numpy()) and np.shares_memory(view, plain.numpy())
    assert copied.flags.writeable and not view.flags.writeable


# -- batches and training -------------------------------------------------------------------------
def test_to_native_gives_tensors_on_the_models_device_sharing_memory_on_cpu(rng: np.random.Generator) -> None:
    x, y = digits_batch(rng)
    native = BACKEND.to_native(models.mlp(), {"x": x, "y": y})
    assert native["x"].device.type == "cpu" and native["y"].dtype == torch.int64
    assert np.shares_memory(native["x"].numpy(), x)


def test_train_step_leaves_no_gradient_and_no_graph_behind(rng: np.random.Generator) -> None:
    model = models.cnn_bn()
    optimizer = BACKEND.make_optimizer(model, fedmodel.SGD(learning_rate=0.1, momentum=0.9))
    before = every_value(model)
    out = BACKEND.train_step(model, digits_batch(rng), optimizer)
    assert out.loss.grad_fn is None and not out.loss.requires_grad and out.loss.shape == ()
    assert out.predictions.grad_fn is None and out.num_examples == 8
    assert all(p.grad is None for p in model.trainable_variables)
    after = every_value(model)
    assert all(not np.array_equal(a, b) for a, b in zip(after[:6], before[:6], strict=True))  # every weight moved
    assert model.module.training  # the module's own mode (train by default) is kept
    assert model.report_local_outputs()["num_examples"] == 8  # training metrics, as TFF keeps them


def test_train_step_accepts_a_users_own_torch_optimizer(rng: np.random.Generator) -> None:
    model = models.mlp()
    optimizer = torch.optim.SGD(model.trainable_variables, lr=0.1)
    before = every_value(model)
    BACKEND.train_step(model, digits_batch(rng), optimizer)
    assert not np.array_equal(every_value(model)[0], before[0])
    assert all(p.grad is None for p in model.trainable_variables)


def test_train_step_never_moves_frozen_parameters(rng: np.random.Generator) -> None:
    model = models.frozen_mlp()
    frozen = [v.detach().numpy().copy() for v in model.non_trainable_variables]
    optimizer = BACKEND.make_optimizer(model, fedmodel.Adam(learning_rate=0.1))
    for _ in range(3):
        BACKEND.train_step(model, digits_batch(rng), optimizer)
    for got, want in zip(model.non_trainable_variables, frozen, strict=True):
        np.testing.assert_array_equal(got.detach().numpy(), want)


def test_train_step_rejects_a_bad_batch_before_touching_anything(rng: np.random.Generator) -> None:
    model = models.mlp()
    before = every_value(model)
    x, y = digits_batch(rng)
    with pytest.raises(fedmodel.SpecError):
        BACKEND.train_step(model, (x, y.astype(np.int32)), BACKEND.make_optimizer(model, fedmodel.SGD(0.1)))
    for got, want in zip(every_value(model), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_train_step_refuses_a_foreign_model_whose_loss_has_no_gradient(rng: np.random.Generator) -> None:
    class Foreign:
        def __init__(self) -> None:
            self.trainable_variables = [torch.zeros(2, requires_grad=True)]

        def forward_pass(self, batch: object, training: bool = True) -> fedmodel.BatchOutput[torch.Tensor]:
            return fedmodel.BatchOutput(torch.tensor(1.0), torch.zeros(2, 3), 2)

    model = Foreign()
    with pytest.raises(fedmodel.BackendError, match="without gradient"):
        BACKEND.train_step(model, None, BACKEND.make_optimizer(model, fedmodel.SGD(0.1)))
    assert BACKEND.variable_names(model, model.trainable_variables) == ["0"]


def test_make_optimizer_maps_the_neutral_specs_to_torch_optim() -> None:
    model = models.mlp()
    sgd = BACKEND.make_optimizer(model, fedmodel.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01)).native
    assert isinstance(sgd, torch.optim.SGD)
    assert {k: sgd.defaults[k] for k in ("lr", "momentum", "nesterov", "weight_decay")} == {
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.01,
    }
    adam = BACKEND.make_optimizer(model, fedmodel.Adam(0.01, beta1=0.8, beta2=0.99, epsilon=1e-6)).native
    assert isinstance(adam, torch.optim.Adam)
    assert (adam.defaults["lr"], adam.defaults["betas"], adam.defaults["eps"]) == (0.01, (0.8, 0.99), 1e-6)
    prox = BACKEND.make_optimizer(model, fedmodel.SGD(0.1, proximal_mu=0.5))
    assert prox.proximal_mu == 0.5 and prox.anchor is not None
    assert all(a is not p and torch.equal(a, p) for a, p in zip(prox.anchor, model.trainable_variables, strict=True))


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param(lambda a: a.astype(a.dtype.newbyteorder()), id="non-native-byte-order"),
        pytest.param(lambda a: np.stack([a, a], axis=-1)[..., 0], id="non-contiguous"),
        pytest.param(lambda a: a[::-1, ::-1].copy()[::-1, ::-1], id="negative-strides"),
    ],
)
def test_values_in_any_numpy_layout_are_assigned_exactly(layout: object) -> None:
    model = models.mlp()
    kernel = np.arange(32 * 64, dtype=np.float32).reshape(32, 64) / 7
    odd = layout(kernel)  # type: ignore[operator]
    weights = fedmodel.get_weights(model)
    fedmodel.assign_weights(model, weights.with_arrays([odd, *weights.arrays[1:]]))
    np.testing.assert_array_equal(model.module[0].weight.detach().numpy(), kernel)
