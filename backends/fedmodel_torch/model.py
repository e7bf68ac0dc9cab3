"""Any ``torch.nn.Module`` as a :class:`fedmodel.Model`: :func:`from_module` and :class:`TorchModel`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, final

import numpy as np
import torch

from fedmodel import tree as _tree
from fedmodel._batch import check_batch, split_batch
from fedmodel._contract import BatchOutput
from fedmodel._errors import SpecError
from fedmodel._specs import TensorSpec, check_spec
from fedmodel.metrics import SumThenFinalize
from fedmodel_torch._convert import detached, from_numpy, module_device, to_device, to_numpy
from fedmodel_torch.metrics import Metric, output_computation

__all__ = ["TorchModel", "from_module"]

LossFn = Callable[[torch.Tensor, Any], torch.Tensor]
_STANDARD_LOCALS = ("metrics/loss_sum", "metrics/correct", "metrics/count")


def _submodules(module: torch.nn.Module) -> tuple[torch.nn.Module, ...]:
    """Every submodule, ``module`` included, each once: a plain walk over ``_modules`` (``module.modules()``
    builds name prefixes nobody reads here, at twice the cost on a small network)."""
    found, seen = [module], {id(module)}
    for current in found:  # ``found`` grows while it is walked
        for child in current._modules.values():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                found.append(child)
    return tuple(found)


_MODULE_TRAIN = torch.nn.Module.train
# what ``torch.no_grad``'s __enter__/__exit__ call, through one Python object instead of two per call
# (1.5 -> 0.3 us); the public ``torch.set_grad_enabled`` where a torch build lacks it
_set_grad_enabled: Callable[[bool], Any] = getattr(torch._C, "_set_grad_enabled", torch.set_grad_enabled)
_registrations = [0]  # how many submodules were registered anywhere in this process


def _count_registration(module: torch.nn.Module, name: str, submodule: torch.nn.Module | None) -> None:
    _registrations[0] += 1


# Every ``add_module`` and module ``__setattr__`` anywhere runs this: a module tree cached below is
# walked again only after some module gained a submodule (removals only leave a harmless extra entry).
torch.nn.modules.module.register_module_module_registration_hook(_count_registration)

_Modes = list[tuple[torch.nn.Module, bool]]


class _ModuleTree:
    """Train/eval switching of one module tree, with the submodule list cached between calls."""

    def __init__(self) -> None:
        self._root: torch.nn.Module | None = None
        self._modules: tuple[torch.nn.Module, ...] = ()
        self._registrations = -1

    def modules(self, root: torch.nn.Module) -> tuple[torch.nn.Module, ...]:
        """``root``'s submodules, walked again only when ``root`` or the process's module trees changed."""
        if root is not self._root or _registrations[0] != self._registrations:
            self._root, self._registrations = root, _registrations[0]
            self._modules = _submodules(root)
        return self._modules

    def enter(self, root: torch.nn.Module, training: bool) -> _Modes | None:
        """``root.train(training)``; returns what :meth:`restore` needs, or None when nothing changed.

        Modules that do not override ``train`` get the flag directly (``nn.Module.__setattr__`` costs
        microseconds per module); a module that overrides it gets ``root.train(training)``.
        """
        modules = self.modules(root)
        for m in modules:
            if m.training is not training:
                break
        else:
            return None
        previous = [(m, m.training) for m in modules]
        if all(type(m).train is _MODULE_TRAIN for m in modules):
            for m in modules:
                object.__setattr__(m, "training", training)
        else:
            root.train(training)
        return previous

    @staticmethod
    def restore(previous: _Modes | None) -> None:
        """Every submodule's mode back to what :meth:`enter` found."""
        if previous is not None:
            for m, was in previous:
                object.__setattr__(m, "training", was)

    @contextmanager
    def mode(self, root: torch.nn.Module, training: bool) -> Iterator[None]:
        """``root.train(training)`` for the block, then every submodule's own previous mode back."""
        previous = self.enter(root, training)
        try:
            yield
        finally:
            self.restore(previous)


