"""``from_keras_model``: a Keras 3 model (TensorFlow backend) as a :class:`fedmodel.Model` over ``tf.Variable``.

The contract's variables are the ``tf.Variable`` objects that hold the Keras variables' values
(``keras_variable.value``): the same memory Keras trains, so a weight written through fedmodel is what
``keras_model(x)`` uses next. Names come from the Keras paths, made instance-independent
(:func:`canonical_names`). Keras' dropout seed state is not a weight and belongs to no group.

Every step computes first and commits after: the model runs through Keras's ``stateless_call`` (new
batch-norm statistics and seed states come back as values), the metrics through their pure ``update``,
and only when all of it (and, in training, the gradients) is computed are the variables assigned. A step
that raises changes nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, final

import numpy as np

from fedmodel import tree as _tree
from fedmodel.backend_kit import (
    BatchOutput,
    Metric,
    SpecError,
    TensorSpec,
    check_batch,
    check_spec,
    shape_of,
    split_batch,
    standard_report,
)
from fedmodel.backend_kit import output_computation as _output_computation
from fedmodel.metrics import SumThenFinalize
from fedmodel_tensorflow._compat import keras, tf
from fedmodel_tensorflow.metrics import MetricLike, make_metrics

__all__ = ["KerasModel", "canonical_names", "from_keras_model", "unique"]

LossFn = Callable[[Any, Any], Any]


@final
class KerasModel:
    """A Keras model wrapped as a :class:`fedmodel.Model`; build it with :func:`from_keras_model`.

    ``forward_pass``, ``predict_on_batch`` and the backend's train step are ``tf.function``\\ s with an
    ``input_signature`` from ``input_spec`` (free batch dimension), so each is traced once for every
    batch size; :meth:`tracing_counts` reports how often each was traced.
    """

    def __init__(
        self,
        keras_model: keras.Model,
        loss: LossFn,
        input_spec: Any,
        metrics: Sequence[Metric],
        *,
        with_accuracy: bool,
        run_eagerly: bool,
    ) -> None:
        self._keras_model = keras_model
        self._loss_fn = loss
        self._spec = input_spec
        self._spec_x, self._spec_y = split_batch(input_spec)
        self._leaves_x, self._tree_x = _flat_specs(self._spec_x)
        self._leaves_y, self._tree_y = _flat_specs(self._spec_y)
        self._metrics = tuple(metrics)
        self._with_accuracy = with_accuracy
        self._run_eagerly = run_eagerly
        self._keras_trainable = list(keras_model.trainable_weights)
        self._keras_non_trainable = list(keras_model.non_trainable_weights)
        self._trainable = tuple(v.value for v in self._keras_trainable)
        self._non_trainable = tuple(v.value for v in self._keras_non_trainable)
        # what stateless_call takes and returns: every Keras variable, seed generator states included
        self._call_trainable = [v.value for v in keras_model.trainable_variables]
        self._call_non_trainable = [v.value for v in keras_model.non_trainable_variables]
        # the seed generators' states (variables that are no weight), each with the seed it was built with
        weights = {id(v) for v in keras_model.weights}
        self._seed_states = tuple(
            (v.value, int(np.asarray(v.value)[0])) for v in keras_model.non_trainable_variables if id(v) not in weights
        )
        self._loss_sum = tf.Variable(np.float64(0), trainable=False, name="loss_sum")
        self._correct = tf.Variable(np.int64(0), trainable=False, name="correct")
        self._count = tf.Variable(np.int64(0), trainable=False, name="count")
        self._metric_vars = [
            tuple(tf.Variable(value, trainable=False) for value in metric.init()) for metric in self._metrics
        ]
        self._local = (self._loss_sum, self._correct, self._count, *(v for vs in self._metric_vars for v in vs))
        in_layer_order = list(keras_model.weights)  # numbering scopes in layer order keeps names readable
        canonical = canonical_names([v.path for v in in_layer_order], keras_model.name)
        by_id = dict(zip(map(id, in_layer_order), canonical, strict=True))
        weight_names = [by_id.get(id(v), v.path) for v in self._keras_trainable + self._keras_non_trainable]
        local_names = ["metrics/loss_sum", "metrics/correct", "metrics/count"]
        for metric, state in zip(self._metrics, self._metric_vars, strict=True):
            leaf_names = getattr(metric, "state_names", ()) or tuple(str(i) for i in range(len(state)))
            local_names += [f"metrics/{metric.name}/{leaf}" for leaf in leaf_names]
        all_vars = self._trainable + self._non_trainable + self._local
        self._names = dict(zip(map(id, all_vars), unique(weight_names + local_names), strict=True))
        self._output_computation = _output_computation(self._metrics)
        self._trainers: dict[Any, Any] = {}  # OptimizerSpec -> fedmodel_tensorflow.backend._Trainer
        self._signature_xy = _tf_signature(self._leaves_x + self._leaves_y)
        sig_x = _tf_signature(self._leaves_x)
        self._forward_fns = {t: self._compile(self._forward_fn(t), self._signature_xy) for t in (True, False)}
        self._predict_fns = {t: self._compile(self._predict_fn(t), sig_x) for t in (True, False)}

    __fedmodel_backend__: Any  # set by fedmodel_tensorflow.backend

    # -- the contract -------------------------------------------------------------------------
    @property
    def trainable_variables(self) -> Sequence[tf.Variable]:
        """The ``tf.Variable`` of each of the Keras model's ``trainable_weights``, layer by layer."""
        return self._trainable

    @property
    def non_trainable_variables(self) -> Sequence[tf.Variable]:
        """The Keras model's ``non_trainable_weights`` (frozen layers, batch-norm statistics)."""
        return self._non_trainable

    @property
    def local_variables(self) -> Sequence[tf.Variable]:
        """``loss_sum``, ``correct``, ``count`` of the standard report, then each metric's state."""
        return self._local

    @property
    def input_spec(self) -> Any:
        """The spec given to :func:`from_keras_model`, with :class:`fedmodel.TensorSpec` leaves."""
        return self._spec

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Loss (mean over the batch, plus the model's regularization losses), predictions and batch size.

        Validates the batch before anything runs; updates the metrics; changes batch-norm statistics
        only with ``training=True``; never changes a trainable variable; changes nothing when it raises.
        """
        flat, num_examples = self._flatten_batch(batch_input)
        loss, predictions = self._forward_fns[bool(training)](flat)
        return BatchOutput(loss=loss, predictions=predictions, num_examples=num_examples)

    def predict_on_batch(self, x: Any, training: bool = False) -> tf.Tensor:
        """The Keras model's output for ``x``; with ``training=False`` nothing changes."""
        check_spec({"x": self._spec_x}, {"x": x})  # errors name the path as forward_pass does: 'x/...'
        return self._predict_fns[bool(training)](_tree.flatten(x)[0])

    def report_local_outputs(self) -> dict[str, Any]:
        """The standard report (``loss``, ``accuracy`` when classifying, ``num_examples``) and, for each
        metric, the tuple of its state, all unfinalized numpy values."""
        report = standard_report(
            self._loss_sum.numpy(), self._correct.numpy(), self._count.numpy(), accuracy=self._with_accuracy
        )
        for metric, state in zip(self._metrics, self._metric_vars, strict=True):
            report[metric.name] = tuple(np.asarray(v.numpy()) for v in state)
        return report

    @property
    def federated_output_computation(self) -> SumThenFinalize:
        """Check every report, sum them over clients, then finalize (``fedmodel.backend_kit.output_computation``)."""
        return self._output_computation

    def seed_training(self, seed: int) -> None:
        """Set the state of every Keras ``SeedGenerator`` of the model (Dropout's) from ``seed``, its index and
        the seed it was built with: from now on dropout is a function of ``seed`` and of the training calls
        since. Only the state variables' values change, so no ``tf.function`` is traced again."""
        for index, (state, built_with) in enumerate(self._seed_states):
            start = np.random.SeedSequence(
                [int(seed) & 0xFFFF_FFFF_FFFF_FFFF, index, built_with & 0xFFFF_FFFF_FFFF_FFFF]
            )
            state.assign(np.array([start.generate_state(1)[0], 0]).astype(state.dtype.as_numpy_dtype))

    def reset_metrics(self) -> None:
        """Zero the standard accumulators and return every metric to its ``init()`` state."""
        for var in (self._loss_sum, self._correct, self._count):
            var.assign(tf.zeros_like(var))
        for metric, state in zip(self._metrics, self._metric_vars, strict=True):
            for var, value in zip(state, metric.init(), strict=True):
                var.assign(value)

    # -- TensorFlow specifics -----------------------------------------------------------------
    @property
    def keras_model(self) -> keras.Model:
        """The wrapped Keras model (its variables are this model's variables)."""
        return self._keras_model

    @property
    def keras_trainable_weights(self) -> list[keras.Variable]:
        """The Keras variables behind :attr:`trainable_variables`, in the same order (what Keras optimizers take)."""
        return list(self._keras_trainable)

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The user metrics, as :class:`fedmodel.backend_kit.Metric` (Keras metrics wrapped)."""
        return self._metrics

    @property
    def run_eagerly(self) -> bool:
        """Whether the steps run eagerly (fixed at construction)."""
        return self._run_eagerly

    def variable_name(self, variable: Any) -> str | None:
        """The fedmodel name of one of this model's variables, or ``None`` when it is not one."""
        return self._names.get(id(variable))

    def tracing_counts(self) -> dict[str, int]:
        """How many times each ``tf.function`` was traced (all zero with ``run_eagerly=True``)."""
        counts = {}
        for kind, fns in (("forward_pass", self._forward_fns), ("predict_on_batch", self._predict_fns)):
            for training, fn in fns.items():
                counts[f"{kind}(training={training})"] = fn.tracing_count()
        counts["train_step"] = sum(t.function.tracing_count() for t in self._trainers.values())
        return counts

    def __repr__(self) -> str:
        return f"KerasModel({self._keras_model.name!r}, {len(self._trainable)} trainable variables)"

    # -- what the backend's train step uses ----------------------------------------------------
    def _compile(self, fn: Callable[[list[tf.Tensor]], Any], signature: list[tf.TensorSpec]) -> _Compiled:
        """``fn(flat_leaves)`` as a ``tf.function`` traced once for ``signature``, or run eagerly."""
        return _Compiled(fn, signature, eager=self._run_eagerly)

    def _flatten_batch(self, batch: Any) -> tuple[list[Any], int]:
        """Validate a batch and return its leaves (x then y) and its number of examples."""
        x, y = check_batch(self._spec, batch)
        flat_x = _tree.flatten(x)[0]
        return flat_x + _tree.flatten(y)[0], int(shape_of(flat_x[0])[0] or 0)

    def _split_flat(self, flat: Sequence[tf.Tensor]) -> tuple[Any, Any]:
        nx = len(self._leaves_x)
        return _tree.unflatten(self._tree_x, list(flat[:nx])), _tree.unflatten(self._tree_y, list(flat[nx:]))

    def _call(self, x: Any, training: bool) -> tuple[Any, list[tf.Tensor], list[Any]]:
        """``(outputs, new non-trainable values, regularization losses)``, changing no variable."""
        outputs, non_trainable, losses = self._keras_model.stateless_call(
            self._call_trainable, self._call_non_trainable, x, training=training, return_losses=True
        )
        return outputs, list(non_trainable), list(losses)

    def _loss_and_predictions(self, x: Any, y: Any, training: bool) -> tuple[tf.Tensor, Any, tf.Tensor, list[Any]]:
        """``(loss, predictions, data loss, new non-trainable values)``: the loss adds the model's
        regularization losses, the data loss (the mean per-example loss, what ``loss`` sums) does not."""
        predictions, non_trainable, regularization = self._call(x, training)
        data_loss = tf.convert_to_tensor(self._loss_fn(y, predictions))
        if data_loss.shape.rank:  # a per-example loss: the contract's loss is the batch mean
            data_loss = tf.reduce_mean(data_loss)
        loss = data_loss
        if regularization:
            loss = data_loss + tf.add_n([tf.cast(r, data_loss.dtype) for r in regularization])
        return loss, predictions, data_loss, non_trainable

    def _metric_updates(self, y: Any, predictions: Any, data_loss: tf.Tensor) -> list[tuple[tf.Variable, Any]]:
        """The new value of every local variable after this batch (``data_loss``: its mean loss, no regularization)."""
        first = tf.nest.flatten(y)[0]
        n = tf.shape(first, out_type=tf.int64)[0]
        updates = [
            (self._loss_sum, self._loss_sum + tf.cast(data_loss, tf.float64) * tf.cast(n, tf.float64)),
            (self._count, self._count + n),
        ]
        if self._with_accuracy:
            if first.shape.rank == 1 or first.shape[-1] == 1:  # integer labels, (batch,) or (batch, 1)
                labels = tf.reshape(first, [-1])
            else:  # one-hot rows
                labels = tf.argmax(first, axis=-1)
            hits = tf.equal(tf.argmax(predictions, axis=-1), tf.cast(labels, tf.int64))
            updates.append((self._correct, self._correct + tf.reduce_sum(tf.cast(hits, tf.int64))))
        for metric, state in zip(self._metrics, self._metric_vars, strict=True):
            new = metric.update(tuple(tf.convert_to_tensor(v) for v in state), y, predictions)
            updates += zip(state, new, strict=True)
        return updates

    def _statistics_updates(self, non_trainable: Sequence[Any]) -> list[tuple[tf.Variable, Any]]:
        """Pairs (variable, new value) for the batch-norm statistics and seed states of a training call."""
        return list(zip(self._call_non_trainable, non_trainable, strict=True))

    def _forward_fn(self, training: bool) -> Callable[[list[tf.Tensor]], tuple[tf.Tensor, Any]]:
        def forward(flat: list[tf.Tensor]) -> tuple[tf.Tensor, Any]:
            x, y = self._split_flat(flat)
            loss, predictions, data_loss, non_trainable = self._loss_and_predictions(x, y, training)
            updates = self._metric_updates(y, predictions, data_loss)
            if training:
                updates += self._statistics_updates(non_trainable)
            commit([loss, predictions], updates)
            return loss, predictions

        return forward

    def _predict_fn(self, training: bool) -> Callable[[list[tf.Tensor]], Any]:
        def predict(flat: list[tf.Tensor]) -> Any:
            outputs, non_trainable, _ = self._call(_tree.unflatten(self._tree_x, list(flat)), training)
            if training:
                commit([outputs], self._statistics_updates(non_trainable))
            return outputs

        return predict


def commit(
    computed: Sequence[Any], updates: Sequence[tuple[tf.Variable, Any]], then: Callable[[], Any] | None = None
) -> None:
    """Assign every ``(variable, value)`` of ``updates`` (and run ``then``) only after everything in
    ``computed`` and every new value exists: in a ``tf.function`` the assignments wait on them, so an op that
    fails (a bad label, a failing check) fails before any variable changes."""
    values = [v for v in tf.nest.flatten([list(computed), [value for _, value in updates]]) if v is not None]
    with tf.control_dependencies([tf.convert_to_tensor(v) for v in values]):
        if then is not None:
            then()
        for var, value in updates:
            var.assign(value)


class _Compiled:
    """``fn(flat)`` over a flat list of leaves: a ``tf.function`` traced once and called through its
    concrete function (which skips ``tf.function``'s argument matching), or plain eager code."""

    def __init__(self, fn: Callable[[list[tf.Tensor]], Any], signature: list[tf.TensorSpec], *, eager: bool) -> None:
        self._fn = fn
        self._dtypes = [s.dtype for s in signature]
        # a partial per model: TensorFlow counts traces per code object and would warn of "retracing"
        self.function = (
            None if eager else tf.function(functools.partial(fn), input_signature=[signature], autograph=False)
        )
        self._concrete: Any = None

    def __call__(self, flat: Sequence[Any]) -> Any:
        tensors = [
            a if isinstance(a, tf.Tensor) else tf.convert_to_tensor(a, dtype=d)
            for a, d in zip(flat, self._dtypes, strict=True)
        ]
        if self.function is None:
            return self._fn(tensors)
        if self._concrete is None:
            self._concrete = self.function.get_concrete_function()
        return self._concrete(tensors)

    def tracing_count(self) -> int:
        """How many times the ``tf.function`` was traced (0 when eager)."""
        return 0 if self.function is None else int(self.function.experimental_get_tracing_count())


# -- specs and names --------------------------------------------------------------------------------


def _is_spec_leaf(x: Any) -> bool:
    return isinstance(x, (TensorSpec, tf.TensorSpec))


def _convert_leaf(path: str, leaf: Any) -> TensorSpec:
    if isinstance(leaf, TensorSpec):
        return leaf
    if isinstance(leaf, tf.TensorSpec):
        if leaf.shape.rank is None:
            raise TypeError(
                f"input_spec at {path!r}: a tf.TensorSpec of unknown rank cannot be checked; give its shape"
            )
        return TensorSpec(tuple(leaf.shape.as_list()), leaf.dtype.name, leaf.name)
    raise TypeError(
        f"input_spec at {path!r} is {type(leaf).__name__} ({leaf!r}), not a fedmodel.TensorSpec "
        "(or tf.TensorSpec); write e.g. TensorSpec((None, 64), 'float32')"
    )


def _as_fedmodel_spec(input_spec: Any) -> Any:
    """``input_spec`` with every leaf a :class:`fedmodel.TensorSpec` (``tf.TensorSpec`` leaves are converted)."""
    try:
        split_batch(input_spec)
    except SpecError as exc:
        raise TypeError(
            "input_spec must be a pair (x_spec, y_spec) or a mapping {'x': x_spec, 'y': y_spec} of "
            f"fedmodel.TensorSpec, got {type(input_spec).__name__}: {exc}"
        ) from exc
    paths, leaves, treedef = _tree.flatten_with_paths(input_spec, is_leaf=_is_spec_leaf)
    if not leaves:
        raise TypeError("input_spec has no TensorSpec leaf")
    return _tree.unflatten(treedef, [_convert_leaf(p, leaf) for p, leaf in zip(paths, leaves, strict=True)])


def _flat_specs(spec: Any) -> tuple[list[TensorSpec], Any]:
    leaves, treedef = _tree.flatten(spec, is_leaf=lambda s: isinstance(s, TensorSpec))
    return leaves, treedef


def _tf_signature(specs: Sequence[TensorSpec]) -> list[tf.TensorSpec]:
    """``tf.TensorSpec`` for each fedmodel spec (``None`` dims stay free, so any batch size shares one trace)."""
    return [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=None) for s in specs]


