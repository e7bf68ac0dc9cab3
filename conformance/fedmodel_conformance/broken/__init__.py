"""The suite's self-proof: a correct reference case and one deliberately broken case per check.

``reference_case()`` passes every check; ``BROKEN[name]()`` fails the check ``name`` and no other
(the project's tests assert both, and that every registered check has its broken case).

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
from fedmodel_conformance.broken import _models as M

__all__ = ["BROKEN", "NUM_CLASSES", "NUM_FEATURES", "make_batch", "reference_case"]

NUM_FEATURES, NUM_CLASSES = 6, 4


def make_batch(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: standard-normal float32 features and uniform int64 labels."""
    x = rng.standard_normal((size, NUM_FEATURES)).astype(np.float32)
    return x, rng.integers(0, NUM_CLASSES, size).astype(np.int64)


def _case(name: str, model_type: type[SoftmaxRegression], backend: NumpyBackend | None = None, **kw: Any) -> Case:
    return Case(
        name=name,
        make_model=lambda: model_type(NUM_FEATURES, NUM_CLASSES, seed=0),
        make_batch=make_batch,
        backend=backend,
        **kw,
    )


def reference_case() -> Case:
    """The numpy reference model (``fedmodel.reference.SoftmaxRegression``): passes every check."""
    return _case("numpy-softmax-regression", SoftmaxRegression)


def _model(check: str, model_type: type[SoftmaxRegression]) -> Callable[[], Case]:
    def factory() -> Case:
        return _case(f"broken for {check}: {model_type.__name__}", model_type)

    factory.__doc__ = f"{model_type.__name__}: {model_type.__doc__}"
    return factory


def _backend(check: str, backend: NumpyBackend, **kw: Any) -> Callable[[], Case]:
    def factory() -> Case:
        return _case(f"broken for {check}: {type(backend).__name__}", SoftmaxRegression, backend, **kw)

    factory.__doc__ = f"{type(backend).__name__}: {type(backend).__doc__}"
    return factory


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
    "num_examples_is_batch_size": _model("num_examples_is_batch_size", M.NumExamplesIsLenOfBatch),
    "predictions_have_batch_dim": _model("predictions_have_batch_dim", M.SqueezedPredictions),
    "eval_is_deterministic": _model("eval_is_deterministic", M.DropoutInEval),
    "predict_changes_nothing": _model("predict_changes_nothing", M.PredictCountsMetrics),
    "backend_to_native": _backend("backend_to_native", B.CastingBackend()),
    "metrics_count_every_batch": _model("metrics_count_every_batch", M.MetricsKeepLastBatch),
    "report_is_pure": _model("report_is_pure", M.ReportResets),
    "reset_metrics_restores_initial": _model("reset_metrics_restores_initial", M.ResetForgetsCount),
    "aggregation_matches_union": _model("aggregation_matches_union", B.UnweightedMeanModel),
    "weights_round_trip": _backend("weights_round_trip", B.AliasingBackend()),
    "perturbed_weights_change_predictions": _model("perturbed_weights_change_predictions", M.PredictCachesWeights),
    "bad_assign_changes_nothing": _backend("bad_assign_changes_nothing", B.NonAtomicBackend()),
    "train_step_lowers_loss": _backend(
        "train_step_lowers_loss", B.MomentumSignBackend(), optimizer=fedmodel.SGD(learning_rate=0.1, momentum=0.9)
    ),
    "training_keeps_non_trainable": _backend("training_keeps_non_trainable", B.DecaysFrozenBackend()),
    "gradients_match_finite_differences": _model("gradients_match_finite_differences", M.DoubledGradient),
}
"""check name -> a factory of the case made to fail exactly that check."""
