"""The ServerApp: SecAggPlusStrategy for the configured rounds; results.json and the weights of every round."""

from __future__ import annotations

import os

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedmodel import ModelWeights
from fedmodel.integrations.flower import RoundReport, SecAggPlus, SecAggPlusStrategy
from fedmodel_secagg_app.task import make_algorithm, make_data, make_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the rounds; write results.json and ``weights-round-<r>.npz`` into ``results-dir``."""
    config, results = context.run_config, str(context.run_config["results-dir"])
    os.makedirs(results, exist_ok=True)

    def save(report: RoundReport, weights: ModelWeights) -> None:
        np.savez(os.path.join(results, f"weights-round-{report.round}.npz"), **dict(weights.items()))

    secagg = SecAggPlus(
        num_shares=int(config["num-shares"]),
        reconstruction_threshold=int(config["reconstruction-threshold"]),
        clipping_range=float(config["clipping-range"]),
        timeout=float(config["timeout"]),
    )
    strategy = SecAggPlusStrategy(
        make_model,
        make_algorithm(config),
        secagg,
        min_available_nodes=int(config["min-nodes"]),
        seed=int(config["seed"]),
        test_data=make_data(config).test,
        on_round=save,
    )
    try:
        strategy.run(grid, context, int(config["num-rounds"]))
    finally:
        strategy.write_report(os.path.join(results, "results.json"), extra={"run_config": dict(config)})
