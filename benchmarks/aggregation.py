"""Bench 3: FedAvg aggregation of K client updates, fedmodel's ``WeightedMean`` vs Flower's own functions.

Identical inputs: K float32 client updates of an MLP-shaped model (four arrays) with their example
counts. Flower's baselines: ``flwr.server.strategy.aggregate.aggregate`` (the legacy strategies'
weighted average) and ``flwr.serverapp.strategy.strategy_utils.aggregate_arrayrecords`` (the 1.42
``FedAvg`` strategy's, on ``ArrayRecord`` s built before timing). Bar: ratio < 1 against ``aggregate``.

Peak extra memory is measured with ``tracemalloc`` (numpy reports its buffers to it): the largest
allocation above the inputs during one aggregation, in units of one model's float32 size.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from benchmarks._harness import Result, Sizes, UnavailableError, measure
from fedmodel import ModelWeights
from fedmodel.aggregation import WeightedMean

__all__ = ["BAR", "client_updates", "peak_extra_bytes", "run"]

BAR = 1.0


def client_updates(num_clients: int, num_params: int, seed: int = 0) -> list[tuple[ModelWeights, int]]:
    """``num_clients`` random float32 updates of about ``num_params`` parameters, with example counts."""
    rng = np.random.default_rng(seed)
    width = max(2, int((num_params / 2) ** 0.5))
    shapes = [(width, width), (width,), (width, width), (width,)]
    names = ("0.weight", "0.bias", "1.weight", "1.bias")
    return [
        (
            ModelWeights(tuple(rng.standard_normal(s, dtype=np.float32) for s in shapes), (), names, ()),
            int(rng.integers(10, 100)),
        )
        for _ in range(num_clients)
    ]


def peak_extra_bytes(fn: Callable[[], Any]) -> int:
    """The peak of memory allocated by ``fn`` (and still referenced or not) above what existed before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak - before


def _flower() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    try:
        from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
        from flwr.server.strategy.aggregate import aggregate
        from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
    except ImportError as exc:
        raise UnavailableError(f"Flower is not installed ({exc}); pip install 'fedmodel[flower]'") from None

    def records(updates: list[tuple[ModelWeights, int]]) -> list[Any]:
        return [
            RecordDict(
                {
                    "arrays": ArrayRecord({n: Array(a) for n, a in w.items()}),
                    "metrics": MetricRecord({"num-examples": k}),
                }
            )
            for w, k in updates
        ]

    return aggregate, aggregate_arrayrecords, records


def run(sizes: Sizes, backends: tuple[str, ...] = ()) -> Iterator[Result | tuple[str, str]]:
    """Rows for time vs Flower's ``aggregate`` and ``aggregate_arrayrecords``, and for peak memory."""
    try:
        aggregate, aggregate_arrayrecords, records = _flower()
    except UnavailableError as exc:
        yield "flower", str(exc)
        return
    updates = client_updates(sizes.agg_clients, sizes.agg_params)
    ndarrays = [(list(w.arrays), k) for w, k in updates]
    recs = records(updates)
    model_bytes = sum(a.nbytes for a in updates[0][0].arrays)
    params = sum(a.size for a in updates[0][0].arrays)

    def ours() -> ModelWeights:
        return WeightedMean().aggregate(updates)

    def legacy() -> Any:
        return aggregate(ndarrays)

    def records_1_42() -> Any:
        return aggregate_arrayrecords(recs, "num-examples")

    expected = legacy()
    np.testing.assert_allclose(ours().arrays[0], expected[0], rtol=1e-5, atol=1e-6)
    timing = measure({"fedmodel": ours, "aggregate": legacy, "arrayrecords": records_1_42}, sizes.repeat)
    what = f"K={sizes.agg_clients}, {params / 1e6:.1f}M params"
    yield timing.result("aggregation vs flwr aggregate", "numpy", "fedmodel", "aggregate", BAR, what)
    note = what + " (Flower's time includes decoding its Array bytes)"
    yield timing.result("aggregation vs flwr aggregate_arrayrecords", "numpy", "fedmodel", "arrayrecords", BAR, note)
    peaks = {name: peak_extra_bytes(fn) / model_bytes for name, fn in (("fedmodel", ours), ("aggregate", legacy))}
    yield Result(
        "aggregation peak extra memory",
        "numpy",
        peaks["fedmodel"],
        peaks["aggregate"],
        None,
        f"peak extra memory in model sizes ({model_bytes / 2**20:.0f} MiB), fedmodel vs flwr aggregate, {what}",
        unit="models",
    )
