"""A :class:`fedmodel.Model` over JAX pytrees: pure jitted functions inside, mutable boxes outside.

Two ways in:

* :func:`from_functions` — plain JAX: ``init(rng, sample_x) -> params`` and
  ``apply(params, state, x, training, rng) -> (outputs, new_state)``;
* :func:`from_flax` — a ``flax.linen`` module (every collection other than ``params``, e.g.
  ``batch_stats``, is state).

The contract's variables are :class:`Variable` boxes, one per leaf, in ``jax.tree_util`` flatten
order (dicts by sorted key, tuples and namedtuples in order), named by key path
(``params/0/kernel``, ``batch_stats/BatchNorm_0/mean``, ``metrics/count``).

Every call computes everything first (outputs, loss, new statistics, new metric sums) in one jitted
function, and only then writes the results into the boxes: a call that raises changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from fedmodel import tree as _tree
from fedmodel.backend_kit import (
    BatchOutput,
    Metric,
    SpecError,
    TensorSpec,
    Variable,
    check_batch,
    check_metric_names,
    check_spec,
    output_computation,
    split_batch,
    standard_report,
)
from fedmodel.metrics import SumThenFinalize

__all__ = ["Frozen", "JaxModel", "Program", "Variable", "from_flax", "from_functions", "sample_input"]

Frozen = str | Sequence[str] | Callable[[str], bool] | None
"""Which params are frozen (non-trainable): a name prefix (``"params/0"``), several, or a predicate on names."""

Leaves = list[jax.Array]


def _key_str(key: Any) -> str:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _boxes(prefix: str, tree: Any) -> tuple[list[Variable], Any]:
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    boxes = [
        Variable("/".join([prefix] * bool(prefix) + [_key_str(k) for k in path]), jnp.asarray(leaf))
        for path, leaf in paths_leaves
    ]
    return boxes, treedef


def _frozen_predicate(frozen: Frozen) -> Callable[[str], bool]:
    if frozen is None:
        return lambda name: False
    if callable(frozen):
        return frozen
    prefixes = (frozen,) if isinstance(frozen, str) else tuple(frozen)
    return lambda name: any(name == p or name.startswith(p.rstrip("/") + "/") for p in prefixes)


def _jax_dtype_spec(spec: Any) -> Any:
    """``spec`` with dtypes as JAX holds them (``int64`` becomes ``int32`` while x64 is off)."""

    def leaf(s: TensorSpec) -> TensorSpec:  # shape, name and bounds kept
        return dataclasses.replace(s, dtype=jax.dtypes.canonicalize_dtype(np.dtype(s.dtype)).name)

    return _tree.map_structure(leaf, spec)


def _integer_labels(spec_y: Any) -> bool:
    """Whether the labels are one integer array shaped ``(n,)`` or ``(n, 1)`` (class ids: accuracy applies)."""
    if not isinstance(spec_y, TensorSpec):
        return False
    return np.dtype(spec_y.dtype).kind in "iu" and (len(spec_y.shape) == 1 or tuple(spec_y.shape[1:]) == (1,))


def _has_jax_leaf(tree: Any) -> bool:
    return any(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(tree))


def _hits(outputs: Any, y: Any) -> jax.Array:
    """How many rows' argmax is the label; labels shaped ``(n,)`` or ``(n, 1)`` (never broadcast to ``(n, n)``)."""
    predicted = jnp.argmax(outputs, axis=-1)
    if y.ndim == predicted.ndim + 1 and y.shape[-1] == 1:
        y = y.reshape(predicted.shape)
    return jnp.sum(predicted == y).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything static about a model, the static argument of its jitted functions (equal programs, e.g.
    two models from one factory, share compiled code).

    Attributes:
        apply: ``(params, state, x, training, rng) -> (outputs, new_state)``.
        loss: ``(outputs, y) -> scalar`` mean loss of the batch.
        metrics: the user metrics (:class:`fedmodel.backend_kit.Metric`), updated after the standard ones.
        metric_sizes: how many arrays each user metric's state holds.
        accuracy: whether the standard metrics count correct predictions (integer labels).
        params_def, state_def: tree structures of params and state.
        trainable_mask: for each params leaf in flatten order, whether it is trainable.
    """

    apply: Callable[..., tuple[Any, Any]]
    loss: Callable[[Any, Any], Any]
    metrics: tuple[Metric, ...]
    metric_sizes: tuple[int, ...]
    accuracy: bool
    params_def: Any
    state_def: Any
    trainable_mask: tuple[bool, ...]

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.apply,
            self.loss,
            self.metrics,
            self.metric_sizes,
            self.accuracy,
            self.params_def,
            self.state_def,
            self.trainable_mask,
        )

    @functools.cached_property
    def _hash(self) -> int:
        return hash(self._fields())

    def __hash__(self) -> int:  # jit hashes its static argument on every call: computed once per program
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:  # the usual case: a model's own program
            return True
        return isinstance(other, Program) and self._fields() == other._fields()

    def params(self, trainable: Leaves, frozen: Leaves) -> Any:
        """The params pytree from its trainable and frozen leaves."""
        it_t, it_f = iter(trainable), iter(frozen)
        leaves = [next(it_t) if m else next(it_f) for m in self.trainable_mask]
        return jax.tree_util.tree_unflatten(self.params_def, leaves)

    def run(self, params: Any, state: Leaves, x: Any, training: bool, rng: jax.Array) -> tuple[Any, Leaves]:
        """Apply the model; returns the outputs and the new state leaves (the old ones unless training)."""
        outputs, new_state = self.apply(params, jax.tree_util.tree_unflatten(self.state_def, state), x, training, rng)
        return outputs, (self.state_def.flatten_up_to(new_state) if training else state)

    def batch_loss(self, outputs: Any, y: Any) -> jax.Array:
        """The user's loss, checked to be a scalar (else ``ValueError`` while tracing: nothing is committed)."""
        loss = jnp.asarray(self.loss(outputs, y))
        if loss.shape != ():
            raise ValueError(f"the loss must return a scalar (the batch's mean), got shape {loss.shape}")
        return loss

    def update_metrics(self, local: Leaves, loss: jax.Array, outputs: Any, y: Any) -> Leaves:
        """The local leaves after one batch: the standard sums, then each user metric's ``update``.

        Raises:
            ValueError: a user metric returned a state of another length, shape or dtype (naming it).
        """
        n = jax.tree_util.tree_leaves(y)[0].shape[0]
        loss_sum = loss.astype(jnp.float32) * n
        if self.accuracy:
            correct, count, total = local[:3]
            new = [correct + _hits(outputs, y), count + n, total + loss_sum]
        else:
            count, total = local[:2]
            new = [count + n, total + loss_sum]
        i = len(new)
        for metric, size in zip(self.metrics, self.metric_sizes, strict=True):
            old = tuple(local[i : i + size])
            state = metric.update(old, y, outputs)
            if not isinstance(state, tuple) or len(state) != size:
                raise ValueError(f"metric {metric.name!r}: update must return a tuple of {size} arrays, got {state!r}")
            for j, (before, after) in enumerate(zip(old, state, strict=True)):
                after = jnp.asarray(after)
                if after.shape != before.shape or after.dtype != before.dtype:
                    raise ValueError(
                        f"metric {metric.name!r}: state[{j}] changed from {before.dtype}{list(before.shape)} "
                        f"to {after.dtype}{list(after.shape)}"
                    )
                new.append(after)
            i += size
        return new


