"""Client update on the numpy reference model: exact steps, seeded order, FedSGD, FedProx, evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from fedmodel import SGD, ModelWeights, get_weights
from fedmodel.algorithms import fedsgd
from fedmodel.client import batches, full_batch_step, local_sgd, train_client
from fedmodel.data import ClientData
from fedmodel.evaluation import evaluate
from fedmodel.reference import NUMPY_BACKEND, SoftmaxRegression
from fedmodel.server import ServerRound


def _data(rng: np.random.Generator, n: int = 12, features: int = 4, classes: int = 3) -> ClientData:
    return ClientData(rng.random((n, features), dtype=np.float32), rng.integers(0, classes, n).astype(np.int64))


def _grad(kernel: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy gradient of softmax regression, written out independently of the model."""
    logits = x.astype(np.float64) @ kernel + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return x.T @ p / len(y), p.sum(0) / len(y)


def _server(model: SoftmaxRegression) -> ModelWeights:
    weights = get_weights(model)
    for a in weights.arrays:
        a.flags.writeable = False
    return weights


def test_one_full_batch_epoch_is_one_gradient_step(rng: np.random.Generator) -> None:
    model, data = SoftmaxRegression(4, 3, seed=1), _data(rng)
    server = _server(model)
    result = train_client(model, server, data, epochs=1, batch_size=len(data), optimizer=SGD(0.5), seed=0)
    k0, b0 = (a.astype(np.float64) for a in server.trainable)
    gk, gb = _grad(k0, b0, data.x, data.y)
    np.testing.assert_allclose(result.weights.trainable[0], k0 - 0.5 * gk, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.weights.trainable[1], b0 - 0.5 * gb, rtol=1e-5, atol=1e-7)
    assert result.num_examples == 12 and result.num_steps == 1


def test_mini_batches_follow_the_seeded_permutation(rng: np.random.Generator) -> None:
    model, data = SoftmaxRegression(4, 3, seed=1), _data(rng)
    server = _server(model)
    result = train_client(model, server, data, epochs=2, batch_size=5, optimizer=SGD(0.3), seed=42)
    order = np.random.default_rng(42)
    k, b = (a.astype(np.float64) for a in server.trainable)
    steps = 0
    for _ in range(2):
        perm = order.permutation(12)
        for start in range(0, 12, 5):
            idx = perm[start : start + 5]
            gk, gb = _grad(k, b, data.x[idx], data.y[idx])
            k, b = k - 0.3 * gk, b - 0.3 * gb
            steps += 1
    assert result.num_steps == steps == 6
    np.testing.assert_allclose(result.weights.trainable[0], k, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.weights.trainable[1], b, rtol=1e-4, atol=1e-6)


def test_same_seed_same_result_and_other_seed_other_order(rng: np.random.Generator) -> None:
    model, data = SoftmaxRegression(4, 3, seed=1), _data(rng)
    server = _server(model)
    update = local_sgd(epochs=1, batch_size=3, optimizer=SGD(0.5))
    a = update(model, NUMPY_BACKEND, server, data, 7)
    b = update(model, NUMPY_BACKEND, server, data, 7)
    c = update(model, NUMPY_BACKEND, server, data, 8)
    np.testing.assert_array_equal(a.weights.trainable[0], b.weights.trainable[0])
    assert not np.array_equal(a.weights.trainable[0], c.weights.trainable[0])


def test_metrics_are_reset_then_cover_every_training_example(rng: np.random.Generator) -> None:
    model, data = SoftmaxRegression(4, 3), _data(rng)
    model.forward_pass((data.x, data.y))  # stale metrics from before the round
    result = train_client(model, get_weights(model), data, epochs=3, batch_size=4, optimizer=SGD(0.1), seed=0)
    assert int(result.metrics["num_examples"]) == 36
    assert isinstance(result.metrics["loss"][0], np.ndarray)


