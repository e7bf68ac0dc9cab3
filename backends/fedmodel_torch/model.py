"""Any ``torch.nn.Module`` as a :class:`fedmodel.Model`: :func:`from_module` and :class:`TorchModel`.

Also the moves between numpy and torch that the wrapper and the backend share: batches in
(:func:`to_device`, zero-copy for CPU tensors where safe), values out (:func:`to_numpy`, :func:`detached`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, NamedTuple, final

import numpy as np
import torch

from fedmodel import tree as _tree
from fedmodel.backend_kit import (
    BatchOutput,
    SpecError,
    TensorSpec,
    check_batch,
    check_metric_names,
    check_spec,
    output_computation,
    split_batch,
    standard_report,
)
from fedmodel.metrics import SumThenFinalize
from fedmodel_torch.metrics import Metric

__all__ = ["MetricUpdate", "RestorePoint", "TorchModel", "from_module"]

LossFn = Callable[[Any, Any], torch.Tensor]
"""``loss(predictions, y)`` → the batch's scalar mean loss (torch's own argument order)."""

_STANDARD_LOCALS = ("metrics/loss_sum", "metrics/correct", "metrics/count")


# -- numpy <-> torch --------------------------------------------------------------------------------
def module_device(module: torch.nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a module without any)."""
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def from_numpy(value: Any) -> torch.Tensor:
    """A CPU tensor sharing memory with a writable numpy array, or holding a copy of a read-only one.

    ``torch.from_numpy`` would warn on read-only arrays (torch has no read-only tensors) and refuses
    negative strides and non-native byte order, so those are copied; bfloat16 arrays (``ml_dtypes``)
    are reinterpreted bit for bit.
    """
    arr = np.asarray(value)
    if arr.dtype.kind == "V" and arr.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 is a void-kind dtype
        return from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    elif not arr.flags.writeable or any(stride < 0 for stride in arr.strides):
        arr = arr.copy()
    return torch.from_numpy(arr)


def to_device(value: Any, device: torch.device) -> Any:
    """A nested structure of numpy arrays or tensors as tensors on ``device`` (no copy when already there)."""

    def leaf(v: Any) -> torch.Tensor:
        tensor = v if isinstance(v, torch.Tensor) else from_numpy(v)
        return tensor if tensor.device == device else tensor.to(device, non_blocking=True)

    if isinstance(value, (np.ndarray, torch.Tensor)):  # one array: no tree to walk
        return leaf(value)
    if type(value) is tuple and len(value) == 2 and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in value):
        return leaf(value[0]), leaf(value[1])  # the usual batch, (x, y): no tree to walk either
    return _tree.map_structure(leaf, value)


def to_numpy(tensor: torch.Tensor, *, copy: bool) -> np.ndarray:
    """A tensor as a host numpy array: a view of a CPU tensor's memory unless ``copy``, else a copy.

    A tensor on an accelerator always comes back as a new host array (one transfer, no second copy).
    """
    tensor = tensor.detach()
    try:  # the usual tensor: on the CPU, of a numpy dtype, no lazy conjugate or negation bit
        arr = tensor.numpy()
    except (TypeError, RuntimeError):  # bfloat16, an accelerator, a conjugate or negative view: below
        pass
    else:
        return arr.copy() if copy else arr
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes  # installed with JAX and TensorFlow; numpy's only bfloat16

        return to_numpy(tensor.view(torch.int16), copy=copy).view(ml_dtypes.bfloat16)
    if tensor.device.type != "cpu":
        return tensor.cpu().numpy()
    arr = tensor.resolve_conj().resolve_neg().numpy()
    return arr.copy() if copy else arr


