"""The suite's self-proof: a correct reference case and deliberately broken cases for every check.

``reference_case()`` passes every check; ``BROKEN[name]()`` fails the check ``name`` and no other, and
so does every factory of ``VARIANTS[name]`` (other bugs of the same clause); ``CORRECT`` holds correct
models unlike the reference (labels shaped ``(n, 1)``, declared statistics, a training-only
augmentation) that pass every check. The project's tests assert all three, and that every registered
check has its broken case.

>>> from fedmodel_conformance import run_checks
>>> run_checks(BROKEN["report_is_pure"]()).failed_names()
{'report_is_pure'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import fedmodel
from fedmodel.reference import NumpyBackend, SoftmaxRegression
from fedmodel_conformance._core import Case
from fedmodel_conformance.broken import _backends as B
from fedmodel_conformance.broken import _errors as E
from fedmodel_conformance.broken import _models as M
from fedmodel_conformance.broken import _reports as R
from fedmodel_conformance.broken import _training as T

__all__ = ["BROKEN", "CORRECT", "NUM_CLASSES", "NUM_FEATURES", "VARIANTS", "make_batch", "reference_case"]

NUM_FEATURES, NUM_CLASSES = 6, 4


def make_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: standard-normal float32 features and uniform int64 labels."""
    x = rng.standard_normal((size, NUM_FEATURES)).astype(np.float32)
    return x, rng.integers(0, NUM_CLASSES, size).astype(np.int64)