def _draw(key: jax.Array, count: jax.Array, training: bool) -> tuple[jax.Array, jax.Array]:
    """``(next count, key for this call)``: training call ``n`` draws ``fold_in(key, n)``; evaluation draws nothing.

    A model that ignores its ``rng`` pays nothing: XLA drops the unused ``fold_in``.
    """
    if not training:
        return count, key
    return count + 1, jax.random.fold_in(key, count)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(
    program: Program,
    training: bool,
    trainable: Leaves,
    frozen: Leaves,
    state: Leaves,
    local: Leaves,
    key: jax.Array,
    count: jax.Array,
    x: Any,
    y: Any,
) -> tuple[Any, ...]:
    """``(loss, outputs, local)``, then ``(state, count)`` when training (batch statistics and call count move)."""
    count, rng = _draw(key, count, training)
    outputs, state = program.run(program.params(trainable, frozen), state, x, training, rng)
    loss = program.batch_loss(outputs, y)
    local = program.update_metrics(local, loss, outputs, y)
    return (loss, outputs, local, state, count) if training else (loss, outputs, local)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _predict(
    program: Program,
    training: bool,
    trainable: Leaves,
    frozen: Leaves,
    state: Leaves,
    key: jax.Array,
    count: jax.Array,
    x: Any,
) -> tuple[Any, ...]:
    """``(outputs,)``, then ``(state, count)`` when training."""
    count, rng = _draw(key, count, training)
    outputs, state = program.run(program.params(trainable, frozen), state, x, training, rng)
    return (outputs, state, count) if training else (outputs,)


