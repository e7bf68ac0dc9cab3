"""WeightedMean: exact weighted means, float64 accumulation, the declared integer rule, update validation."""

from __future__ import annotations

import numpy as np
import pytest

from fedmodel import AggregationError, ModelWeights
from fedmodel.aggregation import WeightedMean, check_update


def _w(value: float, counter: int = 0) -> ModelWeights:
    return ModelWeights(
        (np.array([value, 2 * value], np.float32),),
        (np.array(counter, np.int64),),
        ("kernel",),
        ("count",),
    )


def test_weighted_mean_weights_by_the_given_weights() -> None:
    out = WeightedMean().aggregate([(_w(1.0), 1.0), (_w(4.0), 2.0), (_w(10.0), 0.0)])
    np.testing.assert_array_equal(out.trainable[0], [3.0, 6.0])
    assert out.trainable[0].dtype == np.float32
    assert out.names == ("kernel", "count")


def test_accumulation_is_float64_so_a_large_and_small_value_keep_their_sum() -> None:
    big = ModelWeights((np.array([2.0**24], np.float32),))
    one = ModelWeights((np.array([1.0], np.float32),))
    out = WeightedMean().aggregate([(big, 1), (one, 1), (one, 1)])
    # float32 accumulation would give 2^24 + 1 + 1 == 2^24 and a mean of 5592405.33
    assert out.trainable[0][0] == np.float32(5592406.0)


@pytest.mark.parametrize(("rule", "want"), [("round", 3), ("max", 7), ("first", 1)])
def test_integer_variables_follow_the_declared_rule(rule: str, want: int) -> None:
    out = WeightedMean(integer_rule=rule).aggregate([(_w(1.0, 1), 1.0), (_w(1.0, 7), 1.0), (_w(1.0, 2), 1.0)])  # type: ignore[arg-type]
    assert out.non_trainable[0].dtype == np.int64
    assert int(out.non_trainable[0]) == want


def test_integer_counters_are_never_truncated_to_zero() -> None:
    out = WeightedMean().aggregate([(_w(1.0, 100), 3.0), (_w(1.0, 101), 1.0)])
    assert int(out.non_trainable[0]) == 100  # rint(100.25)


def test_a_negative_or_nan_weight_is_rejected() -> None:
    agg = WeightedMean()
    state = agg.init(_w(0.0))
    for bad in (-1.0, float("nan")):
        with pytest.raises(AggregationError, match="finite and >= 0"):
            agg.accumulate(state, _w(1.0), bad)


def test_nothing_to_aggregate_is_an_error() -> None:
    with pytest.raises(AggregationError, match="nothing to aggregate"):
        WeightedMean().aggregate([])
    with pytest.raises(AggregationError, match="positive weight"):
        WeightedMean().aggregate([(_w(1.0), 0.0)])


def test_check_update_accepts_a_matching_update() -> None:
    check_update(_w(0.0), _w(5.0, 3))


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (ModelWeights((np.array([1.0, np.nan], np.float32),), (np.array(0, np.int64),)), "1 non-finite"),
        (ModelWeights((np.array([1.0, np.inf], np.float32),), (np.array(0, np.int64),)), "non-finite"),
        (ModelWeights((np.zeros(3, np.float32),), (np.array(0, np.int64),)), "shape"),
        (ModelWeights((np.zeros(2, np.float64),), (np.array(0, np.int64),)), "dtype"),
        (ModelWeights((np.zeros(2, np.float32),)), "arrays"),
        (ModelWeights((np.zeros(2, np.float32),), (np.array(0, np.int64),), ("bias",), ("count",)), "named"),
    ],
)
def test_check_update_rejects_with_a_reason(update: ModelWeights, message: str) -> None:
    with pytest.raises(AggregationError, match=message):
        check_update(_w(0.0), update, client="client 7")


def test_check_update_rejects_something_that_is_not_weights() -> None:
    with pytest.raises(AggregationError, match=r"expected fedmodel\.ModelWeights, got str"):
        check_update(_w(0.0), "not weights", client="client 3")  # type: ignore[arg-type]