def _zeros_like_specs(specs: Sequence[TensorSpec], batch_size: int) -> list[tf.Tensor]:
    """A zero tensor per spec, every free dimension set to ``batch_size`` (leading) or 1 (others), within bounds."""
    out = []
    for spec in specs:
        shape = tuple((batch_size if i == 0 else 1) if d is None else d for i, d in enumerate(spec.shape))
        fill = 0 if spec.minimum is None or spec.minimum <= 0 else spec.minimum
        out.append(tf.constant(np.full(shape, fill, np.dtype(spec.dtype))))
    return out


_SUFFIX = re.compile(r"(.+?)(?:_(\d+))?")


def canonical_names(paths: Sequence[str], model_name: str) -> list[str]:
    """Instance-independent, unique names for Keras variable paths.

    Keras numbers auto-named layers per process (``dense``, ``dense_1``, ...), so two models built by one
    factory get different paths. Here the model's own name is dropped and every scope component is
    renumbered by order of first appearance within this model: the first distinct ``dense*`` scope is
    ``dense``, the second ``dense_1``, as Keras would name them in a fresh process. Names that are still
    equal get a ``#k`` suffix.

    >>> canonical_names(["sequential_7/dense_3/kernel", "sequential_7/dense_4/kernel"], "sequential_7")
    ['dense/kernel', 'dense_1/kernel']
    """
    seen: dict[str, dict[str, int]] = {}
    names = []
    for path in paths:
        parts = path.split("/")
        if len(parts) > 1 and parts[0] == model_name:
            parts = parts[1:]
        *scopes, leaf = parts
        renamed = []
        for scope in scopes:
            match = _SUFFIX.fullmatch(scope)
            base = match.group(1) if match else scope
            table = seen.setdefault(base, {})
            k = table.setdefault(scope, len(table))
            renamed.append(base if k == 0 else f"{base}_{k}")
        names.append("/".join([*renamed, leaf]))
    return unique(names)