def _assign(boxes: Sequence[Variable], values: Sequence[Any]) -> None:
    for box, value in zip(boxes, values, strict=True):
        box.value = value


class JaxModel:
    """A :class:`fedmodel.Model` whose variables box the leaves of JAX pytrees (final: do not subclass).

    Trainable: the params leaves not frozen; non-trainable: frozen params leaves, then state leaves
    (batch statistics); local: metric accumulators (the standard ``metrics/correct``, ``metrics/count``,
    ``metrics/loss_sum``, then each user metric's ``metrics/<name>/<i>``). ``forward_pass``,
    ``predict_on_batch`` and the backend's train step are ``jax.jit``-compiled pure functions, compiled once
    per input shape and shared by every model of equal structure; their results are written into the
    boxes only after the whole call has computed them. Dropout draws from a PRNG key held by the model,
    folded with the number of training calls so far: evaluation never draws (deterministic), training is
    reproducible from ``seed``.

    Batches are numpy arrays or ``jax.Array``s. With ``jax_enable_x64`` off JAX holds ``int64`` as
    ``int32``, so a batch holding JAX arrays may match the spec's dtypes as JAX holds them.
    """

    __fedmodel_backend__: ClassVar[Any]

    def __init__(
        self,
        apply: Callable[..., tuple[Any, Any]],
        params: Any,
        loss: Callable[[Any, Any], Any],
        input_spec: Any,
        *,
        state: Any = None,
        frozen: Frozen = None,
        metrics: Sequence[Metric] = (),
        accuracy: bool | None = None,
        seed: int | jax.Array = 0,
        state_prefix: str = "state",
    ) -> None:
        """Wrap ``apply`` over ``params`` and ``state`` pytrees (see :func:`from_functions` for the arguments)."""
        metrics = tuple(metrics)
        check_metric_names(metrics)
        self._spec = input_spec
        self._jax_spec = _jax_dtype_spec(input_spec)
        self._accuracy = _integer_labels(split_batch(input_spec)[1]) if accuracy is None else bool(accuracy)
        params_boxes, params_def = _boxes("params", params)
        is_frozen = _frozen_predicate(frozen)
        mask = tuple(not is_frozen(v.name) for v in params_boxes)
        state_boxes, state_def = _boxes(state_prefix, {} if state is None else state)
        standard = ["correct", "count", "loss_sum"] if self._accuracy else ["count", "loss_sum"]
        dtypes = {"correct": jnp.int32, "count": jnp.int32, "loss_sum": jnp.float32}
        local = [Variable(f"metrics/{name}", jnp.zeros((), dtypes[name])) for name in standard]
        sizes = []
        for metric in metrics:
            init = metric.init()
            if not isinstance(init, tuple):
                raise TypeError(
                    f"metric {metric.name!r}: init must return a tuple of arrays, got {type(init).__name__}"
                )
            local += [Variable(f"metrics/{metric.name}/{i}", jnp.asarray(a)) for i, a in enumerate(init)]
            sizes.append(len(init))
        self._trainable = tuple(v for v, m in zip(params_boxes, mask, strict=True) if m)
        self._frozen = tuple(v for v, m in zip(params_boxes, mask, strict=True) if not m)
        self._state = tuple(state_boxes)
        self._non_trainable = self._frozen + self._state
        self._local = tuple(local)
        self._local_init = tuple(v.value for v in local)
        self._metrics = metrics
        self._output_computation = output_computation(metrics)
        self._base_key = jax.random.PRNGKey(int(seed)) if isinstance(seed, (int, np.integer)) else seed  # constant
        self._key = self._base_key  # the key training calls fold their count into: seed_training moves it
        self._count = jnp.zeros((), jnp.uint32)  # training calls so far: call n draws fold_in(key, n)
        self._program = Program(apply, loss, metrics, tuple(sizes), self._accuracy, params_def, state_def, mask)

    # -- the contract -------------------------------------------------------------------------
    @property
    def trainable_variables(self) -> Sequence[Variable]:
        """The params leaves that are not frozen, in flatten order."""
        return self._trainable

    @property
    def non_trainable_variables(self) -> Sequence[Variable]:
        """Frozen params leaves, then state leaves (batch statistics), in flatten order."""
        return self._non_trainable

    @property
    def local_variables(self) -> Sequence[Variable]:
        """Metric accumulators (never transmitted)."""
        return self._local

    @property
    def input_spec(self) -> Any:
        """The ``(x, y)`` spec every batch matches."""
        return self._spec

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Loss, predictions and batch size; adds the batch to the metrics.

        Batch statistics (state) change only with ``training=True``; trainable variables never.
        """
        x, y, n = self._split(batch_input)
        trainable, frozen, state, local = self._leaves()
        if not training:
            loss, outputs, local = _forward(
                self._program, False, trainable, frozen, state, local, self._key, self._count, x, y
            )
            _assign(self._local, local)
            return BatchOutput(loss, outputs, n)
        loss, outputs, local, state, count = _forward(
            self._program, True, trainable, frozen, state, local, self._key, self._count, x, y
        )
        self._commit(state=state, local=local, count=count)
        return BatchOutput(loss, outputs, n)

    def predict_on_batch(self, x: Any, training: bool = False) -> Any:
        """The model's outputs for ``x``; with ``training=True`` batch statistics may move, metrics never."""
        self._check(x, what="x")
        training = bool(training)
        trainable, frozen, state, _ = self._leaves()
        outputs, *rest = _predict(self._program, training, trainable, frozen, state, self._key, self._count, x)
        if training:
            self._commit(state=rest[0], count=rest[1])
        return outputs

    def report_local_outputs(self) -> Mapping[str, Any]:
        """The standard report (``loss``, ``accuracy`` for a classifier, ``num_examples``) and each user
        metric's state (a tuple of numpy arrays), all numpy copies."""
        values = [np.array(v.value, copy=True) for v in self._local]
        if self._accuracy:
            correct, count, loss_sum = values[:3]
            report = standard_report(loss_sum, correct, count)
            i = 3
        else:
            count, loss_sum = values[:2]
            report = standard_report(loss_sum, None, count, accuracy=False)
            i = 2
        for metric, size in zip(self._metrics, self._program.metric_sizes, strict=True):
            report[metric.name] = tuple(values[i : i + size])
            i += size
        return report

    @property
    def federated_output_computation(self) -> SumThenFinalize:
        """The aggregator of the metrics' reports (checked, summed, then finalized)."""
        return self._output_computation

    def reset_metrics(self) -> None:
        """Every metric accumulator back to its initial value."""
        _assign(self._local, self._local_init)

    # -- what the backend's train step needs ---------------------------------------------------
    def _leaves(self) -> tuple[Leaves, Leaves, Leaves, Leaves]:
        """The current trainable, frozen, state and local values."""
        return (
            [v.value for v in self._trainable],
            [v.value for v in self._frozen],
            [v.value for v in self._state],
            [v.value for v in self._local],
        )

    def seed_training(self, seed: int) -> None:
        """From now on training call ``n`` draws ``fold_in(fold_in(base key, seed), n)``: dropout is a function of
        ``seed`` and of the training calls since, whatever the model did before. Keys stay traced arguments of
        the jitted steps, so nothing is compiled again."""
        self._key = jax.random.fold_in(self._base_key, np.uint32(int(seed) & 0xFFFF_FFFF))
        self._count = jnp.zeros((), jnp.uint32)

    def _commit(
        self,
        *,
        trainable: Leaves | None = None,
        state: Leaves | None = None,
        local: Leaves | None = None,
        count: jax.Array | None = None,
    ) -> None:
        """Write a call's results into the boxes (only after the call computed all of them)."""
        if trainable is not None:
            _assign(self._trainable, trainable)
        if state is not None:
            _assign(self._state, state)
        if local is not None:
            _assign(self._local, local)
        if count is not None:
            self._count = count

    def _split(self, batch: Any) -> tuple[Any, Any, int]:
        """``(x, y, batch size)`` of a batch that matches the spec (else :class:`fedmodel.SpecError`)."""
        x, y = self._check(batch, what="batch")
        first = y if hasattr(y, "shape") else jax.tree_util.tree_leaves(y)[0]
        return x, y, int(first.shape[0])

    def _check(self, value: Any, *, what: str) -> Any:
        """``value`` (a batch, or ``x`` alone) checked against the spec; else :class:`fedmodel.SpecError`.

        A value holding ``jax.Array`` s may also match the dtypes as JAX holds them (``int32`` while x64
        is off); an error names the spec itself.
        """
        try:
            return self._check_against(self._spec, value, what)
        except SpecError as error:
            if not _has_jax_leaf(value):
                raise
            try:
                return self._check_against(self._jax_spec, value, what)
            except SpecError:
                raise error from None

    @staticmethod
    def _check_against(spec: Any, value: Any, what: str) -> Any:
        if what == "batch":
            return check_batch(spec, value)
        check_spec(split_batch(spec)[0], value, what="predict_on_batch input", prefix="x")
        return value


