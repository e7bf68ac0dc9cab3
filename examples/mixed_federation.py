"""One federation, three frameworks: PyTorch, Keras and JAX clients train one global model.

Each client's model is wrapped by ``fedmodel.layout.canonical``, which presents its weights in the
architecture's neutral layout (PyTorch's ``Linear.weight`` is transposed on the way out and back in),
so the runner averages them like any other weights. Run: ``python examples/mixed_federation.py``.
"""

from __future__ import annotations

import fedmodel
from fedmodel.algorithms import fedavg
from fedmodel.data import federated_digits
from fedmodel.layout import canonical
from fedmodel.simulation import SimulationConfig, run_simulation


def main(rounds: int = 10) -> None:
    """Train the digits MLP with clients split evenly across the three frameworks, then swap frameworks."""
    from fedmodel_jax import models as jax_models
    from fedmodel_tensorflow import models as keras_models
    from fedmodel_torch import models as torch_models

    factories = {
        "torch": lambda: canonical(torch_models.mlp(seed=0)),
        "keras": lambda: canonical(keras_models.mlp(seed=0)),
        "jax": lambda: canonical(jax_models.mlp(seed=0)),
    }
    data = federated_digits(num_clients=12, alpha=0.5, seed=0)
    result = run_simulation(
        factories,  # clients take the kinds in turn: 0 torch, 1 keras, 2 jax, 3 torch, ...
        data.clients,
        fedavg(epochs=1, batch_size=16, client_lr=0.2),
        SimulationConfig(rounds=rounds, seed=0, progress=False),
        test_data=data.test,
    )
    for r in result.rounds:
        print(f"round {r.round:2d}  test accuracy {r.test['accuracy']:.3f}  clients {r.num_ok}")
    # the global model, exported from the federation, predicts the same in every framework
    x = data.test.x[:8]
    for kind, factory in factories.items():
        model = factory()
        fedmodel.assign_weights(model, result.weights)
        print(kind, model.predict_on_batch(x).__array__().argmax(axis=1))


if __name__ == "__main__":
    main()
