"""Pytest plugin of the conformance suite (registered as a ``pytest11`` entry point).

``pytest --pyargs fedmodel_conformance --fedmodel-factory mypkg.models:make_case`` runs one test per
check. pytest loads this module in every session of anyone who installs fedmodel, so it imports
nothing but pytest until the option is used.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["pytest_addoption", "pytest_configure", "pytest_generate_tests"]

OPTION = "--fedmodel-factory"
_CASE = pytest.StashKey[Any]()


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


def pytest_configure(config: pytest.Config) -> None:
    """Load the case once, when the option is given; a bad target is pytest's usage error (one line, exit 4)."""
    target = config.getoption("fedmodel_factory", None)
    if not target:
        return
    from fedmodel_conformance._loader import UsageError, load_case

    try:
        config.stash[_CASE] = load_case(target)
    except UsageError as exc:
        raise pytest.UsageError(f"{OPTION} {target}: {exc}") from None


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
    if _CASE not in request.config.stash:
        pytest.skip(f"no {OPTION} given")
    return request.config.stash[_CASE]
