"""torch's standard accuracy takes integer labels shaped ``(n, 1)`` (TFF's usual shape), as it takes ``(n,)``."""

from __future__ import annotations

import numpy as np
import pytest

import fedmodel

torch = pytest.importorskip("torch")
fedmodel_torch = pytest.importorskip("fedmodel_torch")


def test_column_labels_are_counted_like_flat_ones() -> None:
    spec = (fedmodel.TensorSpec((None, 3), "float32"), fedmodel.TensorSpec((None, 1), "int64"))
    module = torch.nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        module.weight.copy_(torch.eye(3))  # predicts class i for row i
    model = fedmodel_torch.from_module(
        module, lambda p, y: torch.nn.functional.cross_entropy(p, y.reshape(-1)), spec, accuracy=True
    )
    x = np.eye(3, dtype=np.float32)
    model.forward_pass((x, np.array([[0], [1], [0]], np.int64)), training=False)
    report = model.report_local_outputs()
    assert (int(report["accuracy"][0]), int(report["accuracy"][1])) == (2, 3)
    assert int(report["num_examples"]) == 3
