"""Edges of the server's guards: update validation, aggregation, robust aggregators, checkpoints (issue 18, item 5).

Each test pins one behaviour a user relies on, with the exact value where the math is known; mutation testing
(docs/mutation.md) showed these lines unguarded by the other tests.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedmodel import AggregationError, CheckpointError, ModelWeights, _tree
from fedmodel.aggregation import WeightedMean
from fedmodel.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from fedmodel.robust import CoordinateMedian, NormClipping, TrimmedMean
from fedmodel.validation import filter_updates, update_problem
from tests.reliability._headers import checkpoint_header


def _vec(*values: float, dtype: Any = np.float32) -> ModelWeights:
    return ModelWeights((np.array(values, dtype),), (), ("w",))


SERVER = _vec(0.0, 0.0)


# --- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "reason"),
    [
        (-1.0, "client 0: the weight must be finite and >= 0, got -1.0"),
        (math.nan, "client 0: the weight must be finite and >= 0, got nan"),
        (-math.inf, "client 0: the weight must be finite and >= 0, got -inf"),
        (True, "client 0: the weight (number of examples) True is not a real number"),
        ("3", "client 0: the weight (number of examples) '3' is not a real number"),
    ],
)
def test_filter_updates_rejects_a_negative_nan_or_non_numeric_weight(weight: Any, reason: str) -> None:
    result = filter_updates(SERVER, [(_vec(1.0, 2.0), weight), (_vec(3.0, 4.0), 2)])
    assert [(r.index, r.client, r.reason) for r in result.rejected] == [(0, "client 0", reason)]
    assert len(result.accepted) == 1
    accepted, w = result.accepted[0]
    assert accepted.trainable[0].tolist() == [3.0, 4.0] and w == 2.0 and type(w) is float
    assert update_problem(SERVER, _vec(1.0, 2.0), weight, client="client 0") == reason


def test_filter_updates_uses_the_given_labels_and_keeps_a_zero_weight_update() -> None:
    result = filter_updates(SERVER, [(_vec(1.0, 2.0), 0), (_vec(np.nan, 0.0), 1)], clients=["alice", "bob"])
    assert len(result.accepted) == 1 and result.accepted[0][1] == 0.0
    assert [(r.index, r.client) for r in result.rejected] == [(1, "bob")]
    assert result.rejected[0].reason == "bob: 'w' has 1 non-finite value(s) (NaN or inf)"
    assert update_problem(SERVER, _vec(1.0, 2.0), 0) is None
    assert update_problem(SERVER, _vec(3.0, 4.0), max_delta_norm=4.9) == (
        "client: the update moves the weights by 5 (L2), above 4.9"
    )
    assert update_problem(SERVER, _vec(3.0, 4.0), max_delta_norm=5.0) is None


# --- aggregation ----------------------------------------------------------------------------------------------


def test_a_zero_weight_update_does_not_move_the_mean() -> None:
    updates = [(_vec(1.0, 2.0), 3.0), (_vec(1e30, -1e30), 0.0)]
    assert WeightedMean().aggregate(updates).trainable[0].tolist() == [1.0, 2.0]
    assert NormClipping(max_norm=10.0).aggregate(SERVER, updates).trainable[0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("make", [WeightedMean, lambda: NormClipping(max_norm=1.0)], ids=["mean", "clipping"])
def test_only_zero_weights_is_an_error_not_a_division_by_zero(make: Any) -> None:
    agg = make()
    state = agg.init(SERVER)
    for update in (_vec(1.0, 2.0), _vec(3.0, 4.0)):
        state = agg.accumulate(state, update, 0.0)
    with pytest.raises(AggregationError, match=r"^nothing to aggregate: no client update with a positive weight$"):
        agg.finalize(state)


@pytest.mark.parametrize("max_norm", [0.0, -1.0, math.inf, math.nan])
def test_norm_clipping_needs_a_finite_positive_max_norm(max_norm: float) -> None:
    with pytest.raises(ValueError, match="max_norm must be finite and > 0"):
        NormClipping(max_norm=max_norm)


def test_trimmed_mean_and_median_of_one_update_are_that_update() -> None:
    one = _vec(1.5, -2.0)
    for agg in (TrimmedMean(), TrimmedMean(beta=0.49), CoordinateMedian()):
        got = agg.aggregate([(one, 7.0)])
        assert got.trainable[0].tolist() == [1.5, -2.0] and got.trainable[0].dtype == np.float32


@pytest.mark.parametrize(("beta", "expected"), [(0.0, 22.0), (0.19, 22.0), (0.2, 3.0), (0.4, 3.0), (0.45, 3.0)])
def test_trimmed_mean_cuts_floor_beta_k_on_each_side(beta: float, expected: float) -> None:
    ups = [_vec(v) for v in (100.0, 4.0, 1.0, 3.0, 2.0)]  # unsorted: the partition must sort each side
    assert TrimmedMean(beta=beta).aggregate([(u, 1.0) for u in ups]).trainable[0].tolist() == [expected]


def test_trimmed_mean_of_six_with_beta_one_third_averages_the_middle_two() -> None:
    ups = [_vec(v) for v in (-50.0, 7.0, 1.0, 60.0, 5.0, 3.0)]  # cut 2 each side: mean of 3 and 5
    assert TrimmedMean(beta=1 / 3).aggregate([(u, 1.0) for u in ups]).trainable[0].tolist() == [4.0]


def test_weighted_mean_of_unequal_weights_is_exact() -> None:
    got = WeightedMean().aggregate([(_vec(1.0, -1.0), 1.0), (_vec(4.0, 2.0), 2.0)])
    assert got.trainable[0].tolist() == [3.0, 1.0]
    got64 = WeightedMean(accumulator="float64").aggregate([(_vec(1.0, 0.0), 3.0), (_vec(0.0, 1.0), 1.0)])
    assert got64.trainable[0].tolist() == [0.75, 0.25] and got64.trainable[0].dtype == np.float32


# --- checkpoints ----------------------------------------------------------------------------------------------


def test_a_header_with_another_format_tag_is_refused(tmp_path: Path, edit_checkpoint: Any) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _vec(1.0, 2.0), metadata={"round": 3})
    assert FORMAT == "fedmodel.checkpoint/2"
    edit_checkpoint(path, b"fedmodel.checkpoint/2", b"fedmodel.checkpoint/9")
    with pytest.raises(
        CheckpointError, match=r"unknown checkpoint format 'fedmodel.checkpoint/9', expected 'fedmodel.checkpoint/2'"
    ):
        load_checkpoint(path)


def test_a_big_endian_array_is_saved_as_its_values(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    values = [[1.5, -2.25], [2.0**100, -0.0]]
    weights = ModelWeights((np.array(values, ">f4"),), (np.array([7, -8], ">i8"),), ("k",), ("n",))
    save_checkpoint(path, weights, extra={"m": np.array([0.5], ">f8")})
    ckpt = load_checkpoint(path)
    assert ckpt.weights.trainable[0].dtype == np.dtype("<f4") and ckpt.weights.trainable[0].tolist() == values
    assert ckpt.weights.non_trainable[0].dtype == np.dtype("<i8") and ckpt.weights.non_trainable[0].tolist() == [7, -8]
    assert ckpt.extra["m"].dtype == np.dtype("<f8") and ckpt.extra["m"].tolist() == [0.5]
    assert weights.trainable[0].dtype == np.dtype(">f4")  # the caller's arrays are left as they were


def test_check_client_update_labels_its_errors_and_applies_its_weight_cap() -> None:
    from fedmodel.validation import check_client_update

    with pytest.raises(AggregationError, match=r"^client: the weight must be finite and >= 0, got -1.0$"):
        check_client_update(SERVER, _vec(1.0, 2.0), -1)
    with pytest.raises(AggregationError, match=r"^client: the weight 5 is above the cap of 4 examples$"):
        check_client_update(SERVER, _vec(1.0, 2.0), 5, max_weight=4)
    plain = check_client_update(SERVER, _vec(1.0, 2.0), max_weight=1.0)  # the default weight is 1
    assert plain.trainable[0].tolist() == [1.0, 2.0] and plain.max_abs == (3.0,)
    assert update_problem(SERVER, _vec(1.0, 2.0), -1) == "client: the weight must be finite and >= 0, got -1.0"


def test_max_abs_bounds_every_value_without_warning_on_overflow() -> None:
    from fedmodel.validation import max_abs

    # the sum of |value| overflows float32 and float64: the exact path, no RuntimeWarning (an error here)
    assert max_abs(np.array([3e38, -3e38], np.float32)) == float(np.float32(3e38))
    assert max_abs(np.array([1e308, -1.7e308])) == 1.7e308
    assert max_abs(np.array([3.0, -4.0])) == 7.0  # the sum of |value| bounds the largest value
    assert max_abs(np.array([1e-30, -2e-30], np.float32)) == float(np.float32(1e-30) + np.float32(2e-30))
    # a sum below the smallest normal number (a kernel that flushes subnormals would give 0): the exact path
    assert max_abs(np.array([1e-45, -1e-45], np.float32)) == float(np.float32(1e-45))
    assert max_abs(np.array([5e-324, 5e-324])) == 5e-324
    assert max_abs(np.array([3, -7], np.int8)) == 7.0
    assert max_abs(np.array([True, False])) == 1.0 and max_abs(np.zeros((0, 3))) == 0.0
    assert math.isnan(max_abs(np.array([1.0, np.inf], np.float32)))
    assert math.isnan(max_abs(np.array([np.nan, 1.0], np.float16)))


# --- integer results -------------------------------------------------------------------------------------------


def test_integer_result_of_booleans_and_of_values_beyond_any_integer() -> None:
    from fedmodel.aggregation import integer_result

    assert integer_result(np.array([0.4, 0.6, -0.7, 0.0]), np.dtype(bool)).tolist() == [False, True, True, False]
    huge = integer_result([2**64, -(2**64), 3.5], np.dtype(np.int64))  # Python ints numpy cannot hold
    assert huge.tolist() == [2**63 - 1, -(2**63), 4] and huge.dtype == np.int64


def test_aggregate_of_nothing_says_so() -> None:
    with pytest.raises(AggregationError, match=r"^nothing to aggregate: no client update$"):
        WeightedMean().aggregate([])
    with pytest.raises(AggregationError, match=r"^nothing to aggregate: no client update$"):
        TrimmedMean().aggregate([])


# --- checkpoints against the model ----------------------------------------------------------------------------


def _two(names: tuple[str, ...] | None = ("a", "b"), dtype: Any = np.float32, n: int = 2) -> ModelWeights:
    return ModelWeights((np.zeros(n, dtype), np.ones(1, dtype)), (), names)


@pytest.mark.parametrize(
    ("like", "message"),
    [
        (ModelWeights((np.zeros(2, np.float32),), (), ("a",)), " has 2 trainable arrays, the model has 1"),
        (_two(("a", "c")), r": trainable\[1\] is named 'b', expected 'c'"),
        (_two(n=3), r": trainable 'a' has shape \(2,\), expected \(3,\)"),
        (_two(None, n=3), r": trainable '#0' has shape \(2,\), expected \(3,\)"),
        (_two(dtype=np.float64), ": trainable 'a' has dtype float32, expected float64"),
    ],
    ids=["count", "name", "shape", "positional", "dtype"],
)
def test_a_checkpoint_unlike_the_model_names_what_differs(tmp_path: Path, like: ModelWeights, message: str) -> None:
    from fedmodel import WeightsError

    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _two())
    with pytest.raises(WeightsError, match=f"^checkpoint {str(path)!r}{message}$"):
        load_checkpoint(path, like=like)


def test_check_extra_names_the_file(tmp_path: Path) -> None:
    from fedmodel.checkpoint import check_extra

    path = tmp_path / "c.safetensors"
    with pytest.raises(CheckpointError, match=f"^{str(path)!r}: extra 'm' has shape \\(2,\\), expected \\(3,\\)$"):
        check_extra(path, {"m": np.zeros(2)}, {"m": np.zeros(3)})
    with pytest.raises(CheckpointError, match=f"^{str(path)!r}: extra 'm' has dtype float32, expected float64$"):
        check_extra(path, {"m": np.zeros(3, np.float32)}, {"m": np.zeros(3)})


class _Store:
    """A backend that keeps a model's values in a dict (no framework, and no backend_for can find it)."""

    name = "store"

    def __init__(self) -> None:
        self.values = {"w": np.zeros(2, np.float32)}

    def variable_names(self, model: Any, variables: Any) -> list[str]:
        return list(variables)

    def read_variables(self, variables: Any, *, copy: bool = True) -> list[np.ndarray]:
        return [self.values[v].copy() for v in variables]

    def write_variables(self, variables: Any, values: Any) -> None:
        self.values.update({v: np.array(a) for v, a in zip(variables, values, strict=True)})


