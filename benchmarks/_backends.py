"""Per-backend pieces the benchmarks need: the built-in MLP, a big MLP, and hand-written native steps.

Every framework is imported lazily; a backend that is missing (or not written yet) raises
:class:`~benchmarks._harness.UnavailableError` with the reason. The native steps do the same work as the
contract's ``forward_pass`` / ``train_step``: logits, mean cross-entropy, and the running loss sum,
correct count and example count, written the way a framework user would write them.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks._harness import UnavailableError

__all__ = ["BACKENDS", "big_mlp", "load", "mlp", "native_forward", "native_train_step"]

BACKENDS = ("numpy", "torch", "tensorflow", "jax")
NativeStep = Callable[[np.ndarray, np.ndarray], Any]


def load(name: str) -> Any:
    """The backend package ``fedmodel_<name>`` (``fedmodel.reference`` for numpy), or :class:`UnavailableError`."""
    target = "fedmodel.reference" if name == "numpy" else f"fedmodel_{name}"
    try:
        module = importlib.import_module(target)
    except ImportError as exc:
        raise UnavailableError(f"{target} cannot be imported ({exc})") from None
    if name != "numpy" and not hasattr(getattr(module, "models", None), "mlp"):
        raise UnavailableError(f"{target} has no models.mlp yet")
    return module


def mlp(
    name: str, num_features: int = 64, hidden: tuple[int, ...] = (32,), num_classes: int = 10, seed: int = 0
) -> Any:
    """The backend's built-in ``models.mlp`` (numpy: softmax regression, the only reference model)."""
    module = load(name)
    if name == "numpy":
        return module.SoftmaxRegression(num_features, num_classes, seed=seed)
    return module.models.mlp(num_features=num_features, hidden=hidden, num_classes=num_classes, seed=seed)


def big_mlp(name: str, num_params: int) -> Any:
    """A float32 model of about ``num_params`` parameters: an MLP of three square layers (numpy: one matrix)."""
    if name == "numpy":
        side = max(1, math.isqrt(num_params))
        return load(name).SoftmaxRegression(side, max(1, num_params // side), seed=0)
    width = max(2, math.isqrt(num_params // 3))
    return mlp(name, num_features=width, hidden=(width, width), num_classes=width)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


def native_forward(name: str, model: Any) -> NativeStep:
    """A hand-written eval-mode forward of ``model``'s own network: logits, mean loss, running metrics."""
    if name == "numpy":
        totals = {"loss": 0.0, "correct": 0, "count": 0}

        def numpy_forward(x: np.ndarray, y: np.ndarray) -> Any:
            kernel, bias = (v.value for v in model.trainable_variables)
            logits = (x * model.non_trainable_variables[0].value) @ kernel + bias
            loss = -_log_softmax(logits.astype(np.float64))[np.arange(len(y)), y].mean()
            totals["loss"] += loss * len(y)
            totals["correct"] += np.count_nonzero(logits.argmax(axis=1) == y)
            totals["count"] += len(y)
            return loss, logits

        return numpy_forward
    return {"torch": _torch_forward, "tensorflow": _tf_forward, "jax": _jax_forward}[name](model)


def native_train_step(name: str, model: Any, learning_rate: float) -> NativeStep:
    """A hand-written SGD step on ``model``'s own network (train mode): loss, backward, step, running metrics."""
    if name == "numpy":
        raise UnavailableError("the numpy reference has no native framework to compare its train step with")
    return {"torch": _torch_train, "tensorflow": _tf_train, "jax": _jax_train}[name](model, learning_rate)


# -- torch ------------------------------------------------------------------------------------------
def _torch_forward(model: Any) -> NativeStep:
    import torch

    module = model.module.eval()
    loss_sum, correct, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64), [0]

    def forward(x: np.ndarray, y: np.ndarray) -> Any:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        with torch.no_grad():
            logits = module(xt)
            loss = torch.nn.functional.cross_entropy(logits, yt)
            loss_sum.add_(loss.double() * len(y))
            correct.add_((logits.argmax(dim=-1) == yt).sum())
            count[0] += len(y)
        return loss, logits

    return forward


def _torch_train(model: Any, learning_rate: float) -> NativeStep:
    import torch

    module = model.module.train()
    opt = torch.optim.SGD(module.parameters(), lr=learning_rate)
    loss_sum, correct, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64), [0]

    def step(x: np.ndarray, y: np.ndarray) -> Any:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt.zero_grad()
        logits = module(xt)
        loss = torch.nn.functional.cross_entropy(logits, yt)
        loss.backward()
        opt.step()
        with torch.no_grad():
            loss_sum.add_(loss.detach().double() * len(y))
            correct.add_((logits.detach().argmax(dim=-1) == yt).sum())
            count[0] += len(y)
        return loss.detach(), logits.detach()

    return step


# -- TensorFlow (Keras 3) ---------------------------------------------------------------------------
def _keras(model: Any) -> Any:
    keras_model = getattr(model, "keras_model", None)
    if keras_model is None:
        raise UnavailableError("the TensorFlow model exposes no keras_model")
    return keras_model


def _tf_metrics() -> Callable[[Any, Any, Any], None]:
    """The native running metrics: ``update(loss, logits, y)`` adds a batch to a loss sum, a correct count and
    an example count held in ``tf.Variable`` s (called inside the ``tf.function``)."""
    import tensorflow as tf

    loss_sum = tf.Variable(0.0, dtype=tf.float64)
    correct, count = tf.Variable(0, dtype=tf.int64), tf.Variable(0, dtype=tf.int64)

    def update(loss: Any, logits: Any, y: Any) -> None:
        n = tf.shape(y, out_type=tf.int64)[0]
        loss_sum.assign_add(tf.cast(loss, tf.float64) * tf.cast(n, tf.float64))
        correct.assign_add(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), y), tf.int64)))
        count.assign_add(n)

    return update