def sample_input(spec_x: Any) -> Any:
    """Zeros matching ``spec_x`` (the ``x`` part of an input spec), with every free dimension 1."""
    return _tree.map_structure(lambda s: np.zeros([1 if d is None else d for d in s.shape], s.dtype), spec_x)


def from_functions(
    init: Callable[[jax.Array, Any], Any],
    apply: Callable[..., tuple[Any, Any]],
    loss: Callable[[Any, Any], Any],
    input_spec: Any,
    *,
    state: Any = None,
    frozen: Frozen = None,
    metrics: Sequence[Metric] = (),
    accuracy: bool | None = None,
    seed: int = 0,
) -> JaxModel:
    """A model from a plain JAX ``init`` / ``apply`` pair.

    Args:
        init: ``init(rng, sample_x) -> params``, called once with zeros shaped like ``input_spec``'s ``x``
            (free dimensions 1).
        apply: ``apply(params, state, x, training, rng) -> (outputs, new_state)``; pure and traceable;
            ``training`` is a Python bool; ``rng`` is a fresh key on each training call. Return
            ``state`` unchanged when there is none.
        loss: ``loss(outputs, y) -> scalar``, the batch's mean loss (JAX's order: outputs first).
        input_spec: ``(x_spec, y_spec)`` or ``{"x": ..., "y": ...}`` of :class:`fedmodel.TensorSpec`.
        state: the initial state pytree (batch statistics...), non-trainable; ``None`` for none.
        frozen: params to keep out of training, by name prefix (``"params/0"``) or predicate.
        metrics: user metrics (:class:`fedmodel.backend_kit.Metric`, e.g.
            :func:`fedmodel_jax.metrics.mean_metric`), reported beside the standard ones; their
            ``update(state, y_true, y_pred)`` is traced inside the jitted steps.
        accuracy: whether to report ``accuracy``; ``None``: when the labels are one integer array.
        seed: seeds ``init`` and the model's dropout key.

    >>> import jax.numpy as jnp, optax, fedmodel
    >>> model = from_functions(
    ...     lambda rng, x: {"w": jnp.zeros((x.shape[1], 3))},
    ...     lambda p, s, x, training, rng: (x @ p["w"], s),
    ...     lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean(),
    ...     (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None,), "int64")),
    ... )
    >>> [v.name for v in model.trainable_variables]
    ['params/w']
    """
    init_key, model_key = jax.random.split(jax.random.PRNGKey(seed))
    params = init(init_key, sample_input(split_batch(input_spec)[0]))
    return JaxModel(
        apply,
        params,
        loss,
        input_spec,
        state=state,
        frozen=frozen,
        metrics=metrics,
        accuracy=accuracy,
        seed=model_key,
    )


