"""Curves of a federated run: loss and accuracy against rounds, one line per run (matplotlib, Agg).

The figure is drawn on an Agg canvas directly, so it never touches pyplot's global backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["plot_curves"]


def plot_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike[str]) -> None:
    """Write a PNG with two panels, loss and accuracy against rounds, one line per run and split.

    Args:
        runs: run label -> rows with ``round`` and any of ``train_loss``, ``test_loss``,
            ``train_accuracy``, ``test_accuracy`` (missing or empty values are skipped).
        path: the PNG file to write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
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
