"""Robust aggregation and update validation: exact values, rejections with reasons, and attacks survived."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmodel import AggregationError, ModelWeights
from fedmodel.aggregation import WeightedMean
from fedmodel.robust import CoordinateMedian, NormClipping, TrimmedMean
from fedmodel.validation import check_client_update, delta_norm, filter_updates, update_problem

AGGREGATORS: dict[str, Callable[[], Any]] = {
    "median": CoordinateMedian,
    "trimmed-mean": lambda: TrimmedMean(beta=0.2),
    "clipping": lambda: NormClipping(max_norm=1.0),
}


def _w(*values: Any, names: tuple[str, ...] | None = None) -> ModelWeights:
    arrays = tuple(np.asarray(v) for v in values)
    return ModelWeights(arrays, (), names or tuple(f"v{i}" for i in range(len(arrays))))


def _vec(values: list[float]) -> ModelWeights:
    return _w(np.array(values, np.float32))


def _run(
    aggregator: Any, server: ModelWeights, updates: list[tuple[ModelWeights, float]]
) -> tuple[ModelWeights, list[str]]:
    """One round as a server runs it: a rejected update is dropped with its reason, the round goes on."""
    state, reasons = aggregator.init(server), []
    for update, weight in updates:
        try:
            state = aggregator.accumulate(state, update, weight)
        except AggregationError as exc:
            reasons.append(str(exc))
    return aggregator.finalize(state), reasons


# -- exact values --------------------------------------------------------------------------------
def test_median_is_coordinatewise_and_ignores_the_weights() -> None:
    ups = [_vec([1, 10]), _vec([2, -5]), _vec([1000, 7]), _vec([3, 8])]
    got = CoordinateMedian().aggregate([(u, w) for u, w in zip(ups, [1, 1, 1e9, 1], strict=True)])
    np.testing.assert_array_equal(got.trainable[0], np.array([2.5, 7.5], np.float32))
    assert got.trainable[0].dtype == np.float32


def test_trimmed_mean_drops_floor_beta_k_per_side() -> None:
    ups = [_vec([v]) for v in (1, 2, 3, 4, 100)]
    got = TrimmedMean(beta=0.2).aggregate([(u, 1.0) for u in ups])
    assert got.trainable[0].tolist() == [3.0]  # mean of 2, 3, 4
    assert TrimmedMean(beta=0.0).aggregate([(u, 1.0) for u in ups]).trainable[0].tolist() == [22.0]


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_finalize_without_any_accepted_update_is_an_error(name: str) -> None:
    aggregator = AGGREGATORS[name]()
    state = aggregator.init(_vec([0.0]))
    with pytest.raises(AggregationError, match="nothing to aggregate"):
        aggregator.finalize(state)


def test_trimmed_mean_beta_must_leave_something() -> None:
    with pytest.raises(ValueError, match="beta"):
        TrimmedMean(beta=0.5)


def test_norm_clipping_scales_each_change_then_takes_the_weighted_mean() -> None:
    server = _vec([1, 1])
    big, small = _vec([4, 5]), _vec([1.3, 1.4])  # changes (3, 4), norm 5 -> (0.6, 0.8); (0.3, 0.4) kept
    agg = NormClipping(max_norm=1.0)
    state = agg.init(server)
    state = agg.accumulate(state, big, 1.0)
    state = agg.accumulate(state, small, 3.0)
    got = agg.finalize(state).trainable[0]
    np.testing.assert_allclose(got, [1 + (0.6 + 3 * 0.3) / 4, 1 + (0.8 + 3 * 0.4) / 4], rtol=1e-6)
    assert state.clipped == 1


@settings(max_examples=40, deadline=None)
@given(
    changes=st.lists(
        st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(0.01, 1e6)), min_size=1, max_size=8
    ),
    max_norm=st.floats(0.01, 100.0),
)
def test_norm_clipping_never_moves_the_model_further_than_max_norm(
    changes: list[tuple[float, float, float]], max_norm: float
) -> None:
    server = _w(np.array([0.5, -0.5], np.float64))
    updates = [(_w(np.array([0.5 + a, -0.5 + b])), w) for a, b, w in changes]
    got = NormClipping(max_norm=max_norm).aggregate(server, updates)
    assert delta_norm(server, got) <= max_norm * (1 + 1e-9)


@pytest.mark.parametrize(("rule", "expected"), [("round", 4), ("max", 9), ("first", 3)])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_integer_variables_follow_the_declared_rule(name: str, rule: str, expected: int) -> None:
    make = {
        "median": CoordinateMedian,
        "trimmed-mean": lambda **k: TrimmedMean(beta=0.0, **k),
        "clipping": lambda **k: NormClipping(max_norm=1.0, **k),
    }[name]
    counts = (3, 4, 9)  # median 4; mean 16/3 -> 5 for trimmed mean and (equal weights) clipping
    ups = [_w(np.array([1.0], np.float32), np.array(c, np.int64)) for c in counts]
    got, reasons = _run(make(integer_rule=rule), ups[0], [(u, 1.0) for u in ups])
    assert reasons == []
    want = expected if rule != "round" or name == "median" else 5
    assert got.trainable[1].dtype == np.int64 and int(got.trainable[1]) == want


# -- rejections ----------------------------------------------------------------------------------
def _bfloat16_nan() -> ModelWeights:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return _w(np.array([1.0, np.nan], ml_dtypes.bfloat16))


BAD_UPDATES: dict[str, tuple[Callable[[], Any], float, str]] = {
    "nan": (lambda: _vec([1.0, np.nan]), 1.0, "non-finite"),
    "inf": (lambda: _vec([np.inf, 1.0]), 1.0, "non-finite"),
    "shape": (lambda: _vec([1.0, 2.0, 3.0]), 1.0, "shape"),
    "dtype": (lambda: _w(np.array([1.0, 2.0], np.float64)), 1.0, "dtype"),
    "count": (lambda: _w(np.array([1.0, 2.0], np.float32), np.zeros(1, np.float32)), 1.0, "arrays"),
    "name": (lambda: _w(np.array([1.0, 2.0], np.float32), names=("other",)), 1.0, "named"),
    "not-weights": (lambda: [np.ones(2, np.float32)], 1.0, "expected fedmodel.ModelWeights"),
    "negative-weight": (lambda: _vec([1.0, 2.0]), -3.0, "weight"),
    "nan-weight": (lambda: _vec([1.0, 2.0]), float("nan"), "weight"),
}


@pytest.mark.parametrize("bad", sorted(BAD_UPDATES))
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_a_bad_update_is_rejected_with_its_reason_and_the_round_goes_on(name: str, bad: str) -> None:
    make_bad, weight, reason = BAD_UPDATES[bad]
    server = _vec([0.0, 0.0])
    good = [_vec([0.1, 0.2]), _vec([0.2, 0.1]), _vec([0.15, 0.15])]
    updates = [(good[0], 1.0), (make_bad(), weight), (good[1], 1.0), (good[2], 1.0)]
    got, reasons = _run(AGGREGATORS[name](), server, updates)
    clean, _ = _run(AGGREGATORS[name](), server, [(g, 1.0) for g in good])
    assert len(reasons) == 1 and reason in reasons[0]
    assert got.trainable[0].tobytes() == clean.trainable[0].tobytes()


def test_a_bfloat16_nan_is_rejected_too() -> None:
    update = _bfloat16_nan()
    server = update.with_arrays([np.zeros(2, update.trainable[0].dtype)])
    assert "non-finite" in (update_problem(server, update) or "")
    for make in AGGREGATORS.values():
        with pytest.raises(AggregationError, match="non-finite"):
            make().accumulate(make().init(server), update, 1.0)


def test_filter_updates_splits_accepted_and_rejected_with_reasons_and_labels() -> None:
    server = _vec([0.0, 0.0])
    updates = [(_vec([0.3, 0.4]), 3), (_vec([np.nan, 0.0]), 2), (_vec([30.0, 40.0]), 1), (_vec([0.0, 0.1]), 4)]
    result = filter_updates(server, updates, clients=["a", "b", "c", "d"], max_delta_norm=1.0)
    assert [w for _, w in result.accepted] == [3.0, 4.0]
    assert [(r.index, r.client) for r in result.rejected] == [(1, "b"), (2, "c")]
    assert "non-finite" in result.rejected[0].reason
    assert result.rejected[1].reason == "c: the update moves the weights by 50 (L2), above 1.0"


def test_delta_norm_ignores_integer_variables() -> None:
    server = _w(np.zeros(2, np.float32), np.array(0, np.int64))
    update = _w(np.array([3.0, 4.0], np.float32), np.array(1000, np.int64))
    assert delta_norm(server, update) == 5.0
    check_client_update(server, update, 1.0, max_delta_norm=5.0)
    with pytest.raises(AggregationError, match=r"above 4\.9"):
        check_client_update(server, update, 1.0, max_delta_norm=4.9)


# -- attacks -------------------------------------------------------------------------------------
def _attack(rng: np.random.Generator, kind: str) -> tuple[ModelWeights, np.ndarray, list[tuple[ModelWeights, float]]]:
    """8 honest clients move the server towards ``target``; 2 attackers send x100 or NaN updates."""
    server = _w(rng.standard_normal(50).astype(np.float32), names=("w",))
    target = server.trainable[0] + 0.05 * rng.standard_normal(50).astype(np.float32)
    honest = [target + 0.001 * rng.standard_normal(50).astype(np.float32) for _ in range(8)]
    if kind == "scaled":
        evil = [server.trainable[0] + 100 * (honest[i] - server.trainable[0]) for i in (0, 1)]
    else:
        evil = [np.full(50, np.nan, np.float32), np.where(np.arange(50) % 2, np.nan, target).astype(np.float32)]
    arrays = honest[:4] + evil[:1] + honest[4:] + evil[1:]
    return server, target, [(_w(a.astype(np.float32), names=("w",)), 100.0) for a in arrays]


@pytest.mark.parametrize("kind", ["scaled", "nan"])
def test_a_few_scaled_or_nan_clients_derail_fedavg_but_not_the_robust_aggregators(
    rng: np.random.Generator, kind: str
) -> None:
    server, target, updates = _attack(rng, kind)
    honest_error = float(np.linalg.norm(server.trainable[0] - target))  # ~0.35: how far one round should move

    if kind == "nan":  # every aggregator refuses a NaN update, the plain weighted mean included
        with pytest.raises(AggregationError, match="non-finite"):
            WeightedMean().aggregate(updates)
    else:
        fedavg = WeightedMean().aggregate(updates).trainable[0]
        assert float(np.linalg.norm(fedavg - target)) > 10 * honest_error  # derailed

    # the clipped x100 attackers still pull twice as far as an honest client: (8 d + 2 * 2 d) / 10 = 1.2 d
    limits = {"median": 0.02, "trimmed-mean": 0.02, "clipping": 0.3 * honest_error if kind == "scaled" else 0.02}
    for name, make in AGGREGATORS.items():
        aggregator = make() if name != "clipping" else NormClipping(max_norm=2 * honest_error)
        got, reasons = _run(aggregator, server, updates)
        error = float(np.linalg.norm(got.trainable[0] - target))
        assert len(reasons) == (2 if kind == "nan" else 0), name
        assert error < limits[name], (name, error)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_bfloat16_variables_are_aggregated_in_float64_and_cast_back(name: str) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    ups = [_w(np.array([v, 2 * v], ml_dtypes.bfloat16)) for v in (0.25, 0.5, 0.75)]
    aggregator = AGGREGATORS[name]() if name != "clipping" else NormClipping(max_norm=100.0)
    got, reasons = _run(aggregator, ups[0], [(u, 1.0) for u in ups])
    assert reasons == []
    assert got.trainable[0].dtype == ups[0].trainable[0].dtype
    assert got.trainable[0].astype(np.float64).tolist() == [0.5, 1.0]  # median = mean = trimmed mean here