class _FlaxApply:
    """``apply(params, state, x, training, rng)`` over a linen module.

    Equal (and hashing equally) when the modules are equal, so models built from equal module
    configurations share compiled code; a module with unhashable attributes is equal only to itself.
    """

    def __init__(
        self, module: Any, training_kwarg: str | None, mutable: tuple[str, ...], rng_names: tuple[str, ...]
    ) -> None:
        self.module, self.training_kwarg, self.mutable, self.rng_names = module, training_kwarg, mutable, rng_names
        try:
            hash(module)
            self._hashable = True
        except TypeError:  # e.g. nn.Sequential holds a list
            self._hashable = False

    def _config(self) -> tuple[Any, ...]:
        return (type(self.module), self.training_kwarg, self.mutable, self.rng_names, self._hashable)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _FlaxApply) or self._config() != other._config():
            return False
        return bool(self.module == other.module) if self._hashable else self.module is other.module

    def __hash__(self) -> int:
        return hash((self._config(), self.module if self._hashable else None))

    def __call__(self, params: Any, state: Any, x: Any, training: bool, rng: jax.Array) -> tuple[Any, Any]:
        kwargs = {self.training_kwarg: training} if self.training_kwarg else {}
        keys: Sequence[jax.Array] = [rng]
        if len(self.rng_names) > 1:
            keys = list(jax.random.split(rng, len(self.rng_names)))
        rngs = dict(zip(self.rng_names, keys, strict=False))
        variables = {"params": params, **state}
        if training and self.mutable:
            outputs, new_state = self.module.apply(variables, x, rngs=rngs, mutable=list(self.mutable), **kwargs)
            return outputs, {**state, **new_state}
        return self.module.apply(variables, x, rngs=rngs, **kwargs), state


