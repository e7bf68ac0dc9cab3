"""Federated evaluation: ``forward_pass(training=False)`` over each data set, then the model's own aggregator.

Each client (or the server's held-out set) reports its unfinalized metrics
(``report_local_outputs``); ``model.federated_output_computation`` sums and finalizes them, so the
result is exact over the union of the data sets.

>>> import numpy as np
>>> from fedmodel.reference import SoftmaxRegression
>>> from fedmodel.data import ClientData
>>> model = SoftmaxRegression(2, 2)
>>> data = ClientData(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), np.array([0, 1]))
>>> evaluate(model, [data, data])["num_examples"]
4
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedmodel._backend import Backend, backend_for
from fedmodel._weights import ModelWeights, assign_weights
from fedmodel.client import batches
from fedmodel.data import ClientData
from fedmodel.metrics import to_numpy_report

__all__ = ["evaluate", "local_report"]


def local_report(
    model: Any, data: ClientData, *, batch_size: int = 256, backend: Backend | None = None
) -> dict[str, Any]:
    """One data set's unfinalized metrics: reset, ``forward_pass(training=False)`` per batch, report."""
    backend = backend or backend_for(model)
    model.reset_metrics()
    for batch in batches(data, batch_size, None):
        model.forward_pass(backend.to_native(model, batch), training=False)
    return to_numpy_report(model.report_local_outputs())


def evaluate(
    model: Any,
    datasets: Sequence[ClientData],
    *,
    weights: ModelWeights | None = None,
    batch_size: int = 256,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """Finalized metrics of ``model`` (with ``weights`` assigned first, if given) over every data set.

    Reports are folded one at a time into ``model.federated_output_computation`` (streaming). The
    model's metrics are left as they were after the last data set.
    """
    backend = backend or backend_for(model)
    if weights is not None:
        assign_weights(model, weights, backend=backend)
    aggregator = model.federated_output_computation
    state = aggregator.init()
    for data in datasets:
        state = aggregator.accumulate(state, local_report(model, data, batch_size=batch_size, backend=backend))
    result: dict[str, Any] = aggregator.finalize(state)
    return result
