"""The one server round: every hostile reply drops its own client, never the run, never the global model."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmodel import AggregationError, ModelWeights, get_weights
from fedmodel.aggregation import ScaledSum, WeightedMean
from fedmodel.algorithms import FederatedAlgorithm, ServerState, fedavg
from fedmodel.client import ClientResult
from fedmodel.robust import CoordinateMedian, NormClipping, TrimmedMean
from fedmodel.server import ServerRound, report_template
from fedmodel.validation import MAX_WEIGHT, ReplyLimits, validate_update
from tests._models import MixedDtypes

ml_dtypes = pytest.importorskip("ml_dtypes")

INT64_MAX = np.iinfo(np.int64).max


def _server(model: Any | None = None, algorithm: FederatedAlgorithm | None = None) -> tuple[Any, ServerState]:
    model = model or MixedDtypes()
    algorithm = algorithm or fedavg()
    return model, algorithm.init(get_weights(model))


def _honest(state: ServerState, shift: float, n: int = 10, correct: int = 4) -> ClientResult:
    arrays = [a + np.asarray(shift, a.dtype) if a.dtype.kind == "f" else a.copy() for a in state.weights.arrays]
    report = {
        "loss": (np.float64(2.5), np.int64(n)),
        "accuracy": (np.int64(correct), np.int64(n)),
        "num_examples": np.int64(n),
    }
    return ClientResult(state.weights.with_arrays(arrays), n, report)


def _round(algorithm: FederatedAlgorithm, state: ServerState, model: Any, **kwargs: Any) -> ServerRound:
    return ServerRound(algorithm, state, model.federated_output_computation, report_template(model), **kwargs)


def _with_array(result: ClientResult, index: int, value: Any) -> ClientResult:
    arrays = list(result.weights.arrays)
    arrays[index] = value
    return replace(result, weights=result.weights.with_arrays(arrays))


def _finite(state: ServerState) -> bool:
    return all(np.isfinite(np.asarray(a, np.float64)).all() for a in state.weights.arrays)


def _outcome_with(bad: ClientResult | Any, algorithm: FederatedAlgorithm | None = None, **kwargs: Any) -> Any:
    """One round of two honest clients (0 and 2) around a hostile one (1)."""
    algorithm = algorithm or fedavg()
    model, state = _server(algorithm=algorithm)
    server_round = _round(algorithm, state, model, **kwargs)
    server_round.add(0, _honest(state, 0.5))
    server_round.add(1, bad(state) if callable(bad) else bad)
    server_round.add(2, _honest(state, 1.5))
    return server_round.finish(), state


def _without_client_1(algorithm: FederatedAlgorithm | None = None) -> ServerState:
    algorithm = algorithm or fedavg()
    model, state = _server(algorithm=algorithm)
    server_round = _round(algorithm, state, model)
    server_round.add(0, _honest(state, 0.5))
    server_round.add(2, _honest(state, 1.5))
    return server_round.finish().state


def _same(a: ServerState, b: ServerState) -> None:
    for x, y in zip(a.weights.arrays, b.weights.arrays, strict=True):
        np.testing.assert_array_equal(x, y)


# -- replies whose weights are refused ------------------------------------------------------------
class LyingArray(np.ndarray):
    """An ndarray subclass whose values claim to be finite."""

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if ufunc is np.isfinite:
            return np.ones(self.shape, bool)
        return super().__array_ufunc__(ufunc, method, *inputs, **kwargs)


def _nan_kernel(state: ServerState) -> np.ndarray:
    kernel = state.weights.trainable[0].copy()
    kernel[0, 0] = np.nan
    return kernel


BAD_WEIGHTS: dict[str, tuple[Callable[[ServerState], ClientResult], str]] = {
    "not a ClientResult": (lambda s: "weights", "expected a fedmodel.client.ClientResult, got str"),
    "not weights": (lambda s: ClientResult("w", 10, {}), "expected fedmodel.ModelWeights, got str"),  # type: ignore[arg-type]
    "masked array hiding a NaN": (
        lambda s: _with_array(_honest(s, 1.0), 0, np.ma.masked_invalid(_nan_kernel(s))),
        "'kernel' is MaskedArray, not a plain numpy.ndarray",
    ),
    "subclass whose isfinite lies": (
        lambda s: _with_array(_honest(s, 1.0), 0, _nan_kernel(s).view(LyingArray)),
        "'kernel' is LyingArray, not a plain numpy.ndarray",
    ),
    "bfloat16 NaN": (
        lambda s: _with_array(_honest(s, 1.0), 2, np.array([1, np.nan, 1, 1], ml_dtypes.bfloat16)),
        "'input_scale' has 1 non-finite value(s)",
    ),
    "float8 NaN": (
        lambda s: _with_array(_honest(s, 1.0), 2, np.array([1, np.nan, 1, 1], ml_dtypes.float8_e4m3fn)),
        "'input_scale' has dtype float8_e4m3fn, expected bfloat16",
    ),
    "float32 where bfloat16 is due": (
        lambda s: _with_array(_honest(s, 1.0), 2, np.ones(4, np.float32)),
        "'input_scale' has dtype float32, expected bfloat16",
    ),
    "big-endian float32": (
        lambda s: _with_array(_honest(s, 1.0), 1, np.zeros(3, ">f4")),
        "'bias' has dtype float32 (big-endian), expected float32",
    ),
    "finite 3e38 weights": (
        lambda s: _with_array(_honest(s, 1.0), 0, np.full((4, 3), 3e38, np.float32)),
        "'kernel' holds values up to 3e+38 in magnitude, above the limit 1.84e+19",
    ),
    "inf bias": (lambda s: _with_array(_honest(s, 1.0), 1, np.full(3, np.inf, np.float32)), "3 non-finite"),
    "a missing variable": (
        lambda s: replace(_honest(s, 1.0), weights=ModelWeights(s.weights.trainable, s.weights.non_trainable[:1])),
        "expected 2+2 arrays, got 2+1",
    ),
    "renamed variables": (
        lambda s: replace(
            _honest(s, 1.0),
            weights=ModelWeights(s.weights.trainable, s.weights.non_trainable, ("a", "b"), ("input_scale", "steps")),
        ),
        "named 'a', expected 'kernel'",
    ),
    "negative example count": (
        lambda s: replace(_honest(s, 1.0), num_examples=-999041),
        "finite and >= 0, got -999041",
    ),
    "zero examples": (lambda s: replace(_honest(s, 1.0), num_examples=0), "reported 0 examples"),
    "NaN example count": (lambda s: replace(_honest(s, 1.0), num_examples=math.nan), "finite and >= 0, got nan"),
    "2**64-1 examples": (lambda s: replace(_honest(s, 1.0), num_examples=2**64 - 1), "above the cap of 2.14748e+09"),
    "1e39 examples": (lambda s: replace(_honest(s, 1.0), num_examples=1e39), "above the cap"),
    "a bool as count": (lambda s: replace(_honest(s, 1.0), num_examples=True), "is not a real number"),
    "a string as count": (lambda s: replace(_honest(s, 1.0), num_examples="10"), "is not a real number"),
}


@pytest.mark.parametrize("name", sorted(BAD_WEIGHTS))
def test_an_invalid_update_drops_only_its_client(name: str) -> None:
    bad, reason = BAD_WEIGHTS[name]
    outcome, _ = _outcome_with(bad)
    assert outcome.accepted == (0, 2)
    ((client, why),) = [(d.client, d.reason) for d in outcome.dropped]
    assert client == 1 and reason in why, why
    assert outcome.problem is None and _finite(outcome.state)
    _same(outcome.state, _without_client_1())
    assert outcome.train["num_examples"] == 20


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2", "bfloat16", "float16"])
def test_nan_is_found_in_every_narrow_float_dtype(dtype: str) -> None:
    narrow = np.dtype(getattr(ml_dtypes, dtype, None) or dtype)
    template = ModelWeights((np.ones(5, narrow),), (), ("w",), ())
    bad = ModelWeights((np.array([1, 1, np.nan, 1, 1], np.float32).astype(narrow),), (), ("w",), ())
    with pytest.raises(AggregationError, match="'w' has 1 non-finite value"):
        validate_update(template, bad)
    assert validate_update(template, template).max_abs == (1.0,)


def test_a_weights_object_that_changes_between_reads_is_read_once() -> None:
    _, state = _server()
    good, evil = _honest(state, 1.0).weights, _honest(state, np.nan).weights
    reads = []

    class Shifty(ModelWeights):
        @property  # type: ignore[misc]
        def trainable(self) -> tuple[np.ndarray, ...]:  # type: ignore[override]
            reads.append(1)
            return good.trainable if len(reads) == 1 else evil.trainable

    shifty = object.__new__(Shifty)
    for name in ("non_trainable", "trainable_names", "non_trainable_names"):
        object.__setattr__(shifty, name, getattr(good, name))
    outcome, _ = _outcome_with(replace(_honest(state, 1.0), weights=shifty))
    reference, _ = _outcome_with(_honest(state, 1.0))
    assert outcome.accepted == (0, 1, 2) and len(reads) == 1
    _same(outcome.state, reference.state)


def test_a_second_reply_of_the_same_client_is_dropped() -> None:
    model, state = _server()
    server_round = _round(fedavg(), state, model)
    assert server_round.add(7, _honest(state, 1.0)) is None
    dropped = server_round.add(7, _honest(state, 100.0))
    assert dropped is not None and "a second reply in the same round" in dropped.reason
    np.testing.assert_allclose(server_round.finish().state.weights.trainable[1], state.weights.trainable[1] + 1.0)


def test_a_round_without_any_valid_reply_keeps_the_weights_and_says_why() -> None:
    model, state = _server()
    server_round = _round(fedavg(), state, model)
    server_round.drop(0, "timed out")
    server_round.add(1, ClientResult(state.weights, -1, {}))
    outcome = server_round.finish()
    assert outcome.problem == "no client update was accepted; the weights are unchanged"
    assert outcome.state.round == 1 and outcome.state.weights is state.weights and outcome.train == {}
    assert [d.client for d in outcome.dropped] == [0, 1]
    with pytest.raises(RuntimeError, match="finished"):
        server_round.finish()
    with pytest.raises(RuntimeError, match="finished"):
        server_round.add(2, _honest(state, 1.0))


def test_an_aggregate_that_is_not_finite_is_refused_and_the_old_state_kept() -> None:
    class Exploding(WeightedMean):
        def finalize(self, state: Any) -> ModelWeights:
            out = super().finalize(state)
            return out.with_arrays([np.full_like(a, np.inf) if a.dtype == np.float32 else a for a in out.arrays])

    algorithm = replace(fedavg(), aggregator=Exploding())
    outcome, state = _outcome_with(_honest_for_one(), algorithm)
    assert outcome.problem is not None and "the new weights are not finite at bias: 3 non-finite" in outcome.problem
    assert outcome.state.weights is state.weights and outcome.state.round == 1
    assert outcome.accepted == (0, 1, 2)


def _honest_for_one() -> Callable[[ServerState], ClientResult]:
    return lambda s: _honest(s, 1.0)


def test_an_aggregator_that_raises_drops_that_client_and_keeps_its_state() -> None:
    class Picky(WeightedMean):
        def accumulate(self, state: Any, update: ModelWeights, weight: float) -> Any:
            if weight == 11:
                raise ZeroDivisionError("a bug in the aggregator")
            return super().accumulate(state, update, weight)

    algorithm = replace(fedavg(), aggregator=Picky())
    outcome, _ = _outcome_with(lambda s: _honest(s, 1.0, n=11), algorithm)
    assert [(d.client, d.reason) for d in outcome.dropped] == [(1, "ZeroDivisionError: a bug in the aggregator")]
    _same(outcome.state, _without_client_1(algorithm))


# -- reports --------------------------------------------------------------------------------------
def _report(**changes: Any) -> Callable[[ServerState], ClientResult]:
    def make(state: ServerState) -> ClientResult:
        honest = _honest(state, 1.0)
        return replace(honest, metrics={**honest.metrics, **changes})

    return make


BAD_REPORTS = {
    "NaN loss": (_report(loss=(np.float64(np.nan), np.int64(10))), "report 'loss/0': non-finite"),
    "negative count": (_report(num_examples=np.int64(-5)), "counts must be integers in [0, 9007199254740992]"),
    "correct above count": (_report(accuracy=(np.int64(695410), np.int64(10))), "695410.0 correct out of 10.0"),
    "count of 2**63": (_report(num_examples=2**63), "report 'num_examples'"),
    "counts that disagree": (_report(num_examples=np.int64(11)), "disagree on the number of examples"),
    "a fractional count": (_report(num_examples=np.float64(2.5)), "expected integer counts"),
    "a missing metric": (lambda s: replace(_honest(s, 1.0), metrics={"loss": (1.0, 10)}), "missing ['accuracy'"),
    "not a mapping": (lambda s: replace(_honest(s, 1.0), metrics=[1, 2]), "not a mapping"),
    "a pair where a count is due": (_report(num_examples=(1, 2)), "report 'num_examples' has paths"),
}


@pytest.mark.parametrize("name", sorted(BAD_REPORTS))
def test_an_invalid_report_drops_the_client_from_the_metrics_but_keeps_its_update(name: str) -> None:
    bad, reason = BAD_REPORTS[name]
    outcome, _ = _outcome_with(bad)
    assert outcome.accepted == (0, 1, 2) and outcome.dropped == ()
    ((client, why),) = [(d.client, d.reason) for d in outcome.metrics_dropped]
    assert client == 1 and reason in why, why
    assert outcome.train == {"loss": 2.5 / 10, "accuracy": 0.4, "num_examples": 20}
    honest, _ = _outcome_with(_honest_for_one())
    _same(outcome.state, honest.state)


def test_metric_sums_that_would_overflow_are_refused_not_wrapped() -> None:
    model, state = _server()
    limits = ReplyLimits(max_count=2**62)
    server_round = _round(fedavg(), state, model, limits=limits)
    for cid in range(3):
        big = np.int64(2**62 - 1)
        result = replace(_honest(state, 1.0), metrics={"loss": (1.0, big), "accuracy": (big, big), "num_examples": big})
        server_round.add(cid, result)
    outcome = server_round.finish()
    assert [d.client for d in outcome.metrics_dropped] == [2]
    assert "int64 sum would overflow" in outcome.metrics_dropped[0].reason
    assert outcome.train["num_examples"] == 2**63 - 2  # two clients of 2**62 - 1: exact
    assert outcome.train["accuracy"] == 1.0


# -- aggregators keep their bounds ----------------------------------------------------------------
AGGREGATORS: dict[str, Callable[[], Any]] = {
    "weighted mean": WeightedMean,
    "median": CoordinateMedian,
    "trimmed mean": TrimmedMean,
    "norm clipping": lambda: NormClipping(max_norm=1.0),
}


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_integer_variables_saturate_instead_of_wrapping(name: str) -> None:
    algorithm = replace(fedavg(), aggregator=AGGREGATORS[name]())
    model, state = _server(algorithm=algorithm)
    server_round = _round(algorithm, state, model)
    for cid in range(5):
        server_round.add(cid, _with_array(_honest(state, 0.0), 3, np.array(INT64_MAX, np.int64)))
    outcome = server_round.finish()
    assert outcome.accepted == (0, 1, 2, 3, 4)
    assert int(outcome.state.weights.non_trainable[1]) == INT64_MAX


def test_the_default_trimmed_mean_resists_one_attacker_among_five_to_nine() -> None:
    for k in range(5, 10):
        honest = [ModelWeights((np.array([1.0 + 0.01 * i], np.float32),)) for i in range(k - 1)]
        attacker = ModelWeights((np.array([1e6], np.float32),))
        got = TrimmedMean().aggregate([(u, 1.0) for u in [*honest[:2], attacker, *honest[2:]]])
        assert 1.0 <= float(got.trainable[0][0]) <= 1.0 + 0.01 * (k - 2), k


finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
weights = st.one_of(st.floats(0, 1e308), st.integers(0, 2**63), st.sampled_from([0.0, 1e-300, 1e308, MAX_WEIGHT]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(finite32, min_size=3, max_size=3), weights), min_size=1, max_size=6))
def test_every_aggregator_keeps_its_bound_for_any_finite_input_and_weight(
    clients: list[tuple[list[float], float]],
) -> None:
    server = ModelWeights((np.zeros(3, np.float32),), (), ("w",), ())
    updates = [(ModelWeights((np.array(v, np.float32),), (), ("w",), ()), w) for v, w in clients]
    values = np.array([v for v, _ in clients], np.float64)
    low, high = values.min(axis=0), values.max(axis=0)
    for name, make in AGGREGATORS.items():
        aggregator = make()
        state = aggregator.init(server)
        for update, w in updates:
            try:
                state = aggregator.accumulate(state, update, w)
            except AggregationError as exc:  # the one refusal: weights whose total is beyond float64
                assert "total weight would overflow" in str(exc)
        if name in ("weighted mean", "norm clipping") and state.total_weight == 0:
            with pytest.raises(AggregationError, match="positive weight"):
                aggregator.finalize(state)
            continue
        got = aggregator.finalize(state).trainable[0].astype(np.float64)
        assert np.isfinite(got).all(), name
        if name == "norm clipping":
            assert np.linalg.norm(got) <= 1.0 * (1 + 1e-6), got
        else:  # a convex combination (or order statistic) of the clients' values, up to float32 rounding
            slack = 1e-6 * np.maximum(np.abs(low), np.abs(high)) + 1e-30
            assert ((got >= low - slack) & (got <= high + slack)).all(), (name, got, low, high)


def test_the_scaled_sum_equals_the_plain_sum_while_nothing_is_near_overflow() -> None:
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(70_000).astype(np.float32) for _ in range(5)]
    ws = [3.0, 1.0, 0.5, 7.0, 2.0]
    total = ScaledSum((70_000,), np.dtype(np.float32))
    plain = np.zeros(70_000, np.float32)
    for x, w in zip(xs, ws, strict=True):
        total.add(x, w, float(np.abs(x).max()))
        plain += np.float32(w) * x
    assert total.exponent == math.frexp(3.0)[1]  # never rescaled; BLAS may fuse the multiply-add: float32 rounding
    np.testing.assert_allclose(total.mean(sum(ws)), plain / np.float32(sum(ws)), rtol=1e-5, atol=1e-6)


def test_values_above_the_default_limit_pass_when_the_user_lifts_it() -> None:
    outcome, _ = _outcome_with(
        lambda s: _with_array(_honest(s, 1.0), 0, np.full((4, 3), 3e38, np.float32)),
        limits=ReplyLimits(max_value=math.inf),
    )
    assert outcome.accepted == (0, 1, 2) and _finite(outcome.state)
    assert float(outcome.state.weights.trainable[0].max()) == pytest.approx(1e38, rel=1e-3)


def test_validate_update_reads_arrays_in_place_and_bounds_them() -> None:
    _, state = _server()
    update = _honest(state, 2.0).weights
    checked = validate_update(state.weights, update)
    assert all(a is b for a, b in zip(checked.arrays, update.arrays, strict=True))
    assert checked.max_abs[1] >= 2.0 and checked.template is state.weights
