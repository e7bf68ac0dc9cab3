"""Bench 3: validation plus FedAvg aggregation of K client updates, against ``np.add`` and Flower's functions.

Identical inputs: K float32 client updates of an MLP-shaped model (four arrays) with their example
counts. fedmodel's side is what :class:`fedmodel.server.ServerRound` does with them, the server
optimizer's step aside: each update validated (names, shapes, dtypes, every value finite, a bound on its
values) and folded into ``WeightedMean``'s accumulator, the mean finalized and checked finite. Baselines:
one plain ``np.add`` pass of every update into one accumulator (bar: ratio <= 1.5),
``flwr.server.strategy.aggregate.aggregate`` (the legacy strategies' weighted average; bar < 1) and
``flwr.serverapp.strategy.strategy_utils.aggregate_arrayrecords`` (the 1.42 ``FedAvg`` strategy's, on
``ArrayRecord`` s built before timing). A last row times the whole server round (``ServerRound`` with
FedAvg's server step) for information.

Peak extra memory is measured with ``tracemalloc`` (numpy reports its buffers to it): the largest
allocation above the inputs during one aggregation, in units of one model's float32 size.

Threads: the harness gives every framework one thread, BLAS included, and OpenBLAS fixes its thread count
when it loads. A server runs with its BLAS on every core, and fedmodel's validation (``asum``) and
accumulation (``axpy``) are BLAS calls while ``np.add`` is not, so the rows with bars are measured in a child
process (``python -m benchmarks.aggregation SIZE``) whose BLAS has every core; a last row repeats the
``np.add`` comparison in this process, on one BLAS thread, for information.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from benchmarks._harness import SIZES, Result, Sizes, UnavailableError, measure
from fedmodel import ModelWeights
from fedmodel.aggregation import WeightedMean
from fedmodel.algorithms import fedavg
from fedmodel.client import ClientResult
from fedmodel.server import ServerRound
from fedmodel.validation import nonfinite_count

__all__ = [
    "BAR",
    "BAR_NP_ADD",
    "client_updates",
    "every_core",
    "measure_rows",
    "peak_extra_bytes",
    "run",
    "validate_and_aggregate",
]

BAR = 1.0
BAR_NP_ADD = 1.5


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


def validate_and_aggregate(updates: list[tuple[ModelWeights, int]]) -> ModelWeights:
    """What a server round does with the updates, the server step aside: validate each, fold it in, check the mean."""
    out = WeightedMean().aggregate(updates)  # accumulate() validates every update before it adds it
    if any(nonfinite_count(a) for a in out.arrays):
        raise AssertionError("the aggregate is not finite")
    return out


def plain_add(updates: list[tuple[ModelWeights, int]]) -> list[np.ndarray]:
    """The floor: one ``np.add`` of every update into one float32 accumulator, nothing checked."""
    acc = [np.zeros_like(a) for a in updates[0][0].arrays]
    for weights, _ in updates:
        for total, array in zip(acc, weights.arrays, strict=True):
            np.add(total, array, out=total)
    return acc


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
    """The rows of :func:`measure_rows` with BLAS on every core (a child process), then the ``np.add`` row on one
    BLAS thread (this process, as the harness set it)."""
    try:
        _flower()
    except UnavailableError as exc:
        yield "flower", str(exc)
        return
    yield from every_core(sizes)
    updates = client_updates(sizes.agg_clients, sizes.agg_params)
    timing = measure(
        {"fedmodel": lambda: validate_and_aggregate(updates), "np.add": lambda: plain_add(updates)}, sizes.repeat
    )
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "the default")
    what = f"{_what(updates)}, BLAS threads: {threads}"
    yield timing.result("validation + aggregation vs one np.add pass", "numpy", "fedmodel", "np.add", None, what)


def every_core(sizes: Sizes) -> list[Result]:
    """:func:`measure_rows` in a child process whose BLAS (OpenBLAS, numpy's and scipy's) uses every core."""
    cores = str(os.cpu_count() or 1)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": cores, "OMP_NUM_THREADS": cores}
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.aggregation", sizes.name],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode:
        raise RuntimeError(f"the aggregation benchmark's child process failed:\n{child.stderr}")
    return [Result(**row) for row in json.loads(child.stdout)]


def _what(updates: list[tuple[ModelWeights, int]]) -> str:
    params = sum(a.size for a in updates[0][0].arrays)
    return f"K={len(updates)}, {params / 1e6:.1f}M params"


def measure_rows(sizes: Sizes) -> Iterator[Result]:
    """Rows for time vs ``np.add``, Flower's ``aggregate`` and ``aggregate_arrayrecords``, and peak memory."""
    aggregate, aggregate_arrayrecords, records = _flower()
    updates = client_updates(sizes.agg_clients, sizes.agg_params)
    ndarrays = [(list(w.arrays), k) for w, k in updates]
    recs = records(updates)
    model_bytes = sum(a.nbytes for a in updates[0][0].arrays)

    def ours() -> ModelWeights:
        return validate_and_aggregate(updates)

    def add() -> Any:
        return plain_add(updates)

    def legacy() -> Any:
        return aggregate(ndarrays)

    def records_1_42() -> Any:
        return aggregate_arrayrecords(recs, "num-examples")

    algorithm = fedavg()
    start = algorithm.init(updates[0][0])

    def server_round() -> Any:
        round_ = ServerRound(algorithm, start)
        for k, (weights, n) in enumerate(updates):
            round_.add(k, ClientResult(weights, n, {}))
        return round_.finish()

    expected = legacy()
    np.testing.assert_allclose(ours().arrays[0], expected[0], rtol=1e-5, atol=1e-6)
    timing = measure(
        {"fedmodel": ours, "np.add": add, "aggregate": legacy, "arrayrecords": records_1_42, "round": server_round},
        sizes.repeat,
    )
    what = f"{_what(updates)}, BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'the default')}"
    yield timing.result("validation + aggregation vs one np.add pass", "numpy", "fedmodel", "np.add", BAR_NP_ADD, what)
    yield timing.result("validation + aggregation vs flwr aggregate", "numpy", "fedmodel", "aggregate", BAR, what)
    note = what + " (Flower's time includes decoding its Array bytes)"
    yield timing.result(
        "validation + aggregation vs flwr aggregate_arrayrecords", "numpy", "fedmodel", "arrayrecords", BAR, note
    )
    yield timing.result("ServerRound (FedAvg step included) vs one np.add pass", "numpy", "round", "np.add", None, what)
    peaks = {name: peak_extra_bytes(fn) / model_bytes for name, fn in (("fedmodel", ours), ("aggregate", legacy))}
    yield Result(
        "validation + aggregation peak extra memory",
        "numpy",
        peaks["fedmodel"],
        peaks["aggregate"],
        None,
        f"peak extra memory in model sizes ({model_bytes / 2**20:.0f} MiB), fedmodel vs flwr aggregate, {what}",
        unit="models",
    )


if __name__ == "__main__":  # the child of every_core: rows as JSON on stdout
    print(json.dumps([dataclasses.asdict(row) for row in measure_rows(SIZES[sys.argv[1]])]))
