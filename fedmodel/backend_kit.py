"""The public kit for writing a backend: every name a backend needs from the core, in one module.

fedmodel's own backends (``fedmodel_torch``, ``fedmodel_tensorflow``, ``fedmodel_jax``) import only
this module, ``fedmodel`` and the other public modules (``fedmodel.metrics``, ``fedmodel.layout``,
``fedmodel.optimizers``); a third party's backend needs nothing more. Every backend lays out the same
files with the same roles, as Keras 3 lays out ``keras/src/backend/{jax,tensorflow,torch}``:

=================  ========================================================================================
``model.py``       the wrapper (a :class:`fedmodel.Model` around the framework's own model) and ``from_*``
``backend.py``     the :class:`fedmodel.Backend` operations, the training step included; ``BACKEND``
``metrics.py``     :class:`Metric` helpers in the framework's arrays (``mean_metric``, ``sum_metric``)
``optimizers.py``  :class:`fedmodel.OptimizerSpec` -> the framework's optimizer
``layout.py``      ``canonical_layout(model)``: the framework's names and axes -> the canonical ones
``models.py``      built-in models (``mlp``...), started from :func:`initialize`'s canonical weights
=================  ========================================================================================

What the kit holds:

* the contract's types and errors: :class:`~fedmodel.BatchOutput`, :class:`~fedmodel.Variable`,
  :class:`~fedmodel.TensorSpec`, :class:`~fedmodel.SpecError`, :class:`~fedmodel.BackendError`,
  :class:`~fedmodel.WeightsError`;
* the batch checks every wrapper runs first: :func:`check_batch` (spec, value bounds, one leading
  dimension, no empty batch) and :func:`split_batch`;
* one user-metric API: :class:`Metric`, whose ``update(state, y_true, y_pred, sample_weight=None)`` has
  Keras's signature in every backend, the standard report (:func:`standard_report`) and the aggregator of
  a model's reports (:func:`output_computation`);
* the canonical initial weights of built-in models (:func:`initial_weights`, :func:`initialize`), so a
  built-in model with the same seed starts from the same weights in every framework.

A backend whose training steps draw random numbers (dropout) also implements the optional
``seed_training(model, seed)`` (see :class:`fedmodel.Backend`), or its runs differ between processes.

>>> import numpy as np
>>> report = standard_report(np.float32(3.0), 2, 4)
>>> output_computation(())([report, report])
{'loss': 0.75, 'accuracy': 0.5, 'num_examples': 8}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedmodel._backend import Backend as Backend
from fedmodel._backend import register_backend as register_backend
from fedmodel._batch import check_batch as check_batch
from fedmodel._batch import split_batch as split_batch
from fedmodel._contract import BatchOutput as BatchOutput
from fedmodel._errors import BackendError as BackendError
from fedmodel._errors import SpecError as SpecError
from fedmodel._errors import WeightsError as WeightsError
from fedmodel._specs import TensorSpec as TensorSpec
from fedmodel._specs import check_spec as check_spec
from fedmodel._specs import classification_spec as classification_spec
from fedmodel._specs import dtype_name as dtype_name
from fedmodel._specs import shape_of as shape_of
from fedmodel._variable import Variable as Variable
from fedmodel._weights import ModelWeights, assign_weights, get_weights
from fedmodel.metrics import STANDARD_METRICS, SumThenFinalize, check_standard_report, identity, ratio

__all__ = [
    "Backend",
    "BackendError",
    "BatchOutput",
    "Metric",
    "SpecError",
    "TensorSpec",
    "Variable",
    "WeightsError",
    "aligned_copy",
    "check_batch",
    "check_metric_names",
    "check_spec",
    "classification_spec",
    "dtype_name",
    "glorot_uniform",
    "initial_weights",
    "initialize",
    "output_computation",
    "register_backend",
    "shape_of",
    "split_batch",
    "standard_report",
]


@dataclass(frozen=True)
class Metric:
    """A user metric: a named state of sums, updated per batch, summed over clients, finalized once.

    The same class serves every backend; only the arrays differ (torch tensors, TensorFlow tensors, JAX
    arrays). Each backend's ``metrics.py`` builds common ones (``mean_metric``, ``sum_metric``).

    Attributes:
        name: the metric's key in ``report_local_outputs()`` and in the final metrics; not one of
            :data:`fedmodel.metrics.STANDARD_METRICS`.
        init: ``init() -> state``, a tuple of the framework's arrays of fixed shapes and dtypes.
        update: ``update(state, y_true, y_pred, sample_weight=None) -> state`` for one batch (Keras's
            ``update_state`` signature), pure: it returns a new state of the same shapes and dtypes.
            ``sample_weight`` is ``None`` in fedmodel's own calls; a metric may use it when a user calls it.
        finalize: the final value from the state summed over clients (a tuple of numpy arrays), e.g.
            :func:`fedmodel.metrics.ratio` for a ``(total, count)`` pair.

    >>> m = Metric("count", lambda: (0,), lambda state, y_true, y_pred, sample_weight=None: (state[0] + len(y_true),))
    >>> m.update(m.init(), [1, 2], None)
    (2,)
    """

    name: str
    init: Callable[[], tuple[Any, ...]]
    update: Callable[..., tuple[Any, ...]]
    finalize: Callable[[Any], Any] = identity

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a metric needs a non-empty string name, got {self.name!r}")
        if self.name in STANDARD_METRICS:
            raise ValueError(f"metric name {self.name!r} is taken by the standard metrics {STANDARD_METRICS}")
        for attr in ("init", "update", "finalize"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"metric {self.name!r}: {attr} must be callable")


def check_metric_names(metrics: Sequence[Metric]) -> None:
    """Raise ``ValueError`` for two metrics of one name, ``TypeError`` for an entry that is no :class:`Metric`."""
    seen: set[str] = set()
    for metric in metrics:
        if not isinstance(metric, Metric):
            raise TypeError(f"expected fedmodel.backend_kit.Metric, got {type(metric).__name__}")
        if metric.name in seen:
            raise ValueError(f"two metrics are named {metric.name!r}")
        seen.add(metric.name)


def standard_report(loss_sum: Any, correct: Any, count: Any, *, accuracy: bool = True) -> dict[str, Any]:
    """The standard report (:data:`fedmodel.metrics.STANDARD_METRICS`) from three sums, as numpy values:
    ``loss`` and ``accuracy`` as ``(total, count)`` pairs, ``num_examples`` as a count.

    Args:
        loss_sum: the sum of per-example losses (no regularization), any scalar array.
        correct: the number of correct predictions.
        count: the number of examples.
        accuracy: include ``accuracy`` (only classifiers have one).

    >>> standard_report(1.5, 1, 2)
    {'loss': (array(1.5), array(2)), 'accuracy': (array(1), array(2)), 'num_examples': array(2)}
    """
    n = np.asarray(count)
    report: dict[str, Any] = {"loss": (np.asarray(loss_sum), n)}
    if accuracy:
        report["accuracy"] = (np.asarray(correct), n)
    report["num_examples"] = n
    return report


def output_computation(metrics: Sequence[Metric]) -> SumThenFinalize:
    """A model's ``federated_output_computation``: every report checked (:func:`check_standard_report`), summed
    over clients, then ``loss`` and ``accuracy`` as ratios and each user metric by its ``finalize``."""
    finalizers: dict[str, Callable[[Any], Any]] = {"loss": ratio, "accuracy": ratio}
    finalizers.update({m.name: m.finalize for m in metrics})
    return SumThenFinalize(finalizers, check=check_standard_report)


ALIGNMENT = 64
"""Bytes: the host-buffer alignment at which TensorFlow's eager runtime and XLA's CPU client (JAX) adopt a
C-contiguous numpy array as a tensor's memory without copying it."""