class _Model:
    trainable_variables = ("w",)
    non_trainable_variables = ()


def test_restore_writes_through_the_given_backend(tmp_path: Path) -> None:
    from fedmodel.checkpoint import restore

    path = tmp_path / "c.safetensors"
    save_checkpoint(path, _vec(1.5, -2.0), metadata={"round": 4})
    store = _Store()
    ckpt = restore(_Model(), path, backend=store)  # type: ignore[arg-type]
    assert store.values["w"].tolist() == [1.5, -2.0] and ckpt.metadata == {"round": 4}


# --- metric reports and reply limits --------------------------------------------------------------------------

REPORT = {"loss": (1.0, 3), "n": 3, "h": np.zeros(2)}
GOOD = {"loss": (2.0, 4), "n": np.int64(4), "h": np.array([1.0, 2.0])}


def test_check_report_returns_float64_sums_and_int64_counts() -> None:
    from fedmodel.validation import check_report

    out = check_report(GOOD, REPORT)
    assert out["loss"][0].dtype == np.float64 and out["loss"][1].dtype == np.int64 and int(out["loss"][1]) == 4
    assert out["n"].dtype == np.int64 and out["h"].tolist() == [1.0, 2.0]
    assert int(check_report({**GOOD, "n": 4.0}, REPORT)["n"]) == 4  # an integral float count
    assert int(check_report({**GOOD, "n": np.uint8(4)}, REPORT)["n"]) == 4
    assert check_report({**GOOD, "n": 2**53}, REPORT)["n"] == 2**53


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"loss": (True, 4)}, "report 'loss/0': expected numbers, got bool"),
        ({"loss": ("a", 4)}, "report 'loss/0': expected numbers, got str"),
        ({"h": np.ma.array([1.0, 2.0])}, "report 'h': MaskedArray is not a plain numpy.ndarray"),
        ({"h": np.array(["a", "b"])}, "report 'h': expected numbers, got dtype <U1"),
        ({"h": np.zeros(3)}, r"report 'h': expected shape \(2,\), got \(3,\)"),
        ({"n": 4.5}, "report 'n': expected integer counts, got 4.5"),
        ({"n": np.float64(np.nan)}, r"report 'n': expected integer counts, got nan"),
        ({"loss": (1.0, -4)}, r"report 'loss/1': counts must be integers in \[0, 9007199254740992\], got -4"),
        ({"n": 2**53 + 1}, r"report 'n': counts must be integers in \[0, 9007199254740992\], got 9007199254740993"),
        ({"loss": (np.inf, 4)}, r"report 'loss/0': non-finite value\(s\) inf"),
        ({"loss": {"a": 1.0}}, r"report 'loss' has paths \['a'\], expected \['0', '1'\]"),
        ({"loss": [1.0, 4]}, None),  # a list where the template has a tuple: the same paths
    ],
)
def test_check_report_names_the_client_the_path_and_the_reason(change: dict[str, Any], reason: str | None) -> None:
    from fedmodel.validation import check_report

    report = {**GOOD, **change}
    if reason is None:
        assert check_report(report, REPORT, client="c7")["loss"][1] == 4
        return
    with pytest.raises(AggregationError, match=f"^c7: {reason}$"):
        check_report(report, REPORT, client="c7")


