"""One FedAvg round of the same MLP in PyTorch, Keras and JAX, from the same weights, agrees to 1e-4.

The layouts differ: torch's ``Linear.weight`` is ``(out, in)``, Keras's and Flax's kernels are
``(in, out)``; the test maps them with explicit transposes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedmodel import ModelWeights, get_weights
from fedmodel.algorithms import fedavg
from fedmodel.data import federated_digits
from fedmodel.simulation import SimulationConfig, run_simulation

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("jax")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _models() -> dict[str, Any]:
    import fedmodel_jax.models
    import fedmodel_tensorflow.models
    import fedmodel_torch.models

    return {
        "torch": fedmodel_torch.models.mlp,
        "tensorflow": fedmodel_tensorflow.models.mlp,
        "jax": fedmodel_jax.models.mlp,
    }


def _transpose_matrices(arrays: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    return [np.ascontiguousarray(a.T) if a.ndim == 2 else a for a in arrays]


def test_one_fedavg_round_agrees_across_torch_keras_and_jax() -> None:
    data = federated_digits(20, alpha=None, seed=0)
    clients = data.clients[:3]
    start_torch = get_weights(_models()["torch"](seed=0))  # (out, in) layout
    algo = fedavg(epochs=1, batch_size=16, client_lr=0.1)
    finals: dict[str, list[np.ndarray]] = {}
    for name, mlp in _models().items():
        template = get_weights(mlp(seed=1))
        arrays = list(start_torch.trainable) if name == "torch" else _transpose_matrices(start_torch.trainable)
        start = template.with_arrays(arrays)
        result = run_simulation(
            lambda mlp=mlp: mlp(seed=1),
            clients,
            algo,
            SimulationConfig(rounds=1, progress=False),
            initial_state=algo.init(start),
            test_data=data.test,
        )
        weights: ModelWeights = result.weights
        finals[name] = list(weights.trainable) if name == "torch" else _transpose_matrices(weights.trainable)
        assert result.rounds[0].num_ok == 3
    moved = max(float(np.abs(a - b).max()) for a, b in zip(finals["torch"], start_torch.trainable, strict=True))
    assert moved > 1e-2  # the round did train
    for other in ("tensorflow", "jax"):
        for a, b in zip(finals["torch"], finals[other], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0, err_msg=f"torch vs {other}")
