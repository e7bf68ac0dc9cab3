"""Timing and reporting shared by every benchmark: medians of repetitions, ratios, machine info.

Each benchmark yields :class:`Result` rows; a row is a measured ratio ``candidate / baseline`` where both
were timed in the same process, interleaved, as the median of ``repeat`` runs.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata

__all__ = ["SIZES", "Result", "Sizes", "Timing", "UnavailableError", "format_table", "machine_info", "measure"]


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run: ``quick`` (default), ``full`` (the issue's sizes) or ``tiny`` (smoke tests)."""

    name: str
    weights_params: int  # bench 1: parameters of the big model
    step_batch: int  # bench 2: batch size of forward/train steps
    agg_clients: int  # bench 3: K
    agg_params: int  # bench 3: parameters per client update
    round_clients: int  # bench 4: clients in one FedAvg round
    repeat: int  # repetitions per measurement (the median is reported)
    step_calls: int  # bench 2: calls per timed repetition
    round_pairs: int = 3  # bench 4: in-process and 2-worker runs, paired
    memory_clients: tuple[int, ...] = (10, 100, 1000)  # bench 5: K
    memory_model: tuple[int, int] = (512, 500)  # bench 5: (features, classes) of the softmax regression


SIZES = {
    "tiny": Sizes("tiny", 20_000, 32, 3, 10_000, 4, 3, 5, round_pairs=1, memory_clients=(2, 4, 8), memory_model=(8, 3)),
    "quick": Sizes("quick", 5_000_000, 32, 10, 1_000_000, 100, 5, 200, round_pairs=3),
    "full": Sizes("full", 50_000_000, 32, 50, 5_000_000, 100, 7, 500, round_pairs=5),
}


class UnavailableError(Exception):
    """A benchmark that cannot run here (framework or backend missing); the message says why."""


@dataclass(frozen=True)
class Result:
    """One row of the results table."""

    bench: str
    backend: str
    candidate_s: float
    baseline_s: float
    bar: float | None  # the ratio must be <= bar (None: informational)
    note: str = ""
    unit: str = "s"  # "s": seconds; anything else: a plain number in that unit (e.g. "models")
    paired_ratio: float | None = None  # median of per-round ratios, when measured interleaved

    @property
    def ratio(self) -> float:
        """The paired ratio when measured so, else ``candidate / baseline``."""
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.candidate_s / self.baseline_s if self.baseline_s > 0 else float("inf")

    @property
    def passed(self) -> bool | None:
        """Whether the bar is met (``None`` for informational rows)."""
        return None if self.bar is None else bool(self.ratio <= self.bar)  # a numpy ratio gives numpy's bool


@dataclass(frozen=True)
class Timing:
    """Interleaved timings of several functions: ``samples[name][i]`` is ``name``'s time in round ``i``."""

    samples: dict[str, list[float]]

    def median(self, name: str) -> float:
        """Median seconds of ``name``."""
        return statistics.median(self.samples[name])

    def ratio(self, candidate: str, baseline: str) -> float:
        """Median over rounds of ``candidate / baseline`` within the same round.

        Both sides of a round ran back to back, so a burst of load from other processes hits the
        pair rather than one side; the median of paired ratios is steadier than a ratio of medians.
        """
        return statistics.median(c / b for c, b in zip(self.samples[candidate], self.samples[baseline], strict=True))

    def result(
        self,
        bench: str,
        backend: str,
        candidate: str,
        baseline: str,
        bar: float | None,
        note: str = "",
        *,
        per: int = 1,
    ) -> Result:
        """A :class:`Result` row: medians (divided by ``per`` calls) and the paired ratio."""
        return Result(
            bench,
            backend,
            self.median(candidate) / per,
            self.median(baseline) / per,
            bar,
            note,
            paired_ratio=self.ratio(candidate, baseline),
        )


def measure(fns: dict[str, Callable[[], object]], repeat: int) -> Timing:
    """Time each function ``repeat`` times, interleaved (a, b, a, b, ...), after one warm-up call each.

    Interleaving exposes both sides to the same machine load; the garbage collector is paused while
    timing (as :mod:`timeit` does) so that no collection lands inside one side's measurement.
    """
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return Timing(samples)


_LIBRARIES = ("numpy", "torch", "tensorflow", "keras", "jax", "jaxlib", "optax", "flax", "flwr", "ray")


def machine_info() -> dict[str, str]:
    """CPU count, platform, Python, load average and the versions of the libraries involved."""
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": str(os.cpu_count()),
        "load average (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    for lib in _LIBRARIES:
        info[lib] = "not installed"
        for dist in (lib, f"{lib}-cpu"):  # TensorFlow installs as tensorflow-cpu on CPU machines
            try:
                info[lib] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return info


def _fmt(value: float, unit: str) -> str:
    if unit != "s":
        return f"{value:.2f} {unit}"
    seconds = value
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def format_table(results: Iterable[Result]) -> str:
    """A Markdown table: benchmark, backend, candidate and baseline times, ratio, bar and verdict."""
    lines = [
        "| benchmark | backend | fedmodel | baseline | ratio | bar | verdict | note |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in results:
        verdict = {True: "pass", False: "MISS", None: "info"}[r.passed]
        bar = "-" if r.bar is None else f"≤ {r.bar:g}"
        lines.append(
            f"| {r.bench} | {r.backend} | {_fmt(r.candidate_s, r.unit)} | {_fmt(r.baseline_s, r.unit)} | "
            f"{r.ratio:.3f} | {bar} | {verdict} | {r.note} |"
        )
    return "\n".join(lines)
