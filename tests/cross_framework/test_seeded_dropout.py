"""Dropout is a function of the client's seed: the optional ``Backend.seed_training`` hook.

Each framework's built-in ``cnn_bn`` (Dropout 0.25) must give the same weights in two serial runs of one
process, the same update for the same server weights and seed (and another for another seed), leave torch's
global generator alone, and give the serial run's weights on worker processes, bit for bit.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from fedmodel import backend_for, get_weights
from fedmodel.algorithms import fedavg
from fedmodel.backend_kit import classification_spec
from fedmodel.client import ClientResult, train_client
from fedmodel.data import ClientData, FederatedData, federated_digits
from fedmodel.optimizers import SGD
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, SimulationResult, run_simulation

FRAMEWORKS = ("torch", "jax", "tensorflow")


def _factory(framework: str) -> Any:
    """A picklable ``cnn_bn`` factory of ``framework`` (skips when the framework is not installed)."""
    if framework == "jax":
        pytest.importorskip("optax")
    package = pytest.importorskip(f"fedmodel_{framework}")
    return functools.partial(package.models.cnn_bn, channels=(4, 8), seed=0)


@pytest.fixture(scope="module")
def digits() -> FederatedData:
    """Clients of 64 examples: batches of one shape, so JAX and Keras compile their step once."""
    data = federated_digits(num_clients=12, alpha=None)
    return FederatedData([ClientData(c.x[:64], c.y[:64]) for c in data.clients], data.test)


def _run(factory: Any, clients: Any, **config: Any) -> SimulationResult:
    algorithm = fedavg(client_lr=0.1, batch_size=16)
    return run_simulation(factory, clients, algorithm, SimulationConfig(rounds=2, progress=False, **config))


def _bits(arrays: Any) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in arrays]


def _update(model: Any, server: Any, data: ClientData, seed: int) -> ClientResult:
    return train_client(model, server, data, epochs=1, batch_size=16, optimizer=SGD(0.1), seed=seed)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_two_serial_runs_in_one_process_give_the_same_weights(framework: str, digits: FederatedData) -> None:
    factory = _factory(framework)
    first = _run(factory, digits.clients[:3])
    second = _run(factory, digits.clients[:3])
    assert _bits(first.weights.arrays) == _bits(second.weights.arrays)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_client_update_is_a_function_of_the_server_weights_and_the_seed(
    framework: str, digits: FederatedData
) -> None:
    model = _factory(framework)()
    server = get_weights(model)
    data = digits.clients[0]
    first = _update(model, server, data, seed=5)
    _update(model, server, data, seed=9)  # the model has trained since: the seed alone decides the next update
    again = _update(model, server, data, seed=5)
    other = _update(model, server, data, seed=6)  # the same example order would not do: dropout differs
    assert _bits(first.weights.arrays) == _bits(again.weights.arrays)
    assert _bits(first.weights.arrays) != _bits(other.weights.arrays)


def test_dropout_really_draws_with_the_seed_not_just_the_example_order(digits: FederatedData) -> None:
    """Unshuffled, two seeds differ only by their dropout masks (so the hook's seed reaches dropout)."""
    model = _factory("torch")()
    server = get_weights(model)
    data = digits.clients[0]

    def update(seed: int) -> list[bytes]:
        result = train_client(
            model, server, data, epochs=1, batch_size=16, optimizer=SGD(0.1), seed=seed, shuffle=False
        )
        return _bits(result.weights.arrays)

    assert update(1) == update(1) != update(2)


def test_a_torch_client_update_leaves_torchs_global_generator_alone(digits: FederatedData) -> None:
    torch = pytest.importorskip("torch")
    model = _factory("torch")()
    server = get_weights(model)
    before = torch.random.get_rng_state()
    _update(model, server, digits.clients[0], seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_torch_run_on_two_workers_gives_the_serial_runs_weights(digits: FederatedData) -> None:
    factory = _factory("torch")
    serial = _run(factory, digits.clients[:4])
    parallel = _run(factory, digits.clients[:4], workers=2)
    assert _bits(parallel.weights.arrays) == _bits(serial.weights.arrays)


class _SeedSpy:
    """The numpy reference backend with a ``seed_training`` hook that records its calls."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.name = backend.name
        self.calls: list[tuple[Any, int, bool]] = []
        self.model: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def seed_training(self, model: Any, seed: int) -> None:
        server = get_weights(self.model)
        self.calls.append(
            (model, seed, all(np.array_equal(a, b) for a, b in zip(server.arrays, self.expected, strict=True)))
        )

    expected: Any = None


def test_train_client_seeds_the_backend_after_assigning_the_server_weights(digits: FederatedData) -> None:
    model = SoftmaxRegression(64, 10, seed=0)
    spy = _SeedSpy(backend_for(model))
    spy.model = model
    server = get_weights(SoftmaxRegression(64, 10, seed=3))
    spy.expected = server.arrays
    train_client(model, server, digits.clients[0], epochs=1, batch_size=16, optimizer=SGD(0.1), seed=42, backend=spy)
    assert spy.calls == [(model, 42, True)]


def test_a_backend_without_the_hook_still_trains(digits: FederatedData) -> None:
    """The hook is optional: the numpy reference backend has no randomness and no ``seed_training``."""
    model = SoftmaxRegression(64, 10, seed=0)
    backend = backend_for(model)
    assert not hasattr(backend, "seed_training")
    result = _update(model, get_weights(model), digits.clients[0], seed=1)
    assert result.num_steps > 0


def test_seeding_a_jax_model_compiles_nothing_again(digits: FederatedData) -> None:
    """The seeded key is a traced argument of the jitted step, not a static one."""
    pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    fedmodel_jax = pytest.importorskip("fedmodel_jax")
    models = fedmodel_jax.models
    traces: list[bool] = []

    def init(rng: Any, x: Any) -> Any:
        return (models.Dense(jax.random.normal(rng, (x.shape[1], 10)) * 0.01, jax.numpy.zeros(10)),)

    def apply(params: Any, state: Any, x: Any, training: bool, rng: Any) -> tuple[Any, Any]:
        traces.append(training)  # runs once per compilation
        if training:  # input dropout, from the key the model passes in
            x = x * jax.random.bernoulli(rng, 0.75, x.shape) / 0.75
        return models.mlp_apply(params, state, x, training, rng)

    model = fedmodel_jax.from_functions(init, apply, models.cross_entropy, classification_spec(64, 10))
    server = get_weights(model)
    first = _update(model, server, digits.clients[0], seed=1)
    for seed in (2, 1):
        last = _update(model, server, digits.clients[0], seed)
    assert traces == [True]
    assert _bits(first.weights.arrays) == _bits(last.weights.arrays)


def test_seeding_a_keras_model_traces_nothing_again(digits: FederatedData) -> None:
    model = _factory("tensorflow")()
    server = get_weights(model)
    _update(model, server, digits.clients[0], seed=1)
    before = model.tracing_counts()
    for seed in (2, 3):
        _update(model, server, digits.clients[0], seed)
    assert model.tracing_counts() == before