def from_flax(
    module: Any,
    loss: Callable[[Any, Any], Any],
    input_spec: Any,
    *,
    frozen: Frozen = None,
    metrics: Sequence[Metric] = (),
    accuracy: bool | None = None,
    seed: int = 0,
    training_kwarg: str | None = "training",
    rng_names: Sequence[str] = ("dropout",),
) -> JaxModel:
    """A model from a ``flax.linen`` module called as ``module(x, training=...)``.

    ``params`` are the weights; every other collection the module creates (``batch_stats``) is
    non-trainable state, updated by training calls. Names are ``params/Dense_0/kernel`` and
    ``batch_stats/BatchNorm_0/mean`` (dicts flatten by sorted key, so ``bias`` before ``kernel``).

    Args:
        module: the linen module.
        loss: ``loss(outputs, y) -> scalar`` mean loss.
        input_spec: ``(x_spec, y_spec)`` of :class:`fedmodel.TensorSpec`.
        frozen: params to keep out of training, by name prefix (``"params/Dense_0"``) or predicate.
        metrics: user metrics (:class:`fedmodel.backend_kit.Metric`), as for :func:`from_functions`.
        accuracy: whether to report ``accuracy``; ``None``: when the labels are one integer array.
        seed: seeds the initialization and the model's dropout key.
        training_kwarg: the keyword of ``__call__`` that switches training (``None``: the module has none).
        rng_names: the RNG streams the module draws from in training (``"dropout"``).
    """
    init_key, model_key = jax.random.split(jax.random.PRNGKey(seed))
    kwargs = {training_kwarg: False} if training_kwarg else {}
    keys = dict(zip(("params", *rng_names), jax.random.split(init_key, 1 + len(rng_names)), strict=True))
    variables = dict(module.init(keys, sample_input(split_batch(input_spec)[0]), **kwargs))
    params = variables.pop("params", {})
    apply = _FlaxApply(module, training_kwarg, tuple(sorted(variables)), tuple(rng_names))
    return JaxModel(
        apply,
        params,
        loss,
        input_spec,
        state=variables,
        frozen=frozen,
        metrics=metrics,
        accuracy=accuracy,
        seed=model_key,
        state_prefix="",
    )
