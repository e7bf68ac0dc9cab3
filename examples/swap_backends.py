"""One federated training loop, four backends: the backend is chosen by one argument.

    python examples/swap_backends.py torch        # or: numpy, tensorflow, jax

The loop below never imports a framework: it talks to the model through the fedmodel contract
(get/assign weights, forward_pass, metrics) and to the framework through ``fedmodel.backend_for``; the
server side of each round is the same ``fedmodel.server.ServerRound`` the simulation and Flower run.
"""

from __future__ import annotations

import sys

import fedmodel
from fedmodel.algorithms import fedavg
from fedmodel.data import federated_digits
from fedmodel.evaluation import evaluate
from fedmodel.server import ServerRound, client_seed, sample_clients


def make_model(backend: str) -> fedmodel.Model:
    """The only backend-specific line of the example."""
    if backend == "numpy":
        from fedmodel.reference import SoftmaxRegression

        return SoftmaxRegression(64, 10)
    import importlib

    return importlib.import_module(f"fedmodel_{backend}.models").mlp(num_features=64, num_classes=10)  # type: ignore[no-any-return]


def main(backend: str = "numpy", rounds: int = 10) -> float:
    """Train FedAvg on digits split over 10 clients; return the final test accuracy."""
    data = federated_digits(num_clients=10, alpha=0.5, seed=0)
    model = make_model(backend)
    framework = fedmodel.backend_for(model)
    algorithm = fedavg(epochs=2, batch_size=16, client_lr=0.1)
    state = algorithm.init(fedmodel.get_weights(model))
    for r in range(rounds):
        server_round = ServerRound(algorithm, state, metrics=model.federated_output_computation)
        for c in sample_clients(len(data.clients), 5, seed=0, round_index=r):
            result = algorithm.client_update(model, framework, state.weights, data.clients[c], client_seed(0, r, c))
            server_round.add(c, result)  # validated and folded in, or dropped with a reason
        state = server_round.finish().state
        metrics = evaluate(model, [data.test], weights=state.weights)
        print(f"{backend} round {r + 1:2d}: test loss {metrics['loss']:.3f}, accuracy {metrics['accuracy']:.3f}")
    return float(metrics["accuracy"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "numpy")
