"""Resolve ``PKG.MODULE:FACTORY`` to a :class:`Case` (shared by the CLI and the pytest plugin).

Only a factory is accepted: an importable module, a dotted attribute path of identifiers, a callable
that takes no argument and returns a :class:`Case`. Anything else, an exception raised while importing
the module or calling the factory, or the factory exiting the interpreter, is a :class:`UsageError` with
a one-line message, never a traceback and never a silent exit.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["UsageError", "load_case"]


class UsageError(ValueError):
    """The target given to the suite is not a ``PKG.MODULE:FACTORY`` returning a Case; the message is one line."""


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "SystemExit" if exc.code is None else f"SystemExit({exc.code!r})"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _resolve(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    parts = attr.split(".")
    if not sep or not all(p.isidentifier() for p in module_name.split(".")) or not all(p.isidentifier() for p in parts):
        raise UsageError(f"expected PKG.MODULE:FACTORY (dotted names), got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as with python -m: a factory module next to the user works
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"cannot import {module_name!r}: {_one_line(exc)}") from None
    except (Exception, SystemExit) as exc:
        raise UsageError(f"importing {module_name!r} raised {_one_line(exc)}") from None
    for i, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = ".".join([module_name, *parts[:i]])
            raise UsageError(f"{where!r} has no attribute {part!r} (from {target!r})") from None
    return obj


def load_case(target: str) -> Any:
    """Import ``PKG.MODULE``, call its ``FACTORY`` (dotted attributes allowed) and return the :class:`Case`.

    The current directory is importable, as with ``python -m``, so a factory module next to the user works.

    Raises:
        UsageError: a malformed target, a module that cannot be imported, a missing attribute, something
            that is not a zero-argument callable, a factory that raises or exits, or one that returns
            anything but a ``Case``.
    """
    from fedmodel_conformance._core import Case

    factory = _resolve(target)
    if isinstance(factory, Case) or not callable(factory):
        kind = "a Case" if isinstance(factory, Case) else type(factory).__name__
        raise UsageError(f"{target} is {kind}, not a factory: give a function that returns a fedmodel_conformance.Case")
    try:
        case = factory()
    except (Exception, SystemExit) as exc:  # SystemExit: builtins:exit must not read as a pass
        raise UsageError(f"{target}() raised {_one_line(exc)}") from None
    if not isinstance(case, Case):
        raise UsageError(f"{target}() returned {type(case).__name__}, not a fedmodel_conformance.Case")
    return case
