"""``run_checks``: run registered checks on a case and return a :class:`Report` of plain data."""

from __future__ import annotations

import textwrap
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import fedmodel_conformance.checks  # noqa: F401 - registers every check
from fedmodel_conformance._core import _REGISTRY, Case, CheckFailure, CheckSkipped, get_check

__all__ = ["CheckResult", "Report", "run_checks"]

Status = Literal["pass", "fail", "skip", "xfail", "xpass"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``status`` is ``pass``, ``fail``, ``skip``, ``xfail`` or ``xpass``."""

    name: str
    clause: str
    status: Status
    reason: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Report:
    """Every check's result for one case, in run order (plain data: no exception objects)."""

    case: str
    results: tuple[CheckResult, ...]

    @property
    def failures(self) -> list[CheckResult]:
        """Checks that failed, and expected failures that passed (strict: stale entries surface)."""
        return [r for r in self.results if r.status in ("fail", "xpass")]

    @property
    def ok(self) -> bool:
        """True when nothing failed and no expected failure passed."""
        return not self.failures

    def by_name(self) -> dict[str, CheckResult]:
        """Results keyed by check name."""
        return {r.name: r for r in self.results}

    def failed_names(self) -> set[str]:
        """Names of the checks in :attr:`failures`."""
        return {r.name for r in self.failures}

    def format(self, verbose: bool = True) -> str:
        """A readable table: status, check, seconds, then the clause and reason of anything not passing."""
        width = max([len(r.name) for r in self.results] + [5])
        counts = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "skip", "xfail", "xpass")}
        lines = [f"fedmodel conformance: {self.case}", ""]
        for r in self.results:
            lines.append(f"  {r.status.upper():<5}  {r.name:<{width}}  {r.seconds:6.2f}s")
            if r.status != "pass" and verbose:
                lines.append(textwrap.indent(f"clause: {r.clause}", " " * 9))
                if r.reason and not r.reason.startswith("clause:"):
                    lines.append(textwrap.indent(r.reason, " " * 9))
                elif r.reason:
                    lines.append(textwrap.indent(r.reason.split("\n", 1)[1] if "\n" in r.reason else "", " " * 9))
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        lines += ["", f"{'OK' if self.ok else 'FAILED'}: {summary}"]
        return "\n".join(lines)


def _checks(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(_REGISTRY)
    names = list(names)
    for n in names:
        get_check(n)
    return names


def run_checks(
    case: Case, expected_failures: Mapping[str, str] | None = None, checks: Iterable[str] | None = None
) -> Report:
    """Run the registered checks (or only ``checks``) on ``case``, each on a fresh model.

    Args:
        case: the model factory, batch maker and capabilities.
        expected_failures: ``{check_name: reason}``, added to ``case.expected_failures``. An unknown
            name is an error; an expected failure that passes is reported as ``xpass`` and makes the
            report fail.
        checks: names of the checks to run, in order (default: all).

    Raises:
        KeyError: for an unknown name in ``checks`` or in the expected failures.

    >>> from fedmodel_conformance.broken import reference_case
    >>> run_checks(reference_case(), checks=["protocol"]).ok
    True
    """
    expected = {**case.expected_failures, **(expected_failures or {})}
    unknown = sorted(set(expected) - set(_REGISTRY))
    if unknown:
        raise KeyError(f"expected_failures names unknown checks {unknown}; known: {sorted(_REGISTRY)}")
    results = []
    for name in _checks(checks):
        check = get_check(name)
        start = time.perf_counter()
        status: Status
        try:
            check.func(case)
        except CheckSkipped as exc:
            status, reason = "skip", str(exc)
        except CheckFailure as exc:
            status, reason = "fail", str(exc)
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            reason = f"raised {type(exc).__name__}: {exc}\n(at {where.filename}:{where.lineno}, in {where.name})"
            status = "fail"
        else:
            status, reason = "pass", ""
        if name in expected:
            if status == "fail":
                status, reason = "xfail", f"expected failure: {expected[name]}\n{reason}"
            elif status == "pass":
                status, reason = "xpass", f"expected to fail ({expected[name]}) but passed: remove the entry"
        results.append(CheckResult(name, check.clause, status, reason, time.perf_counter() - start))
    return Report(case.name, tuple(results))
