"""A :class:`fedmodel.Model` over JAX pytrees: pure jitted functions inside, mutable boxes outside.

Two ways in:

* :func:`from_functions` — plain JAX: ``init(rng, sample_x) -> params`` and
  ``apply(params, state, x, training, rng) -> (outputs, new_state)``;
* :func:`fedmodel_jax.from_flax` — a ``flax.linen`` module (every collection other than ``params``, e.g.
  ``batch_stats``, is state).

The contract's variables are :class:`Variable` boxes, one per leaf, in ``jax.tree_util`` flatten
order (dicts by sorted key, tuples and namedtuples in order), named by key path
(``params/0/kernel``, ``batch_stats/BatchNorm_0/mean``, ``metrics/count``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import jax
import numpy as np

from fedmodel import tree as _tree
from fedmodel._batch import check_batch, split_batch
from fedmodel._contract import BatchOutput
from fedmodel._errors import SpecError
from fedmodel._specs import TensorSpec, check_spec
from fedmodel._variable import Variable
from fedmodel.metrics import Aggregator
from fedmodel_jax import _step
from fedmodel_jax.metrics import JaxMetrics, standard_metrics

__all__ = ["Frozen", "JaxModel", "Variable", "from_functions", "sample_input"]

Frozen = str | Sequence[str] | Callable[[str], bool] | None
"""Which params are frozen (non-trainable): a name prefix (``"params/0"``), several, or a predicate on names."""


def _key_str(key: Any) -> str:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _boxes(prefix: str, tree: Any) -> tuple[list[Variable], Any]:
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    boxes = [
        Variable("/".join([prefix] * bool(prefix) + [_key_str(k) for k in path]), jax.numpy.asarray(leaf))
        for path, leaf in paths_leaves
    ]
    return boxes, treedef


class _Slot(Variable):
    """A :class:`fedmodel.Variable` whose value lives in its model's list of values (one item of it).

    The jitted steps take and return whole lists, so the hot path slices and assigns that list in C
    instead of reading and writing one box per leaf; everyone else sees an ordinary ``Variable``.
    """

    __slots__ = ("__weakref__", "_index", "_store")  # weakly referenced by the write buffers' pool

    def __init__(self, name: str, store: list[Any], index: int) -> None:
        self.name = name
        self._store = store
        self._index = index

    @property  # type: ignore[override]
    def value(self) -> Any:
        """The current value (a ``jax.Array``)."""
        return self._store[self._index]

    @value.setter
    def value(self, value: Any) -> None:
        self._store[self._index] = value


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


def _looks_jax(value: Any) -> bool:
    """A cheap guess that ``value`` holds JAX arrays: its top-level leaves (pair, mapping or array) do."""
    if isinstance(value, (tuple, list)):
        return any(isinstance(v, jax.Array) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, jax.Array) for v in value.values())
    return isinstance(value, jax.Array)


def _has_jax_leaf(tree: Any) -> bool:
    return any(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(tree))


class JaxModel:
    """A :class:`fedmodel.Model` whose variables box the leaves of JAX pytrees (final: do not subclass).

    Trainable: the params leaves not frozen; non-trainable: frozen params leaves, then state leaves
    (batch statistics); local: metric accumulators. ``forward_pass``, ``predict_on_batch`` and the
    backend's train step are ``jax.jit``-compiled pure functions, compiled once per input shape and
    shared by every model of equal structure. Dropout draws from a PRNG key held by the model, folded
    with the number of training calls so far: evaluation never draws (deterministic), training is
    reproducible from ``seed``.

    Batches are numpy arrays or ``jax.Array``s. With ``jax_enable_x64`` off JAX holds ``int64`` as
    ``int32``, so a batch holding JAX arrays is checked against the spec's dtypes as JAX holds them.
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
        metrics: JaxMetrics | None = None,
        seed: int | jax.Array = 0,
        state_prefix: str = "state",
    ) -> None:
        """Wrap ``apply`` over ``params`` and ``state`` pytrees (see :func:`from_functions` for the signatures)."""
        self._spec = input_spec
        self._jax_spec = _jax_dtype_spec(input_spec)
        self._metric_fns = metrics or standard_metrics(accuracy=_integer_labels(split_batch(input_spec)[1]))
        params_boxes, params_def = _boxes("params", params)
        is_frozen = _frozen_predicate(frozen)
        mask = tuple(not is_frozen(v.name) for v in params_boxes)
        state_boxes, state_def = _boxes(state_prefix, {} if state is None else state)
        local, metrics_def = _boxes("metrics", self._metric_fns.init())
        boxes = [
            *(v for v, m in zip(params_boxes, mask, strict=True) if m),
            *(v for v, m in zip(params_boxes, mask, strict=True) if not m),
            *state_boxes,
            *local,
        ]
        # every value in one list, in this order: trainable, frozen, state, local (as _step._evaluate takes them)
        self._values: list[Any] = [v.value for v in boxes]
        slots = tuple(_Slot(v.name, self._values, i) for i, v in enumerate(boxes))
        trainable_end = sum(mask)
        self._params_end = len(mask)
        self._state_end = self._params_end + len(state_boxes)
        self._trainable = slots[:trainable_end]
        self._frozen = slots[trainable_end : self._params_end]
        self._state = slots[self._params_end : self._state_end]
        self._local = slots[self._state_end :]
        self._non_trainable = self._frozen + self._state
        self._local_init = tuple(v.value for v in local)
        self._key = jax.random.PRNGKey(int(seed)) if isinstance(seed, (int, np.integer)) else seed  # constant
        self._count = jax.numpy.zeros((), jax.numpy.uint32)  # training calls so far: call n draws fold_in(key, n)
        self._program = _step.Program(apply, loss, self._metric_fns.update, params_def, state_def, metrics_def, mask)
        self._evaluate = _step.evaluate_for(self._program)

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

    def _check(self, what: str, value: Any) -> None:
        """Raise :class:`fedmodel.SpecError` unless ``value`` (a batch, or ``x`` alone) matches the spec.

        A value holding ``jax.Array`` s may also match the dtypes as JAX holds them (``int32`` while x64
        is off); an error names the spec itself. The likelier spec is tried first (JAX's for a batch whose
        top-level leaves are JAX arrays), and the core caches accepted signatures, so a batch like one seen
        before costs a flatten and a set lookup.
        """
        first, second = (self._jax_spec, self._spec) if _looks_jax(value) else (self._spec, self._jax_spec)
        try:
            self._check_against(first, what, value)
            return
        except SpecError as exc:
            error = exc
        if _has_jax_leaf(value):
            try:
                self._check_against(second, what, value)
                return
            except SpecError as exc:
                if second is self._spec:
                    error = exc
        raise error

    @staticmethod
    def _check_against(spec: Any, what: str, value: Any) -> None:
        if what == "batch":
            check_batch(spec, value)
        else:
            check_spec(split_batch(spec)[0], value, what="predict_on_batch input", prefix="x")

    def _split(self, batch: Any) -> tuple[Any, Any, int]:
        """``(x, y, batch size)`` of a batch that matches the spec (else :class:`fedmodel.SpecError`)."""
        if type(batch) is tuple and len(batch) == 2 and type(batch[0]) is type(batch[1]) is np.ndarray:
            x, y = check_batch(self._spec, batch)  # the common case, a numpy pair: what _check does for it
            return x, y, y.shape[0]
        self._check("batch", batch)
        x, y = split_batch(batch)
        return x, y, int(jax.tree_util.tree_leaves(y)[0].shape[0])

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Loss, predictions and batch size; adds the batch to the metrics.

        Batch statistics (state) change only with ``training=True``; trainable variables never.
        """
        x, y, n = self._split(batch_input)
        values = self._values
        if not training:
            loss, outputs, metrics = self._evaluate(values, self._key, x, y)
            values[self._state_end :] = metrics
            return BatchOutput(loss, outputs, n)
        trainable, frozen, state, local = self._groups()
        loss, outputs, metrics, state, self._count = _step.forward(
            self._program, trainable, frozen, state, local, self._key, self._count, x, y
        )
        values[self._params_end :] = [*state, *metrics]
        return BatchOutput(loss, outputs, n)

    def _groups(self) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        """The current trainable, frozen, state and local values (new lists: slices of ``_values``)."""
        values, trainable_end = self._values, len(self._trainable)
        return (
            values[:trainable_end],
            values[trainable_end : self._params_end],
            values[self._params_end : self._state_end],
            values[self._state_end :],
        )

    def predict_on_batch(self, x: Any, training: bool = False) -> Any:
        """The model's outputs for ``x``; with ``training=True`` batch statistics may move, metrics never."""
        self._check("x", x)
        training = bool(training)
        trainable, frozen, state, _ = self._groups()
        outputs, *rest = _step.predict(self._program, training, trainable, frozen, state, self._key, self._count, x)
        if training:
            state, self._count = rest
            self._values[self._params_end : self._state_end] = state
        return outputs

    def report_local_outputs(self) -> Mapping[str, Any]:
        """The metrics' unfinalized values as numpy arrays (``loss``, ``accuracy``, ``num_examples``)."""
        tree = jax.tree_util.tree_unflatten(self._program.metrics_def, self._values[self._state_end :])
        return self._metric_fns.report(tree)

    @property
    def federated_output_computation(self) -> Aggregator:
        """The aggregator of the metrics' reports (sum, then finalize)."""
        return self._metric_fns.aggregator

    def reset_metrics(self) -> None:
        """Every metric accumulator back to its initial value."""
        self._values[self._state_end :] = self._local_init

    # -- what the backend needs ----------------------------------------------------------------
    def _train_step(self, batch: Any, optimizer: Any) -> BatchOutput[Any]:
        """One optimizer step (gradient, FedProx term, Optax update, metrics) in one jitted call."""
        x, y, n = self._split(batch)
        trainable, frozen, state, local = self._groups()
        loss, outputs, trainable, state, metrics, count, opt_state = _step.train_step(
            self._program,
            optimizer.tx,
            trainable,
            frozen,
            state,
            local,
            self._key,
            self._count,
            optimizer.state,
            optimizer.anchor,
            optimizer.mu,
            x,
            y,
        )
        values = self._values
        values[: len(trainable)] = trainable
        values[self._params_end :] = [*state, *metrics]
        self._count = count
        optimizer.state = opt_state
        return BatchOutput(loss, outputs, n)


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
    metrics: JaxMetrics | None = None,
    seed: int = 0,
) -> JaxModel:
    """A model from a plain JAX ``init`` / ``apply`` pair.

    Args:
        init: ``init(rng, sample_x) -> params``, called once with zeros shaped like ``input_spec``'s ``x``
            (free dimensions 1).
        apply: ``apply(params, state, x, training, rng) -> (outputs, new_state)``; pure and traceable;
            ``training`` is a Python bool; ``rng`` is a fresh key on each training call. Return
            ``state`` unchanged when there is none.
        loss: ``loss(outputs, y) -> scalar``, the batch's mean loss.
        input_spec: ``(x_spec, y_spec)`` or ``{"x": ..., "y": ...}`` of :class:`fedmodel.TensorSpec`.
        state: the initial state pytree (batch statistics...), non-trainable; ``None`` for none.
        frozen: params to keep out of training, by name prefix (``"params/0"``) or predicate.
        metrics: defaults to :func:`fedmodel_jax.metrics.standard_metrics`, with ``accuracy`` only when the
            labels are one integer array.
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
    return JaxModel(apply, params, loss, input_spec, state=state, frozen=frozen, metrics=metrics, seed=model_key)
