"""The benchmark harness: medians, ratios, verdicts and the table are what the README reports."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmarks import _harness
from benchmarks._harness import SIZES, Result, Timing, format_table, machine_info, measure


def test_median_times_reports_the_median_of_repetitions_after_one_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = itertools.count()
    monkeypatch.setattr(_harness.time, "perf_counter", lambda: float(next(ticks)))
    calls: list[str] = []
    durations = iter([0, 5, 1, 9])  # extra ticks consumed inside each call: the warm-up, then three timed runs

    def a() -> None:
        calls.append("a")
        for _ in range(next(durations)):
            next(ticks)

    timing = measure({"a": a}, repeat=3)
    assert calls == ["a"] * 4
    # perf_counter is read twice per timed call: elapsed = 1 + the extra ticks consumed inside (5, 1, 9 -> 6, 2, 10)
    assert timing.samples["a"] == [6.0, 2.0, 10.0]
    assert timing.median("a") == 6.0


def test_median_times_interleaves_the_candidates() -> None:
    order: list[str] = []
    measure({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeat=2)
    assert order == ["a", "b", "a", "b", "a", "b"]


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    timing = Timing({"ours": [1.0, 4.0, 3.0], "base": [1.0, 1.0, 2.0]})  # per round: 1, 4, 1.5
    assert timing.ratio("ours", "base") == 1.5
    row = timing.result("b", "jax", "ours", "base", 1.5, per=2)
    assert (row.candidate_s, row.baseline_s, row.ratio, row.passed) == (1.5, 0.5, 1.5, True)


def test_ratio_and_verdict_follow_the_bar() -> None:
    assert Result("x", "torch", 3.0, 2.0, 1.5).ratio == 1.5
    assert Result("x", "torch", 3.0, 2.0, 1.5).passed is True
    assert Result("x", "torch", 3.1, 2.0, 1.5).passed is False
    assert Result("x", "torch", 3.1, 2.0, None).passed is None
    assert Result("x", "torch", np.float64(3.1), 2.0, 1.5).passed is False  # a numpy time (Flower's rounds)


def test_table_shows_times_ratio_bar_and_verdict() -> None:
    table = format_table(
        [Result("weights", "jax", 0.003, 0.002, 1.5, "5M"), Result("mem", "numpy", 2.0, 4.0, None, unit="models")]
    )
    lines = table.splitlines()
    assert lines[2] == "| weights | jax | 3.00 ms | 2.00 ms | 1.500 | ≤ 1.5 | pass | 5M |"
    assert lines[3] == "| mem | numpy | 2.00 models | 4.00 models | 0.500 | - | info |  |"


def test_machine_info_names_cpus_platform_and_library_versions() -> None:
    info = machine_info()
    assert {"cpus", "platform", "python", "numpy", "torch", "flwr"} <= set(info)
    assert int(info["cpus"]) >= 1


def test_full_sizes_are_the_issues_sizes() -> None:
    full = SIZES["full"]
    assert (full.weights_params, full.agg_clients, full.agg_params, full.round_clients) == (
        50_000_000,
        50,
        5_000_000,
        100,
    )