def aligned_copy(value: np.ndarray, dtype: Any = None) -> np.ndarray:
    """A copy of ``value`` in a fresh C-contiguous buffer of its own at an :data:`ALIGNMENT`-byte address,
    as ``dtype`` (default: ``value``'s, in native byte order; a cast must be ``same_kind``).

    A backend's weight write copies into it once and lets the runtime adopt it, where an ordinary numpy copy
    (16-byte aligned) would be copied a second time.

    >>> a = aligned_copy(np.arange(6, dtype=">f4").reshape(2, 3))
    >>> a.ctypes.data % ALIGNMENT, a.dtype.isnative, a.flags.c_contiguous
    (0, True, True)
    """
    target = np.dtype(value.dtype).newbyteorder("=") if dtype is None else np.dtype(dtype)
    raw = np.empty(value.size * target.itemsize + ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % ALIGNMENT
    out: np.ndarray = raw[offset : offset + value.size * target.itemsize].view(target).reshape(value.shape)
    np.copyto(out, value, casting="same_kind")
    return out


def glorot_uniform(rng: np.random.Generator, shape: Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    """Glorot (Xavier) uniform values for a kernel of canonical ``shape`` (Keras's default initializer).

    The last axis is the output, the one before it the input, and any axes before those are spatial
    (a convolution's ``(*kernel, in, out)``): ``limit = sqrt(6 / (fan_in + fan_out))``.

    >>> glorot_uniform(np.random.default_rng(0), (2, 3)).shape
    (2, 3)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"a kernel has at least two axes, got shape {shape}")
    receptive = math.prod(shape[:-2])
    fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


_ZEROS = ("bias", "mean", "num_batches_tracked")
_ONES = ("scale", "var")


def initial_weights(template: ModelWeights, seed: int) -> ModelWeights:
    """The canonical initial weights of a built-in model: kernels Glorot-uniform, biases and running means 0,
    batch-norm scales and running variances 1, drawn from ``numpy.random.default_rng(seed)`` in the
    template's (canonical) order.

    Args:
        template: the model's weights in canonical names (``dense_0/kernel``, ``conv_1/bias``,
            ``batch_norm_0/var``...), e.g. ``get_weights(fedmodel.layout.canonical(model))``; only the
            names, shapes and dtypes are used.
        seed: the model's seed.

    Raises:
        WeightsError: a canonical name this initializer does not know, naming it.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for name, value in template.items():
        leaf = name.rsplit("/", 1)[-1]
        arr = np.asarray(value)
        if leaf == "kernel":
            arrays.append(glorot_uniform(rng, arr.shape, arr.dtype))
        elif leaf in _ZEROS:
            arrays.append(np.zeros(arr.shape, arr.dtype))
        elif leaf in _ONES:
            arrays.append(np.ones(arr.shape, arr.dtype))
        else:
            raise WeightsError(f"variable {name!r}: no canonical initializer (kernel, bias, scale, mean, var)")
    return template.with_arrays(arrays)


def initialize(model: Any, seed: int) -> None:
    """Write :func:`initial_weights` into ``model`` through its canonical layout (the backend's
    ``canonical_layout``), so built-in models of every framework start alike for one seed."""
    from fedmodel.layout import canonical

    view = canonical(model)
    assign_weights(view, initial_weights(get_weights(view), seed))
