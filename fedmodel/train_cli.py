"""``fedmodel train``: a federated run on scikit-learn's digits, with any backend and any algorithm.

``fedmodel train --backend numpy torch --algorithm fedavg --clients 20 --rounds 30 --alpha 0.5 --out runs``
prints a table per round, writes ``metrics.csv`` and ``curves.png`` (one line per run) into ``--out``,
and saves each run's final weights there (safetensors through :mod:`fedmodel.checkpoint` when that
module is available, otherwise ``.npz`` without pickle). Frameworks are imported only for the backends
asked for; ``--backend numpy`` needs none.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedmodel import algorithms
from fedmodel._backend import backend_names, backend_package
from fedmodel._weights import ModelWeights

__all__ = ["ALGORITHMS", "BACKENDS", "build_algorithm", "main", "model_factory", "save_weights"]

BACKENDS = ("numpy", *backend_names())
"""``numpy`` (the core's reference model), then every backend installed in the ``fedmodel.backends`` entry points."""
ALGORITHMS = ("fedavg", "fedsgd", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm")
_COLUMNS = (
    "run",
    "round",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "clients_ok",
    "clients_failed",
    "seconds",
)


def model_factory(backend: str, seed: int = 0) -> Callable[[], Any]:
    """A factory of the backend's digits model: numpy softmax regression, or the backend's ``models.mlp()``.

    A backend is found by name in the ``fedmodel.backends`` entry points; its package's
    ``models.mlp(num_features=64, num_classes=10, seed=seed)`` builds the model.

    Raises:
        ValueError: for a backend that is not installed or has no ``models.mlp``.
    """
    if backend == "numpy":
        from fedmodel.reference import SoftmaxRegression

        return lambda: SoftmaxRegression(64, 10, seed=seed)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    mlp = getattr(getattr(backend_package(backend), "models", None), "mlp", None)
    if not callable(mlp):
        raise ValueError(f"the backend {backend!r} has no models.mlp(num_features=, num_classes=, seed=) to train")
    return lambda: mlp(num_features=64, num_classes=10, seed=seed)


def build_algorithm(args: argparse.Namespace) -> algorithms.FederatedAlgorithm:
    """The algorithm named by ``args.algorithm`` with the command line's hyperparameters."""
    local = {"epochs": args.local_epochs, "batch_size": args.batch_size, "client_lr": args.lr}
    server = {} if args.server_lr is None else {"server_lr": args.server_lr}
    name = args.algorithm
    if name == "fedavg":
        return algorithms.fedavg(**local, **server)
    if name == "fedsgd":
        return algorithms.fedsgd(client_lr=args.lr, **server)
    if name == "fedprox":
        return algorithms.fedprox(mu=args.mu, **local, **server)
    if name == "fedavgm":
        return algorithms.fedavgm(momentum=args.server_momentum, **local, **server)
    factory = {"fedadam": algorithms.fedadam, "fedyogi": algorithms.fedyogi, "fedadagrad": algorithms.fedadagrad}
    return factory[name](tau=args.tau, **local, **server)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fedmodel train",
        description="A federated run on scikit-learn's digits, with any backend and any algorithm.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--backend", nargs="+", choices=BACKENDS, default=["numpy"], help="one run per backend")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="fedavg")
    p.add_argument("--clients", type=int, default=20, help="number of clients the training set is split into")
    p.add_argument("--clients-per-round", type=int, default=None, help="sampled per round; None: all of them")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew; 0 for an IID split")
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.2, help="client learning rate (SGD)")
    p.add_argument("--server-lr", type=float, default=None, help="server learning rate; None: the algorithm's own")
    p.add_argument("--server-momentum", type=float, default=0.9, help="FedAvgM's server momentum")
    p.add_argument("--mu", type=float, default=0.01, help="FedProx's proximal coefficient")
    p.add_argument("--tau", type=float, default=1e-3, help="adaptivity of FedAdam/FedYogi/FedAdagrad")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--client-timeout", type=float, default=None, help="seconds before a client is dropped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("fedmodel-run"))
    p.add_argument("--checkpoint", action="store_true", help="save the server state into --out after every round")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out (implies --checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def save_weights(weights: ModelWeights, stem: Path) -> Path:
    """Save ``weights`` as ``stem.safetensors`` via :mod:`fedmodel.checkpoint`, else as ``stem.npz``."""
    try:
        from fedmodel.checkpoint import save_checkpoint
    except ImportError:
        path = stem.with_suffix(".npz")
        arrays: dict[str, Any] = dict(weights.items())
        np.savez(path, allow_pickle=False, **arrays)
        return path
    path = stem.with_suffix(".safetensors")
    save_checkpoint(path, weights)
    return path


def _run_one(args: argparse.Namespace, backend: str, data: Any, rows: list[dict[str, Any]]) -> ModelWeights:
    from tqdm.auto import tqdm

    from fedmodel.simulation import RoundResult, SimulationConfig, run_simulation

    label = f"{backend}/{args.algorithm}"
    print(f"\n{label}: {len(data.clients)} clients, {args.rounds} rounds")
    print(
        f"{'round':>5} {'train loss':>10} {'train acc':>9} {'test loss':>9} {'test acc':>8} {'ok/failed':>9} {'s':>6}"
    )

    def on_round(r: RoundResult) -> None:
        row = {
            "run": label,
            "round": r.round,
            "train_loss": r.train.get("loss"),
            "train_accuracy": r.train.get("accuracy"),
            "test_loss": r.test.get("loss"),
            "test_accuracy": r.test.get("accuracy"),
            "clients_ok": r.num_ok,
            "clients_failed": len(r.failures),
            "seconds": round(r.seconds, 3),
        }
        rows.append(row)
        cells = [_fmt(row[k]) for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")]
        line = f"{r.round:>5} {cells[0]:>10} {cells[1]:>9} {cells[2]:>9} {cells[3]:>8} "
        tqdm.write(line + f"{f'{r.num_ok}/{len(r.failures)}':>9} {r.seconds:>6.2f}")
        for failure in r.failures:
            tqdm.write(f"      client {failure.client_id} dropped: {failure.reason}")

    config = SimulationConfig(
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        seed=args.seed,
        client_timeout=args.client_timeout,
        progress=not args.no_progress,
        checkpoint_path=args.out / f"checkpoint-{backend}-{args.algorithm}.safetensors"
        if args.checkpoint or args.resume
        else None,
        resume=args.resume,
    )
    result = run_simulation(
        model_factory(backend, args.seed),
        data.clients,
        build_algorithm(args),
        config,
        test_data=data.test,
        on_round=on_round,
    )
    return result.weights


def _earlier_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier ``metrics.csv`` (kept when a run is resumed), or none."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fedmodel train`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    from fedmodel.data import federated_digits
    from fedmodel.plotting import plot_curves

    data = federated_digits(args.clients, alpha=args.alpha or None, test_fraction=args.test_fraction, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_rows(args.out / "metrics.csv") if args.resume else []
    rows: list[dict[str, Any]] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    for backend in dict.fromkeys(args.backend):
        label = f"{backend}/{args.algorithm}"
        new: list[dict[str, Any]] = []
        weights = _run_one(args, backend, data, new)
        first = int(new[0]["round"]) if new else args.rounds + 1
        runs[label] = [r for r in earlier if r["run"] == label and int(r["round"]) < first] + new
        rows.extend(runs[label])
        saved = save_weights(weights, args.out / f"weights-{backend}-{args.algorithm}")
        print(f"final weights: {saved}")
    with open(args.out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    plot_curves(runs, args.out / "curves.png")
    print(f"wrote {os.fspath(args.out / 'metrics.csv')} and {os.fspath(args.out / 'curves.png')}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
