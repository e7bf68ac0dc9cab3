"""The wire format of fedmodel over Flower: weights as Flower's own records, reports as metric records."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import numpy as np
import pytest

flwr = pytest.importorskip("flwr")
ml_dtypes = pytest.importorskip("ml_dtypes")

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict  # noqa: E402

from fedmodel import ModelWeights  # noqa: E402
from fedmodel.integrations import _flower_client, _flower_server, _flower_wire, flower  # noqa: E402
from fedmodel.integrations.flower import (  # noqa: E402
    MessageError,
    decode_weights,
    encode_weights,
    flatten_report,
    read_weights,
    unflatten_report,
    write_weights,
)

Wire = Callable[[RecordDict], RecordDict]


def bn_like_weights() -> ModelWeights:
    """A BatchNorm-style model: float32 trainables, float running stats and an int64 step counter."""
    return ModelWeights(
        (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.5, 2.0], np.float64)),
        (np.array([0.25, 4.0], np.float32), np.array(7, np.int64), np.array([1, 0, 1], np.uint8)),
        ("fc.weight", "fc.bias"),
        ("bn.running_var", "bn.num_batches_tracked", "mask"),
    )


def test_weights_round_trip_through_flower_serialization_keeps_names_groups_shapes_and_dtypes(wire: Wire) -> None:
    weights = bn_like_weights()
    content = RecordDict()
    write_weights(content, weights)
    back = read_weights(wire(content))
    assert back.trainable_names == weights.trainable_names
    assert back.non_trainable_names == weights.non_trainable_names
    for want, got in zip(weights.arrays, back.arrays, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert back.non_trainable[1].dtype == np.int64 and int(back.non_trainable[1]) == 7


def test_array_record_is_keyed_by_variable_name_and_readable_by_any_flower_code() -> None:
    arrays, _ = encode_weights(bn_like_weights())
    assert list(arrays) == ["fc.weight", "fc.bias", "bn.running_var", "bn.num_batches_tracked", "mask"]
    assert arrays["bn.num_batches_tracked"].numpy().dtype == np.int64
    np.testing.assert_array_equal(arrays["fc.weight"].numpy(), np.arange(6, dtype=np.float32).reshape(2, 3))


def test_positional_weights_round_trip_without_names() -> None:
    weights = ModelWeights((np.ones(2, np.float32),), (np.zeros(1, np.int64),))
    back = decode_weights(*encode_weights(weights))
    assert back.names is None
    np.testing.assert_array_equal(back.non_trainable[0], np.zeros(1, np.int64))


def test_flower_npy_encoding_turns_bfloat16_into_opaque_bytes() -> None:
    """Why fedmodel widens bfloat16: Flower's own Array says "bfloat16" but gives back void bytes."""
    raw = Array(np.array([1.5, -2.0], ml_dtypes.bfloat16))
    assert raw.dtype == "bfloat16"
    assert raw.numpy().dtype.kind == "V"
    with pytest.raises(MessageError, match="cannot carry bfloat16"):
        decode_weights(ArrayRecord({"w": raw}), encode_weights(ModelWeights((np.zeros(2, np.float32),), (), ("w",)))[1])


def test_bfloat16_travels_as_float32_with_its_dtype_recorded_and_comes_back_exact(wire: Wire) -> None:
    values = np.array([[1.5, -2.0, 3.140625], [np.inf, -0.0, 1e-3]], ml_dtypes.bfloat16)
    weights = ModelWeights((values,), (np.array(3, np.int64),), ("w",), ("steps",))
    content = RecordDict()
    write_weights(content, weights)
    assert content.array_records["arrays"]["w"].dtype == "float32"
    assert content.config_records["fedmodel.weights"]["cast-names"] == ["w"]
    assert content.config_records["fedmodel.weights"]["cast-dtypes"] == ["bfloat16"]
    back = read_weights(wire(content))
    assert back.trainable[0].dtype == values.dtype
    assert back.trainable[0].tobytes() == values.tobytes()  # bit for bit, -0.0 included


def test_widened_values_that_bfloat16_cannot_hold_are_rejected() -> None:
    arrays, meta = encode_weights(ModelWeights((np.ones(2, ml_dtypes.bfloat16),), (), ("w",)))
    arrays["w"] = Array(np.array([1.0, 1.0 + 2**-12], np.float32))  # between two bfloat16 values
    with pytest.raises(MessageError, match="not exactly representable in bfloat16"):
        decode_weights(arrays, meta)