NUMPY_REPORT = {"loss": (np.float64(1.0), np.int64(3)), "n": np.int64(3), "h": np.zeros(2)}


def _answer(call: Any) -> Any:
    try:
        return call()
    except AggregationError as exc:
        return str(exc)


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"loss": (np.float32(2.0), np.int32(4))},
        {"loss": (np.float64(2.0), np.float64(4.5))},
        {"loss": (np.float64(np.nan), np.int64(4))},
        {"loss": [2.0, 4]},
        {"loss": (np.float64(2.0), np.int64(4), np.int64(1))},
        {"loss": (np.float64(2.0),)},
        {"loss": np.float64(2.0)},
        {"loss": (np.float64(2.0), (np.int64(4),))},
        {"loss": (np.float64(2.0), np.array([4]))},
        {"n": (np.int64(4),)},
        {"n": np.array([4])},
        {"h": (np.float64(1.0), np.float64(2.0))},
    ],
)
def test_check_report_of_arrays_and_pairs_answers_as_optree_does(change: dict[str, Any]) -> None:
    """A template of numpy arrays and plain tuples of them is read without optree: every report must get the
    answer (values, dtypes and structure, or the message) that the same template read through optree gives."""
    from fedmodel.validation import check_report

    report = {**GOOD, **change}
    fast = _answer(lambda: check_report(report, NUMPY_REPORT, client="c7"))
    general = _answer(lambda: check_report(report, REPORT, client="c7"))  # Python numbers: optree's path
    if isinstance(general, str):
        assert fast == general
        return
    assert fast.keys() == general.keys()
    for name in general:
        assert type(fast[name]) is type(general[name]), name
        for got, want in zip(_tree.flatten(fast[name])[0], _tree.flatten(general[name])[0], strict=True):
            assert got.dtype == want.dtype and got.tolist() == want.tolist(), name


def test_check_report_refuses_other_metric_names_and_non_mappings() -> None:
    from fedmodel.validation import ReportTemplate, check_report

    prepared = ReportTemplate.of(REPORT)
    assert ReportTemplate.of(prepared) is prepared and prepared.names == {"loss", "n", "h"}
    with pytest.raises(AggregationError, match=r"^client: report metrics missing \['h'\], unexpected \['x'\]$"):
        check_report({"loss": (1.0, 4), "n": 4, "x": 1.0}, prepared)
    with pytest.raises(AggregationError, match=r"^client: the metric report is list, not a mapping$"):
        check_report([1], prepared)
    with pytest.raises(
        AggregationError, match=r"^client: report 'loss/1': counts must be integers in \[0, 3\], got 4$"
    ):
        check_report(GOOD, prepared, max_count=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_weight": 0}, "max_weight must be finite and > 0, got 0"),
        ({"max_weight": math.inf}, "max_weight must be finite and > 0, got inf"),
        ({"max_count": 0}, r"max_count must be in \[1, 2\*\*63 - 1\], got 0"),
        ({"max_count": 2**63}, r"max_count must be in \[1, 2\*\*63 - 1\], got 9223372036854775808"),
        ({"max_delta_norm": 0}, "max_delta_norm must be > 0, got 0"),
        ({"max_value": 0}, "max_value must be > 0, got 0"),
        ({"max_value": math.nan}, "max_value must be > 0, got nan"),
    ],
)
def test_reply_limits_refuse_what_would_reject_or_accept_everything(options: dict[str, Any], message: str) -> None:
    from fedmodel.validation import ReplyLimits

    with pytest.raises(ValueError, match=f"^{message}$"):
        ReplyLimits(**options)


def test_reply_limits_at_their_edges_and_the_default_value_limit() -> None:
    from fedmodel.validation import ReplyLimits

    edge = ReplyLimits(max_weight=1e-300, max_count=1, max_delta_norm=1e-300, max_value=1e-300)
    assert edge.value_limit(np.dtype(np.float32)) == 1e-300
    assert ReplyLimits(max_count=2**63 - 1).max_count == 2**63 - 1
    assert ReplyLimits().value_limit(np.dtype(np.float64)) == math.sqrt(float(np.finfo(np.float64).max))
    assert ReplyLimits().value_limit(np.dtype(np.float32)) == math.sqrt(float(np.finfo(np.float32).max))
    assert ReplyLimits().value_limit(np.dtype(np.float16)) == math.sqrt(float(np.finfo(np.float32).max))


# --- norm clipping: labels, overflow, integer variables --------------------------------------------------------


def test_norm_clipping_labels_each_rejection_with_the_client_and_keeps_its_state() -> None:
    agg = NormClipping(max_norm=1.0)
    state = agg.accumulate(agg.init(SERVER), _vec(0.3, 0.4), 1.0)
    with pytest.raises(AggregationError, match=r"^client 1: the weight must be finite and >= 0, got -2.0$"):
        agg.accumulate(state, _vec(0.3, 0.4), -2.0)
    with pytest.raises(AggregationError, match=r"^client 1: 'w' has 1 non-finite value\(s\) \(NaN or inf\)$"):
        agg.accumulate(state, _vec(np.inf, 0.0), 1.0)
    state = agg.accumulate(state, _vec(3.0, 4.0), 1e308)
    with pytest.raises(AggregationError, match=r"^client 2: the total weight would overflow \(1e\+308 \+ 1e\+308\)$"):
        agg.accumulate(state, _vec(0.0, 0.0), 1e308)
    assert state.count == 2 and state.clipped == 1


def test_norm_clipping_keeps_the_float_variables_after_an_integer_one() -> None:
    server = ModelWeights((np.array(5, np.int64), np.zeros(2, np.float32)), (), ("steps", "w"))
    update = ModelWeights((np.array(7, np.int64), np.array([3.0, 4.0], np.float32)), (), ("steps", "w"))
    got = NormClipping(max_norm=1.0).aggregate(server, [(update, 1.0)])
    assert int(got.trainable[0]) == 7 and got.trainable[1].tolist() == pytest.approx([0.6, 0.8])


