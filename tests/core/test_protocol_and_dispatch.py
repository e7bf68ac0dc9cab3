"""check_protocol names what is missing; backend_for dispatches without importing a framework."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import fedmodel
from fedmodel.reference import NUMPY_BACKEND, SoftmaxRegression


class _MisSigned(SoftmaxRegression):
    def forward_pass(self, batch_input: Any) -> Any:  # type: ignore[override]  # no `training`
        return super().forward_pass(batch_input)


class _Incomplete:
    trainable_variables = ()

    def forward_pass(self, batch_input: Any, training: bool = True) -> Any:
        return None


def test_check_protocol_is_empty_for_a_complete_model() -> None:
    assert fedmodel.check_protocol(SoftmaxRegression(2, 2)) == []


def test_check_protocol_names_a_mis_signed_method() -> None:
    problems = fedmodel.check_protocol(_MisSigned(2, 2))
    assert len(problems) == 1
    assert problems[0].startswith("forward_pass(batch_input) cannot be called as forward_pass(batch, training=True)")


def test_check_protocol_names_every_missing_member() -> None:
    problems = fedmodel.check_protocol(_Incomplete())
    assert "missing property 'local_variables'" in problems
    assert "missing method 'reset_metrics'" in problems
    assert not any("trainable_variables'" in p and "non" not in p for p in problems)
    assert not isinstance(_Incomplete(), fedmodel.Model)


def test_explicit_subclass_that_forgets_a_member_fails_at_instantiation() -> None:
    class Forgetful(fedmodel.Model[np.ndarray]):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Forgetful()  # type: ignore[abstract]


class _Box:
    def __init__(self) -> None:
        self.shape, self.dtype = (1,), np.dtype("float32")


class _Unclaimed(SoftmaxRegression):
    __fedmodel_backend__ = None  # type: ignore[assignment]

    @property
    def trainable_variables(self) -> Any:
        return (_Box(),)


def test_registry_wins_over_the_hook() -> None:
    sentinel: Any = object()
    fedmodel.register_backend(SoftmaxRegression, sentinel)
    try:
        assert fedmodel.backend_for(SoftmaxRegression(2, 2)) is sentinel
    finally:
        fedmodel.unregister_backend(SoftmaxRegression)
    assert fedmodel.backend_for(SoftmaxRegression(2, 2)) is NUMPY_BACKEND


def test_unclaimed_model_gets_a_clear_backend_error() -> None:
    with pytest.raises(fedmodel.BackendError, match="no fedmodel backend for _Unclaimed: register one"):
        fedmodel.backend_for(_Unclaimed(2, 2))


def test_dispatch_by_variable_type_never_imports_a_framework() -> None:
    code = """
import sys, numpy as np, fedmodel
from fedmodel.reference import SoftmaxRegression

class Box:
    shape, dtype = (1,), np.dtype("float32")

class Unclaimed(SoftmaxRegression):
    __fedmodel_backend__ = None
    trainable_variables = (Box(),)

try:
    fedmodel.backend_for(Unclaimed(2, 2))
except fedmodel.BackendError:
    print(sorted(m for m in ("torch", "tensorflow", "jax") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