def _tf_forward(model: Any) -> NativeStep:
    import tensorflow as tf

    keras_model = _keras(model)
    update_metrics = _tf_metrics()

    @tf.function(reduce_retracing=True)
    def forward(x: Any, y: Any) -> Any:
        logits = keras_model(x, training=False)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        update_metrics(loss, logits, y)
        return loss, logits

    return lambda x, y: forward(tf.convert_to_tensor(x), tf.convert_to_tensor(y))


def _tf_train(model: Any, learning_rate: float) -> NativeStep:
    import keras
    import tensorflow as tf

    keras_model = _keras(model)
    opt = keras.optimizers.SGD(learning_rate)
    opt.build(keras_model.trainable_variables)
    update_metrics = _tf_metrics()

    @tf.function(reduce_retracing=True)
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            logits = keras_model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, keras_model.trainable_variables)
        opt.apply(grads, keras_model.trainable_variables)
        update_metrics(loss, logits, y)
        return loss, logits

    return lambda x, y: step(tf.convert_to_tensor(x), tf.convert_to_tensor(y))


# -- JAX --------------------------------------------------------------------------------------------
def _jax_params(model: Any) -> Any:
    from fedmodel_jax.models import Dense

    values = [v.value for v in model.trainable_variables]
    return tuple(Dense(k, b) for k, b in zip(values[::2], values[1::2], strict=True))


def _jax_loss_and_metrics(params: Any, metrics: Any, x: Any, y: Any) -> Any:
    import jax.numpy as jnp
    from fedmodel_jax.models import cross_entropy, mlp_apply

    logits, _ = mlp_apply(params, None, x, False, None)
    loss = cross_entropy(logits, y)
    loss_sum, correct, count = metrics
    n = y.shape[0]
    hits = jnp.sum(jnp.argmax(logits, axis=-1) == y)
    return loss, logits, (loss_sum + loss * n, correct + hits, count + n)


def _jax_forward(model: Any) -> NativeStep:
    import jax
    import jax.numpy as jnp

    params = _jax_params(model)
    state = {"metrics": (jnp.zeros(()), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))}
    forward = jax.jit(_jax_loss_and_metrics)

    def call(x: np.ndarray, y: np.ndarray) -> Any:
        loss, logits, state["metrics"] = forward(params, state["metrics"], x, y)
        return loss, logits

    return call


def _jax_train(model: Any, learning_rate: float) -> NativeStep:
    import jax
    import jax.numpy as jnp
    import optax

    tx = optax.sgd(learning_rate)
    state = {"params": _jax_params(model)}
    state["opt"] = tx.init(state["params"])
    state["metrics"] = (jnp.zeros(()), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def objective(params: Any, metrics: Any, x: Any, y: Any) -> Any:
        loss, logits, metrics = _jax_loss_and_metrics(params, metrics, x, y)
        return loss, (logits, metrics)

    @jax.jit
    def step(params: Any, opt_state: Any, metrics: Any, x: Any, y: Any) -> Any:
        (loss, (logits, metrics)), grads = jax.value_and_grad(objective, has_aux=True)(params, metrics, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics, loss, logits

    def call(x: np.ndarray, y: np.ndarray) -> Any:
        state["params"], state["opt"], state["metrics"], loss, logits = step(
            state["params"], state["opt"], state["metrics"], x, y
        )
        return loss, logits

    return call
