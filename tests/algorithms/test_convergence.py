"""FedAvg on digits (20 clients, Dirichlet alpha = 0.5) reaches 90 % test accuracy within 30 rounds."""

from __future__ import annotations

import pytest

from fedmodel.algorithms import fedavg
from fedmodel.data import federated_digits
from fedmodel.simulation import SimulationConfig, run_simulation
from fedmodel.train_cli import model_factory

FRAMEWORK = {"numpy": None, "torch": "torch", "tensorflow": "tensorflow", "jax": "jax"}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("backend", list(FRAMEWORK))
def test_fedavg_on_digits_reaches_90_percent_within_30_rounds(backend: str) -> None:
    framework = FRAMEWORK[backend]
    if framework is not None:
        pytest.importorskip(framework)
    data = federated_digits(20, alpha=0.5, seed=0)
    result = run_simulation(
        model_factory(backend, seed=0),
        data.clients,
        fedavg(epochs=2, batch_size=16, client_lr=0.2),
        SimulationConfig(rounds=30, seed=0, progress=False),
        test_data=data.test,
    )
    accuracy = [r.test["accuracy"] for r in result.rounds]
    assert len(accuracy) == 30 and all(r.num_ok == 20 for r in result.rounds)
    assert max(accuracy) >= 0.90, accuracy
    assert accuracy[-1] >= 0.90, accuracy
