"""The README's 'implement the contract' example passes the whole conformance suite."""

from __future__ import annotations

import numpy as np
from fedmodel_conformance import run_checks

import fedmodel
from examples.custom_model import LinearRegression, make_case


def test_the_custom_model_example_passes_every_conformance_check() -> None:
    report = run_checks(make_case())
    assert report.ok, report.format()


def test_the_custom_model_example_fits_a_line() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3).astype(np.float32)
    model = LinearRegression(3)
    backend = fedmodel.backend_for(model)
    optimizer = backend.make_optimizer(model, fedmodel.SGD(learning_rate=0.1))
    for _ in range(200):
        backend.train_step(model, (x, y), optimizer)
    w, b = fedmodel.get_weights(model).trainable
    np.testing.assert_allclose(w, [1.0, -2.0, 0.5], atol=1e-3)
    np.testing.assert_allclose(b, 0.3, atol=1e-3)


def test_the_readme_training_examples_run(readme_blocks, capsys) -> None:  # type: ignore[no-untyped-def]
    """'Bring your own data' runs as written (the 30-round loop above it is the slow convergence test)."""
    own_data = readme_blocks("Federated training")[-1]
    exec(compile(own_data, "README.md", "exec"), {"__name__": "readme_example"})  # our own documentation
    assert "'accuracy'" in capsys.readouterr().out
