"""The :class:`fedmodel.Backend` for PyTorch: reads, validated writes, batches in, one optimizer step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fedmodel.backend_kit import BackendError, BatchOutput, WeightsError, dtype_name
from fedmodel.optimizers import OptimizerSpec
from fedmodel_torch.model import TorchModel, detached, from_numpy, module_device, to_device, to_numpy, variable_names
from fedmodel_torch.optimizers import ClientOptimizer, make_optimizer

__all__ = ["BACKEND", "TorchBackend"]


def _as_tensor(index: int, value: Any) -> torch.Tensor:
    """A value to write as a CPU tensor (sharing its memory where it can), or a WeightsError naming it."""
    try:
        return from_numpy(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"variable {index}: cannot be read as a tensor ({exc})") from None


def _check_values(variables: Sequence[torch.Tensor], sources: Sequence[torch.Tensor]) -> None:
    if len(sources) != len(variables):
        raise WeightsError(f"{len(variables)} variables but {len(sources)} values")
    for i, (var, src) in enumerate(zip(variables, sources, strict=True)):
        if src.shape != var.shape or src.dtype != var.dtype:
            raise WeightsError(
                f"variable {i}: expected shape {tuple(var.shape)} and dtype {dtype_name(var.dtype)}, "
                f"got {tuple(src.shape)} and {dtype_name(src.dtype)}"
            )


class TorchBackend:
    """Framework operations on models whose variables are ``torch.Tensor`` s (see :class:`fedmodel.Backend`)."""

    name = "torch"

    def canonical_layout(self, model: Any) -> Any:
        """The neutral :class:`fedmodel.layout.Layout` of ``model``'s weights (``fedmodel_torch.layout``)."""
        from fedmodel_torch.layout import canonical_layout

        return canonical_layout(model)

    def variable_names(self, model: Any, variables: Sequence[torch.Tensor]) -> list[str]:
        """The module's own names (``0.weight``, ``bn.running_mean``); positional ``"0"``, ``"1"`` otherwise."""
        if isinstance(model, TorchModel):
            return variable_names(model, variables)
        return [str(i) for i in range(len(variables))]

    def read_variables(self, variables: Sequence[torch.Tensor], *, copy: bool = True) -> list[np.ndarray]:
        """Host numpy arrays: copies, or with ``copy=False`` zero-copy read-only views of CPU tensors.

        A view is *live*: it shows later writes and training steps. Tensors on an accelerator come
        back as host copies (a snapshot) either way.
        """
        out = []
        for var in variables:
            arr = to_numpy(var, copy=copy)
            if not copy:
                arr.flags.writeable = False
            out.append(arr)
        return out

    def write_variables(self, variables: Sequence[torch.Tensor], values: Sequence[np.ndarray]) -> None:
        """Copy values into the tensors in place (identity, device and optimizer references kept).

        Shapes and dtypes are checked and every value is converted before the first write, so a bad
        value raises :class:`fedmodel.WeightsError` with nothing changed.
        """
        sources = [_as_tensor(i, v) for i, v in enumerate(values)]
        _check_values(variables, sources)
        with torch.no_grad():
            for var, src in zip(variables, sources, strict=True):
                var.copy_(src)

    def to_native(self, model: Any, batch: Any) -> Any:
        """A numpy batch as tensors on the model's device (CPU tensors share the arrays' memory)."""
        if isinstance(model, TorchModel):
            return to_device(batch, model.device)
        module = getattr(model, "module", None)
        device = module_device(module) if isinstance(module, torch.nn.Module) else torch.device("cpu")
        return to_device(batch, device)

    def seed_training(self, model: Any, seed: int) -> None:
        """Make the training steps' randomness (dropout) a function of ``seed`` and of the steps taken since.

        A :class:`TorchModel` keeps a CPU generator state of its own, set here from ``seed``; each
        :meth:`train_step` swaps it in for torch's global CPU generator and back, so the user's generator is
        never changed. CPU only: a module on an accelerator draws its dropout from that device's generator,
        which this does not seed. Other models are left alone (they draw from torch's global generator).
        """
        if isinstance(model, TorchModel):
            model.seed_training(seed)

    def make_optimizer(self, model: Any, spec: OptimizerSpec) -> ClientOptimizer:
        """``torch.optim.SGD``/``Adam`` over the trainable variables; FedProx anchored at their current values."""
        return make_optimizer(model.trainable_variables, spec)

    def train_step(
        self, model: Any, batch: Any, optimizer: ClientOptimizer | torch.optim.Optimizer
    ) -> BatchOutput[Any]:
        """Zero the gradients, forward in train mode, backward, step; no gradient or graph is kept after.

        Returns the batch's output as detached CPU tensors (metrics are updated as by ``forward_pass``).
        ``optimizer`` is what :meth:`make_optimizer` returned or any ``torch.optim.Optimizer``. After
        :meth:`seed_training` the step draws from the model's own CPU generator, not torch's global one.
        """
        if isinstance(optimizer, torch.optim.Optimizer):
            optimizer = ClientOptimizer(optimizer, [p for g in optimizer.param_groups for p in g["params"]])
        if not isinstance(model, TorchModel):
            return self._train_step_of_any_model(model, batch, optimizer)
        if model.rng_state is None:
            return self._train_step(model, batch, optimizer)
        outer = torch.get_rng_state()  # the user's global CPU generator: put back after the step
        torch.set_rng_state(model.rng_state)
        try:
            out = self._train_step(model, batch, optimizer)
            model.rng_state = torch.get_rng_state()  # only a step that succeeded moves the model's stream
        finally:
            torch.set_rng_state(outer)
        return out

    @staticmethod
    def _train_step(model: TorchModel, batch: Any, optimizer: ClientOptimizer) -> BatchOutput[Any]:
        optimizer.zero_grad()
        point = model.begin_call(training=True)
        try:
            with torch.enable_grad():
                loss, predictions, n, update = model.loss_and_predictions(batch)
                _check_differentiable(model, loss)
                loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        except BaseException:
            model.roll_back(point)  # the metric sums are written only after the step
            raise
        finally:
            optimizer.zero_grad()
        model.commit_metrics(update)
        return BatchOutput(detached(loss, host=True), detached(predictions, host=True), n)

    @staticmethod
    def _train_step_of_any_model(model: Any, batch: Any, optimizer: ClientOptimizer) -> BatchOutput[Any]:
        """The step of a model that is not a :class:`TorchModel` but whose ``forward_pass`` keeps the graph."""
        optimizer.zero_grad()
        try:
            with torch.enable_grad():
                out = model.forward_pass(batch, training=True)
                _check_differentiable(model, out.loss)
                out.loss.backward()
            optimizer.step()
        finally:
            optimizer.zero_grad()
        return BatchOutput(detached(out.loss, host=True), detached(out.predictions, host=True), out.num_examples)


def _check_differentiable(model: Any, loss: Any) -> None:
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        raise BackendError(
            f"{type(model).__name__}.forward_pass(training=True) returned a loss without gradient; "
            "wrap the module with fedmodel_torch.from_module"
        )


BACKEND = TorchBackend()
"""The one :class:`TorchBackend` (``fedmodel.backend_for`` finds it as ``fedmodel_torch:BACKEND``)."""
TorchModel.__fedmodel_backend__ = BACKEND
