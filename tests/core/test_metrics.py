"""Metric aggregators: streaming sums in float64, finalized once on the server."""

from __future__ import annotations

import numpy as np
import pytest

from fedmodel import AggregationError
from fedmodel.metrics import MeanOfFinalized, SumThenFinalize, ratio, standard_output_computation


def test_sum_then_finalize_is_exact_across_clients() -> None:
    agg = standard_output_computation()
    reports = [
        {"loss": (np.float32(3.0), np.int64(3)), "accuracy": (np.int64(1), np.int64(3)), "num_examples": np.int64(3)},
        {"loss": (np.float32(1.0), np.int64(1)), "accuracy": (np.int64(1), np.int64(1)), "num_examples": np.int64(1)},
    ]
    assert agg(reports) == {"loss": 1.0, "accuracy": 0.5, "num_examples": 4}


def test_streaming_equals_one_shot() -> None:
    agg = SumThenFinalize({"m": ratio})
    state = agg.init()
    for r in [{"m": (1.0, 2)}, {"m": (3.0, 2)}]:
        state = agg.accumulate(state, r)
    assert agg.finalize(state) == agg([{"m": (1.0, 2)}, {"m": (3.0, 2)}]) == {"m": 1.0}


def test_sum_keeps_arrays_and_nested_structure() -> None:
    out = SumThenFinalize()([{"hist": {"a": np.array([1, 2]), "b": 1.5}}, {"hist": {"a": np.array([3, 4]), "b": 0.5}}])
    np.testing.assert_array_equal(out["hist"]["a"], [4, 6])
    assert out["hist"]["b"] == 2.0


def test_sums_accumulate_in_float64() -> None:
    # 2**24 + 1 is not representable in float32: a float32 accumulator would lose the 1
    out = SumThenFinalize()([{"s": np.float32(2**24)}, {"s": np.float32(1.0)}])
    assert out["s"] == 2**24 + 1


def test_weighted_mean_weights_by_examples() -> None:
    out = MeanOfFinalized()([{"acc": 1.0, "num_examples": 1}, {"acc": 0.0, "num_examples": 3}])
    assert out == {"num_examples": 4, "acc": 0.25}
    with pytest.raises(AggregationError, match="no weight 'num_examples'"):
        MeanOfFinalized()([{"acc": 1.0}])


def test_ratio_of_zero_count_is_nan() -> None:
    assert np.isnan(ratio((0.0, 0)))


def test_mismatched_shapes_are_an_aggregation_error() -> None:
    with pytest.raises(AggregationError, match="metric 'h'"):
        SumThenFinalize()([{"h": np.zeros(2)}, {"h": np.zeros(3)}])
