"""What a fedmodel server on Flower reports: each round's nodes, failures and metrics, as JSON and ``.npz``."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmodel._weights import ModelWeights

__all__ = ["NodeFailure", "RoundReport", "plain", "save_npz", "write_json"]


@dataclass
class NodeFailure:
    """A node whose reply was not aggregated in a round, and why."""

    node_id: int
    reason: str
    partition_id: int | None = None


@dataclass
class RoundReport:
    """One round as seen by the server: who was asked, who was aggregated, who failed, the metrics.

    ``failures`` are nodes whose update was not aggregated; ``metric_failures`` nodes whose update was, but
    whose metric report was left out; ``problem`` says why the round left the weights unchanged.
    """

    round: int
    sampled: list[int] = field(default_factory=list)
    aggregated: list[dict[str, int | None]] = field(default_factory=list)
    failures: list[NodeFailure] = field(default_factory=list)
    metric_failures: list[NodeFailure] = field(default_factory=list)
    problem: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def plain(value: Any) -> Any:
    """JSON-ready: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return np.asarray(value).tolist()
    return value


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """``data`` as JSON at ``path``, atomically (a temporary file, then a rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=2, default=float)
    os.replace(f.name, path)


def save_npz(path: str | os.PathLike[str], weights: ModelWeights) -> None:
    """``weights`` as ``.npz`` (name -> array, no pickle), atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz", delete=False) as f:
        savez: Any = np.savez  # mypy cannot tell that **arrays holds no key "allow_pickle"
        savez(f, allow_pickle=False, **dict(weights.items()))
    os.replace(f.name, path)
