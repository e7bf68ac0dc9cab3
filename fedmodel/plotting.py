"""Curves of a federated run: loss and accuracy against rounds, one line per run (matplotlib, Agg).

The figure is drawn on an Agg canvas directly, so it never touches pyplot's global backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["plot_curves"]


def plot_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike[str]) -> None:
    """Write a PNG with two panels, loss and accuracy against rounds, one line per run and split, and a third,
    the privacy spent (epsilon against rounds), when a run has an ``epsilon`` column (DP-FedAvg).

    Args:
        runs: run label -> rows with ``round`` and any of ``train_loss``, ``test_loss``,
            ``train_accuracy``, ``test_accuracy``, ``epsilon`` (missing, empty or infinite values are skipped).
        path: the PNG file to write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    private = any(_finite(r.get("epsilon")) for rows in runs.values() for r in rows)
    figure = Figure(figsize=(15 if private else 10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3 if private else 2)
    if private:
        for index, (label, rows) in enumerate(runs.items()):
            points = [(int(r["round"]), float(r["epsilon"])) for r in rows if _finite(r.get("epsilon"))]
            if points:
                xs, ys = zip(*points, strict=True)
                axes[2].plot(xs, ys, "-", color=f"C{index % 10}", label=label)
        axes[2].set_xlabel("round")
        axes[2].set_ylabel("epsilon (privacy spent)")
        axes[2].grid(alpha=0.3)
        axes[2].legend(fontsize="small")
    for ax, metric in zip(axes[:2], ("loss", "accuracy"), strict=True):
        for index, (label, rows) in enumerate(runs.items()):
            color = f"C{index % 10}"
            for split, style in (("test", "-"), ("train", "--")):
                points = [(int(r["round"]), float(r[f"{split}_{metric}"])) for r in rows if _present(r, split, metric)]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, color=color, label=f"{label} ({split})")
        ax.set_xlabel("round")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    figure.savefig(os.fspath(path), dpi=100)


def _present(row: Mapping[str, Any], split: str, metric: str) -> bool:
    value = row.get(f"{split}_{metric}")
    return value is not None and value != ""


def _finite(value: Any) -> bool:
    try:
        return value is not None and value != "" and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