# --- the standard report --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"loss": (2.0, 5), "num_examples": 4}, "{'loss': 5.0, 'num_examples': 4.0}"),
        ({"accuracy": (1, 3), "num_examples": 4}, "{'accuracy': 3.0, 'num_examples': 4.0}"),
        ({"loss": (1.0, -1)}, "{'loss': -1.0}"),
    ],
)
def test_check_standard_report_names_the_counts_that_disagree(report: dict[str, Any], message: str) -> None:
    from fedmodel.metrics import check_standard_report

    with pytest.raises(AggregationError) as info:
        check_standard_report(report)
    assert str(info.value) == f"standard metrics disagree on the number of examples: {message}"


def test_check_standard_report_accepts_zero_correct_and_zero_examples() -> None:
    from fedmodel.metrics import check_standard_report

    check_standard_report({"loss": (1.0, 3), "accuracy": (0, 3), "num_examples": 3})
    check_standard_report({"loss": (0.0, 0), "accuracy": (0, 0), "num_examples": 0})


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"loss": 3.0}, "metric 'loss': expected a (total, count) pair"),
        ({"num_examples": "x"}, "metric 'num_examples': expected a number"),
        ({"num_examples": [1, 2]}, "metric 'num_examples': expected scalars, got shape (2,)"),
        ({"accuracy": (4, 3)}, "metric 'accuracy': 4.0 correct out of 3.0 examples"),
    ],
)
def test_check_standard_report_refuses_malformed_metrics(report: dict[str, Any], message: str) -> None:
    from fedmodel.metrics import check_standard_report

    with pytest.raises(AggregationError) as info:
        check_standard_report(report)
    assert str(info.value) == message


def test_get_weights_without_copy_returns_read_only_live_views() -> None:
    from fedmodel import get_weights

    store = _Store()
    live = get_weights(_Model(), copy=False, backend=_StoreViews(store))  # type: ignore[arg-type]
    assert np.shares_memory(live.trainable[0], store.values["w"]) and not live.trainable[0].flags.writeable
    copied = get_weights(_Model(), backend=_StoreViews(store))  # type: ignore[arg-type]
    assert not np.shares_memory(copied.trainable[0], store.values["w"]) and copied.trainable[0].flags.writeable


class _StoreViews:
    """Reads a _Store without copying when asked not to (as PyTorch and JAX on CPU do)."""

    name = "store-views"

    def __init__(self, store: _Store) -> None:
        self.store = store

    def variable_names(self, model: Any, variables: Any) -> list[str]:
        return list(variables)

    def read_variables(self, variables: Any, *, copy: bool = True) -> list[np.ndarray]:
        return [self.store.values[v].copy() if copy else self.store.values[v] for v in variables]


class _Unreadable(dict):  # type: ignore[type-arg]
    """A mapping that lists the template's names but raises on reading (a hostile client's report)."""

    def __init__(self, fail_on_iter: bool) -> None:
        super().__init__(GOOD)
        self.fail_on_iter = fail_on_iter

    def __iter__(self) -> Any:
        if self.fail_on_iter:
            raise RuntimeError("no keys today")
        return super().__iter__()

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError(f"no {key} today")


def test_check_report_turns_any_failure_to_read_into_an_aggregation_error() -> None:
    from fedmodel.validation import check_report

    with pytest.raises(AggregationError, match=r"^c: the metric report cannot be read \(no keys today\)$"):
        check_report(_Unreadable(fail_on_iter=True), REPORT, client="c")
    with pytest.raises(AggregationError, match=r"^c: report 'loss' cannot be read \(no loss today\)$"):
        check_report(_Unreadable(fail_on_iter=False), REPORT, client="c")


def test_assign_weights_refuses_anything_but_model_weights() -> None:
    from fedmodel import WeightsError, assign_weights

    with pytest.raises(WeightsError, match=r"^expected fedmodel.ModelWeights, got tuple$"):
        assign_weights(_Model(), (np.zeros(2, np.float32),), backend=_Store())  # type: ignore[arg-type]


def test_check_report_accepts_zero_counts_and_types_empty_leaves() -> None:
    from fedmodel.validation import check_report

    template = {"n": 3, "per_class": np.zeros(0, np.int64), "sums": np.zeros(0, np.float32)}
    out = check_report({"n": 0, "per_class": np.zeros(0, np.int32), "sums": np.zeros(0, np.float16)}, template)
    assert int(out["n"]) == 0 and out["n"].dtype == np.int64
    assert out["per_class"].dtype == np.int64 and out["sums"].dtype == np.float64


# --- more exact values: specs of a classifier, metric sums, norms ---------------------------------------------


def test_classification_spec_is_exactly_the_documented_pair() -> None:
    from fedmodel import TensorSpec, classification_spec

    assert classification_spec(4) == (TensorSpec((None, 4), "float32", "x"), TensorSpec((None,), "int64", "y"))
    assert classification_spec(4, 1)[1] == TensorSpec((None,), "int64", "y", minimum=0, maximum=0)
    with pytest.raises(ValueError, match=r"^num_classes must be >= 1, got 0$"):
        classification_spec(4, 0)


def test_metric_sums_of_complex_mixed_and_edge_integers() -> None:
    from fedmodel.metrics import SumThenFinalize

    total = SumThenFinalize()([{"z": np.complex64(1 + 2j)}, {"z": np.complex64(1j)}])["z"]
    assert total == 1 + 3j and isinstance(total, complex)
    assert SumThenFinalize()([{"m": np.int64(1)}, {"m": 1e30}]) == {"m": 1e30}  # a float joins an int count
    top = np.iinfo(np.int64).max
    assert SumThenFinalize()([{"m": np.int64(top - 1)}, {"m": np.int64(1)}]) == {"m": top}
    assert SumThenFinalize()([{"m": np.int64(-top + 1)}, {"m": np.int64(-1)}]) == {"m": -top}
    with pytest.raises(AggregationError, match=r"^metric 'm': the sum is not finite \(inf\)$"):
        SumThenFinalize()([{"m": 1e308}, {"m": 1e308}])
    with pytest.raises(AggregationError, match=r"^metric 'h': shape \(3,\) cannot be added to \(2,\)$"):
        SumThenFinalize()([{"h": np.zeros(2)}, {"h": np.zeros(3)}])
    with pytest.raises(AggregationError, match=r"^metric 's' has another structure than earlier reports$"):
        SumThenFinalize()([{"s": 1.0}, {"s": (1.0, 2.0)}])


_TOP = 2**63 - 1


