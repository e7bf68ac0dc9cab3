"""The base test class :class:`ConformanceTests`: one pytest test per check, for a third party's own tests.

>>> # in tests/test_my_model.py
>>> from fedmodel_conformance import Case, ConformanceTests
>>> class TestMyModel(ConformanceTests):
...     def make_case(self) -> Case:
...         from fedmodel_conformance.broken import reference_case
...         return reference_case()
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fedmodel_conformance._core import Case
from fedmodel_conformance._runner import CheckResult, run_checks
from fedmodel_conformance.checks import all_checks

__all__ = ["ConformanceTests", "run_one"]


def run_one(case: Case, name: str) -> CheckResult:
    """Run one check and turn its result into pytest's outcome (fail, skip, xfail; strict xpass fails)."""
    result = run_checks(case, checks=[name]).results[0]
    if result.status == "fail":
        pytest.fail(f"{name} failed\n{result.reason}", pytrace=False)
    elif result.status == "xpass":
        pytest.fail(f"[XPASS(strict)] {name}: {result.reason}", pytrace=False)
    elif result.status == "skip":
        pytest.skip(f"{name}: {result.reason}")
    elif result.status == "xfail":
        pytest.xfail(f"{name}: {result.reason.splitlines()[0]}")
    return result


class ConformanceTests:
    """Subclass (as ``TestSomething``) and define :meth:`make_case`: pytest runs every check as a test.

    Expected failures go in the case (``Case(expected_failures={name: reason})``).
    """

    def make_case(self) -> Case:
        """Return the :class:`Case` to check (a fresh one per test is fine: checks build fresh models)."""
        raise NotImplementedError("define make_case() in your ConformanceTests subclass")


def _make_test(name: str, clause: str) -> Callable[[ConformanceTests], None]:
    def test(self: ConformanceTests) -> None:
        run_one(self.make_case(), name)

    test.__name__ = test.__qualname__ = f"test_{name}"
    test.__doc__ = f"Clause: {clause}"
    return test


for _name, _clause in all_checks():
    setattr(ConformanceTests, f"test_{_name}", _make_test(_name, _clause))
