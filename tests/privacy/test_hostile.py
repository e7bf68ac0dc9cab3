"""Hostile client updates: DPMean refuses what it cannot clip faithfully and keeps its state; the sum stays finite."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedmodel import AggregationError, ModelWeights
from fedmodel.privacy import DPMean, SeededNoise

CLIP = 2.0
SERVER = ModelWeights((np.zeros(3, np.float64), np.zeros(2, np.float32)), (np.array(4, np.int32),), ("a", "b"), ("n",))


def _dp() -> DPMean:
    return DPMean(clip=CLIP, noise_multiplier=0.0, expected_clients=1.0, noise=SeededNoise(0))


def _with(index: int, value: Any) -> ModelWeights:
    arrays = [a.copy() for a in SERVER.arrays]
    arrays[index] = value
    return SERVER.with_arrays(arrays)


def _snapshot(state: Any) -> tuple[Any, ...]:
    return (state.count, state.unclipped, state.next, [None if s is None else s.copy() for s in state.sums])


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a[:3] == b[:3] and all(
        (x is None and y is None) or np.array_equal(x, y) for x, y in zip(a[3], b[3], strict=True)
    )


bad_floats = st.sampled_from([np.nan, np.inf, -np.inf])
hostile = st.one_of(
    # a non-finite value in either float variable
    st.tuples(st.integers(0, 2), bad_floats).map(lambda t: _with(0, np.where(np.arange(3) == t[0], t[1], 1.0))),
    bad_floats.map(lambda v: _with(1, np.array([v, 0.0], np.float32))),
    # finite float64 values whose change from the server has a norm beyond float64's largest value
    st.floats(1.1e308, 1.7e308).map(lambda v: _with(0, np.array([v, v, -v]))),
    # wrong shapes, dtypes, names, counts, types
    st.integers(0, 6).filter(lambda n: n != 3).map(lambda n: _with(0, np.zeros(n))),
    st.sampled_from([np.float32, np.int64, np.float16]).map(lambda d: _with(0, np.zeros(3, d))),
    st.just(ModelWeights(SERVER.trainable, SERVER.non_trainable, ("a", "x"), ("n",))),
    st.just(ModelWeights(SERVER.trainable, (), ("a", "b"), ())),
    st.sampled_from([None, 3.0, "weights", [np.zeros(3)], {"a": np.zeros(3)}]),
)


@settings(max_examples=150, deadline=None)
@given(update=hostile, warmup=st.integers(0, 3))
def test_a_hostile_update_is_refused_and_changes_nothing(update: Any, warmup: int) -> None:
    dp = _dp()
    state = dp.init(SERVER, dp.initial_carry(SERVER))
    for _ in range(warmup):
        state = dp.accumulate(state, _with(0, np.array([1.0, 2.0, 3.0])), 1.0)
    before = _snapshot(state)
    try:
        dp.accumulate(state, update, 1.0)
    except AggregationError:
        pass
    else:
        raise AssertionError("a hostile update was accepted")
    assert _same(before, _snapshot(state))


@settings(max_examples=60, deadline=None)
@given(weight=st.one_of(st.sampled_from([np.nan, np.inf, -1.0, -1e-300]), st.just("seven"), st.just(None)))
def test_a_bad_weight_is_refused_and_changes_nothing(weight: Any) -> None:
    dp = _dp()
    state = dp.init(SERVER, dp.initial_carry(SERVER))
    before = _snapshot(state)
    try:
        dp.accumulate(state, SERVER, weight)
    except AggregationError:
        pass
    else:
        raise AssertionError(f"weight {weight!r} was accepted")
    assert _same(before, _snapshot(state))


finite64 = hnp.arrays(np.float64, 3, elements=st.floats(allow_nan=False, allow_infinity=False))
finite32 = hnp.arrays(np.float32, 2, elements=st.floats(allow_nan=False, allow_infinity=False, width=32))


@settings(max_examples=200, deadline=None)
@given(updates=st.lists(st.tuples(finite64, finite32), min_size=1, max_size=6))
def test_any_finite_updates_keep_the_sum_finite_and_each_contribution_within_clip(updates: list[Any]) -> None:
    """Each finite update is either clipped (its contribution to the sum has norm <= C) or, when its change's
    norm overflows float64, refused; the sums and the released weights stay finite."""
    dp = _dp()
    state = dp.init(SERVER, dp.initial_carry(SERVER))
    for a, b in updates:
        before = [s.copy() for s in state.sums if s is not None]
        try:
            dp.accumulate(state, SERVER.with_arrays([a, b, SERVER.arrays[2]]), 1.0)
        except AggregationError as exc:
            assert "overflows float64" in str(exc)
            continue
        after = [s for s in state.sums if s is not None]
        added = np.concatenate([(x - y).reshape(-1) for x, y in zip(after, before, strict=True)])
        assert np.isfinite(added).all() and np.linalg.norm(added) <= CLIP * (1 + 1e-9)
    assert all(np.isfinite(s).all() for s in state.sums if s is not None)
    released = dp.finalize(state)
    assert all(np.isfinite(a).all() for a in released.arrays[:2]) and released.arrays[2] == 4


@settings(max_examples=50, deadline=None)
@given(value=st.floats(1e155, 1e308))
def test_a_huge_but_finite_change_is_clipped_not_refused(value: float) -> None:
    dp = _dp()
    state = dp.accumulate(dp.init(SERVER, dp.initial_carry(SERVER)), _with(0, np.array([value, 0.0, 0.0])), 1.0)
    assert state.unclipped == 0
    assert np.isclose(np.linalg.norm(state.sums[0]), CLIP, rtol=1e-9)
