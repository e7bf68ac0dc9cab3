"""Property tests with the suite's hypothesis strategies: batches from random specs, random weights."""

from __future__ import annotations

from typing import Any

import numpy as np
from fedmodel_conformance import Case, run_checks
from fedmodel_conformance import strategies as fst
from fedmodel_conformance.broken import NUM_CLASSES, NUM_FEATURES, reference_case
from fedmodel_conformance.checks_forward import _violations
from fedmodel_conformance.checks_weights import _bitwise_diff
from hypothesis import given, settings
from hypothesis import strategies as st

import fedmodel
import fedmodel.reference as fedmodel_reference

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


class _SpecOnly:
    def __init__(self, spec: Any) -> None:
        self.input_spec = spec


@SETTINGS
@given(fst.input_specs().flatmap(fst.batches))
def test_a_batch_drawn_from_any_input_spec_matches_it(spec_size_batch: tuple[Any, int, Any]) -> None:
    spec, size, batch = spec_size_batch
    x, y = fedmodel.check_batch(spec, batch)
    leaves, _ = fedmodel._tree.flatten((x, y))
    assert all(np.asarray(leaf).shape[0] == size for leaf in leaves)


@SETTINGS
@given(fst.input_specs().flatmap(fst.batches))
def test_every_violation_the_suite_builds_is_a_spec_error(spec_size_batch: tuple[Any, int, Any]) -> None:
    spec, _, batch = spec_size_batch
    violations = _violations(_SpecOnly(spec), batch)
    assert len(violations) >= 4
    for _what, bad in violations:
        assert not fedmodel.is_compatible({"x": spec_x(spec), "y": spec_y(spec)}, _as_mapping(bad))


def spec_x(spec: Any) -> Any:
    return fedmodel.split_batch(spec)[0]


def spec_y(spec: Any) -> Any:
    return fedmodel.split_batch(spec)[1]


def _as_mapping(batch: Any) -> Any:
    try:
        x, y = fedmodel.split_batch(batch)
    except fedmodel.SpecError:
        return batch  # a batch missing a key: incompatible by structure
    return {"x": x, "y": y}


@SETTINGS
@given(st.data())
def test_random_weights_round_trip_bit_identically_through_the_reference(data: st.DataObject) -> None:
    model = reference_case().make_model()
    weights = data.draw(fst.model_weights(model, scale=10.0))
    fedmodel.assign_weights(model, weights)
    assert _bitwise_diff(weights, fedmodel.get_weights(model)) is None


@SETTINGS
@given(st.integers(1, 16), st.integers(0, 2**32 - 1))
def test_the_reference_forward_pass_takes_any_batch_size(size: int, seed: int) -> None:
    model = reference_case().make_model()
    batch = fst.random_batch(model.input_spec, size, np.random.default_rng(seed), num_classes=NUM_CLASSES)
    out = model.forward_pass(batch, training=False)
    assert out.num_examples == size
    assert np.asarray(out.predictions).shape == (size, NUM_CLASSES)
    assert np.asarray(batch[0]).shape == (size, NUM_FEATURES)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.integers(1, 9), st.integers(2, 6), st.integers(0, 1000))
def test_the_reference_passes_every_check_for_any_small_shape(features: int, classes: int, seed: int) -> None:
    case = Case(
        name=f"reference {features}x{classes}",
        make_model=lambda: fedmodel_reference.SoftmaxRegression(features, classes, seed=seed),
        make_batch=lambda size, rng: fst.random_batch(
            (fedmodel.TensorSpec((None, features), "float32"), fedmodel.TensorSpec((None,), "int64")),
            size,
            rng,
            num_classes=classes,
        ),
    )
    report = run_checks(case)
    assert report.ok, report.format()