@pytest.mark.parametrize(
    "reports",
    [
        [{"p": (2.5, 3), "n": 3}, {"p": (1.0, 2), "n": 2}],
        [{"n": _TOP - 1}, {"n": 1}],
        [{"n": -_TOP + 1}, {"n": -1}],
        [{"n": _TOP - 1}, {"n": 2}],
        [{"p": (1.0, _TOP)}, {"p": (1.0, 1)}],
        [{"s": 1e308}, {"s": 1e308}],
        [{"s": 1.0}, {"s": (1.0, 2.0)}],
        [{"s": (1.0, 2.0)}, {"s": 1.0}],
        [{"p": (1.0, 2)}, {"p": (1.0, 2, 3)}],
        [{"p": (1.0, 2)}, {"p": (1.0,)}],
        [{"m": 1}, {"m": 0.5}],
    ],
)
def test_metric_sums_of_numpy_numbers_and_pairs_answer_as_optree_does(reports: list[dict[str, Any]]) -> None:
    """Metrics of numpy numbers and plain tuples of them are summed without optree; every sequence of reports
    must get the answer (sums and their types, or the message) that the same reports of Python numbers,
    which take optree's path, get."""
    from fedmodel.metrics import SumThenFinalize

    def numpy(value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(numpy(v) for v in value)
        return np.int64(value) if isinstance(value, int) else np.float64(value)

    fast = _answer(lambda: SumThenFinalize()([{k: numpy(v) for k, v in r.items()} for r in reports]))
    general = _answer(lambda: SumThenFinalize()(reports))
    if isinstance(general, str):
        assert fast == general or ("another structure" in fast and general.startswith(fast + ": "))  # + optree's why
        return
    assert fast == general
    for name in general:
        assert [type(v) for v in _tree.flatten(fast[name])[0]] == [type(v) for v in _tree.flatten(general[name])[0]]


def test_mean_of_finalized_weighs_numpy_numbers_and_pairs_as_python_ones() -> None:
    from fedmodel.metrics import MeanOfFinalized

    python = [{"acc": 0.5, "pair": (1.0, 0.25), "num_examples": 3}, {"acc": 1.0, "pair": (3.0, 0.5), "num_examples": 1}]
    numpy = [
        {"acc": np.float64(0.5), "pair": (np.float64(1.0), np.float64(0.25)), "num_examples": np.int64(3)},
        {"acc": np.float32(1.0), "pair": (np.float64(3.0), np.float64(0.5)), "num_examples": np.int64(1)},
    ]
    expected = {"num_examples": 4, "acc": 0.625, "pair": (1.5, 0.3125)}
    assert MeanOfFinalized()(numpy) == MeanOfFinalized()(python) == expected


def test_metric_sums_of_arrays_and_nested_metrics_take_the_general_path() -> None:
    """Plain numbers and (total, count) pairs have a fast path; arrays, nested structures and overflowing vectors
    must still be summed and refused exactly as before, without a numpy warning."""
    import warnings

    from fedmodel.metrics import SumThenFinalize

    reports = [
        {"cm": np.array([1, 2], np.int64), "v": np.array([0.5, 1.0]), "nest": {"a": (1.0, 2)}, "p": (1.0, 2)},
        {
            "cm": np.array([3, 4], np.int32),
            "v": np.array([0.25, 2.0], np.float32),
            "nest": {"a": (2.0, 3)},
            "p": (1.5, 1),
        },
    ]
    total = SumThenFinalize()(reports)
    assert total["cm"].tolist() == [4, 6] and total["v"].tolist() == [0.75, 3.0]
    assert total["nest"] == {"a": (3.0, 5)} and total["p"] == (2.5, 3)
    top = np.iinfo(np.int64).max
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow is an AggregationError, never a RuntimeWarning
        with pytest.raises(AggregationError, match=r"^metric 'cm': the int64 sum would overflow$"):
            SumThenFinalize()([{"cm": np.array([1, top])}, {"cm": np.array([1, 1])}])
        with pytest.raises(AggregationError, match=r"^metric 'v': the sum is not finite \(\[inf, 2\.0\]\)$"):
            SumThenFinalize()([{"v": np.array([1e308, 1.0])}, {"v": np.array([1e308, 1.0])}])
        with pytest.raises(AggregationError, match=r"^metric 'z': the sum is not finite"):
            SumThenFinalize()([{"z": np.complex128(1e308)}, {"z": np.complex128(1e308)}])
    with pytest.raises(AggregationError, match=r"^metric 'p' has another structure than earlier reports"):
        SumThenFinalize()([{"p": (1.0, 2)}, {"p": (1.0, 2, 3)}])
    with pytest.raises(AggregationError, match=r"^metric 'p' has another structure than earlier reports"):
        SumThenFinalize()([{"p": (1.0, 2)}, {"p": [1.0, 2]}])  # a list where the pair was a tuple
    state = SumThenFinalize().accumulate({}, {"p": (1.0, 2)})
    with pytest.raises(AggregationError):
        SumThenFinalize().accumulate(state, {"p": (1.0, (2, 3))})
    assert state["p"][0] == 1.0 and state["p"][1] == 2  # all or nothing


VECTORS = {"counts": np.zeros(3, np.int64), "sums": np.zeros(2)}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"counts": np.array([1.5, 0.0, 2.0])}, r"report 'counts': expected integer counts, got \[1\.5, 0\.0, 2\.0\]"),
        (
            {"counts": np.array([1, -1, 2])},
            r"report 'counts': counts must be integers in \[0, 9007199254740992\], got \[1, -1, 2\]",
        ),
        ({"sums": np.array([np.nan, 1.0])}, r"report 'sums': non-finite value\(s\) \[nan, 1\.0\]"),
        ({"sums": np.array([np.inf, 1.0], np.float32)}, r"report 'sums': non-finite value\(s\) \[inf, 1\.0\]"),
    ],
)
def test_check_report_of_array_leaves_names_the_path_and_the_values(change: dict[str, Any], reason: str) -> None:
    from fedmodel.validation import check_report

    with pytest.raises(AggregationError, match=f"^c: {reason}$"):
        check_report({"counts": np.array([1, 0, 2]), "sums": np.zeros(2), **change}, VECTORS, client="c")


def test_check_report_of_array_leaves_returns_int64_counts_and_float64_sums() -> None:
    from fedmodel.validation import check_report

    out = check_report({"counts": np.array([1.0, 0.0, 2.0]), "sums": np.array([1, 2])}, VECTORS)
    assert out["counts"].dtype == np.int64 and out["counts"].tolist() == [1, 0, 2]
    assert out["sums"].dtype == np.float64 and out["sums"].tolist() == [1.0, 2.0]
    out = check_report({"counts": np.array([0, 0, 3], np.uint8), "sums": np.array([0.5, -1.0], np.float16)}, VECTORS)
    assert out["counts"].tolist() == [0, 0, 3] and out["sums"].tolist() == [0.5, -1.0]
    out = check_report({"counts": np.array([5, 0, 5]), "sums": np.zeros(2)}, VECTORS, max_count=5)  # the cap itself
    assert out["counts"].tolist() == [5, 0, 5]
    number = check_report({**GOOD, "loss": (np.int64(2), 4)}, REPORT)["loss"][0]  # an integer sum: float64
    assert number.dtype == np.float64 and number == 2.0


def test_nonfinite_count_counts_every_nan_and_inf_across_blocks() -> None:
    from fedmodel.validation import nonfinite_count

    a = np.zeros(70_000, np.float32)
    a[[0, 65_535, 65_536]] = np.nan
    a[-1] = -np.inf
    assert nonfinite_count(a) == 4
    assert nonfinite_count(np.zeros(0)) == 0 and nonfinite_count(np.array([1, 2])) == 0


def test_delta_norm_is_the_l2_norm_of_the_float_change_at_any_scale() -> None:
    from fedmodel.validation import delta_norm

    server = ModelWeights((np.zeros(2), np.array(3, np.int64), np.zeros(0), np.zeros(1)), (), ("a", "n", "e", "b"))

    def moved(a: list[float], b: float) -> ModelWeights:
        return ModelWeights((np.array(a), np.array(100, np.int64), np.zeros(0), np.array([b])), (), server.names)

    assert delta_norm(server, moved([3.0, 4.0], 0.0)) == 5.0  # the counter's change of 97 is left out
    assert delta_norm(server, moved([0.0, 0.0], -2.0)) == 2.0
    assert delta_norm(server, moved([3.0, 4.0], 10.0)) == pytest.approx(math.sqrt(125.0), rel=1e-15)  # rescaled sum
    assert delta_norm(server, moved([1.0, 0.0], 1e300)) == pytest.approx(1e300, rel=1e-15)  # no overflow
    assert delta_norm(server, moved([1e300, 1e300], 1e300)) == pytest.approx(math.sqrt(3) * 1e300, rel=1e-15)
    assert delta_norm(server, moved([0.0, 0.0], 0.0)) == 0.0
    assert delta_norm(server, moved([1.7e308, 0.0], -1.7e308)) == math.inf  # the change itself is beyond float64


