"""The model contract: :class:`Model`, :class:`BatchOutput` and :func:`check_protocol`.

The names and semantics are TensorFlow Federated's ``tff.learning.Model`` (the seed), plus what its
later ``VariableModel`` learned: ``predict_on_batch``, unfinalized metrics and ``reset_metrics``.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from fedmodel.metrics import Aggregator

__all__ = ["BatchOutput", "Model", "check_protocol"]

VarT_co = TypeVar("VarT_co", covariant=True)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchOutput(Generic[T]):
    """What :meth:`Model.forward_pass` returns for one batch.

    Attributes:
        loss: the scalar loss of the batch: the mean over its examples of the per-example loss, plus any
            regularization term (a function of the weights alone); a framework tensor or a number.
        predictions: the model's output for the batch, leading dimension = batch size.
        num_examples: the number of examples in the batch (its leading dimension), a Python int.

    >>> BatchOutput(0.5, [[0.1, 0.9]], 1)
    BatchOutput(loss=0.5, predictions=[[0.1, 0.9]], num_examples=1)
    """

    loss: T
    predictions: T
    num_examples: int


@runtime_checkable
class Model(Protocol[VarT_co]):
    """A model in federated learning, the same for every ML framework.

    ``VarT_co`` is the framework's variable type (``tf.Variable``, ``torch.Tensor``, a JAX box...).
    ``isinstance(obj, Model)`` works but checks presence only and evaluates every property (about
    12 µs on Python 3.11): keep it out of hot loops and prefer :func:`check_protocol`, which names
    what is missing or mis-signed.

    Batches are a pair ``(x, y)`` or a mapping with keys ``"x"`` and ``"y"``, either of which may be
    nested, as numpy arrays or the framework's own tensors.

    Variables are compared by identity: each group property returns the same variable objects, in the
    same order, on every read. What a variable is is the backend's business (:class:`fedmodel.Backend`
    reads and writes it); the core never reads attributes of a variable object.
    """

    @property
    @abstractmethod
    def trainable_variables(self) -> Sequence[VarT_co]:
        """Variables trained by gradient methods; sent to and from the server.

        Clause: disjoint from the other two groups, each variable once, the same objects in the same
        order on every read, all created in ``__init__``; two models from one factory share none.
        """

    @property
    @abstractmethod
    def non_trainable_variables(self) -> Sequence[VarT_co]:
        """Variables that are weights but are not trained (frozen layers, batch-norm statistics).

        Clause: sent with the weights; may change only in ``forward_pass(training=True)`` (or
        ``predict_on_batch(training=True)``), by the model's own rules.
        """

    @property
    @abstractmethod
    def local_variables(self) -> Sequence[VarT_co]:
        """Variables never transmitted (metric accumulators), initialized locally.

        Clause: never part of the weights; :meth:`reset_metrics` returns them to their initial values.
        Only ``forward_pass`` (and the backend's ``train_step``, as ``forward_pass(training=True)`` does)
        moves them.
        """

    @property
    @abstractmethod
    def input_spec(self) -> Any:
        """Nested structure of :class:`fedmodel.TensorSpec` that every batch matches.

        Clause: a pair ``(x, y)`` or a mapping with keys ``"x"`` and ``"y"``; ``None`` dims are free.
        """

    @abstractmethod
    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Run the model on one batch and return ``BatchOutput(loss, predictions, num_examples)``.

        Clause: never changes trainable variables; adds the batch to the metrics (local variables)
        once; may change non-trainable variables only when ``training=True``; raises
        :class:`fedmodel.SpecError` on a batch incompatible with ``input_spec``, changing nothing;
        ``num_examples`` is the batch's leading dimension; ``loss`` is a finite scalar for a finite
        batch and the mean over the batch's examples (so a batch's loss is the example-weighted mean
        of the losses of its parts, regularization aside); with ``training=False`` the same weights and
        batch give the same loss and predictions, whatever the model ran before (training calls
        included).
        """

    @abstractmethod
    def predict_on_batch(self, x: Any, training: bool = False) -> Any:
        """Predictions for the inputs ``x`` alone.

        Clause: with ``training=False`` changes no variable at all, metrics included, and returns the
        predictions ``forward_pass(training=False)`` returns for the same ``x``; with ``training=True``
        may update non-trainable statistics, never metrics.
        """

    @abstractmethod
    def report_local_outputs(self) -> Mapping[str, Any]:
        """Metric name → *unfinalized* values (sums and counts, any shapes), convertible to numpy.

        Clause: pure — calling it twice changes nothing and returns equal values — and a snapshot: later
        batches do not change a report already returned (return copies, not the accumulators). The standard
        metrics (:data:`fedmodel.metrics.STANDARD_METRICS`), where reported, count every example seen
        once (``num_examples`` and the counts of ``loss`` and ``accuracy``), ``accuracy`` counts the
        examples whose predicted class is the label (labels shaped ``(n,)`` or ``(n, 1)``) and is
        reported by classifiers only, and ``loss`` sums the per-example losses without
        regularization.
        """

    @property
    @abstractmethod
    def federated_output_computation(self) -> Aggregator:
        """The :class:`fedmodel.metrics.Aggregator` that turns clients' reports into final metrics.

        Clause: a :class:`fedmodel.metrics.Aggregator` (``init``, ``accumulate``, ``finalize``, and
        ``__call__`` equal to the three in order, with no state kept between calls and the reports left
        unchanged); two clients' reports aggregated equal one client's report over both clients' batches.
        """

    @abstractmethod
    def reset_metrics(self) -> None:
        """Return every local variable to its initial value.

        Clause: every local variable, including those the last batches moved, equals its value after
        ``__init__``; the report then equals the report of a fresh model; no weight changes.
        """


_PROPERTIES = (
    "trainable_variables",
    "non_trainable_variables",
    "local_variables",
    "input_spec",
    "federated_output_computation",
)
# method name -> (positional args, keyword args) that a conforming signature must accept
_METHODS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "forward_pass": ((object(),), {"training": True}),
    "predict_on_batch": ((object(),), {"training": False}),
    "report_local_outputs": ((), {}),
    "reset_metrics": ((), {}),
}


def check_protocol(obj: Any) -> list[str]:
    """What keeps ``obj`` from implementing :class:`Model`, one readable line per member.

    Unlike ``isinstance(obj, Model)`` this names every missing or mis-signed member and never
    evaluates a property. An empty list means ``obj`` has the whole contract.

    >>> check_protocol(object())[:2]
    ["missing property 'trainable_variables'", "missing property 'non_trainable_variables'"]
    """
    problems: list[str] = []
    cls = type(obj)
    for name in _PROPERTIES:
        if not hasattr(cls, name) and name not in getattr(obj, "__dict__", {}):
            problems.append(f"missing property {name!r}")
    for name, (args, kwargs) in _METHODS.items():
        member = inspect.getattr_static(obj, name, None)
        if member is None:
            problems.append(f"missing method {name!r}")
            continue
        bound = getattr(obj, name)
        if not callable(bound):
            problems.append(f"{name!r} is not callable")
            continue
        try:
            sig = inspect.signature(bound)
        except (TypeError, ValueError):  # builtins without a signature: accept
            continue
        try:
            sig.bind(*args, **kwargs)
        except TypeError as exc:
            wanted = ", ".join(["batch"] * len(args) + [f"{k}={v!r}" for k, v in kwargs.items()])
            params = ", ".join(sig.parameters)
            problems.append(f"{name}({params}) cannot be called as {name}({wanted}): {exc}")
    return problems
