"""``from_keras_model``: a Keras 3 model (TensorFlow backend) as a :class:`fedmodel.Model` over ``tf.Variable``.

The contract's variables are the ``tf.Variable`` objects that hold the Keras variables' values
(``keras_variable.value``): the same memory Keras trains, so a weight written through fedmodel is what
``keras_model(x)`` uses next. Names come from the Keras paths, made instance-independent
(:func:`fedmodel_tensorflow._util.canonical_names`). Keras' dropout seed state is not a weight and
belongs to no group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, final

import numpy as np

from fedmodel import tree as _tree
from fedmodel._batch import check_batch, split_batch
from fedmodel._contract import BatchOutput
from fedmodel._errors import SpecError
from fedmodel._specs import check_spec
from fedmodel.metrics import SumThenFinalize
from fedmodel_tensorflow import _util
from fedmodel_tensorflow._compat import keras, tf
from fedmodel_tensorflow.metrics import (
    MetricLike,
    check_metric_names,
    check_metrics_fit,
    make_metrics,
    output_computation,
)

__all__ = ["KerasModel", "from_keras_model"]

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
        metrics: Sequence[keras.metrics.Metric],
        *,
        with_accuracy: bool,
        run_eagerly: bool,
    ) -> None:
        self._keras_model = keras_model
        self._loss_fn = loss
        self._spec = input_spec
        self._spec_x, self._spec_y = split_batch(input_spec)
        self._leaves_x, self._tree_x = _util.flat_specs(self._spec_x)
        self._leaves_y, self._tree_y = _util.flat_specs(self._spec_y)
        self._keras_metrics = list(metrics)
        self._with_accuracy = with_accuracy
        self._run_eagerly = run_eagerly
        self._keras_trainable = list(keras_model.trainable_weights)
        self._keras_non_trainable = list(keras_model.non_trainable_weights)
        self._trainable = tuple(v.value for v in self._keras_trainable)
        self._non_trainable = tuple(v.value for v in self._keras_non_trainable)
        self._loss_sum = tf.Variable(np.float64(0), trainable=False, name="loss_sum")
        self._correct = tf.Variable(np.int64(0), trainable=False, name="correct")
        self._count = tf.Variable(np.int64(0), trainable=False, name="count")
        metric_vars = [v.value for m in self._keras_metrics for v in m.variables]
        self._local = (self._loss_sum, self._correct, self._count, *metric_vars)
        in_layer_order = list(keras_model.weights)  # numbering scopes in layer order keeps names readable
        canonical = _util.canonical_names([v.path for v in in_layer_order], keras_model.name)
        by_id = dict(zip(map(id, in_layer_order), canonical, strict=True))
        weight_names = [by_id.get(id(v), v.path) for v in self._keras_trainable + self._keras_non_trainable]
        local_names = ["metrics/loss_sum", "metrics/correct", "metrics/count"] + [
            f"metrics/{m.name}/{v.name}" for m in self._keras_metrics for v in m.variables
        ]
        all_vars = self._trainable + self._non_trainable + self._local
        self._names = dict(zip(map(id, all_vars), _util.unique(weight_names + local_names), strict=True))
        self._output_computation = output_computation(self._keras_metrics, with_accuracy=with_accuracy)
        self._trainers: dict[Any, Any] = {}  # OptimizerSpec -> fedmodel_tensorflow.optimizers.Trainer
        self._signature_xy = _util.tf_signature(self._leaves_x + self._leaves_y)
        sig_x = _util.tf_signature(self._leaves_x)
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
        """``loss_sum``, ``correct``, ``count`` of the standard report, then each Keras metric's variables."""
        return self._local

    @property
    def input_spec(self) -> Any:
        """The spec given to :func:`from_keras_model`, with :class:`fedmodel.TensorSpec` leaves."""
        return self._spec

    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Loss (mean over the batch, plus the model's regularization losses), predictions and batch size.

        Validates the batch before anything runs; updates the metrics; changes batch-norm statistics
        only with ``training=True``; never changes a trainable variable.
        """
        flat, num_examples = self._flatten_batch(batch_input)
        loss, predictions = self._forward_fns[bool(training)](flat)
        return BatchOutput(loss=loss, predictions=predictions, num_examples=num_examples)

    def predict_on_batch(self, x: Any, training: bool = False) -> tf.Tensor:
        """The Keras model's output for ``x``; with ``training=False`` nothing changes."""
        check_spec({"x": self._spec_x}, {"x": x})  # errors name the path as forward_pass does: 'x/...'
        return self._predict_fns[bool(training)](_util.leaves(x))

    def report_local_outputs(self) -> dict[str, Any]:
        """The standard report (``loss``, ``accuracy`` when classifying, ``num_examples``) and, for each
        Keras metric, the tuple of its state variables, all unfinalized numpy values."""
        count = self._count.numpy()
        report: dict[str, Any] = {"loss": (self._loss_sum.numpy(), count)}
        if self._with_accuracy:
            report["accuracy"] = (self._correct.numpy(), count)
        report["num_examples"] = count
        for metric in self._keras_metrics:
            report[metric.name] = tuple(np.asarray(v.numpy()) for v in metric.variables)
        return report

    @property
    def federated_output_computation(self) -> SumThenFinalize:
        """Sum the reports over clients, then finalize (:mod:`fedmodel_tensorflow.metrics`)."""
        return self._output_computation

    def reset_metrics(self) -> None:
        """Zero the standard accumulators and ``reset_state()`` every Keras metric."""
        for var in (self._loss_sum, self._correct, self._count):
            var.assign(tf.zeros_like(var))
        for metric in self._keras_metrics:
            metric.reset_state()

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

    # -- what the backend and the trainer use ---------------------------------------------------
    def _compile(self, fn: Callable[[list[tf.Tensor]], Any], signature: list[tf.TensorSpec]) -> _util.Compiled:
        """``fn(flat_leaves)`` as a ``tf.function`` traced once for ``signature``, or run eagerly."""
        return _util.Compiled(fn, signature, eager=self._run_eagerly)

    def _flatten_batch(self, batch: Any) -> tuple[list[Any], int]:
        """Validate a batch and return its leaves (x then y) and its number of examples."""
        x, y = check_batch(self._spec, batch)
        flat_x = _util.leaves(x)
        return flat_x + _util.leaves(y), _util.leading_dim(flat_x[0])

    def _split_flat(self, flat: Sequence[tf.Tensor]) -> tuple[Any, Any]:
        nx = len(self._leaves_x)
        return _tree_unflatten(self._tree_x, flat[:nx]), _tree_unflatten(self._tree_y, flat[nx:])

    def _loss_and_predictions(self, x: Any, y: Any, training: bool) -> tuple[tf.Tensor, Any, tf.Tensor]:
        """``(loss, predictions, data loss)``: the loss adds the model's regularization losses, the data loss
        (the mean per-example loss, what the ``loss`` metric sums) does not."""
        predictions = self._keras_model(x, training=training)
        data_loss = tf.convert_to_tensor(self._loss_fn(y, predictions))
        if data_loss.shape.rank:  # a per-example loss: the contract's loss is the batch mean
            data_loss = tf.reduce_mean(data_loss)
        regularization = self._keras_model.losses
        if not regularization:
            return data_loss, predictions, data_loss
        return data_loss + tf.add_n([tf.cast(r, data_loss.dtype) for r in regularization]), predictions, data_loss

    def _update_metrics(self, y: Any, predictions: Any, data_loss: tf.Tensor) -> None:
        """Add the batch to the metrics; ``data_loss`` is its mean per-example loss, without regularization."""
        loss = data_loss
        first = tf.nest.flatten(y)[0]
        n = tf.shape(first, out_type=tf.int64)[0]
        self._loss_sum.assign_add(tf.cast(loss, tf.float64) * tf.cast(n, tf.float64))
        self._count.assign_add(n)
        if self._with_accuracy:
            if first.shape.rank == 1 or first.shape[-1] == 1:  # integer labels, (batch,) or (batch, 1)
                labels = tf.reshape(first, [-1])
            else:  # one-hot rows
                labels = tf.argmax(first, axis=-1)
            hits = tf.equal(tf.argmax(predictions, axis=-1), tf.cast(labels, tf.int64))
            self._correct.assign_add(tf.reduce_sum(tf.cast(hits, tf.int64)))
        for metric in self._keras_metrics:
            metric.update_state(y, predictions)

    def _forward_fn(self, training: bool) -> Callable[[list[tf.Tensor]], tuple[tf.Tensor, Any]]:
        def forward(flat: list[tf.Tensor]) -> tuple[tf.Tensor, Any]:
            x, y = self._split_flat(flat)
            loss, predictions, data_loss = self._loss_and_predictions(x, y, training)
            self._update_metrics(y, predictions, data_loss)
            return loss, predictions

        return forward

    def _predict_fn(self, training: bool) -> Callable[[list[tf.Tensor]], Any]:
        def predict(flat: list[tf.Tensor]) -> Any:
            return self._keras_model(_tree_unflatten(self._tree_x, flat), training=training)

        return predict


def _tree_unflatten(treedef: Any, leaves: Sequence[Any]) -> Any:
    return _tree.unflatten(treedef, list(leaves))


def _is_classifier(spec_y: Any, output: Any) -> bool:
    leaves, _ = _util.flat_specs(spec_y)
    out = tf.nest.flatten(output)
    if len(leaves) != 1 or len(out) != 1 or out[0].shape.rank != 2 or (out[0].shape[-1] or 0) < 2:
        return False
    y = leaves[0]
    sparse = (len(y.shape) == 1 or (len(y.shape) == 2 and y.shape[-1] == 1)) and np.dtype(y.dtype).kind in "iu"
    one_hot = len(y.shape) == 2 and y.shape[-1] == out[0].shape[-1]
    return sparse or one_hot


def _check_model_inputs(keras_model: keras.Model, spec_x: Any) -> None:
    inputs = getattr(keras_model, "inputs", None)
    specs, _ = _util.flat_specs(spec_x)
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
    leaves_x, tree_x = _util.flat_specs(spec_x)
    leaves_y, tree_y = _util.flat_specs(spec_y)
    x = _tree_unflatten(tree_x, [tf.constant(a) for a in _util.zeros_like_spec(leaves_x, 2)])
    y = _tree_unflatten(tree_y, [tf.constant(a) for a in _util.zeros_like_spec(leaves_y, 2)])
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


def from_keras_model(
    keras_model: keras.Model,
    loss: LossFn,
    input_spec: Any,
    metrics: Sequence[MetricLike] | None = None,
    *,
    accuracy: bool | None = None,
    run_eagerly: bool = False,
) -> KerasModel:
    """Wrap an *uncompiled* Keras 3 model as a :class:`fedmodel.Model` (TFF's ``from_keras_model``).

    Args:
        keras_model: a Keras model on the TensorFlow backend; built from ``input_spec`` when unbuilt.
            It must not be compiled: the loss and metrics come from here, the optimizer from the
            federated algorithm. Wrap a fresh Keras model per fedmodel model (two wrappers of one Keras
            model share its variables).
        loss: ``loss(y_true, y_pred)`` returning the batch mean or one loss per example (any
            ``keras.losses.Loss``). The model's regularization losses are added to it.
        input_spec: a pair ``(x_spec, y_spec)`` or a mapping ``{"x": ..., "y": ...}`` of
            :class:`fedmodel.TensorSpec` (``tf.TensorSpec`` leaves are converted).
        metrics: Keras metrics, as instances or zero-argument constructors; reported unfinalized and
            finalized after aggregation.
        accuracy: include ``accuracy=(correct, count)`` in the standard report; ``None`` (default)
            includes it when the output is ``(batch, classes)`` and ``y`` holds integer labels or one-hot rows.
        run_eagerly: run every step eagerly instead of as a ``tf.function`` (for debugging).

    Raises:
        TypeError: ``input_spec`` is not a spec, or ``keras_model`` is not a Keras model.
        ValueError: the model is compiled, or the loss does not fit the model's output.
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
    spec = _util.as_fedmodel_spec(input_spec)
    spec_x, spec_y = split_batch(spec)
    if keras_model.built:
        _check_model_inputs(keras_model, spec_x)
    y, output = _dry_run(keras_model, loss, spec_x, spec_y)
    keras_metrics = make_metrics(metrics)
    check_metric_names(keras_metrics)
    check_metrics_fit(keras_metrics, y, output)
    with_accuracy = _is_classifier(spec_y, output) if accuracy is None else bool(accuracy)
    return KerasModel(keras_model, loss, spec, keras_metrics, with_accuracy=with_accuracy, run_eagerly=run_eagerly)
