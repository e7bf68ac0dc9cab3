"""One federation, three frameworks: torch, Keras and JAX clients train one model (issue 11).

Each client's model is wrapped by :func:`fedmodel.layout.canonical`, so weights travel in one neutral
layout (torch's ``Linear.weight`` is transposed on the way out and back in).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fedmodel
from fedmodel.algorithms import fedavg
from fedmodel.data import federated_digits
from fedmodel.layout import canonical
from fedmodel.simulation import SimulationConfig, run_simulation

torch_models = pytest.importorskip("fedmodel_torch").models
keras_models = pytest.importorskip("fedmodel_tensorflow").models
jax_models = pytest.importorskip("fedmodel_jax").models

ROUNDS = 8
ACCURACY_TOLERANCE = 0.01  # the three frameworks differ only by float32 rounding


def _factories() -> dict[str, Any]:
    return {
        "torch": lambda: canonical(torch_models.mlp(seed=0)),
        "keras": lambda: canonical(keras_models.mlp(seed=0)),
        "jax": lambda: canonical(jax_models.mlp(seed=0)),
    }


def test_the_three_mlps_share_one_canonical_layout() -> None:
    weights = {kind: fedmodel.get_weights(factory()) for kind, factory in _factories().items()}
    expected = (
        ("dense_0/bias", (32,)),
        ("dense_0/kernel", (64, 32)),
        ("dense_1/bias", (10,)),
        ("dense_1/kernel", (32, 10)),
    )
    for kind, w in weights.items():
        assert tuple((name, a.shape) for name, a in w.items()) == expected, kind


@pytest.mark.slow
def test_mixed_federation_reaches_the_accuracy_of_an_all_torch_run() -> None:
    data = federated_digits(num_clients=12, alpha=0.5, seed=0)
    algorithm = fedavg(epochs=1, batch_size=16, client_lr=0.2)
    config = SimulationConfig(rounds=ROUNDS, seed=0, progress=False)
    factories = _factories()
    mixed = run_simulation(factories, data.clients, algorithm, config, test_data=data.test)
    torch_only = run_simulation(factories["torch"], data.clients, algorithm, config, test_data=data.test)
    mixed_acc = [r.test["accuracy"] for r in mixed.rounds]
    torch_acc = [r.test["accuracy"] for r in torch_only.rounds]
    assert all(not r.failures for r in mixed.rounds)
    assert mixed_acc[-1] >= 0.75, mixed_acc
    np.testing.assert_allclose(mixed_acc, torch_acc, atol=ACCURACY_TOLERANCE, err_msg=f"{mixed_acc} vs {torch_acc}")
    # the clients really were split evenly across the frameworks, and the weights agree closely
    for a, b in zip(mixed.weights.arrays, torch_only.weights.arrays, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)


def _predictions(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_on_batch(x))


@pytest.mark.parametrize("source", ["torch", "keras", "jax"])
def test_a_global_model_exported_from_one_framework_predicts_identically_in_the_others(source: str) -> None:
    factories = _factories()
    rng = np.random.default_rng(0)
    trained = factories[source]()
    perturbed = [a + rng.normal(0, 0.05, a.shape).astype(a.dtype) for a in fedmodel.get_weights(trained).arrays]
    exported = fedmodel.get_weights(trained).with_arrays(perturbed)
    fedmodel.assign_weights(trained, exported)
    x = rng.random((16, 64), np.float32)
    reference = _predictions(trained, x)
    for target, factory in factories.items():
        model = factory()
        fedmodel.assign_weights(model, exported)
        np.testing.assert_allclose(_predictions(model, x), reference, atol=1e-5, err_msg=f"{source} -> {target}")


def test_a_layout_mismatch_is_a_clear_error() -> None:
    bigger = canonical(torch_models.mlp(hidden=(16,), seed=0))
    with pytest.raises(fedmodel.WeightsError, match=r"'dense_0/bias'.*expected shape \(16,\), got \(32,\)"):
        fedmodel.assign_weights(bigger, fedmodel.get_weights(_factories()["jax"]()))
    deeper = canonical(keras_models.mlp(hidden=(32, 32), seed=0))
    with pytest.raises(fedmodel.WeightsError, match="the model has 6 variables, the weights have 4"):
        fedmodel.assign_weights(deeper, fedmodel.get_weights(_factories()["torch"]()))


def test_batch_norm_counters_have_no_keras_counterpart() -> None:
    torch_cnn = canonical(torch_models.cnn_bn(seed=0))
    names = fedmodel.get_weights(torch_cnn).non_trainable_names or ()
    assert "batch_norm_0/num_batches_tracked" in names
    keras_cnn = canonical(keras_models.cnn_bn(seed=0))
    with pytest.raises(fedmodel.WeightsError):
        fedmodel.assign_weights(keras_cnn, fedmodel.get_weights(torch_cnn))


def test_the_conformance_suite_passes_on_a_canonical_model() -> None:
    from fedmodel_conformance import Case, run_checks

    def make_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return rng.random((size, 64), np.float32), rng.integers(0, 10, size)

    report = run_checks(
        Case(
            name="canonical-torch-mlp",
            make_model=lambda: canonical(torch_models.mlp(hidden=(8,))),
            make_batch=make_batch,
        )
    )
    assert report.ok, report.format()
