"""``run_checks`` and its plain-data ``Report``: statuses, expected failures (strict), selection, format."""

from __future__ import annotations

import dataclasses

import pytest
from fedmodel_conformance import Case, CheckResult, Report, all_checks, run_checks
from fedmodel_conformance.broken import BROKEN, reference_case

import fedmodel
import fedmodel.reference as fedmodel_reference


def test_a_case_is_a_frozen_dataclass_with_safe_defaults() -> None:
    case = reference_case()
    with pytest.raises(dataclasses.FrozenInstanceError):
        case.name = "other"  # type: ignore[misc]
    assert case.backend is None and case.expected_failures == {}
    assert not case.training_changes_non_trainable and not case.stochastic_training
    assert case.optimizer.learning_rate == 0.1


def test_an_expected_failure_that_fails_is_xfail_and_the_report_is_ok() -> None:
    report = run_checks(BROKEN["report_is_pure"](), expected_failures={"report_is_pure": "known: clears on read"})
    result = report.by_name()["report_is_pure"]
    assert result.status == "xfail"
    assert "known: clears on read" in result.reason
    assert report.ok and report.failures == []


def test_expected_failures_declared_on_the_case_count_too() -> None:
    case = dataclasses.replace(BROKEN["report_is_pure"](), expected_failures={"report_is_pure": "known"})
    assert run_checks(case).ok


def test_an_expected_failure_that_passes_is_xpass_and_fails_the_report() -> None:
    report = run_checks(reference_case(), expected_failures={"protocol": "we thought it was broken"})
    assert report.by_name()["protocol"].status == "xpass"
    assert not report.ok
    assert [r.name for r in report.failures] == ["protocol"]


def test_an_unknown_name_in_expected_failures_is_an_error() -> None:
    with pytest.raises(KeyError, match="no_such_check"):
        run_checks(reference_case(), expected_failures={"no_such_check": "typo"})


def test_checks_selects_and_orders_the_checks_run() -> None:
    report = run_checks(reference_case(), checks=["weights_round_trip", "protocol"])
    assert [r.name for r in report.results] == ["weights_round_trip", "protocol"]
    with pytest.raises(KeyError, match="nope"):
        run_checks(reference_case(), checks=["nope"])


def test_declared_stochastic_training_turns_the_exact_training_checks_into_skips_with_a_reason() -> None:
    report = run_checks(dataclasses.replace(reference_case(), stochastic_training=True))
    skipped = {r.name: r.reason for r in report.results if r.status == "skip"}
    assert set(skipped) == {
        "gradients_match_finite_differences",
        "optimizer_update_rules",
        "fedprox_anchor",
        "sgd_steps_are_independent",
        "optimizers_share_no_state",
    }
    assert all("declares stochastic_training=True" in reason for reason in skipped.values())
    assert report.ok


def test_declaring_statistics_a_model_does_not_have_fails_the_declaration_check() -> None:
    report = run_checks(dataclasses.replace(reference_case(), training_changes_non_trainable=True))
    assert report.failed_names() == {"training_changes_non_trainable_as_declared"}
    assert "none changed" in report.by_name()["training_changes_non_trainable_as_declared"].reason


def test_a_minimum_training_batch_size_is_respected_by_every_training_call() -> None:
    sizes: list[int] = []

    class Recording(fedmodel_reference.SoftmaxRegression):
        def forward_pass(self, batch_input: object, training: bool = True) -> object:
            if training:
                sizes.append(len(fedmodel.split_batch(batch_input)[1]))
            return super().forward_pass(batch_input, training)

    case = dataclasses.replace(reference_case(), make_model=lambda: Recording(6, 4), min_training_batch_size=4)
    assert run_checks(case).ok
    assert sizes and min(sizes) == 4
    with pytest.raises(ValueError, match="min_training_batch_size"):
        dataclasses.replace(reference_case(), min_training_batch_size=0)


def test_an_exception_inside_a_model_is_a_failure_of_that_check_only() -> None:
    def make_batch(size: int, rng: object) -> object:
        raise RuntimeError("the batch maker is broken")

    case = dataclasses.replace(reference_case(), make_batch=make_batch)
    report = run_checks(case, checks=["protocol", "eval_is_deterministic"])
    assert report.by_name()["protocol"].status == "pass"
    result = report.by_name()["eval_is_deterministic"]
    assert result.status == "fail" and "RuntimeError: the batch maker is broken" in result.reason


def test_the_report_is_plain_data_and_formats_as_a_table() -> None:
    report = run_checks(BROKEN["reset_metrics_restores_initial"]())
    assert isinstance(report, Report) and all(isinstance(r, CheckResult) for r in report.results)
    assert dataclasses.asdict(report)["case"] == report.case
    text = report.format()
    assert "FAIL   reset_metrics_restores_initial" in text
    assert "clause: reset_metrics returns every local variable to its initial value" in text
    assert "local 'count'" in text
    assert text.splitlines()[-1] == f"FAILED: {len(all_checks()) - 1} pass, 1 fail"
    assert "clause:" not in report.format(verbose=False)


def test_all_checks_lists_unique_names_with_their_clauses() -> None:
    names = [n for n, _ in all_checks()]
    assert len(names) == len(set(names)) >= 38
    assert isinstance(Case, type)


def test_a_check_function_called_directly_raises_check_failure_with_its_parts() -> None:
    from fedmodel_conformance import CheckFailure
    from fedmodel_conformance.checks import check_reset_metrics_restores_initial

    check_reset_metrics_restores_initial(reference_case())  # a passing check returns None
    with pytest.raises(CheckFailure) as info:
        check_reset_metrics_restores_initial(BROKEN["reset_metrics_restores_initial"]())
    failure = info.value
    assert isinstance(failure, AssertionError)
    assert failure.where == "local 'count' during 3 forward_pass calls then reset_metrics()"
    assert failure.expected == "no change"
    assert failure.actual == "changed (max abs difference 13)"  # 5 + 5 + 3 examples
    assert "reset_metrics_restores_initial" in failure.note


class _NoReset(fedmodel_reference.SoftmaxRegression):
    reset_metrics = None  # type: ignore[assignment]


def test_the_protocol_check_names_a_missing_member_and_a_backend_that_is_not_one() -> None:
    case = dataclasses.replace(reference_case(), make_model=lambda: _NoReset(6, 4))
    result = run_checks(case, checks=["protocol"]).results[0]
    assert result.status == "fail" and "missing method 'reset_metrics'" in result.reason
    result = run_checks(dataclasses.replace(reference_case(), backend=object()), checks=["protocol"]).results[0]  # type: ignore[arg-type]
    assert result.status == "fail" and "a fedmodel.Backend" in result.reason and "train_step" in result.reason


def test_handles_made_anew_on_every_read_fail_stable_order_with_that_reason_and_are_not_called_shared() -> None:
    from fedmodel_conformance.broken import VARIANTS

    (factory,) = VARIANTS["stable_order"]
    report = run_checks(factory())
    assert report.by_name()["instances_independent"].status == "pass"  # no id() of a freed temporary reused
    reason = report.by_name()["stable_order"].reason
    assert "a new object" in reason and "return the same variable objects on every read" in reason
