"""Built-in models start from the same canonical weights in torch, TensorFlow and JAX (issue 17 item 2).

The README says the built-in models are "seeded, the same across backends": built with the same seed,
``fedmodel.get_weights(fedmodel.layout.canonical(model))`` holds the same names and bit-identical arrays
in every framework, group by group; another seed gives other weights. Variables that only one
framework has (torch's ``num_batches_tracked``) are left out by name. The image models, whose variables are
all canonical, are also one function: the same seed gives the same logits in every framework.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedmodel
import fedmodel.layout

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("jax")

FRAMEWORKS = ("torch", "tensorflow", "jax")
ONE_FRAMEWORK_ONLY = ("num_batches_tracked",)  # torch's count of batch-norm updates: no twin elsewhere
BACKENDS = Path(__file__).resolve().parents[2] / "backends"

# model kind -> how to build it small from a backend's ``models`` module at a seed
BUILD: dict[str, Callable[[Any, int], Any]] = {
    "mlp": lambda m, seed: m.mlp(num_features=16, hidden=(8, 4), num_classes=5, seed=seed),
    "frozen_mlp": lambda m, seed: m.frozen_mlp(num_features=16, hidden=(8,), num_classes=5, seed=seed),
    "cnn_bn": lambda m, seed: m.cnn_bn(num_features=16, num_classes=3, channels=(2, 3), seed=seed),
    "cnn28": lambda m, seed: m.cnn28(seed=seed),
    "cnn32": lambda m, seed: m.cnn32(seed=seed),
}


def _present(kind: str) -> bool:
    """Whether any backend defines ``kind`` (read from the source: no framework is imported to collect)."""
    return any(f"def {kind}(" in (BACKENDS / f"fedmodel_{fw}" / "models.py").read_text() for fw in FRAMEWORKS)


KINDS = [kind for kind in BUILD if kind != "cnn28" or _present(kind)]


def _weights(framework: str, kind: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """``{group: {canonical name: array}}`` of the kind built in ``framework`` at ``seed``."""
    models = importlib.import_module(f"fedmodel_{framework}").models
    weights = fedmodel.get_weights(fedmodel.layout.canonical(BUILD[kind](models, seed)))
    out: dict[str, dict[str, np.ndarray]] = {}
    for group in ("trainable", "non_trainable"):
        names = getattr(weights, f"{group}_names")
        assert names is not None, f"{framework} {kind}: unnamed {group} weights"
        arrays = getattr(weights, group)
        out[group] = {
            n: np.asarray(a)
            for n, a in zip(names, arrays, strict=True)
            if n.split("/")[-1].split(".")[-1] not in ONE_FRAMEWORK_ONLY
        }
    return out


def _differences(want: dict[str, dict[str, np.ndarray]], got: dict[str, dict[str, np.ndarray]]) -> list[str]:
    problems = []
    for group in want:
        if list(want[group]) != list(got[group]):
            problems.append(f"{group} names {list(got[group])}, not {list(want[group])}")
            continue
        for name, a in want[group].items():
            b = got[group][name]
            if a.shape != b.shape or a.dtype != b.dtype:
                problems.append(f"{group} {name!r}: {b.dtype}{list(b.shape)}, not {a.dtype}{list(a.shape)}")
            elif not np.array_equal(a, b):
                diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                problems.append(f"{group} {name!r}: values differ (max abs difference {diff:.3g})")
    return problems


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seed_gives_the_same_canonical_weights_in_every_framework(kind: str) -> None:
    built = {fw: _weights(fw, kind, seed=3) for fw in FRAMEWORKS}
    problems = [f"{fw} vs torch: {p}" for fw in FRAMEWORKS[1:] for p in _differences(built["torch"], built[fw])]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_another_seed_gives_other_weights(framework: str, kind: str) -> None:
    one, other = _weights(framework, kind, seed=3), _weights(framework, kind, seed=4)
    # every array that the initializer draws at random (not constant, as zero biases or unit scales) differs
    drawn = [(g, n) for g in one for n, a in one[g].items() if a.size > 1 and np.unique(a).size > 1]
    assert drawn, f"{framework} {kind}: no randomly initialized array"
    same = [n for g, n in drawn if np.array_equal(one[g][n], other[g][n])]
    assert not same, f"{framework} {kind}: seeds 3 and 4 give the same {same}"


# image kind -> a batch of its images (values in [0, 1], as the data sets serve them)
IMAGES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "cnn28": lambda rng: rng.random((2, 28, 28), dtype=np.float32),
    "cnn32": lambda rng: rng.random((2, 32, 32, 3), dtype=np.float32),
}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_the_same_seed_gives_the_same_logits_in_every_framework(kind: str) -> None:
    """Same weights, same layers: padding, pooling and the (height, width, channel) flatten agree."""
    x = IMAGES[kind](np.random.default_rng(5))
    logits = {
        fw: np.asarray(BUILD[kind](importlib.import_module(f"fedmodel_{fw}").models, 3).predict_on_batch(x))
        for fw in FRAMEWORKS
    }
    assert logits["torch"].shape == (2, {"cnn28": 62, "cnn32": 100}[kind])
    assert np.ptp(logits["torch"]) > 1e-3  # not a constant output that any flatten order would match
    for fw in FRAMEWORKS[1:]:
        np.testing.assert_allclose(logits[fw], logits["torch"], rtol=1e-4, atol=1e-5, err_msg=f"{fw} vs torch")