def column_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_batch` with labels shaped ``(size, 1)``."""
    x, y = make_batch(size, rng)
    return x, y.reshape(size, 1)


def regression_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: standard-normal float32 features and a noisy linear float32 target."""
    x = rng.standard_normal((size, NUM_FEATURES)).astype(np.float32)
    return x, (x.sum(axis=1) + 0.1 * rng.standard_normal(size)).astype(np.float32)


def _case(name: str, model_type: type[SoftmaxRegression], backend: NumpyBackend | None = None, **kw: Any) -> Case:
    return Case(
        name=name,
        make_model=lambda: model_type(NUM_FEATURES, NUM_CLASSES, seed=0),
        make_batch=kw.pop("batches", make_batch),
        backend=backend,
        **kw,
    )


def reference_case() -> Case:
    """The numpy reference model (``fedmodel.reference.SoftmaxRegression``): passes every check."""
    return _case("numpy-softmax-regression", SoftmaxRegression)


def _model(check: str, model_type: type[SoftmaxRegression], **kw: Any) -> Callable[[], Case]:
    def factory() -> Case:
        return _case(f"broken for {check}: {model_type.__name__}", model_type, **kw)

    factory.__doc__ = f"{model_type.__name__}: {model_type.__doc__}"
    return factory


def _backend(
    check: str, backend: NumpyBackend, model_type: type[SoftmaxRegression] = SoftmaxRegression, **kw: Any
) -> Callable[[], Case]:
    def factory() -> Case:
        return _case(f"broken for {check}: {type(backend).__name__}", model_type, backend, **kw)

    factory.__doc__ = f"{type(backend).__name__}: {type(backend).__doc__}"
    return factory


def _regression_with_accuracy() -> Case:
    return Case(
        name="broken for standard_metrics_sane: LinearRegressionWithAccuracy",
        make_model=lambda: R.LinearRegressionWithAccuracy(NUM_FEATURES),
        make_batch=regression_batch,
    )


_STATISTICS = {"training_changes_non_trainable": True}


def _nan_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`make_batch` with a NaN feature in the last example (a batch the model's computation refuses)."""
    return E.nan_batch(size, rng, NUM_FEATURES, NUM_CLASSES)


BROKEN: dict[str, Callable[[], Case]] = {
    "protocol": _model("protocol", M.PlainFunctionAggregator),
    "groups_disjoint": _model("groups_disjoint", M.KernelAlsoNonTrainable),
    "no_duplicate_variables": _model("no_duplicate_variables", M.ScaleListedTwice),
    "unique_names": _backend("unique_names", B.TypeNamedBackend()),
    "stable_order": _model("stable_order", M.ResetReordersMetrics),
    "created_in_init": _model("created_in_init", M.LazyBatchCounter),
    "local_variables_not_in_weights": _model("local_variables_not_in_weights", M.CountIsAlsoWeight),
    "instances_independent": _model("instances_independent", M.SharedScale),
    "input_spec_accepts_generated_batch": _model("input_spec_accepts_generated_batch", M.PairOnly),
    "input_spec_rejects_incompatible_batch": _model("input_spec_rejects_incompatible_batch", M.SpecNotEnforced),
    "forward_keeps_trainable": _model("forward_keeps_trainable", M.NudgingForward),
    "eval_moves_no_weight": _model("eval_moves_no_weight", M.EvalUpdatesStatistics),
    "loss_is_finite_scalar": _model("loss_is_finite_scalar", M.NaiveSoftmaxLoss),
    "loss_is_example_mean": _model("loss_is_example_mean", R.SumLoss),
    "num_examples_is_batch_size": _model("num_examples_is_batch_size", M.NumExamplesIsLenOfBatch),
    "predictions_have_batch_dim": _model("predictions_have_batch_dim", M.SqueezedPredictions),
    "predict_changes_nothing": _model("predict_changes_nothing", M.PredictCountsMetrics),
    "backend_to_native": _backend("backend_to_native", B.CastingBackend()),
    "eval_is_deterministic": _model("eval_is_deterministic", M.DropoutInEval),
    "predict_matches_forward": _model("predict_matches_forward", R.PredictsProbabilities),
    "eval_independent_of_history": _model("eval_independent_of_history", R.ModeStuckAfterTraining),
    "metrics_count_every_batch": _model("metrics_count_every_batch", M.MetricsKeepLastBatch),
    "report_is_pure": _model("report_is_pure", M.ReportResets),
    "reset_metrics_restores_initial": _model("reset_metrics_restores_initial", M.ResetForgetsCount),
    "aggregation_matches_union": _model("aggregation_matches_union", B.UnweightedMeanModel),
    "standard_metrics_sane": _model("standard_metrics_sane", R.AccuracyCountsExamples, batches=column_batch),
    "aggregator_is_streaming": _model("aggregator_is_streaming", R.AccumulatingAggregatorModel),
    "weights_round_trip": _backend("weights_round_trip", B.AliasingBackend()),
    "perturbed_weights_change_predictions": _model("perturbed_weights_change_predictions", M.PredictCachesWeights),
    "bad_assign_changes_nothing": _backend("bad_assign_changes_nothing", B.NonAtomicBackend()),
    "train_step_lowers_loss": _backend(
        "train_step_lowers_loss",
        B.MomentumSignBackend(),
        optimizer=fedmodel.SGD(learning_rate=0.1, momentum=0.9),
        stochastic_training=True,  # so only this check, of those that train with momentum, applies
    ),
    "training_changes_non_trainable_as_declared": _backend(
        "training_changes_non_trainable_as_declared", B.DecaysFrozenBackend()
    ),
    "train_step_matches_forward_pass": _backend("train_step_matches_forward_pass", T.CountsTwiceBackend()),
    "sgd_steps_are_independent": _backend("sgd_steps_are_independent", T.LeftoverGradientBackend()),
    "optimizers_share_no_state": _backend("optimizers_share_no_state", T.StickyOptimizerBackend()),
    "failed_call_changes_nothing": _model("failed_call_changes_nothing", E.CountsBeforeCheckingLabels),
    "gradients_match_finite_differences": _model("gradients_match_finite_differences", M.DoubledGradient),
    "optimizer_update_rules": _backend("optimizer_update_rules", T.NesterovIgnored()),
    "fedprox_anchor": _backend("fedprox_anchor", T.AnchorAtBuildBackend(), T.RemembersBuiltWeights),
}
"""check name -> a factory of the case made to fail exactly that check."""

VARIANTS: dict[str, tuple[Callable[[], Case], ...]] = {
    "weights_round_trip": (_backend("weights_round_trip", B.StaleViewBackend()),),
    "stable_order": (_model("stable_order", M.NewHandlesPerRead),),
    "reset_metrics_restores_initial": (
        _model("reset_metrics_restores_initial", M.ResetForgetsCorrect),
        _model("reset_metrics_restores_initial", M.ResetAlsoZeroesBias),
    ),
    "report_is_pure": (_model("report_is_pure", M.ReportsLiveArrays),),
    "standard_metrics_sane": (_regression_with_accuracy,),
    "aggregator_is_streaming": (_model("aggregator_is_streaming", R.MutatingAggregatorModel),),
    "training_changes_non_trainable_as_declared": (
        _model("training_changes_non_trainable_as_declared", R.StatisticsFrozenInTraining, **_STATISTICS),
    ),
    "train_step_matches_forward_pass": (
        _backend("train_step_matches_forward_pass", T.SilentTrainStepBackend()),
        _backend("train_step_matches_forward_pass", T.PostStepLossBackend()),
    ),
    "optimizer_update_rules": (
        _backend("optimizer_update_rules", T.AdamWithoutBiasCorrection()),
        _backend("optimizer_update_rules", T.DecoupledWeightDecay()),
    ),
    "fedprox_anchor": (_backend("fedprox_anchor", T.LiveAnchorBackend()),),
    "gradients_match_finite_differences": (_model("gradients_match_finite_differences", M.SkewedGradient),),
    "failed_call_changes_nothing": (
        _model("failed_call_changes_nothing", E.StatisticsMoveBeforeRaising, **_STATISTICS),
        _model("failed_call_changes_nothing", E.AcceptsOutOfRangeLabels),
        _backend("failed_call_changes_nothing", E.StepCountedBeforeGradients(), optimizer=fedmodel.Adam(0.01)),
        _model("failed_call_changes_nothing", E.CountsThenRejectsNonFinite, failing_batch=_nan_batch),
    ),
}
"""check name -> more factories of cases made to fail exactly that check (other bugs of the same clause)."""


def _correct(name: str, model_type: type[SoftmaxRegression], **kw: Any) -> Callable[[], Case]:
    def factory() -> Case:
        return _case(name, model_type, **kw)

    factory.__doc__ = f"{model_type.__name__}: {model_type.__doc__}"
    return factory


CORRECT: dict[str, Callable[[], Case]] = {
    "column-labels": _correct("numpy-column-labels", R.ColumnLabels, batches=column_batch),
    "running-mean": _correct("numpy-running-mean", R.RunningMean, **_STATISTICS),
    "clips-in-training": _correct("numpy-clips-in-training", R.ClipsInTraining),
    "rejects-non-finite": _correct("numpy-rejects-non-finite", E.RejectsNonFinite, failing_batch=_nan_batch),
}
"""Correct models that differ from the reference where a broken one needs a correct twin."""
