"""Pytest plugin of the conformance suite (registered as a ``pytest11`` entry point).

``pytest --pyargs fedmodel_conformance --fedmodel-factory mypkg.models:make_case`` runs one test per
check. pytest loads this module in every session of anyone who installs fedmodel, so it imports
nothing but pytest until the option is used.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["pytest_addoption", "pytest_generate_tests"]

OPTION = "--fedmodel-factory"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--fedmodel-factory PKG.MODULE:FACTORY``."""
    parser.getgroup("fedmodel conformance").addoption(
        OPTION,
        dest="fedmodel_factory",
        default=None,
        metavar="PKG.MODULE:FACTORY",
        help="run the fedmodel conformance suite on the Case this factory returns "
        "(with: pytest --pyargs fedmodel_conformance --fedmodel-factory ...)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``fedmodel_check`` over every check name (one skipped item without the option)."""
    if "fedmodel_check" not in metafunc.fixturenames:
        return
    if not metafunc.config.getoption("fedmodel_factory"):
        skip = pytest.mark.skip(reason=f"no {OPTION} PKG.MODULE:FACTORY given")
        metafunc.parametrize("fedmodel_check", [pytest.param(None, marks=skip, id="no-factory")])
        return
    from fedmodel_conformance.checks import all_checks

    metafunc.parametrize("fedmodel_check", [name for name, _ in all_checks()])


@pytest.fixture(scope="session")
def fedmodel_case(request: pytest.FixtureRequest) -> Any:
    """The :class:`fedmodel_conformance.Case` that ``--fedmodel-factory`` names."""
    from fedmodel_conformance._loader import load_case

    target = request.config.getoption("fedmodel_factory")
    if not target:
        pytest.skip(f"no {OPTION} given")
    return load_case(target)
