#!/usr/bin/env python3
"""Reproduce the synthetic(1, 1) column of Figure 1 of the FedProx paper with fedmodel.

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, "Federated Optimization in Heterogeneous Networks",
MLSys 2020, Figure 1: training loss against rounds with 0 %, 50 % and 90 % stragglers, for FedAvg
(which drops the stragglers), FedProx with mu = 0 (which keeps their partial work) and FedProx with
mu > 0 (mu = 1 on the synthetic data). The settings are the paper's (its ``run_fedprox.sh``):

- data: synthetic(1, 1), 30 devices, 60 features, 10 classes, 90 % of each device for training;
- model: multinomial logistic regression (``fedmodel.reference.SoftmaxRegression(60, 10)``);
- 200 rounds, 10 devices sampled per round, E = 20 local epochs, batch size 10, SGD with lr 0.01;
- a straggler does a uniform 1..19 epochs (``fedmodel.heterogeneity.StragglingSGD``).

The paper's result: FedAvg's loss oscillates or diverges as stragglers increase, FedProx mu = 0 does
better by keeping partial work, and mu = 1 converges steadily in every panel.

    python scripts/fedprox_synthetic.py                    # the paper's settings (27 min on a shared 2-core machine)
    python scripts/fedprox_synthetic.py --rounds 20 --out /tmp/fedprox   # a quick look

writes ``fedprox_synthetic_1_1.csv`` (one row per run and round) and ``fedprox_synthetic_1_1.png``
into ``--out`` (default ``docs/reproductions``).
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

from fedmodel.algorithms import FederatedAlgorithm, fedavg, fedprox
from fedmodel.data import federated_synthetic, pool_clients
from fedmodel.evaluation import evaluate
from fedmodel.heterogeneity import StragglingSGD
from fedmodel.optimizers import SGD
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, run_simulation

METHODS = ("FedAvg", "FedProx (mu=0)", "FedProx (mu=1)")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "reproductions"


@dataclasses.dataclass(frozen=True)
class Settings:
    """One reproduction's settings; the defaults are the paper's."""

    alpha: float = 1.0
    beta: float = 1.0
    rounds: int = 200
    clients_per_round: int = 10
    epochs: int = 20
    batch_size: int = 10
    lr: float = 0.01
    mu: float = 1.0
    stragglers: tuple[float, ...] = (0.0, 0.5, 0.9)
    seed: int = 0


def algorithm(method: str, settings: Settings, fraction: float) -> FederatedAlgorithm:
    """The method's algorithm with its straggling clients: FedAvg drops them, FedProx keeps their work."""
    s = settings
    mu = s.mu if method == "FedProx (mu=1)" else 0.0
    client = StragglingSGD(
        s.epochs, s.batch_size, SGD(s.lr, proximal_mu=mu), fraction=fraction, drop_stragglers=method == "FedAvg"
    )
    if mu > 0:
        return dataclasses.replace(
            fedprox(mu=mu, epochs=s.epochs, batch_size=s.batch_size, client_lr=s.lr), client_update=client
        )
    base = fedavg(epochs=s.epochs, batch_size=s.batch_size, client_lr=s.lr)
    return dataclasses.replace(base, name="fedavg" if method == "FedAvg" else "fedprox_mu0", client_update=client)


def run(method: str, settings: Settings, fraction: float) -> list[dict[str, Any]]:
    """One run: a row per round (round 0 is the initial model) with the global model's training loss
    over all devices' training data, the clients whose update arrived, and the final test accuracy."""
    data = federated_synthetic(settings.alpha, settings.beta, seed=settings.seed)
    train = pool_clients(data.clients)

    def model() -> SoftmaxRegression:
        return SoftmaxRegression(60, 10, seed=settings.seed)

    config = SimulationConfig(
        rounds=settings.rounds, clients_per_round=settings.clients_per_round, seed=settings.seed, progress=False
    )
    initial = evaluate(model(), [train])
    result = run_simulation(model, data.clients, algorithm(method, settings, fraction), config, test_data=train)
    test = evaluate(model(), [data.test], weights=result.weights)
    common = {"stragglers": fraction, "method": method, "test_accuracy": ""}
    rows = [{**common, "round": 0, "train_loss": float(initial["loss"]), "clients_ok": ""}]
    for r in result.rounds:
        rows.append({**common, "round": r.round, "train_loss": float(r.test["loss"]), "clients_ok": r.num_ok})
    rows[-1]["test_accuracy"] = float(test["accuracy"])
    return rows


def reproduce(settings: Settings, *, verbose: bool = False) -> list[dict[str, Any]]:
    """Every (straggler fraction, method) run; with no stragglers FedAvg and FedProx mu=0 are one run."""
    rows: list[dict[str, Any]] = []
    for fraction in settings.stragglers:
        for method in METHODS:
            start = time.perf_counter()
            if fraction == 0 and method == "FedProx (mu=0)":
                same = [r for r in rows if r["stragglers"] == fraction and r["method"] == "FedAvg"]
                new = [{**r, "method": method} for r in same]
            else:
                new = run(method, settings, fraction)
            rows.extend(new)
            if verbose:
                print(
                    f"{fraction:4.0%} stragglers  {method:15s} final training loss {new[-1]['train_loss']:.3f}  "
                    f"test accuracy {new[-1]['test_accuracy']:.3f}  ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    return rows


def plot(rows: Sequence[dict[str, Any]], path: Path, settings: Settings) -> None:
    """One panel per straggler fraction, training loss against rounds, one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fractions = sorted({float(r["stragglers"]) for r in rows})
    figure = Figure(figsize=(4 * len(fractions), 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(fractions), sharey=True, squeeze=False)[0]
    styles = {"FedAvg": ("C0", "-"), "FedProx (mu=0)": ("C1", "--"), "FedProx (mu=1)": ("C2", "-")}
    for ax, fraction in zip(axes, fractions, strict=True):
        for method, (color, style) in styles.items():
            points = [
                (int(r["round"]), float(r["train_loss"]))
                for r in rows
                if float(r["stragglers"]) == fraction and r["method"] == method
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, color=color, label=method, linewidth=1.2)
        ax.set_title(f"synthetic({settings.alpha:g},{settings.beta:g}), {fraction:.0%} stragglers", fontsize=10)
        ax.set_xlabel("# rounds")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss")
    axes[-1].legend(fontsize="small")
    figure.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reproduction and write its CSV and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=Settings.rounds)
    parser.add_argument("--epochs", type=int, default=Settings.epochs)
    parser.add_argument("--clients-per-round", type=int, default=Settings.clients_per_round)
    parser.add_argument("--stragglers", type=float, nargs="+", default=list(Settings.stragglers))
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    settings = Settings(
        rounds=args.rounds,
        epochs=args.epochs,
        clients_per_round=args.clients_per_round,
        stragglers=tuple(args.stragglers),
        seed=args.seed,
    )
    rows = reproduce(settings, verbose=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"fedprox_synthetic_{settings.alpha:g}_{settings.beta:g}"
    with open(args.out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["stragglers", "method", "round", "train_loss", "clients_ok", "test_accuracy"]
        )
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / f"{name}.png", settings)
    print(f"wrote {args.out / name}.csv and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