def detached(tree: Any, *, host: bool = False) -> Any:
    """Every tensor of ``tree`` detached (and on the CPU when ``host``)."""

    def leaf(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        t = t.detach()
        return t.cpu() if host else t

    return leaf(tree) if isinstance(tree, torch.Tensor) else _tree.map_structure(leaf, tree)


# -- the wrapper ----------------------------------------------------------------------------------
def _enter_mode(module: torch.nn.Module, training: bool) -> list[tuple[torch.nn.Module, bool]]:
    """Put ``module`` in train (or eval) mode, as ``module.train(training)`` does, and leave it so, as a torch
    user's ``model.train()``/``model.eval()`` would.

    Returns every submodule's previous mode when something was switched (for :func:`_restore_modes` if the
    call then raises), nothing when all were already in that mode, the usual case. Walked on every call: a
    submodule added after wrapping (one without variables, such as a dropout) is switched too.
    """
    for m in module.modules():
        if m.training != training:
            previous = [(sub, sub.training) for sub in module.modules()]
            module.train(training)
            return previous
    return []


def _restore_modes(previous: Sequence[tuple[torch.nn.Module, bool]]) -> None:
    for m, was in previous:
        m.training = was


def _hits(predictions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How many rows' argmax is the label; labels shaped ``(n,)`` or ``(n, 1)`` (TFF's usual shape)."""
    predicted = predictions.argmax(dim=-1)
    if y.ndim == predicted.ndim + 1 and y.shape[-1] == 1:
        y = y.reshape(predicted.shape)
    return (predicted == y).sum()


class _Slot(NamedTuple):
    """Where a module's variable lives: its full name, the submodule that owns it, its key there, and the owner's
    own table of them (``owner._parameters`` or ``owner._buffers``, where ``named_parameters()`` and
    ``named_buffers()`` read it and where assigning ``owner.key`` puts a new one)."""

    name: str
    owner: torch.nn.Module
    key: str
    table: dict[str, Any]

    def read(self) -> torch.Tensor | None:
        """The tensor in the slot now (``None`` when it was set to None or deleted).

        Read from the owner's table, as ``named_parameters()`` reads it: ``getattr(owner, key)`` finds it too, but
        only after a failed ordinary attribute lookup and then ``Module.__getattr__``; the variables are read several
        times per client, and that cost the digits MLP's client update about 15 of its 450 microseconds.
        """
        return self.table.get(self.key)


def _slots(module: torch.nn.Module, named: Iterable[tuple[str, Any]], table: str) -> tuple[_Slot, ...]:
    """The slot of each named tensor of ``module`` (``named_parameters()`` or ``named_buffers()``, whose table is
    ``"_parameters"`` or ``"_buffers"``), in that order."""
    out = []
    for name, _ in named:
        prefix, _, key = name.rpartition(".")
        owner = module.get_submodule(prefix)
        out.append(_Slot(name, owner, key, getattr(owner, table)))
    return tuple(out)


def _read(slots: Sequence[_Slot]) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of each slot, read from its owner now (a parameter or buffer set to None is skipped, as
    ``named_parameters()`` skips it)."""
    out = []
    for slot in slots:
        tensor = slot.read()
        if tensor is not None:
            out.append((slot.name, tensor))
    return out


class RestorePoint(NamedTuple):
    """What a call that raises must put back (:meth:`TorchModel.roll_back`)."""

    modes: list[tuple[torch.nn.Module, bool]]
    """Every submodule's mode before the call, when the call switched it (else empty)."""
    buffers: list[tuple[torch.Tensor, torch.Tensor]]
    """Each buffer and a copy taken before a training-mode call (else empty)."""


class MetricUpdate(NamedTuple):
    """One batch's contribution to the local variables, computed before any is written."""

    loss: torch.Tensor
    """The batch's mean loss (detached)."""
    hits: torch.Tensor | None
    """The number of correct predictions, or ``None`` without accuracy."""
    num_examples: int
    """The batch size."""
    states: tuple[torch.Tensor, ...]
    """The user metrics' new states, flattened in metric order."""


def _leading_dim(tree: Any) -> int:
    leaves = [tree] if isinstance(tree, (np.ndarray, torch.Tensor)) else _tree.flatten(tree)[0]
    return int(leaves[0].shape[0])


@final
class TorchModel:
    """A :class:`fedmodel.Model` over a ``torch.nn.Module``; build it with :func:`from_module`.

    Trainable variables are the module's parameters with ``requires_grad``; non-trainable ones are
    its frozen parameters then its persistent buffers (BatchNorm statistics and counters); local
    variables are the metric sums. Names are the module's own (``0.weight``, ``bn.running_mean``).
    The tensors are read from the module on every access, so they follow ``module.to()`` (which replaces
    buffers); which buffers are persistent is read once, when wrapping (the contract fixes a model's variables
    at construction).

    A call that raises (``forward_pass``, ``predict_on_batch``, the backend's ``train_step``) leaves every
    variable as it was: metric sums are computed first and written last, and the buffers that torch updates
    inside ``forward`` (BatchNorm statistics) are put back from a copy taken before a training-mode call.
    """

    __fedmodel_backend__: ClassVar[Any]  # the TorchBackend, set by fedmodel_torch.backend

    def __init__(
        self,
        module: torch.nn.Module,
        loss: LossFn,
        input_spec: Any,
        metrics: Sequence[Metric] = (),
        accuracy: bool | None = None,
    ) -> None:
        """Use :func:`from_module`, which validates the arguments."""
        self.module = module
        self.loss = loss
        self._spec = input_spec
        self._spec_x, spec_y = split_batch(input_spec)
        self._metrics = tuple(metrics)
        if accuracy is None:
            accuracy = isinstance(spec_y, TensorSpec) and spec_y.dtype.startswith(("int", "uint"))
        self.accuracy = bool(accuracy)
        initial = [torch.zeros((), dtype=dtype) for dtype in (torch.float64, torch.int64, torch.int64)]
        names = list(_STANDARD_LOCALS)
        sizes = []
        for metric in self._metrics:
            state = metric.init()
            if not isinstance(state, tuple) or not all(isinstance(t, torch.Tensor) for t in state):
                raise TypeError(f"metric {metric.name!r}: init() must return a tuple of tensors, got {state!r}")
            initial.extend(t.detach().clone() for t in state)
            names.extend(f"metrics/{metric.name}/{i}" for i in range(len(state)))
            sizes.append(len(state))
        self._metric_sizes = tuple(sizes)
        # where each variable lives, found once: the contract fixes a model's variables at construction
        # (conformance: created_in_init); each access reads the tensor from its owner, so it follows module.to()
        # (which replaces buffers) without walking the module tree on every call
        persistent = module.state_dict(keep_vars=True).keys()
        self._parameter_slots = _slots(module, module.named_parameters(), "_parameters")
        self._buffer_slots = _slots(module, module.named_buffers(), "_buffers")
        self._persistent_slots = tuple(s for s in self._buffer_slots if s.name in persistent)
        device = module_device(module)
        self._initial = tuple(t.to(device) for t in initial)
        self._local = tuple(t.clone() for t in self._initial)
        self._local_names = tuple(names)
        self._by_id = self._identity_lookup()  # variable_names' lookup, rebuilt when a variable was replaced
        self.rng_state: torch.Tensor | None = None  # the training steps' own CPU generator state, once seeded

    # -- training randomness ----------------------------------------------------------------------
    def seed_training(self, seed: int) -> None:
        """From now on the backend's training steps draw (dropout masks) from a CPU generator of their own,
        started from ``seed``: a function of ``seed`` and of the steps since, whatever else drew from torch's
        global generator, which the steps leave as they found it (see ``TorchBackend.train_step``)."""
        self.rng_state = torch.Generator().manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF).get_state()

    # -- variables --------------------------------------------------------------------------------
    def named_variables(self) -> tuple[list[tuple[str, torch.Tensor]], ...]:
        """``(name, tensor)`` pairs of the trainable, non-trainable and local variables, in contract order."""
        params = _read(self._parameter_slots)
        trainable = [(n, p) for n, p in params if p.requires_grad]
        frozen = [(n, p) for n, p in params if not p.requires_grad]
        buffers = _read(self._persistent_slots)
        return trainable, frozen + buffers, list(zip(self._local_names, self._local, strict=True))

    @property
    def trainable_variables(self) -> list[torch.Tensor]:
        """The parameters with ``requires_grad``, in ``named_parameters()`` order."""
        return [p for _, p in _read(self._parameter_slots) if p.requires_grad]

    @property
    def non_trainable_variables(self) -> list[torch.Tensor]:
        """Frozen parameters, then persistent buffers (``named_buffers()`` order)."""
        frozen = [p for _, p in _read(self._parameter_slots) if not p.requires_grad]
        return frozen + [b for _, b in _read(self._persistent_slots)]

    def variable_names(self, variables: Sequence[torch.Tensor]) -> list[str]:
        """The module's name of each variable (``metrics/...`` for local ones); ValueError for a tensor that is
        none of the model's variables."""
        names = self._names_of(variables)
        if names is None:  # a variable replaced since the lookup was built (module.to() replaces buffers)
            self._by_id = self._identity_lookup()
            names = self._names_of(variables)
        if names is None:
            raise ValueError("a variable does not belong to this model")
        return names

    def _names_of(self, variables: Sequence[torch.Tensor]) -> list[str] | None:
        """Each variable's name from the identity lookup, each entry confirmed by reading its slot now (so neither
        a replaced tensor nor a new object at a freed address is named); ``None`` at the first that fails."""
        out = []
        for v in variables:
            entry = self._by_id.get(id(v))
            if entry is None:
                return None
            name, where = entry
            if (where if isinstance(where, torch.Tensor) else where.read()) is not v:
                return None
            out.append(name)
        return out

    def _identity_lookup(self) -> dict[int, tuple[str, _Slot | torch.Tensor]]:
        """``id(tensor)`` -> its name and where it is read: the slot of a parameter or buffer as the module holds
        it now, the tensor itself for a local variable (the model's own, never replaced). Tensors compare by
        value, so the lookup is by identity."""
        by_id: dict[int, tuple[str, _Slot | torch.Tensor]] = {}
        for slot in (*self._parameter_slots, *self._buffer_slots):
            tensor = slot.read()
            if tensor is not None:
                by_id[id(tensor)] = (slot.name, slot)
        for name, tensor in zip(self._local_names, self._local, strict=True):
            by_id[id(tensor)] = (name, tensor)
        return by_id

    @property
    def local_variables(self) -> list[torch.Tensor]:
        """Loss sum (float64), correct predictions and example count (int64), then user metrics' states."""
        return list(self._local)

    @property
    def input_spec(self) -> Any:
        """The spec tree given to :func:`from_module`."""
        return self._spec

    @property
    def device(self) -> torch.device:
        """The module's device (where batches are moved): that of its first parameter (or buffer)."""
        for slot in self._parameter_slots or self._buffer_slots:
            tensor = slot.read()
            if tensor is not None:
                return tensor.device
        return torch.device("cpu")

    # -- the contract -----------------------------------------------------------------------------
    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Loss, predictions and batch size, without gradients; adds the batch to the metrics.

        ``training`` puts the module in train or eval mode, as ``module.train(training)`` does, and leaves it
        there. Outputs are detached CPU tensors (``np.asarray`` reads them).

        Raises:
            SpecError: when the batch does not match ``input_spec``. Whatever raises, nothing is changed
                (the modules' modes included).
        """
        point = self.begin_call(training)
        try:
            with torch.no_grad():
                loss, predictions, n, update = self.loss_and_predictions(batch_input)
        except BaseException:
            self.roll_back(point)
            raise
        self.commit_metrics(update)
        return BatchOutput(detached(loss, host=True), detached(predictions, host=True), n)

    def loss_and_predictions(self, batch_input: Any) -> tuple[torch.Tensor, Any, int, MetricUpdate]:
        """The batch's loss (with its autograd graph when gradients are enabled), predictions, size, and its
        contribution to the metrics (for :meth:`commit_metrics`); no variable of the model is written.

        Validates the batch first; the module runs in the mode :meth:`begin_call` set. What
        :meth:`forward_pass` and the backend's ``train_step`` share.
        """
        x, y = check_batch(self._spec, batch_input)
        device = self.device
        n = _leading_dim(x)
        predictions = self.module(to_device(x, device))
        y = to_device(y, device)
        loss = self.loss(predictions, y)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"loss must return a scalar tensor (the batch mean), got {shape}")
        update = self._metric_update(loss.detach(), detached(predictions), y, n)  # on detached tensors: no graph
        return loss, predictions, n, update

    def _metric_update(self, loss: torch.Tensor, predictions: Any, y: Any, n: int) -> MetricUpdate:
        hits = _hits(predictions, y) if self.accuracy else None
        states: list[torch.Tensor] = []
        i = 3
        for metric, size in zip(self._metrics, self._metric_sizes, strict=True):
            state = self._local[i : i + size]
            new = tuple(metric.update(state, y, predictions))
            if len(new) != size or not all(isinstance(t, torch.Tensor) for t in new):
                raise ValueError(f"metric {metric.name!r}: update must return {size} tensors, got {new!r}")
            states.extend(new)
            i += size
        return MetricUpdate(loss, hits, n, tuple(states))

    def commit_metrics(self, update: MetricUpdate) -> None:
        """Add a batch's contribution (from :meth:`loss_and_predictions`) to the local variables, in place."""
        loss_sum, correct, count = self._local[:3]  # no gradient: neither side of any write needs one
        loss_sum.add_(update.loss.to(loss_sum.device), alpha=update.num_examples)
        if update.hits is not None:
            correct.add_(update.hits.to(correct.device))
        count.add_(update.num_examples)
        for var, value in zip(self._local[3:], update.states, strict=True):
            var.copy_(value.detach())

    def begin_call(self, training: bool) -> RestorePoint:
        """Set the module's mode for a call (see :func:`_enter_mode`) and keep what :meth:`roll_back` needs.

        In train mode that is a copy of every buffer: torch updates BatchNorm statistics inside ``forward``
        itself, before the loss exists, so a copy taken before the call is the only way to leave them
        unchanged by a call that fails (none in eval mode, none for a module without buffers).
        """
        buffers = [(b, b.clone()) for _, b in _read(self._buffer_slots)] if training else []
        return RestorePoint(_enter_mode(self.module, training), buffers)

    @staticmethod
    def roll_back(point: RestorePoint) -> None:
        """Undo what a failing call changed since :meth:`begin_call`: buffers and modules' modes."""
        with torch.no_grad():
            for buffer, value in point.buffers:
                buffer.copy_(value)
        _restore_modes(point.modes)

    def predict_on_batch(self, x: Any, training: bool = False) -> Any:
        """Predictions for ``x`` (detached CPU tensors); never touches the metrics.

        The module is left in the mode asked for, as by :meth:`forward_pass`. With ``training=False``
        nothing else changes; with ``training=True`` BatchNorm statistics update and dropout is active.
        """
        check_spec(self._spec_x, x, what="x")
        x = to_device(x, self.device)
        point = self.begin_call(training)
        try:
            with torch.no_grad():
                return detached(self.module(x), host=True)
        except BaseException:
            self.roll_back(point)
            raise

    def report_local_outputs(self) -> dict[str, Any]:
        """``loss``/``accuracy`` as ``(total, count)``, ``num_examples``, user metrics' states: numpy copies."""
        values = [to_numpy(t, copy=True) for t in self._local]
        report = standard_report(*values[:3], accuracy=self.accuracy)
        i = 3
        for metric, size in zip(self._metrics, self._metric_sizes, strict=True):
            report[metric.name] = tuple(values[i : i + size])
            i += size
        return report

    @property
    def federated_output_computation(self) -> SumThenFinalize:
        """Sum over clients, then ``loss = Σloss_sum / Σcount``, ``accuracy = Σcorrect / Σcount``, user finalizers."""
        return output_computation(self._metrics)

    def reset_metrics(self) -> None:
        """Every local variable back to its initial value (in place)."""
        with torch.no_grad():
            for var, init in zip(self._local, self._initial, strict=True):
                var.copy_(init)

    def __repr__(self) -> str:
        return f"TorchModel({type(self.module).__name__}, device={self.device})"


def _check_input_spec(input_spec: Any) -> None:
    try:
        split_batch(input_spec)
    except SpecError as exc:
        raise TypeError(f"input_spec must be a pair (x, y) or a mapping with 'x' and 'y': {exc}") from None
    leaves, _ = _tree.flatten(input_spec, is_leaf=lambda v: isinstance(v, TensorSpec))
    bad = [type(v).__name__ for v in leaves if not isinstance(v, TensorSpec)]
    if bad or not leaves:
        raise TypeError(f"input_spec leaves must all be fedmodel.TensorSpec, found {bad or 'no leaves'}")


def from_module(
    module: torch.nn.Module,
    loss: LossFn,
    input_spec: Any,
    *,
    metrics: Sequence[Metric] = (),
    accuracy: bool | None = None,
) -> TorchModel:
    """Wrap a ``torch.nn.Module`` as a :class:`fedmodel.Model`.

    Args:
        module: the model; called as ``module(x)`` with ``x`` structured as ``input_spec`` says (a dict
            or a tuple arrives as one argument). Its parameters must all be initialized (no lazy modules).
        loss: ``loss(predictions, y)`` → the scalar mean loss of the batch, in torch's argument order
            (predictions first), e.g. ``torch.nn.functional.cross_entropy`` or ``torch.nn.CrossEntropyLoss()``.
        input_spec: ``(x_spec, y_spec)`` or ``{"x": ..., "y": ...}`` of :class:`fedmodel.TensorSpec`.
        metrics: user metrics (:class:`fedmodel.backend_kit.Metric`, e.g. from :func:`fedmodel_torch.mean_metric`)
            besides the standard loss, accuracy and example count.
        accuracy: count correct ``argmax`` predictions; by default (``None``) when ``y`` is one integer tensor.

    Raises:
        TypeError: a wrong argument type; ValueError: lazy parameters or duplicate metric names.

    >>> import torch, fedmodel
    >>> spec = (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None,), "int64"))
    >>> model = from_module(torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, spec)
    >>> fedmodel.get_weights(model).names
    ('weight', 'bias')
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not callable(loss):
        raise TypeError(f"loss must be callable as loss(predictions, y), got {type(loss).__name__}")
    _check_input_spec(input_spec)
    lazy = [n for n, p in module.named_parameters() if torch.nn.parameter.is_lazy(p)]
    if lazy:
        raise ValueError(f"module has uninitialized (lazy) parameters {lazy}: run it once on a batch first")
    metrics = tuple(metrics)
    check_metric_names(metrics)
    return TorchModel(module, loss, input_spec, metrics, accuracy)


def variable_names(model: TorchModel, variables: Sequence[torch.Tensor]) -> list[str]:
    """The module's name of each variable (``metrics/...`` for local ones): :meth:`TorchModel.variable_names`."""
    return model.variable_names(variables)
