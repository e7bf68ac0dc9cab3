"""The batch convention of the contract (TFF's): a pair ``(x, y)`` or a mapping with ``"x"`` and ``"y"``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedmodel._errors import SpecError
from fedmodel._specs import check_spec

__all__ = ["check_batch", "split_batch"]


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(x, y)`` from a batch that is a pair or a mapping with keys ``"x"`` and ``"y"``.

    Raises:
        SpecError: when the batch is neither.
    """
    if isinstance(batch, Mapping):
        if set(batch) != {"x", "y"}:
            raise SpecError(f"a batch mapping must have exactly the keys 'x' and 'y', got {sorted(map(str, batch))}")
        return batch["x"], batch["y"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise SpecError(f"a batch must be a pair (x, y) or a mapping with keys 'x' and 'y', got {type(batch).__name__}")


def check_batch(input_spec: Any, batch: Any) -> tuple[Any, Any]:
    """Validate ``batch`` against a model's ``input_spec`` and return ``(x, y)``.

    Either side may use either convention (pair or mapping); paths in errors are ``x/...`` and ``y/...``.

    Raises:
        SpecError: naming the path, the expected and the actual shape or dtype.
    """
    spec_x, spec_y = split_batch(input_spec)
    x, y = split_batch(batch)
    check_spec(spec_x, x, prefix="x")
    check_spec(spec_y, y, prefix="y")
    return x, y
