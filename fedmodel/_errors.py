"""Typed errors of fedmodel: every one subclasses :class:`FedModelError`."""

from __future__ import annotations

__all__ = [
    "AggregationError",
    "BackendError",
    "CheckpointError",
    "DataError",
    "FedModelError",
    "ProtocolError",
    "SpecError",
    "WeightsError",
]


class FedModelError(Exception):
    """Base class of every error fedmodel raises on purpose."""


class SpecError(FedModelError, ValueError):
    """A value does not match a :class:`~fedmodel.TensorSpec` (the message names path, expected, actual)."""


class WeightsError(FedModelError, ValueError):
    """Weights do not fit a model: count, name, shape or dtype (nothing was changed)."""


class ProtocolError(FedModelError, TypeError):
    """An object does not implement the :class:`~fedmodel.Model` protocol."""


class BackendError(FedModelError, LookupError):
    """No :class:`~fedmodel.Backend` is registered for a model or a variable."""


class AggregationError(FedModelError, ValueError):
    """A client update or metric report cannot be aggregated (mis-shaped, non-finite, ...)."""


class CheckpointError(FedModelError, OSError):
    """A checkpoint cannot be read or written; the model and the old file are untouched."""


class DataError(FedModelError, ValueError):
    """A data set cannot be read or split as asked (the message names the file, client, option or shape)."""