def test_a_first_report_that_is_not_finite_is_named() -> None:
    from fedmodel.metrics import SumThenFinalize

    with pytest.raises(AggregationError, match=r"^metric 's': the sum is not finite \(inf\)$"):
        SumThenFinalize()([{"s": np.inf}])


def test_norm_clipping_with_an_empty_float_variable() -> None:
    server = ModelWeights((np.zeros(0, np.float32), np.zeros(2, np.float32)), (), ("e", "w"))
    update = ModelWeights((np.zeros(0, np.float32), np.array([3.0, 4.0], np.float32)), (), ("e", "w"))
    got = NormClipping(max_norm=10.0).aggregate(server, [(update, 2.0)])
    assert got.trainable[0].shape == (0,) and got.trainable[1].tolist() == [3.0, 4.0]


def test_bfloat16_metrics_are_summed_in_float64() -> None:
    from fedmodel.metrics import SumThenFinalize

    ml_dtypes = pytest.importorskip("ml_dtypes")  # as tests/reliability/test_robust.py: it comes with JAX and TF
    out = SumThenFinalize()([{"b": np.array(1.5, ml_dtypes.bfloat16)}, {"b": np.array(2.0, ml_dtypes.bfloat16)}])
    assert out == {"b": 3.5} and isinstance(out["b"], float)


def test_delta_norm_of_a_tiny_change_does_not_underflow() -> None:
    from fedmodel.validation import delta_norm

    assert delta_norm(_vec(0.0, dtype=np.float64), _vec(1e-200, dtype=np.float64)) == 1e-200


def test_coordinate_aggregators_label_each_rejection_with_the_client() -> None:
    for agg in (TrimmedMean(), CoordinateMedian()):
        state = agg.accumulate(agg.init(SERVER), _vec(1.0, 2.0), 1.0)
        with pytest.raises(AggregationError, match=r"^client 1: the weight must be finite and >= 0, got -1.0$"):
            agg.accumulate(state, _vec(1.0, 2.0), -1.0)
        with pytest.raises(AggregationError, match=r"^client 1: 'w' has 1 non-finite value\(s\) \(NaN or inf\)$"):
            agg.accumulate(state, _vec(np.nan, 2.0), 1.0)
        with pytest.raises(AggregationError, match=r"^nothing to aggregate: no client update$"):
            agg.finalize(agg.init(SERVER))


# --- the second mutation run (every mutant): aggregation and validation --------------------------------------


@pytest.mark.parametrize(("dtype", "first"), [(np.float32, 1.0), (np.float64, 2.0**-1000)])
def test_weighted_mean_of_weights_far_apart_is_exact(dtype: Any, first: float) -> None:
    """Coefficients kept below ``ScaledSum``'s limit but so many that their total overflows the scaled divisor
    (float32) or ``math.ldexp`` itself (float64): the mean takes ``ScaledSum.mean``'s last path, still exact."""
    limit = int(np.log2(np.finfo(dtype).max)) - 10  # each coefficient stays below 2**limit: no rescaling
    value = np.array([2.0**-100, -(2.0**-90)], dtype)  # tiny values: the running bound stays far below the limit
    server = ModelWeights((np.zeros(2, dtype),), (), ("w",))
    agg = WeightedMean()
    state = agg.accumulate(agg.init(server), ModelWeights((value,), (), ("w",)), first)  # sets the scale
    for _ in range(4200):  # coefficients of 2**(limit - 1): 4200 of them exceed the dtype's largest value
        agg.accumulate(state, ModelWeights((value,), (), ("w",)), first * 2.0**limit)
    with np.errstate(over="ignore"):
        assert not np.isfinite(dtype(math.ldexp(1.0, limit - 1) * 4201.0))  # the divisor is out of range
    got = agg.finalize(state).trainable[0]
    assert got.dtype == dtype
    np.testing.assert_allclose(got, value, rtol=1e-14)  # float32: exact; float64: within a few ulps
    if dtype == np.float32:
        assert got.tolist() == value.tolist()


def test_a_float64_weighted_mean_is_the_correctly_rounded_quotient() -> None:
    """``(1 * 1 + 2 * 2) / 3`` is 5/3 rounded once; multiplying by a rounded 2/3 would give 1.6666666666666665."""
    server = _vec(0.0, 0.0, 0.0, dtype=np.float64)
    got = WeightedMean().aggregate(
        [(server, 0.0), (_vec(1.0, 5.0, 7.0, dtype=np.float64), 1.0), (_vec(2.0, 0.0, 0.0, dtype=np.float64), 2.0)]
    )
    assert got.trainable[0].tolist() == [5 / 3, 5 / 3, 7 / 3]


def test_weighted_mean_refuses_a_total_weight_that_would_overflow() -> None:
    agg = WeightedMean()
    state = agg.accumulate(agg.init(SERVER), _vec(1.0, 2.0), 1e308)
    with pytest.raises(AggregationError, match=r"^client 1: the total weight would overflow \(1e\+308 \+ 1e\+308\)$"):
        agg.accumulate(state, _vec(1.0, 2.0), 1e308)


def test_weighted_mean_labels_each_client_by_its_position() -> None:
    agg = WeightedMean()
    state = agg.init(SERVER)
    agg.accumulate(state, _vec(1.0, 2.0), 1.0)
    with pytest.raises(AggregationError, match=r"^client 1: the weight must be finite and >= 0, got -1.0$"):
        agg.accumulate(state, _vec(1.0, 2.0), -1.0)
    agg.accumulate(state, _vec(3.0, 4.0), 3.0)
    with pytest.raises(AggregationError, match=r"^client 2: 'w' has shape \(3,\), expected \(2,\)$"):
        agg.accumulate(state, _vec(1.0, 2.0, 3.0), 1.0)
    assert agg.finalize(state).trainable[0].tolist() == [2.5, 3.5]


def test_weights_validated_against_another_template_are_validated_again() -> None:
    from fedmodel.validation import validate_update, validated_for

    checked = validate_update(_vec(0.0, 0.0, 0.0), _vec(1.0, 2.0, 3.0))
    assert validated_for(checked.template, checked) is checked  # its own template: taken as it is
    with pytest.raises(AggregationError, match=r"^client 4: 'w' has shape \(3,\), expected \(2,\)$"):
        validated_for(SERVER, checked, client="client 4")
    with pytest.raises(AggregationError, match=r"^client: 'w' has shape \(3,\), expected \(2,\)$"):
        validated_for(SERVER, checked)  # the default label


def test_validate_update_and_validate_weight_label_a_client_plainly_by_default() -> None:
    from fedmodel.validation import validate_update, validate_weight

    with pytest.raises(AggregationError, match=r"^client: 'w' has 1 non-finite value\(s\) \(NaN or inf\)$"):
        validate_update(SERVER, _vec(1.0, math.inf))
    with pytest.raises(AggregationError, match=r"^client: the weight must be finite and >= 0, got -2.0$"):
        validate_weight(-2.0)
    with pytest.raises(AggregationError, match=r"^client 3: the weight 10\*\*400 cannot be read as a float$"):
        validate_weight(_HugeReal(), client="client 3")


