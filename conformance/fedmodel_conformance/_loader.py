"""Resolve ``PKG.MODULE:FACTORY`` to a :class:`Case` (shared by the CLI and the pytest plugin)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["load_case"]


def load_case(target: str) -> Any:
    """Import ``PKG.MODULE``, call its ``FACTORY`` (dotted attributes allowed) and return the :class:`Case`.

    The current directory is importable, as with ``python -m``, so a factory module next to the user works.

    Raises:
        ValueError: for a malformed target, or a factory that does not return a ``Case``.
        ImportError / AttributeError: when the module or the factory does not exist.
    """
    from fedmodel_conformance._core import Case

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected PKG.MODULE:FACTORY, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    case = obj() if callable(obj) and not isinstance(obj, Case) else obj
    if not isinstance(case, Case):
        raise ValueError(f"{target} returned {type(case).__name__}, not a fedmodel_conformance.Case")
    return case
