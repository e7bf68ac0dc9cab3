"""The accuracy / epsilon trade-off of DP-FedAvg on digits: one run per noise multiplier and seed.

The setting is the README's (``fedmodel train --clients 700 --alpha 0 --sampling-rate 0.15 --rounds 30
--local-epochs 1 --batch-size 8 --lr 0.5 --dp-clip 0.5 --dp-adaptive-clip --dp-noise-multiplier Z``): digits
split IID over 700 clients (two examples each, so client-level DP is nearly example-level), Poisson
sampling at rate 0.15, adaptive clipping from 0.5, epsilon at delta = 1e-3 (below 1/700) from the RDP
accountant, as each run reports it. Each point is the mean final test accuracy over the seeds (the bar: the
smallest and largest); the lines are the same runs without noise (clipping only) and plain FedAvg.

    python scripts/dp_tradeoff.py                      # docs/dp_tradeoff.png and .csv, about two minutes
    python scripts/dp_tradeoff.py --quick --out /tmp/t # two noise levels, one seed, 3 rounds, 200 clients
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedmodel.algorithms import FederatedAlgorithm, fedavg
from fedmodel.data import federated_digits
from fedmodel.privacy import AdaptiveClipping, DPMean, SeededNoise
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, run_simulation

ROOT = Path(__file__).resolve().parents[1]


def _algorithm(noise_multiplier: float | None, expected: float, seed: int) -> FederatedAlgorithm:
    plain = fedavg(epochs=1, batch_size=8, client_lr=0.5)
    if noise_multiplier is None:
        return plain
    dp = DPMean(
        clip=AdaptiveClipping(initial_norm=0.5),
        noise_multiplier=noise_multiplier,
        expected_clients=expected,
        noise=SeededNoise(seed),
    )
    return dataclasses.replace(plain, aggregator=dp)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (noise multiplier or baseline, seed): final test accuracy and epsilon."""
    rows = []
    for z in [*args.noise_multipliers, 0.0, None]:
        for seed in range(args.seeds):
            data = federated_digits(args.clients, alpha=None, seed=seed)
            algorithm = _algorithm(z, args.rate * args.clients, seed)
            config = SimulationConfig(rounds=args.rounds, seed=seed, sampling_rate=args.rate, progress=False)
            if z is not None:
                config = dataclasses.replace(config, delta=args.delta)
            start = time.perf_counter()
            result = run_simulation(
                lambda seed=seed: SoftmaxRegression(64, 10, seed=seed),
                data.clients,
                algorithm,
                config,
                test_data=data.test,
            )
            last = result.rounds[-1]
            rows.append({
                "noise_multiplier": "none" if z is None else z,
                "seed": seed,
                "epsilon": "" if last.epsilon is None else last.epsilon,
                "delta": "" if z is None else args.delta,
                "test_accuracy": last.test["accuracy"],
                "seconds": round(time.perf_counter() - start, 2),
            })  # fmt: skip
            print(", ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def plot(rows: Sequence[dict[str, Any]], path: Path, args: argparse.Namespace) -> None:
    """Accuracy against epsilon (log scale), one point per noise multiplier, baselines as lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def accuracies(z: Any) -> list[float]:
        return [float(r["test_accuracy"]) for r in rows if r["noise_multiplier"] == z]

    figure = Figure(figsize=(6.5, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for z in args.noise_multipliers:
        accs = accuracies(z)
        eps = next(float(r["epsilon"]) for r in rows if r["noise_multiplier"] == z)
        mean = sum(accs) / len(accs)
        ax.errorbar([eps], [mean], yerr=[[mean - min(accs)], [max(accs) - mean]], fmt="o", color="C0", capsize=3)
        ax.annotate(f"z={z:g}", (eps, mean), textcoords="offset points", xytext=(5, -12), fontsize="small")
    for z, label, color in ((0.0, "clipping only (epsilon = inf)", "C1"), ("none", "FedAvg, no DP", "C2")):
        accs = accuracies(z)
        ax.axhline(sum(accs) / len(accs), linestyle="--", color=color, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(f"epsilon after {args.rounds} rounds (delta = {args.delta:g}, RDP)")
    ax.set_ylabel("final test accuracy")
    ax.set_title(f"DP-FedAvg on digits: {args.clients} clients, Poisson q = {args.rate:g}", fontsize="medium")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="lower right")
    figure.savefig(path, dpi=100)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep, write the CSV and the PNG."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--noise-multipliers", type=float, nargs="+", default=[0.6, 0.8, 1.0, 1.5, 2.0, 3.0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--clients", type=int, default=700)
    p.add_argument("--rate", type=float, default=0.15)
    p.add_argument("--delta", type=float, default=1e-3)
    p.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for dp_tradeoff.png and dp_tradeoff.csv")
    p.add_argument(
        "--quick", action="store_true", help="two noise levels, one seed, 3 rounds, 200 clients (a smoke run)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.noise_multipliers, args.seeds, args.rounds, args.clients = [0.5, 1.0], 1, 3, 200
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run(args)
    with open(args.out / "dp_tradeoff.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "dp_tradeoff.png", args)
    print(f"wrote {args.out / 'dp_tradeoff.csv'} and {args.out / 'dp_tradeoff.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
