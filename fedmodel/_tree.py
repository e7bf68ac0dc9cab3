"""The one wrapper over :mod:`optree` that every nested structure in fedmodel goes through.

Conventions, fixed once:

* namespace ``"fedmodel"`` for any node type a user registers for fedmodel;
* dicts flatten in **sorted key order** (optree's default), so weight order never depends on
  insertion order, the same in every backend;
* ``None`` is an empty subtree (optree's default, ``none_is_leaf=False``);
* :class:`~fedmodel.TensorSpec` is a leaf (it is a frozen dataclass, not a NamedTuple).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optree

__all__ = ["NAMESPACE", "flatten", "flatten_with_paths", "map_structure", "path_str", "unflatten"]

NAMESPACE = "fedmodel"


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[Any], Any]:
    """Leaves in fedmodel's canonical order, and the structure to rebuild the tree from them."""
    leaves, treedef = optree.tree_flatten(tree, is_leaf=is_leaf, namespace=NAMESPACE)
    return leaves, treedef


def unflatten(treedef: Any, leaves: Any) -> Any:
    """Inverse of :func:`flatten`."""
    return optree.tree_unflatten(treedef, leaves)


def path_str(path: tuple[Any, ...]) -> str:
    """A path such as ``('x', 0, 'pixels')`` rendered as ``x/0/pixels`` (the empty path as ``<root>``)."""
    return "/".join(str(p) for p in path) if path else "<root>"


def flatten_with_paths(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list[str], list[Any], Any]:
    """``(paths, leaves, treedef)`` with paths rendered by :func:`path_str`."""
    paths, leaves, treedef = optree.tree_flatten_with_path(tree, is_leaf=is_leaf, namespace=NAMESPACE)
    return [path_str(p) for p in paths], leaves, treedef


def map_structure(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leafwise over one or more trees of the same structure."""
    return optree.tree_map(fn, tree, *rest, namespace=NAMESPACE)
