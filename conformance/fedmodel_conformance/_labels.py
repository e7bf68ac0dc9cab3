"""Labels made from a model's own predictions: batches built to move every metric, and the predicted classes.

A check runs a batch, takes the predictions, and builds labels from them: the predicted classes (so
``correct`` must count every example), or the predictions themselves for a regression model. The
label layouts understood are the ones fedmodel's standard metrics know: integer class ids shaped
``(n,)`` or ``(n, 1)`` and one-hot rows, for predictions shaped ``(n, classes)``; real values shaped like
the predictions (regression).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

import fedmodel
from fedmodel import tree as _tree

__all__ = ["LabelKind", "label_kind", "predicted_classes", "true_classes", "with_labels"]

LabelKind = Literal["classes", "one_hot", "regression"]


def _single(tree: Any) -> np.ndarray | None:
    leaves, _ = _tree.flatten(tree)
    return np.asarray(leaves[0]) if len(leaves) == 1 else None


def label_kind(y: Any, predictions: Any) -> LabelKind | None:
    """How labels ``y`` relate to ``predictions`` (single arrays), or ``None`` when the suite cannot tell."""
    labels, preds = _single(y), _single(predictions)
    if labels is None or preds is None or labels.ndim == 0 or preds.ndim == 0 or len(labels) != len(preds):
        return None
    n = len(labels)
    if labels.dtype.kind in "iu" and labels.shape in ((n,), (n, 1)) and preds.ndim == 2 and preds.shape[1] >= 2:
        return "classes"
    if labels.dtype.kind == "f" and preds.ndim == 2 and preds.shape[1] >= 2 and labels.shape == preds.shape:
        return "one_hot"
    if labels.dtype.kind == "f" and labels.size == preds.size == n:
        return "regression"
    return None


def predicted_classes(predictions: Any) -> np.ndarray:
    """``argmax`` over the last axis of the (single) predictions."""
    preds = _single(predictions)
    assert preds is not None
    return np.asarray(np.argmax(np.asarray(preds, np.float64), axis=-1))


def true_classes(y: Any, kind: LabelKind) -> np.ndarray:
    """The class of each example from labels of ``kind`` ``"classes"`` or ``"one_hot"``."""
    labels = _single(y)
    assert labels is not None
    return labels.reshape(len(labels)) if kind == "classes" else np.argmax(labels, axis=-1)


def with_labels(batch: Any, predictions: Any) -> tuple[Any, LabelKind] | None:
    """``batch`` with labels equal to the model's ``predictions`` of it (their classes for a classifier).

    Returns ``None`` when the label layout is not one of those the module docstring lists.
    """
    x, y = fedmodel.split_batch(batch)
    kind = label_kind(y, predictions)
    if kind is None:
        return None
    labels = _single(y)
    assert labels is not None
    if kind == "classes":
        new = predicted_classes(predictions).reshape(labels.shape).astype(labels.dtype)
    elif kind == "one_hot":
        classes = predicted_classes(predictions)
        new = np.eye(labels.shape[1], dtype=labels.dtype)[classes]
    else:
        preds = _single(predictions)
        assert preds is not None
        new = np.asarray(preds, np.float64).reshape(labels.shape).astype(labels.dtype)
    _, treedef = _tree.flatten(y)
    y_new = _tree.unflatten(treedef, [new])
    return ({"x": x, "y": y_new} if isinstance(batch, Mapping) else (x, y_new)), kind