def _hits(predictions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How many rows' argmax is the label; labels shaped ``(n,)`` or ``(n, 1)`` (TFF's usual shape)."""
    predicted = predictions.argmax(dim=-1)
    if y.ndim == predicted.ndim + 1 and y.shape[-1] == 1:
        y = y.reshape(predicted.shape)
    # ``eq_`` into argmax's own int64 result: one allocation less than ``==``
    return predicted.eq_(y).sum()


def _leading_dim(tree: Any) -> int:
    shape = getattr(tree, "shape", None)
    if shape is None:
        leaves, _ = _tree.flatten(tree)
        shape = leaves[0].shape
    return int(shape[0])


@final
class TorchModel:
    """A :class:`fedmodel.Model` over a ``torch.nn.Module``; build it with :func:`from_module`.

    Trainable variables are the module's parameters with ``requires_grad``; non-trainable ones are
    its frozen parameters then its persistent buffers (BatchNorm statistics and counters); local
    variables are the metric sums. Names are the module's own (``0.weight``, ``bn.running_mean``).
    The lists are read from the module on every access, so they always match it.
    """

    __fedmodel_backend__: ClassVar[Any]  # the TorchBackend, set by fedmodel_torch.backend

    def __init__(
        self,
        module: torch.nn.Module,
        loss_fn: LossFn,
        input_spec: Any,
        metrics: Sequence[Metric] = (),
        accuracy: bool | None = None,
    ) -> None:
        """Use :func:`from_module`, which validates the arguments."""
        self.module = module
        self._tree = _ModuleTree()
        self.loss_fn = loss_fn
        self._spec = input_spec
        self._spec_x, spec_y = split_batch(input_spec)
        self._metrics = tuple(metrics)
        if accuracy is None:
            accuracy = isinstance(spec_y, TensorSpec) and spec_y.dtype.startswith(("int", "uint"))
        self.accuracy = bool(accuracy)
        device = module_device(module)
        # the device is read from one tensor of the module: ``module.to(...)`` moves it in place
        self._probe = next(iter(module.parameters()), None)
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
        self._initial = tuple(t.to(device) for t in initial)
        self._local = tuple(t.clone() for t in self._initial)
        self._standard = self._local[:3]  # loss sum, correct, count: updated in place, never replaced
        self._local_names = tuple(names)

    # -- variables --------------------------------------------------------------------------------
    def _persistent_buffers(self) -> list[tuple[str, torch.Tensor]]:
        keys = self.module.state_dict(keep_vars=True).keys()
        return [(n, b) for n, b in self.module.named_buffers() if n in keys]

    def named_variables(self) -> tuple[list[tuple[str, torch.Tensor]], ...]:
        """``(name, tensor)`` pairs of the trainable, non-trainable and local variables, in contract order."""
        params: list[tuple[str, torch.Tensor]] = list(self.module.named_parameters())
        trainable = [(n, p) for n, p in params if p.requires_grad]
        frozen = [(n, p) for n, p in params if not p.requires_grad]
        return trainable, frozen + self._persistent_buffers(), list(zip(self._local_names, self._local, strict=True))

    @property
    def trainable_variables(self) -> list[torch.Tensor]:
        """The parameters with ``requires_grad``, in ``named_parameters()`` order."""
        return [p for p in self.module.parameters() if p.requires_grad]

    @property
    def non_trainable_variables(self) -> list[torch.Tensor]:
        """Frozen parameters, then persistent buffers (``named_buffers()`` order)."""
        frozen = [p for p in self.module.parameters() if not p.requires_grad]
        return frozen + [b for _, b in self._persistent_buffers()]

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
        return module_device(self.module) if self._probe is None else self._probe.device

    # -- the contract -----------------------------------------------------------------------------
    def forward_pass(self, batch_input: Any, training: bool = True) -> BatchOutput[Any]:
        """Loss, predictions and batch size, without gradients; adds the batch to the metrics.

        ``training`` switches ``module.train()``/``eval()`` for the call (every submodule's mode is
        restored after). Outputs are detached CPU tensors (``np.asarray`` reads them).

        Raises:
            SpecError: when the batch does not match ``input_spec`` (nothing is changed).
        """
        x, y, n = self._inputs(batch_input)
        previous = self._tree.enter(self.module, training)
        grad_was = torch.is_grad_enabled()
        _set_grad_enabled(False)  # torch.no_grad() without its two Python objects per call
        try:
            predictions = self.module(x)
            loss = self.loss_fn(predictions, y)
            if type(loss) is not torch.Tensor or loss.ndim:  # the exact type first: the cheap test
                self._check_loss(loss)
            self._update_metrics(loss, predictions, y, n)
        finally:
            _set_grad_enabled(grad_was)
            if previous is not None:
                self._tree.restore(previous)
        if loss.is_cpu:  # under no_grad nothing carries a graph: no detach needed
            return BatchOutput(loss, predictions, n)
        return BatchOutput(detached(loss, host=True), detached(predictions, host=True), n)

    def _inputs(self, batch_input: Any) -> tuple[Any, Any, int]:
        x, y = check_batch(self._spec, batch_input)
        probe = self._probe
        if probe is not None and probe.is_cpu and type(x) is np.ndarray and type(y) is np.ndarray:
            return from_numpy(x), from_numpy(y), x.shape[0]  # the common case, in the fewest steps
        device = self.device
        return to_device(x, device), to_device(y, device), _leading_dim(x)

    def _checked_loss(self, predictions: Any, y: Any) -> torch.Tensor:
        loss = self.loss_fn(predictions, y)
        self._check_loss(loss)
        return loss

    @staticmethod
    def _check_loss(loss: Any) -> None:
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar tensor (the batch mean), got {shape}")

    def loss_and_predictions(self, batch_input: Any, training: bool) -> tuple[torch.Tensor, Any, int]:
        """The batch's loss (with its autograd graph when gradients are enabled), predictions and size.

        Validates the batch first, updates the metrics; what :meth:`forward_pass` and the backend's
        ``train_step`` share.
        """
        x, y, n = self._inputs(batch_input)
        previous = self._tree.enter(self.module, training)
        try:
            predictions = self.module(x)
        finally:
            self._tree.restore(previous)
        loss = self._checked_loss(predictions, y)
        with torch.no_grad():
            self._update_metrics(loss.detach(), detached(predictions), y, n)
        return loss, predictions, n

    def _update_metrics(self, loss: torch.Tensor, predictions: Any, y: Any, n: int) -> None:
        loss_sum, correct, count = self._standard
        hits = _hits(predictions, y) if self.accuracy else None
        if not self._metrics and ((loss.is_cpu and loss_sum.is_cpu) or loss.device == loss_sum.device):  # in place
            loss_sum.add_(loss, alpha=n)
            if hits is not None:
                correct.add_(hits)
            count.add_(n)
            return
        updates: list[tuple[torch.Tensor, torch.Tensor]] = []
        i = 3
        for metric, size in zip(self._metrics, self._metric_sizes, strict=True):
            state = self._local[i : i + size]
            new = metric.update(state, y, predictions)
            if len(new) != size:
                raise ValueError(f"metric {metric.name!r}: update returned {len(new)} tensors, init {size}")
            updates.extend(zip(state, new, strict=True))
            i += size
        # every new value is computed before the first write
        loss_sum.add_(loss.to(loss_sum.device), alpha=n)
        if hits is not None:
            correct.add_(hits.to(correct.device))
        count.add_(n)
        for var, value in updates:
            var.copy_(value)

    def predict_on_batch(self, x: Any, training: bool = False) -> Any:
        """Predictions for ``x`` (detached CPU tensors); never touches the metrics.

        With ``training=False`` nothing changes; with ``training=True`` the module runs in train mode
        (BatchNorm statistics update, dropout is active).
        """
        check_spec(self._spec_x, x, what="x")
        x = to_device(x, self.device)
        with torch.no_grad(), self._tree.mode(self.module, training):
            return detached(self.module(x), host=True)

    def report_local_outputs(self) -> dict[str, Any]:
        """``loss``/``accuracy`` as ``(total, count)``, ``num_examples``, user metrics' states: numpy copies."""
        values = [to_numpy(t, copy=True) for t in self._local]
        loss_sum, correct, count = values[:3]
        report: dict[str, Any] = {"loss": (loss_sum, count)}
        if self.accuracy:
            report["accuracy"] = (correct, count.copy())
        report["num_examples"] = count.copy()
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
    loss_fn: LossFn,
    input_spec: Any,
    *,
    metrics: Sequence[Metric] = (),
    accuracy: bool | None = None,
) -> TorchModel:
    """Wrap a ``torch.nn.Module`` as a :class:`fedmodel.Model`.

    Args:
        module: the model; called as ``module(x)`` with ``x`` structured as ``input_spec`` says (a dict
            or a tuple arrives as one argument). Its parameters must all be initialized (no lazy modules).
        loss_fn: ``loss_fn(predictions, y)`` → the scalar mean loss of the batch, e.g.
            ``torch.nn.CrossEntropyLoss()``.
        input_spec: ``(x_spec, y_spec)`` or ``{"x": ..., "y": ...}`` of :class:`fedmodel.TensorSpec`.
        metrics: user metrics (:class:`fedmodel_torch.Metric`) besides the standard loss, accuracy and
            example count.
        accuracy: count correct ``argmax`` predictions; by default when ``y`` is one integer tensor.

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
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(predictions, y), got {type(loss_fn).__name__}")
    _check_input_spec(input_spec)
    lazy = [n for n, p in module.named_parameters() if torch.nn.parameter.is_lazy(p)]
    if lazy:
        raise ValueError(f"module has uninitialized (lazy) parameters {lazy}: run it once on a batch first")
    metrics = tuple(metrics)
    for m in metrics:
        if not isinstance(m, Metric):
            raise TypeError(f"metrics must be fedmodel_torch.Metric instances, got {type(m).__name__}")
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate metric names: {names}")
    return TorchModel(module, loss_fn, input_spec, metrics, accuracy)


def variable_names(model: TorchModel, variables: Sequence[torch.Tensor]) -> list[str]:
    """The module's name of each variable (``metrics/...`` for local ones)."""
    by_id: Mapping[int, str] = {id(t): n for group in model.named_variables() for n, t in group}
    try:
        return [by_id[id(v)] for v in variables]
    except KeyError:
        raise ValueError("a variable does not belong to this model") from None
