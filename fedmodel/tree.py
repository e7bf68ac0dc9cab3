"""fedmodel's nested-structure conventions, public for backends (ours and third parties').

Every nested structure in fedmodel (specs, batches, metric reports) is flattened with the same
:mod:`optree` conventions: namespace ``"fedmodel"``, dict keys in sorted order, ``None`` as an empty
subtree, :class:`fedmodel.TensorSpec` as a leaf, paths rendered as ``x/0/pixels``. A backend that walks
a batch with these functions agrees with the core's spec checks and error messages.

>>> paths, leaves, _ = flatten_with_paths({"y": 1, "x": (2, 3)})
>>> paths, leaves
(['x/0', 'x/1', 'y'], [2, 3, 1])
"""

from fedmodel._tree import NAMESPACE as NAMESPACE
from fedmodel._tree import flatten as flatten
from fedmodel._tree import flatten_with_paths as flatten_with_paths
from fedmodel._tree import map_structure as map_structure
from fedmodel._tree import path_str as path_str
from fedmodel._tree import unflatten as unflatten

__all__ = ["NAMESPACE", "flatten", "flatten_with_paths", "map_structure", "path_str", "unflatten"]
