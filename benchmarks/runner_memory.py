"""Bench 5: the simulation runner's peak memory at K = 10, 100 and 1,000 clients, data aside.

One FedAvg round over K clients of a lazy client sequence that makes client ``i``'s 16 examples from its
seed when indexed (so the data never grows with K: one client's arrays exist at a time), with the numpy
reference model (a softmax regression of ``sizes.memory_model`` = (features, classes); 256,500 float32
parameters, 1.0 MiB, at the quick and full sizes), every client in the round. Peak memory is measured
with ``tracemalloc`` (numpy reports its buffers to it) from before the runner starts to its end, above
what was allocated before, after one warm-up run (lazy imports, caches): the models, the server state,
each client's result, the aggregator, and the runner's bookkeeping (client ids, the round's accepted and
dropped clients, each round's result). Bar: the peak at each K at most 1.2x the peak at the smallest K.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np

from benchmarks._harness import Result, Sizes
from fedmodel.algorithms import fedavg
from fedmodel.data import ClientData, ClientSequence
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, run_simulation

__all__ = ["BAR", "SyntheticClients", "run", "runner_peak_bytes"]

BAR = 1.2
EXAMPLES = 16


class SyntheticClients(ClientSequence):
    """``count`` clients of ``EXAMPLES`` random examples each, made from the client's seed when indexed."""

    def __init__(self, count: int, features: int, classes: int) -> None:
        self._ids = tuple(str(i) for i in range(count))
        self.features, self.classes = features, classes

    @property
    def client_ids(self) -> tuple[str, ...]:
        """``"0"``, ``"1"``, ..."""
        return self._ids

    def load(self, client_id: str) -> ClientData:
        """Client ``client_id``'s examples, the same every time."""
        rng = np.random.default_rng([7, int(client_id)])
        x = rng.standard_normal((EXAMPLES, self.features), dtype=np.float32)
        return ClientData(x, rng.integers(0, self.classes, EXAMPLES))


def runner_peak_bytes(num_clients: int, features: int, classes: int) -> int:
    """Peak bytes traced during one FedAvg round over ``num_clients`` synthetic clients, above the start."""
    clients = SyntheticClients(num_clients, features, classes)
    algorithm = fedavg(batch_size=EXAMPLES, client_lr=0.1)
    config = SimulationConfig(rounds=1, progress=False, seed=0)

    def factory() -> SoftmaxRegression:
        return SoftmaxRegression(features, classes, seed=0)

    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        result = run_simulation(factory, clients, algorithm, config)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    if result.rounds[0].num_ok != num_clients:
        raise AssertionError(f"the round dropped clients: {result.rounds[0].failures[:3]}")
    return peak


def run(sizes: Sizes, backends: tuple[str, ...] = ()) -> Iterator[Result | tuple[str, str]]:
    """Rows: the peak at each larger K against the peak at the smallest K."""
    if backends and "numpy" not in backends:
        yield "memory", "runs on the numpy reference model, which was not selected"
        return
    features, classes = sizes.memory_model
    model_bytes = 4 * (features * classes + classes + features)
    runner_peak_bytes(min(sizes.memory_clients), features, classes)  # warm-up: lazy imports, first-call caches
    peaks = {k: runner_peak_bytes(k, features, classes) for k in sizes.memory_clients}
    smallest = min(peaks)
    for k, peak in peaks.items():
        if k == smallest:
            continue
        per_client = (peak - peaks[smallest]) / (k - smallest)
        note = (
            f"K={k} vs K={smallest}, one round, model {model_bytes / 2**20:.2f} MiB; peak {peak / model_bytes:.2f} "
            f"model sizes; {per_client:+.0f} bytes per added client"
        )
        yield Result("runner peak memory", "numpy", peak / 2**20, peaks[smallest] / 2**20, BAR, note, unit="MiB")
