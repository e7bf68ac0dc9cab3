"""Collected by ``pytest --pyargs fedmodel_conformance --fedmodel-factory PKG.MODULE:FACTORY``: one test per check.

Without the option its single item is skipped.
"""

from __future__ import annotations

from typing import Any


def test_conformance(fedmodel_case: Any, fedmodel_check: str) -> None:
    """The check ``fedmodel_check`` holds for the case (or fails as the case expects)."""
    from fedmodel_conformance.testing import run_one

    run_one(fedmodel_case, fedmodel_check)
