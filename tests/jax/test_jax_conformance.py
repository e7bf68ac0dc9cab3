"""The full conformance suite on the three models of issue 6 and on a user's plain JAX functions.

``cnn_bn`` (the same clauses as ``bn_mlp``: Flax, batch statistics, dropout) is left to a lighter test in
test_jax_model.py: its per-shape compilations would cost the suite ~20 CPU seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fedmodel_jax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fedmodel_conformance import Case, ConformanceTests, run_checks
from fedmodel_jax import models

import fedmodel


def digits_like(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A batch shaped like scikit-learn's digits: 64 pixel features, labels 0..9."""
    return rng.standard_normal((size, 64)).astype(np.float32), rng.integers(0, 10, size).astype(np.int64)


CASES: dict[str, Callable[[], Case]] = {
    "jax-mlp": lambda: Case(name="jax-mlp", make_model=models.mlp, make_batch=digits_like),
    "jax-bn-mlp-flax": lambda: Case(
        name="jax-bn-mlp-flax",
        make_model=models.bn_mlp,
        make_batch=digits_like,
        optimizer=fedmodel.SGD(learning_rate=0.1, momentum=0.9),
        training_changes_non_trainable=True,
        stochastic_training=True,
    ),
    "jax-frozen-mlp": lambda: Case(
        name="jax-frozen-mlp",
        make_model=models.frozen_mlp,
        make_batch=digits_like,
        optimizer=fedmodel.Adam(learning_rate=0.01),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_built_in_model_passes_every_conformance_check(name: str) -> None:
    report = run_checks(CASES[name]())
    assert report.ok, report.format()


def _init(rng: jax.Array, x: Any) -> dict[str, jax.Array]:
    return {"w": 0.1 * jax.random.normal(rng, (x.shape[1], 3)), "b": jnp.zeros(3)}


def _apply(params: Any, state: Any, x: Any, training: bool, rng: Any) -> tuple[jax.Array, Any]:
    return x @ params["w"] + params["b"], state


class TestUserFunctionsThroughTheBaseClass(ConformanceTests):
    """A third party's own JAX functions, checked one pytest test per clause."""

    def make_case(self) -> Case:
        spec = (fedmodel.TensorSpec((None, 5), "float32"), fedmodel.TensorSpec((None,), "int64"))
        return Case(
            name="jax-user-functions",
            make_model=lambda: fedmodel_jax.from_functions(_init, _apply, models.cross_entropy, spec),
            make_batch=lambda size, rng: (
                rng.standard_normal((size, 5)).astype(np.float32),
                rng.integers(0, 3, size).astype(np.int64),
            ),
        )