class _HugeReal(int):
    """An integer no float can hold: ``float()`` of it raises OverflowError."""

    def __new__(cls) -> _HugeReal:
        return super().__new__(cls, 10**400)

    def __repr__(self) -> str:
        return "10**400"


class _Hostile(ModelWeights):
    """Weights whose ``group`` attribute fails when read (``bad_names``: names that are not strings)."""

    def __init__(self, group: str, bad_names: bool = False) -> None:
        object.__setattr__(self, "_group", group)
        object.__setattr__(self, "_bad_names", bad_names)
        object.__setattr__(self, "_armed", False)
        super().__init__((np.zeros(2, np.float32),), (), ("w",))
        object.__setattr__(self, "_armed", True)

    def __getattribute__(self, name: str) -> Any:
        get = object.__getattribute__
        group, armed = get(self, "_group"), get(self, "_armed")
        if armed and get(self, "_bad_names") and name == f"{group}_names":
            return (7,)
        if armed and name == group and not get(self, "_bad_names"):
            raise RuntimeError("boom")
        return get(self, name)


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (_Hostile("trainable"), "client 3: cannot read its trainable weights (RuntimeError: boom)"),
        (_Hostile("non_trainable"), "client 3: cannot read its non_trainable weights (RuntimeError: boom)"),
        (_Hostile("trainable", bad_names=True), "client 3: trainable names do not match its 1 arrays"),
    ],
    ids=["trainable-unreadable", "non-trainable-unreadable", "a-name-not-a-string"],
)
def test_validate_update_names_the_client_and_the_group_it_cannot_read(update: ModelWeights, reason: str) -> None:
    from fedmodel.validation import validate_update

    with pytest.raises(AggregationError) as info:
        validate_update(SERVER, update, client="client 3")
    assert str(info.value) == reason


def test_validated_weights_carry_the_templates_names() -> None:
    from fedmodel.validation import validate_update

    server = ModelWeights((np.zeros(2, np.float32),), (np.zeros((), np.int64),), ("w",), ("steps",))
    update = ModelWeights((np.ones(2, np.float32),), (np.ones((), np.int64),))  # positional
    checked = validate_update(server, update)
    assert checked.trainable_names == ("w",) and checked.non_trainable_names == ("steps",)
    assert checked.max_abs == (2.0, 1.0) and checked.arrays[0] is update.arrays[0]


def test_a_value_exactly_at_the_value_limit_is_accepted() -> None:
    from fedmodel.validation import ReplyLimits, validate_update

    limits = ReplyLimits(max_value=2.0)
    assert validate_update(SERVER, _vec(2.0, 0.0), limits=limits).max_abs == (2.0,)
    assert validate_update(SERVER, _vec(2.0, -1.0), limits=limits).max_abs == (2.0,)  # the sum above: exact path
    with pytest.raises(AggregationError, match=r"^client: 'w' holds values up to 2 in magnitude, above the limit 2$"):
        validate_update(SERVER, _vec(2.0000002, 0.0), limits=limits)


def test_the_default_value_limit_of_a_float64_variable_is_float64s() -> None:
    from fedmodel.validation import ReplyLimits, validate_update

    server = _vec(0.0, 0.0, dtype=np.float64)
    checked = validate_update(server, _vec(1e20, -3e100, dtype=np.float64), limits=ReplyLimits())
    assert checked.max_abs == (3e100,)  # above float32's limit (about 1.8e19), far below float64's
    with pytest.raises(AggregationError, match=r"holds values up to 1e\+20 in magnitude, above the limit 1\.84e\+19"):
        validate_update(SERVER, _vec(1e20, 0.0, dtype=np.float32), limits=ReplyLimits())


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.zeros(0, np.int32), 0.0),
        (np.zeros((0, 3), np.uint8), 0.0),
        (np.array([[-7, 3], [2, 5]], np.int16), 7.0),
        (np.array([5, -128], np.int8), 128.0),  # |-128| is not an int8: numpy's abs would wrap to -128
        (np.array([[False, True]]), 1.0),
        (np.array([[3.0, -4.0]], np.float32), 7.0),  # the sum of |value| bounds every value
        (np.array([[0.5, -2.0], [1.0, 0.25]], np.float16), 2.0),  # float16 takes the exact path
    ],
)
def test_max_abs_of_empty_integer_boolean_and_two_dimensional_arrays(array: np.ndarray, expected: float) -> None:
    from fedmodel.validation import max_abs

    assert max_abs(array) == expected


# --- the second mutation run: the messages of a checkpoint that is refused -------------------------------------

_W_ENTRY = {"trainable/w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
_W_BODY = np.array([1.0, 2.0], "<f4").tobytes()


@pytest.mark.parametrize(
    ("entries", "header", "message"),
    [
        (_W_ENTRY, '{"format": 1', "the fedmodel header is not valid JSON (corrupted?): "),
        (
            _W_ENTRY,
            checkpoint_header().replace('"round": 1', '"round": NaN'),
            "the fedmodel header: NaN is not a number",
        ),
        (
            _W_ENTRY,
            checkpoint_header(non_trainable=None),
            "the header has no valid count and names for 'non_trainable'",
        ),
        (
            _W_ENTRY,
            checkpoint_header(trainable={"count": 2, "names": ["w"]}),
            "the header's names for 'trainable' are not 2 strings",
        ),
        (
            {**_W_ENTRY, "extra/#0": {"dtype": "U8", "shape": [0], "data_offsets": [8, 8]}},
            checkpoint_header(extra={"count": 1, "names": None}),
            "the extra arrays need distinct names, got None",
        ),
        (
            _W_ENTRY,
            checkpoint_header(trainable={"count": 2, "names": ["w", "v"]}),
            "tensors missing ['trainable/v'], unexpected []",
        ),
        (_W_ENTRY, checkpoint_header(metadata=[1]), "metadata must be a mapping, got list"),
    ],
    ids=["not-json", "nan", "group-not-an-object", "names-not-count-strings", "extra-unnamed", "missing", "metadata"],
)
def test_a_refused_checkpoint_names_the_file_and_the_field(
    tmp_path: Path, forge: Any, entries: dict[str, Any], header: str, message: str
) -> None:
    path = tmp_path / "forged.safetensors"
    path.write_bytes(forge(entries, header, _W_BODY))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    quoted = f"{str(path)!r}: " if message != "metadata must be a mapping, got list" else f"{path}: "
    assert str(info.value).startswith(quoted + message), str(info.value)


def test_saving_what_cannot_be_stored_names_the_file_or_the_key(tmp_path: Path) -> None:
    weights = _vec(1.0, 2.0)
    path = tmp_path / "c.safetensors"
    with pytest.raises(CheckpointError, match=r"^extra keys must be strings$"):
        save_checkpoint(path, weights, extra={1: np.zeros(1)})  # type: ignore[dict-item]
    with pytest.raises(CheckpointError, match=r"^'extra/names': dtype <U1 cannot be stored \(supported: "):
        save_checkpoint(path, weights, extra={"names": np.array(["a", "b"])})
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, weights, metadata={"round": math.nan})
    assert str(info.value) == f"{path}: metadata 'round': nan is not a finite number"
    assert not path.exists()