def test_the_server_weights_are_left_untouched(rng: np.random.Generator) -> None:
    model, data = SoftmaxRegression(4, 3), _data(rng)
    server = _server(model)
    before = server.copy()
    train_client(model, server, data, epochs=2, batch_size=4, optimizer=SGD(1.0), seed=0)
    for a, b in zip(server.arrays, before.arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fedprox_second_step_is_pulled_back_to_the_server_weights(rng: np.random.Generator) -> None:
    model, data = SoftmaxRegression(4, 3, seed=1), _data(rng)
    server = _server(model)
    result = train_client(model, server, data, epochs=2, batch_size=12, optimizer=SGD(0.5, proximal_mu=2.0), seed=0)
    k0, b0 = (a.astype(np.float64) for a in server.trainable)
    gk, gb = _grad(k0, b0, data.x, data.y)
    k1, b1 = k0 - 0.5 * gk, b0 - 0.5 * gb  # the proximal term is zero at the anchor
    gk, gb = _grad(k1, b1, data.x, data.y)
    k2, b2 = k1 - 0.5 * (gk + 2.0 * (k1 - k0)), b1 - 0.5 * (gb + 2.0 * (b1 - b0))
    np.testing.assert_allclose(result.weights.trainable[0], k2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.weights.trainable[1], b2, rtol=1e-5, atol=1e-7)


def test_fedsgd_round_equals_one_gradient_step_on_the_union(rng: np.random.Generator) -> None:
    model = SoftmaxRegression(4, 3, seed=3)
    a, b = _data(rng, n=5), _data(rng, n=11)
    algo = fedsgd(client_lr=0.7)
    state = algo.init(get_weights(model))
    server_round = ServerRound(algo, state)
    for cid, d in enumerate((a, b)):
        server_round.add(cid, algo.client_update(model, NUMPY_BACKEND, state.weights, d, 0))
    state = server_round.finish().state
    union = ClientData(np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]))
    central = full_batch_step(learning_rate=0.7)(
        model, NUMPY_BACKEND, algo.init(get_weights(SoftmaxRegression(4, 3, seed=3))).weights, union, 0
    )
    np.testing.assert_allclose(state.weights.trainable[0], central.weights.trainable[0], rtol=1e-5, atol=1e-7)


def test_train_client_rejects_an_empty_client() -> None:
    model = SoftmaxRegression(4, 3)
    empty = ClientData(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="needs examples"):
        train_client(model, get_weights(model), empty, epochs=1, batch_size=2, optimizer=SGD(0.1), seed=0)


def test_batches_in_order_keep_the_short_last_batch(rng: np.random.Generator) -> None:
    data = _data(rng, n=7)
    sizes = [len(y) for _, y in batches(data, 3, None)]
    assert sizes == [3, 3, 1]


def test_federated_evaluation_equals_evaluation_of_the_union(rng: np.random.Generator) -> None:
    model = SoftmaxRegression(4, 3, seed=2)
    a, b = _data(rng, n=5), _data(rng, n=9)
    union = ClientData(np.concatenate([a.x, b.x]), np.concatenate([a.y, b.y]))
    split = evaluate(model, [a, b], batch_size=4)
    whole = evaluate(model, [union], batch_size=100)
    assert split["num_examples"] == whole["num_examples"] == 14
    assert split["accuracy"] == whole["accuracy"]
    assert split["loss"] == pytest.approx(whole["loss"], rel=1e-7)


def test_evaluation_changes_no_weight(rng: np.random.Generator) -> None:
    model = SoftmaxRegression(4, 3, seed=2)
    before = get_weights(model)
    evaluate(model, [_data(rng)])
    for x, y in zip(before.arrays, get_weights(model).arrays, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, r"epochs must be an int >= 1, got 0"),
        ({"epochs": 2.5}, r"epochs must be an int >= 1, got 2.5"),
        ({"epochs": True}, r"epochs must be an int >= 1, got True"),
        ({"batch_size": 0}, r"batch_size must be an int >= 1, got 0"),
        ({"batch_size": None}, r"batch_size must be an int >= 1, got None"),
        ({"optimizer": "sgd"}, r"optimizer must be a fedmodel OptimizerSpec .*got 'sgd'"),
    ],
)
def test_local_sgd_refuses_impossible_settings_when_it_is_built(options: dict[str, object], message: str) -> None:
    """Accepted before, they failed every client of every round at run time, each dropped with the same reason."""
    with pytest.raises((ValueError, TypeError), match=message):
        local_sgd(**options)  # type: ignore[arg-type]
