"""The suite proves itself: the reference passes every check, each broken case fails exactly its own."""

from __future__ import annotations

import time

import pytest
from fedmodel_conformance import all_checks, run_checks
from fedmodel_conformance.broken import BROKEN, reference_case

CHECK_NAMES = [name for name, _ in all_checks()]


def test_the_reference_model_passes_every_check() -> None:
    report = run_checks(reference_case())
    assert report.ok, report.format()
    assert {r.status for r in report.results} == {"pass"}
    assert [r.name for r in report.results] == CHECK_NAMES


def test_every_registered_check_has_a_broken_model() -> None:
    assert sorted(BROKEN) == sorted(CHECK_NAMES)


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_each_broken_model_fails_exactly_its_own_check(check: str) -> None:
    report = run_checks(BROKEN[check]())
    assert report.failed_names() == {check}, report.format()


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_a_failure_names_the_clause_where_expected_actual_and_how_to_reproduce(check: str) -> None:
    result = run_checks(BROKEN[check](), checks=[check]).results[0]
    assert result.status == "fail"
    for label in ("clause: ", "where: ", "expected: ", "actual: ", "reproduce: "):
        assert label in result.reason, result.reason
    assert result.clause == dict(all_checks())[check]
    assert f"checks=[{check!r}]" in result.reason


def test_the_whole_suite_runs_on_the_reference_in_well_under_a_minute() -> None:
    start = time.perf_counter()
    run_checks(reference_case())
    for factory in BROKEN.values():
        run_checks(factory())
    assert time.perf_counter() - start < 30.0


def test_every_check_has_a_docstring_and_a_clause() -> None:
    from fedmodel_conformance import checks

    for name, clause in all_checks():
        func = getattr(checks, f"check_{name}")
        assert func.__doc__ and func.__doc__.startswith("Clause:"), name
        assert len(clause) > 20, name
