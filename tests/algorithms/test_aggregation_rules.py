"""WeightedMean: exact weighted means, float64 accumulation, the declared integer rule, update validation."""

from __future__ import annotations

import numpy as np
import pytest

from fedmodel import AggregationError, ModelWeights
from fedmodel.aggregation import WeightedMean
from fedmodel.validation import validate_update


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


def test_float64_accumulation_keeps_a_large_and_a_small_value_in_their_sum() -> None:
    big = ModelWeights((np.array([2.0**24], np.float32),))
    one = ModelWeights((np.array([1.0], np.float32),))
    out = WeightedMean(accumulator="float64").aggregate([(big, 1), (one, 1), (one, 1)])
    # float32 accumulation would give 2^24 + 1 + 1 == 2^24 and a mean of 5592405.33
    assert out.trainable[0][0] == np.float32(5592406.0)


@pytest.mark.parametrize("accumulator", ["auto", "float64"])
def test_blocked_accumulation_equals_the_plain_weighted_mean(accumulator: str) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((300, 700)).astype(np.float32) for _ in range(5)]  # > one 65536 block
    weights = [3.0, 1.0, 0.5, 7.0, 2.0]
    updates = [(ModelWeights((a,), (), ("w",), ()), w) for a, w in zip(arrays, weights, strict=True)]
    out = WeightedMean(accumulator=accumulator).aggregate(updates)  # type: ignore[arg-type]
    expected = sum(w * a.astype(np.float64) for a, w in zip(arrays, weights, strict=True)) / sum(weights)
    assert out.trainable[0].dtype == np.float32
    np.testing.assert_allclose(out.trainable[0], expected, rtol=1e-5, atol=1e-6)


def test_auto_accumulates_float32_in_float32_and_float64_in_float64() -> None:
    template = ModelWeights((np.zeros(3, np.float32), np.zeros(3, np.float64)), (np.zeros((), np.int64),))
    sums = WeightedMean().init(template).sums
    assert [s.acc.dtype for s in sums] == [np.float32, np.float64, np.float64]
    assert [s.acc.dtype for s in WeightedMean(accumulator="float64").init(template).sums] == [np.float64] * 3


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


def test_validate_update_accepts_a_matching_update() -> None:
    validate_update(_w(0.0), _w(5.0, 3))


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
def test_validate_update_rejects_with_a_reason(update: ModelWeights, message: str) -> None:
    with pytest.raises(AggregationError, match=message):
        validate_update(_w(0.0), update, client="client 7")


def test_validate_update_rejects_something_that_is_not_weights() -> None:
    with pytest.raises(AggregationError, match=r"expected fedmodel\.ModelWeights, got str"):
        validate_update(_w(0.0), "not weights", client="client 3")  # type: ignore[arg-type]