def unique(names: Sequence[str]) -> list[str]:
    """``names`` with later duplicates suffixed ``#1``, ``#2``... (first occurrences unchanged)."""
    counts: dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        k = counts.get(name, 0)
        counts[name] = k + 1
        if k == 0:
            out.append(name)
            continue
        candidate = f"{name}#{k}"
        while candidate in taken:
            k += 1
            candidate = f"{name}#{k}"
        taken.add(candidate)
        out.append(candidate)
    return out


# -- construction ---------------------------------------------------------------------------------


def _is_classifier(spec_y: Any, output: Any) -> bool:
    leaves, _ = _flat_specs(spec_y)
    out = tf.nest.flatten(output)
    if len(leaves) != 1 or len(out) != 1 or out[0].shape.rank != 2 or (out[0].shape[-1] or 0) < 2:
        return False
    y = leaves[0]
    sparse = (len(y.shape) == 1 or (len(y.shape) == 2 and y.shape[-1] == 1)) and np.dtype(y.dtype).kind in "iu"
    one_hot = len(y.shape) == 2 and y.shape[-1] == out[0].shape[-1]
    return sparse or one_hot


def _check_model_inputs(keras_model: keras.Model, spec_x: Any) -> None:
    inputs = getattr(keras_model, "inputs", None)
    specs, _ = _flat_specs(spec_x)
    if not inputs or len(inputs) != len(specs):
        return  # subclassed or multi-input models are checked by the dry run
    for i, (tensor, spec) in enumerate(zip(inputs, specs, strict=True)):
        shape = tuple(tensor.shape)
        if len(shape) != len(spec.shape) or any(
            a is not None and b is not None and a != b for a, b in zip(shape, spec.shape, strict=True)
        ):
            raise SpecError(
                f"input_spec x (leaf {i}) has shape {spec.shape}, but the Keras model's input "
                f"{getattr(tensor, 'name', i)!r} has shape {shape}"
            )