# --- the second mutation run: aggregator options, complex variables, robust statistics, metric structures ----


def test_aggregator_options_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"^integer_rule must be one of \('round', 'max', 'first'\), got 'mean'$"):
        WeightedMean(integer_rule="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^accumulator must be 'auto' or 'float64', got 'float16'$"):
        WeightedMean(accumulator="float16")  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [WeightedMean, TrimmedMean, CoordinateMedian, lambda: NormClipping(max_norm=1.0)])
def test_a_complex_variable_is_refused_not_averaged_without_its_imaginary_part(make: Any) -> None:
    """The aggregators average real values: a complex template is an error, never a silent loss of ``.imag``."""
    server = ModelWeights((np.zeros(2, np.float32), np.zeros(2, np.complex64)), (), ("w", "z"))
    with pytest.raises(AggregationError, match=r"^variable 'z' is complex64: the aggregators take real values only$"):
        make().init(server)
    positional = ModelWeights((np.zeros(2, np.complex128),), ())
    with pytest.raises(AggregationError, match=r"^variable '#0' is complex128"):
        make().init(positional)


def test_coordinate_statistics_of_float32_near_its_largest_value_are_computed_in_float64() -> None:
    big = float(np.finfo(np.float32).max)
    server = _vec(0.0, 0.0)
    updates = [(_vec(big, -big), 1.0), (_vec(big, -big), 1.0)]
    for agg in (CoordinateMedian(), TrimmedMean(beta=0.0)):
        state = agg.init(server)
        for update, weight in updates:
            agg.accumulate(state, update, weight)
        got = agg.finalize(state).trainable[0]  # the float32 sum of the two would be inf
        assert got.dtype == np.float32 and got.tolist() == [big, -big]


def test_a_metric_whose_keys_change_is_named_with_the_difference() -> None:
    from fedmodel.metrics import SumThenFinalize

    with pytest.raises(
        AggregationError, match=r"^metric 's' has another structure than earlier reports: dictionary key mismatch"
    ):
        SumThenFinalize()([{"s": {"a": 1.0}}, {"s": {"b": 1.0}}])


def test_a_float32_mean_next_to_the_largest_value_stays_finite() -> None:
    """Found by the aggregate-bound property test: the division rounded the mean up past float32's largest value."""
    template = ModelWeights((np.zeros(3, np.float32),), ())
    clients = [([3.1663161698958915e38, 0, 0], 2147483584.0), ([3.4028234663852886e38, 0, 0], 6.955347133805363e16)]
    largest = np.finfo(np.float32).max
    for sign in (1, -1):  # the lowest value too
        updates = [(template.with_arrays([np.array(values, np.float32) * sign]), w) for values, w in clients]
        mean = WeightedMean().aggregate(updates).arrays[0]
        assert mean.dtype == np.float32
        np.testing.assert_array_equal(mean, np.array([sign * largest, 0, 0], np.float32))


def test_max_abs_of_float32_and_float64_is_a_sum_that_no_value_exceeds_and_any_nonfinite_value_spoils() -> None:
    from fedmodel.validation import max_abs

    rng = np.random.default_rng(20)
    for dtype in (np.float32, np.float64):
        for size in (1, 5, 17, 1000, 70_001, 400_003):  # scalar tails, vector bodies, shares of BLAS threads
            x = rng.standard_normal(size).astype(dtype) * 10.0 ** rng.integers(-30, 30)
            bound = max_abs(x)
            assert float(np.max(np.abs(x))) <= bound <= float(np.sum(np.abs(x), dtype=np.float64)) * (1 + 1e-5)
            for where in {0, size // 3, size // 2, size - 1}:
                for bad in (np.nan, np.inf, -np.inf):
                    y = x.copy()
                    y[where] = bad
                    assert math.isnan(max_abs(y)), (dtype, size, where, bad)


def test_the_blas_asum_under_max_abs_propagates_nan_and_inf_here() -> None:
    """Fails when the BLAS under scipy changes to a kernel that skips a NaN or inf: validation falls back to
    the exact (slower) path then, and the aggregation benchmark's figures are no longer this BLAS's."""
    from fedmodel import validation

    for dtype in (np.float32, np.float64):
        assert validation._blas_asum(np.dtype(dtype)) is not None


def test_an_asum_that_skips_nan_is_refused_and_the_exact_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy.linalg import blas

    from fedmodel import validation

    def skips_nan(x: np.ndarray) -> float:
        return float(np.nansum(np.abs(x)))

    def skips_inf_in_long_arrays(x: np.ndarray) -> float:
        body = np.abs(x[: max(1, x.size // 2)])
        return float(body.sum()) if x.size > 100 else float(np.abs(x).sum())

    def skips_the_last_value(x: np.ndarray) -> float:
        return float(np.abs(x[:-1]).sum()) if x.size > 1 else float(np.abs(x).sum())

    def skips_inf(x: np.ndarray) -> float:
        return float(np.where(np.isinf(x), 0.0, np.abs(x)).sum())

    def skips_the_last_value_of_long_arrays(x: np.ndarray) -> float:
        return float(np.abs(x[:-1]).sum()) if x.size > 100 else float(np.abs(x).sum())

    def skips_one_threads_share(x: np.ndarray) -> float:  # the second quarter of a long array
        n = x.size
        return float(np.abs(x[: n // 4]).sum() + np.abs(x[n // 2 :]).sum()) if n > 100 else float(np.abs(x).sum())

    wrongs = (
        skips_nan,
        skips_inf,
        skips_inf_in_long_arrays,
        skips_the_last_value,
        skips_the_last_value_of_long_arrays,
        skips_one_threads_share,
    )
    for wrong in wrongs:
        assert not validation._propagates_nonfinite(wrong, np.dtype(np.float32)), wrong.__name__
    assert validation._propagates_nonfinite(blas.sasum, np.dtype(np.float32))
    assert validation._propagates_nonfinite(blas.dasum, np.dtype(np.float64))
    monkeypatch.setattr(validation, "_ASUM", {})  # the probe runs again, on a BLAS that skips NaN
    monkeypatch.setattr(blas, "sasum", skips_nan)
    assert validation._blas_asum(np.dtype(np.float32)) is None
    assert validation._blas_asum(np.dtype(np.float64)) is blas.dasum
    assert validation.max_abs(np.array([3.0, -4.0], np.float32)) == 4.0  # the exact largest value
    assert math.isnan(validation.max_abs(np.array([3.0, np.nan], np.float32)))


def test_max_abs_sums_a_long_array_in_chunks_blas_can_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedmodel import validation

    monkeypatch.setattr(validation, "_BLAS_CHUNK", 3)
    assert validation.max_abs(np.array([1.0, -2.0, 3.0, -4.0, 5.0, 100.0, 7.0])) == 122.0
    x = np.ones(8, np.float32)
    x[7] = np.nan  # in the last chunk only
    assert math.isnan(validation.max_abs(x))


@settings(max_examples=500, deadline=None)
@given(
    st.floats(-1100.0, 1100.0) | st.just(-math.inf),
    st.floats(-1100.0, 1100.0) | st.just(-math.inf),
)
def test_the_running_bound_adds_powers_of_two_as_numpy_logaddexp2_does(a: float, b: float) -> None:
    from fedmodel.aggregation import _logaddexp2

    assert _logaddexp2(a, b) == float(np.logaddexp2(a, b)) == _logaddexp2(b, a)
