"""fedmodel's conformance suite: proves that a model (and its backend) keeps every clause of the contract.

One registry of named checks, each run on a fresh model; :func:`run_checks` returns a plain-data
:class:`Report`. Three thin ways in: ``fedmodel conformance PKG.MODULE:FACTORY``, the pytest plugin
(``pytest --pyargs fedmodel_conformance --fedmodel-factory PKG.MODULE:FACTORY``) and the base test class
:class:`ConformanceTests`.

>>> from fedmodel_conformance import run_checks
>>> from fedmodel_conformance.broken import reference_case
>>> run_checks(reference_case()).ok
True

Names are imported lazily, so that pytest, which loads the plugin in every session, imports nothing
heavy until the suite is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedmodel_conformance._core import Case as Case
    from fedmodel_conformance._core import CheckFailure as CheckFailure
    from fedmodel_conformance._core import CheckSkipped as CheckSkipped
    from fedmodel_conformance._runner import CheckResult as CheckResult
    from fedmodel_conformance._runner import Report as Report
    from fedmodel_conformance._runner import run_checks as run_checks
    from fedmodel_conformance.checks import all_checks as all_checks
    from fedmodel_conformance.testing import ConformanceTests as ConformanceTests

_EXPORTS = {
    "Case": "fedmodel_conformance._core",
    "CheckFailure": "fedmodel_conformance._core",
    "CheckSkipped": "fedmodel_conformance._core",
    "CheckResult": "fedmodel_conformance._runner",
    "Report": "fedmodel_conformance._runner",
    "run_checks": "fedmodel_conformance._runner",
    "all_checks": "fedmodel_conformance.checks",
    "ConformanceTests": "fedmodel_conformance.testing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fedmodel_conformance' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