def test_a_dtype_neither_npy_nor_widening_can_carry_is_refused_before_sending() -> None:
    with pytest.raises(MessageError, match="int4 cannot travel"):
        encode_weights(ModelWeights((np.zeros(4, ml_dtypes.int4),), (), ("q",)))


def test_duplicate_names_cannot_become_array_record_keys() -> None:
    with pytest.raises(MessageError, match="unique"):
        encode_weights(ModelWeights((np.zeros(1), np.zeros(1)), (), ("w", "w")))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a, m: a.pop("fc.bias"), r"missing \['fc.bias'\]"),
        (lambda a, m: a.__setitem__("extra", Array(np.zeros(1))), r"unexpected \['extra'\]"),
        (lambda a, m: a.__setitem__("fc.bias", Array("float64", (3,), "numpy.ndarray", b"junk")), "cannot be decoded"),
        (lambda a, m: a.__setitem__("fc.bias", Array("float64", (4,), "numpy.ndarray", a["fc.bias"].data)), "declared"),
        (lambda a, m: m.__setitem__("format", "other/9"), "format"),
        (lambda a, m: m.__setitem__("trainable", "fc.weight"), "list of strings"),
        (lambda a, m: m.__setitem__("cast-names", ["fc.bias"]), "inconsistent cast"),
    ],
    ids=["missing", "extra", "corrupt-bytes", "lying-shape", "format", "names-not-list", "cast-mismatch"],
)
def test_malformed_weight_records_are_rejected_with_the_name(mutate, match) -> None:  # type: ignore[no-untyped-def]
    arrays, meta = encode_weights(bn_like_weights())
    mutate(arrays, meta)
    with pytest.raises(MessageError, match=match):
        decode_weights(arrays, meta)


def test_content_without_weight_records_is_rejected_listing_what_it_has() -> None:
    with pytest.raises(MessageError, match=r"found records \['config'\]"):
        read_weights(RecordDict({"config": ConfigRecord({"server-round": 1})}))


def nested_report() -> dict[str, object]:
    return {
        "loss": (np.float64(12.5), np.int64(10)),
        "per_class": {"correct": np.array([3, 0, 4], np.int64), "total": np.array([4, 1, 5], np.int64)},
        "confusion": np.arange(4, dtype=np.float32).reshape(2, 2),
        "num_examples": np.int64(10),
        "seen": np.bool_(True),
    }


def test_report_flattens_to_metric_record_entries_by_tree_path() -> None:
    flat = flatten_report(nested_report())
    assert flat == {
        "report/loss/0": 12.5,
        "report/loss/1": 10,
        "report/per_class/correct": [3, 0, 4],
        "report/per_class/total": [4, 1, 5],
        "report/confusion": [0.0, 1.0, 2.0, 3.0],
        "report/num_examples": 10,
        "report/seen": 1,
    }
    MetricRecord(flat)  # every value is one Flower accepts


def test_report_round_trips_through_flower_against_a_template(wire: Wire) -> None:
    report = nested_report()
    content = RecordDict({"metrics": MetricRecord({"num-examples": 10, **flatten_report(report)})})
    back = unflatten_report(wire(content).metric_records["metrics"], report)
    assert back["loss"][0] == 12.5 and back["loss"][1] == 10 and back["loss"][1].dtype == np.int64
    np.testing.assert_array_equal(back["per_class"]["correct"], [3, 0, 4])
    assert back["confusion"].shape == (2, 2) and back["confusion"].dtype == np.float64
    np.testing.assert_array_equal(back["confusion"], report["confusion"])
    assert int(back["seen"]) == 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"report/loss/1": 10.5}, "expected integers"),
        ({"report/per_class/total": [4, 1]}, "expected 3 value"),
        ({"report/num_examples": [10]}, "expected 1 value"),
        ({"report/typo": 1}, r"unexpected \['report/typo'\]"),
        ({"report/confusion": ["a"]}, "expected numbers"),
    ],
    ids=["float-for-int", "short-list", "list-for-scalar", "unexpected-key", "not-a-number"],
)
def test_unflatten_rejects_a_report_that_does_not_fit_the_template(change: dict[str, object], match: str) -> None:
    flat = {**flatten_report(nested_report()), **change}
    with pytest.raises(MessageError, match=match):
        unflatten_report(flat, nested_report())


def test_unflatten_names_the_missing_entries() -> None:
    flat = flatten_report(nested_report())
    del flat["report/loss/0"]
    with pytest.raises(MessageError, match=r"missing \['report/loss/0'\]"):
        unflatten_report(flat, nested_report())


@pytest.mark.parametrize("module", [flower, _flower_wire, _flower_client, _flower_server])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)  # type: ignore[arg-type]
    assert result.failed == 0