def _dry_run(keras_model: keras.Model, loss: LossFn, spec_x: Any, spec_y: Any) -> tuple[Any, Any]:
    """Call the model (building it if needed) and the loss on a zero batch of 2; clear errors on mismatch.

    Returns the zero labels and the model's output on them, for the metrics' check."""
    leaves_x, tree_x = _flat_specs(spec_x)
    leaves_y, tree_y = _flat_specs(spec_y)
    x = _tree.unflatten(tree_x, _zeros_like_specs(leaves_x, 2))
    y = _tree.unflatten(tree_y, _zeros_like_specs(leaves_y, 2))
    try:
        output = keras_model(x, training=False)
    except Exception as exc:
        raise SpecError(
            f"the Keras model cannot be called on a batch matching input_spec x={spec_x}: {type(exc).__name__}: {exc}"
        ) from exc
    shapes = [tuple(t.shape) for t in tf.nest.flatten(output)]
    try:
        value = tf.convert_to_tensor(loss(y, output))
    except Exception as exc:
        raise ValueError(
            f"the loss {getattr(loss, 'name', loss)!r} does not fit the model: called on labels matching "
            f"input_spec y={spec_y} and the model's output of shape(s) {shapes} it raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if value.shape.rank not in (0, 1) or (value.shape.rank == 1 and value.shape[0] != 2):
        raise ValueError(
            f"the loss must return a scalar or one value per example; on a batch of 2 with output shape(s) "
            f"{shapes} it returned shape {tuple(value.shape)}"
        )
    return y, output


def _check_metrics_fit(metrics: Sequence[Metric], y: Any, output: Any) -> None:
    """Raise ``ValueError`` when a metric cannot be updated as ``update(state, y_true, y_pred)`` or its
    update changes the state's shapes or dtypes (tried on the dry run's batch; no metric changes)."""
    for metric in metrics:
        state = tuple(tf.convert_to_tensor(s) for s in metric.init())
        try:
            new = tuple(tf.convert_to_tensor(s) for s in metric.update(state, y, output))
        except Exception as exc:
            raise ValueError(
                f"the metric {metric.name!r} cannot be updated as update(state, y_true, y_pred) with labels of "
                f"shape {tuple(getattr(tf.nest.flatten(y)[0], 'shape', ()))} and predictions of shape "
                f"{tuple(getattr(output, 'shape', ()))}: {type(exc).__name__}: {exc}. Metrics get (y_true, "
                "y_pred), as in model.compile(metrics=...); a plain Keras Mean or Sum takes (values, "
                "sample_weight) and needs a wrapper"
            ) from exc
        before = [(tuple(s.shape), s.dtype.name) for s in state]
        after = [(tuple(s.shape), s.dtype.name) for s in new]
        if before != after:
            raise ValueError(
                f"the metric {metric.name!r}: update must keep the state's shapes and dtypes {before}, got {after}"
            )


def from_keras_model(
    keras_model: keras.Model,
    loss: LossFn,
    input_spec: Any,
    *,
    metrics: Sequence[MetricLike] = (),
    accuracy: bool | None = None,
    run_eagerly: bool = False,
) -> KerasModel:
    """Wrap an *uncompiled* Keras 3 model as a :class:`fedmodel.Model` (TFF's ``from_keras_model``).

    Args:
        keras_model: a Keras model on the TensorFlow backend; built from ``input_spec`` when unbuilt.
            It must not be compiled: the loss and metrics come from here, the optimizer from the
            federated algorithm. Wrap a fresh Keras model per fedmodel model (two wrappers of one Keras
            model share its variables).
        loss: ``loss(y_true, y_pred)`` (Keras's argument order) returning the batch mean or one loss per
            example (any ``keras.losses.Loss``). The model's regularization losses are added to it.
        input_spec: a pair ``(x_spec, y_spec)`` or a mapping ``{"x": ..., "y": ...}`` of
            :class:`fedmodel.TensorSpec` (``tf.TensorSpec`` leaves are converted).
        metrics: :class:`fedmodel.backend_kit.Metric` objects (:func:`fedmodel_tensorflow.metrics.mean_metric`,
            ``sum_metric``) and Keras metrics, as instances or zero-argument constructors; reported
            unfinalized and finalized after aggregation. A Keras metric object itself never changes.
        accuracy: include ``accuracy=(correct, count)`` in the standard report; ``None`` (default)
            includes it when the output is ``(batch, classes)`` and ``y`` holds integer labels or one-hot rows.
        run_eagerly: run every step eagerly instead of as a ``tf.function`` (for debugging).

    Raises:
        TypeError: ``input_spec`` is not a spec, ``keras_model`` is not a Keras model, or a metric is not one.
        ValueError: the model is compiled, or the loss or a metric does not fit the model's output.
        fedmodel.SpecError: ``input_spec`` does not match the model's inputs.

    >>> model = from_keras_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
    ...     keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ...     (TensorSpec((None, 4), "float32"), TensorSpec((None,), "int64")))  # doctest: +SKIP
    """
    if not isinstance(keras_model, keras.Model):
        raise TypeError(f"keras_model must be a keras.Model (Keras 3), got {type(keras_model).__name__}")
    if getattr(keras_model, "compiled", False):
        raise ValueError(
            f"the Keras model {keras_model.name!r} is compiled; from_keras_model would ignore its compiled "
            "loss, metrics and optimizer. Pass the model before model.compile(...), and give the loss and "
            "metrics to from_keras_model (the optimizer comes from the federated algorithm)."
        )
    if not callable(loss):
        raise TypeError(f"loss must be callable as loss(y_true, y_pred), got {type(loss).__name__}")
    spec = _as_fedmodel_spec(input_spec)
    spec_x, spec_y = split_batch(spec)
    if keras_model.built:
        _check_model_inputs(keras_model, spec_x)
    y, output = _dry_run(keras_model, loss, spec_x, spec_y)
    kit_metrics = make_metrics(metrics)
    _check_metrics_fit(kit_metrics, y, output)
    with_accuracy = _is_classifier(spec_y, output) if accuracy is None else bool(accuracy)
    return KerasModel(keras_model, loss, spec, kit_metrics, with_accuracy=with_accuracy, run_eagerly=run_eagerly)
