"""The ServerApp: fedmodel's strategy for the configured rounds, then results.json and weights.npz."""

from __future__ import annotations

import os
import time

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedmodel.integrations.flower import FedModelStrategy
from fedmodel_flower_app.task import make_algorithm, make_data, make_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the strategy; write the report (rounds, dropped nodes, metrics) and the final weights."""
    config = context.run_config
    per_round = int(config.get("clients-per-round", 0))
    strategy = FedModelStrategy(
        lambda: make_model(config),
        make_algorithm(config),
        clients_per_round=per_round or None,
        min_available_nodes=int(config.get("min-nodes", 1)),
        seed=int(config.get("seed", 0)),
        test_data=make_data(config).test,
        evaluate_clients=bool(config.get("evaluate-clients", False)),
        node_wait_timeout=float(config.get("node-wait-timeout", 60.0)),
    )
    start, error = time.perf_counter(), None
    try:
        strategy.run(grid, int(config["num-rounds"]), round_timeout=float(config.get("round-timeout", 60.0)))
    except Exception as exc:  # reported in results.json, then raised again for Flower's log
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        results_dir = str(config.get("results-dir", ""))
        if results_dir:
            os.makedirs(results_dir, exist_ok=True)
            strategy.save_weights(os.path.join(results_dir, "weights.npz"))
            extra = {"run_config": dict(config), "seconds": time.perf_counter() - start, "error": error}
            strategy.write_report(os.path.join(results_dir, "results.json"), extra=extra)
