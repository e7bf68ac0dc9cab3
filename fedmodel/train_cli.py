"""``fedmodel train``: a federated run on a data set (``--data``), with any backend and any algorithm.

``fedmodel train --backend numpy torch --algorithm fedavg --clients 20 --rounds 30 --alpha 0.5 --out runs``
prints a table per round, appends each round's row to ``metrics.csv`` as it ends, and writes
``curves.png`` (one line per run) and each run's final weights (``weights-<backend>-<algorithm>.safetensors``)
into ``--out``. Frameworks are imported only for the backends asked for; ``--backend numpy`` needs none.

``--data`` picks the data (:func:`fedmodel.data.load_federated`): ``digits`` (the default: scikit-learn's
digits cut into ``--clients`` clients by ``--alpha``), ``synthetic:ALPHA,BETA`` or ``synthetic:iid``
(FedProx's synthetic data, ``--clients`` devices, 30 by default), ``leaf:DIR`` or ``tff-h5:FILE`` (files
with natural clients: their users are the clients, ``--clients`` is refused, ``--clients-per-round``
samples them). ``--data-option KEY=VALUE`` passes the source's other options. The model is the one its
task's kind asks for (``mlp``, ``cnn28``, ``char_rnn`` ...: :data:`fedmodel.data.MODEL_KINDS`) from the
backend's ``models`` module; the run is evaluated on the task's pooled test set.

Everything is checked before the first round: each option's value, the backends, the data split, that
``--out`` is a folder this process can write to, that no output is a FIFO or another special file, and
with ``--resume`` each checkpoint (its round at most ``--rounds``, its configuration this one). A user
error is one line on stderr and exit status 2; a failure during the run (a checkpoint that cannot be
written) one line and status 1; Ctrl-C status 130. ``metrics.csv`` keeps every finished round.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fedmodel import _train_dp, algorithms
from fedmodel._backend import backend_names, backend_package
from fedmodel._errors import BackendError, DataError, FedModelError, SpecError
from fedmodel._executors import EXECUTORS, MAX_CLIENT_TIMEOUT
from fedmodel._run_outputs import OutputError, check_folder, earlier_rows, metrics_file
from fedmodel._weights import ModelWeights

if TYPE_CHECKING:
    from fedmodel.data import FederatedData, FederatedTask
    from fedmodel.simulation import SimulationConfig

__all__ = [
    "ALGORITHMS",
    "BACKENDS",
    "DATA_OPTIONS",
    "ModelKindError",
    "build_algorithm",
    "main",
    "model_factory",
    "save_weights",
]

PROG = "fedmodel train"
BACKENDS = ("numpy", *backend_names())
"""``numpy`` (the core's reference model), then every backend installed in the ``fedmodel.backends`` entry points."""
ALGORITHMS = ("fedavg", "fedsgd", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm")
_LOCAL = ("local_epochs", "batch_size", "lr", "server_lr")
# the options each algorithm reads (build_algorithm): they change its result, so --resume compares them
_OPTIONS = {
    "fedavg": _LOCAL,
    "fedsgd": ("lr", "server_lr"),
    "fedprox": (*_LOCAL, "mu"),
    "fedavgm": (*_LOCAL, "server_momentum"),
    "fedadam": (*_LOCAL, "tau"),
    "fedyogi": (*_LOCAL, "tau"),
    "fedadagrad": (*_LOCAL, "tau"),
}


class ModelKindError(ValueError):
    """A backend without a model of the kind a data set asks for (the message names both and its kinds)."""


def _kind_arguments(task: FederatedTask | None) -> tuple[str, dict[str, int]]:
    """The model kind of ``task`` (None: the digits) and the keyword arguments its factory takes besides seed."""
    if task is None:
        return "mlp", {"num_features": 64, "num_classes": 10}
    if task.model_kind == "mlp":
        shape = task.input_spec[0].shape
        if len(shape) != 2 or shape[1] is None:
            raise DataError(f"data source {task.source!r}: an mlp task needs flat features, got x of shape {shape}")
        return "mlp", {"num_features": int(shape[1]), "num_classes": task.num_classes}
    arguments = {"num_classes": task.num_classes}
    if task.vocab_size is not None:
        arguments = {"vocab_size": task.vocab_size, **arguments}
    length = task.input_spec[0].shape[1] if len(task.input_spec[0].shape) == 2 else None
    if task.model_kind in _WINDOWS and length != _WINDOWS[task.model_kind]:  # --data-option sequence_length=
        arguments["length"] = int(length or 0)
    return task.model_kind, arguments


_WINDOWS = {"char_rnn_seq": 80, "word_rnn_seq": 20}  # their factories' default length (TFF's windows)


def model_factory(backend: str, seed: int = 0, task: FederatedTask | None = None) -> Callable[[], Any]:
    """A factory of the model that fits ``task`` (default: the digits) in ``backend``.

    The model is the factory named by the task's kind in the backend's ``models`` module: ``mlp(num_features=F,
    num_classes=C, seed=)``, ``cnn28(num_classes=C, seed=)``, ``char_rnn(vocab_size=V, num_classes=C, seed=)``,
    and so on for each kind of :data:`fedmodel.data.MODEL_KINDS` (``vocab_size`` for the text kinds). The
    ``numpy`` reference backend has ``mlp`` only (softmax regression). A backend is found by name in the
    ``fedmodel.backends`` entry points.

    Raises:
        ValueError: for a backend that is not installed; :class:`ModelKindError` for one without the kind's
            factory (the message names the backend, the kind and the kinds it has).
        BackendError: when importing the backend fails.
    """
    from fedmodel.data import MODEL_KINDS

    kind, arguments = _kind_arguments(task)
    where = "" if task is None else f" for --data {task.source}"
    if backend == "numpy":
        if kind != "mlp":
            raise ModelKindError(
                f"--backend numpy has no model of kind {kind} ({MODEL_KINDS.get(kind, '?')}){where}; its kinds: mlp"
            )
        from fedmodel.reference import SoftmaxRegression

        return lambda: SoftmaxRegression(arguments["num_features"], arguments["num_classes"], seed=seed)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    models = getattr(backend_package(backend), "models", None)
    build = getattr(models, kind, None)
    if not callable(build):
        if task is None:
            raise ValueError(f"the backend {backend!r} has no models.mlp(num_features=, num_classes=, seed=) to train")
        kinds = ", ".join(k for k in MODEL_KINDS if callable(getattr(models, k, None))) or "none"
        raise ModelKindError(
            f"--backend {backend} has no model of kind {kind} ({MODEL_KINDS.get(kind, '?')}){where}; its kinds: {kinds}"
        )
    return lambda: build(**arguments, seed=seed)


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


class _UsageError(Exception):
    """A user error found before training: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``fedmodel train: error: ...``) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _value(rule: str, convert: Callable[[str], Any], ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return value

    return parse


def _folder(text: str) -> Path:
    if not text.strip():  # an unset "$OUTDIR" would write into the current directory
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    return Path(text)


_COUNT = _value("an integer >= 1", int, lambda v: v >= 1)
_WORKERS = _value("an integer >= 0", int, lambda v: v >= 0)
_SEED = _value("an integer in [0, 2**63)", int, lambda v: 0 <= v < 2**63)
_POSITIVE = _value("a finite number > 0", float, lambda v: math.isfinite(v) and v > 0)
_TIMEOUT = _value(f"a number in (0, {MAX_CLIENT_TIMEOUT}]", float, lambda v: 0 < v <= MAX_CLIENT_TIMEOUT)
_NON_NEGATIVE = _value("a finite number >= 0", float, lambda v: math.isfinite(v) and v >= 0)
_FRACTION = _value("a number in (0, 1)", float, lambda v: 0 < v < 1)
_MOMENTUM = _value("a number in [0, 1)", float, lambda v: 0 <= v < 1)

SOURCES = ("digits", "synthetic:ALPHA,BETA", "synthetic:iid", "leaf:DIR", "tff-h5:FILE")
_TEXT = _value("a non-empty text", str, bool)
DATA_OPTIONS: dict[str, tuple[Callable[[str], Any], tuple[str, ...]]] = {
    "task": (_TEXT, ("leaf", "tff-h5")),
    "num_classes": (_COUNT, ("leaf", "tff-h5")),
    "vocab_size": (_COUNT, ("leaf", "tff-h5")),
    "max_test_clients": (_COUNT, ("leaf", "tff-h5")),
    "sent140_input": (_value("bag or words", str, lambda v: v in ("bag", "words")), ("leaf",)),
    "test_path": (_TEXT, ("tff-h5",)),
    "word_counts": (_TEXT, ("tff-h5",)),
    "sequence_length": (_COUNT, ("tff-h5",)),
    "train_fraction": (_FRACTION, ("synthetic",)),
}
"""The ``--data-option KEY=VALUE`` keys: each one's parser and the sources that take it (their meaning:
:func:`fedmodel.data.load_federated`). The other options of digits and synthetic are ``--clients``,
``--alpha`` and ``--test-fraction``."""
_DIGITS_ONLY = {"alpha": "--alpha", "test_fraction": "--test-fraction"}


def _data_option(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if key not in DATA_OPTIONS:
        raise argparse.ArgumentTypeError(f"unknown KEY {key!r}; choose from {', '.join(DATA_OPTIONS)}")
    try:
        return key, DATA_OPTIONS[key][0](value)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{key}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    from fedmodel import __version__

    p = _Parser(
        prog=PROG,
        description="A federated run on a data set (--data), with any backend and any algorithm.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("--version", action="version", version=f"fedmodel {__version__}")
    add("--backend", nargs="+", choices=BACKENDS, default=["numpy"], help="one run per backend, one after another")
    add("--algorithm", choices=ALGORITHMS, default="fedavg", help="the federated algorithm")
    add(
        "--data",
        metavar="SOURCE",
        default="digits",
        help="the data: " + ", ".join(SOURCES) + " (files bring their own clients)",
    )
    add(
        "--data-option",
        metavar="KEY=VALUE",
        type=_data_option,
        action="append",
        help="a data source's option, repeatable: " + ", ".join(DATA_OPTIONS) + " (see the README)",
    )
    add(
        "--clients",
        type=_COUNT,
        default=None,
        help="number of clients the data is split into; None: 20 digits clients, 30 synthetic devices "
        "(refused for leaf and tff-h5: their users are the clients)",
    )
    add("--clients-per-round", type=_COUNT, default=None, help="clients sampled per round; None: all of them")
    add("--rounds", type=_COUNT, default=30, help="total rounds (with --resume: up to this round)")
    add("--alpha", type=_NON_NEGATIVE, default=0.5, help="digits: Dirichlet label skew across clients; 0: an IID split")
    add("--local-epochs", type=_COUNT, default=2, help="epochs of local SGD per client and round")
    add("--batch-size", type=_COUNT, default=16, help="client batch size")
    add("--lr", type=_POSITIVE, default=0.2, help="client learning rate (SGD)")
    add("--server-lr", type=_POSITIVE, default=None, help="server learning rate; None: the algorithm's own")
    add("--server-momentum", type=_MOMENTUM, default=0.9, help="FedAvgM's server momentum")
    add("--mu", type=_POSITIVE, default=0.01, help="FedProx's proximal coefficient")
    add("--tau", type=_POSITIVE, default=1e-3, help="adaptivity of FedAdam, FedYogi and FedAdagrad")
    add("--test-fraction", type=_FRACTION, default=0.2, help="digits: share held out for evaluation")
    add(
        "--client-timeout",
        type=_TIMEOUT,
        default=None,
        help=f"seconds before a client is dropped, at most {MAX_CLIENT_TIMEOUT} (a week); None: never",
    )
    add(
        "--workers",
        type=_WORKERS,
        default=0,
        help="run each round's clients in this many worker processes (one per CPU is the usual choice); the results "
        "are bit for bit those of 0: one after another in this process",
    )
    add(
        "--executor",
        choices=EXECUTORS,
        default="processes",
        help="what the --workers are: processes on this machine, or Ray actors (a Ray cluster if one is initialized; "
        "pip install 'fedmodel[ray]')",
    )
    _train_dp.add_options(p, _POSITIVE, _NON_NEGATIVE, _FRACTION)
    add("--seed", type=_SEED, default=0, help="root of every random choice: split, sampling, initial weights")
    add("--out", type=_folder, default=Path("fedmodel-run"), help="folder for metrics.csv, curves.png, weights")
    add("--checkpoint", action="store_true", help="save each run's server state into --out after every round")
    add("--resume", action="store_true", help="continue each run from its checkpoint in --out (implies --checkpoint)")
    add("--no-progress", action="store_true", help="no progress bar (it is shown only when stderr is a terminal)")
    return p


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def save_weights(weights: ModelWeights, stem: Path) -> Path:
    """Save ``weights`` as ``stem.safetensors`` with :func:`fedmodel.checkpoint.save_checkpoint`."""
    from fedmodel.checkpoint import save_checkpoint

    path = stem.with_suffix(".safetensors")
    save_checkpoint(path, weights)
    return path


@dataclass
class _Run:
    """One backend's run: how it is made and configured, and its rows (earlier ones kept, then new ones)."""

    backend: str
    label: str
    factory: Callable[[], Any]
    config: SimulationConfig
    rows: list[dict[str, Any]] = field(default_factory=list)
    rounds_run: int = 0
    updates_accepted: int = 0


@dataclass
class _Plan:
    """Everything checked before the first round."""

    data: FederatedData
    algorithm: algorithms.FederatedAlgorithm
    runs: list[_Run]
    kept_rows: list[dict[str, Any]]
    dp: _train_dp.DPPlan | None = None


def _run_options(args: argparse.Namespace, backend: str, dp: _train_dp.DPPlan | None) -> dict[str, str | int | float]:
    """The options besides seed, sampling and algorithm that change a run's result (kept in checkpoints)."""
    options: dict[str, str | int | float] = {"--backend": backend, "--clients": args.clients}
    if args.data == "digits":  # the keys of a checkpoint written before --data existed
        options.update({"--alpha": args.alpha, "--test-fraction": args.test_fraction})
    else:
        options["--data"] = args.data
    for key, value in args.data_option or ():
        options[f"--data-option {key}"] = value
    for name in _OPTIONS[args.algorithm]:
        value = getattr(args, name)
        options["--" + name.replace("_", "-")] = "default" if value is None else value
    options.update(_train_dp.run_options(args, dp))
    return options


def _config(args: argparse.Namespace, backend: str, dp: _train_dp.DPPlan | None) -> SimulationConfig:
    from fedmodel.simulation import SimulationConfig

    checkpoint = args.out / f"checkpoint-{backend}-{args.algorithm}.safetensors"
    return SimulationConfig(
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        seed=args.seed,
        client_timeout=args.client_timeout,
        workers=args.workers,
        executor=args.executor,
        progress=not args.no_progress and sys.stderr.isatty(),
        checkpoint_path=checkpoint if args.checkpoint or args.resume else None,
        resume=args.resume,
        run_options=_run_options(args, backend, dp),
        sampling_rate=args.sampling_rate,
        delta=None if dp is None else dp.delta,
        target_epsilon=None if dp is None else dp.target_epsilon,
    )


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``load_federated`` gets for ``--data``, after checking each applies to the source."""
    kind = args.data.partition(":")[0]
    given: set[str] = getattr(args, "given", set())
    if kind != "digits":
        for dest, option in _DIGITS_ONLY.items():
            if dest in given:
                raise _UsageError(f"{option} applies only to --data digits, not {args.data}")
    options: dict[str, Any] = {}
    for key, value in args.data_option or ():
        takes = DATA_OPTIONS[key][1]
        if kind not in takes:
            raise _UsageError(
                f"--data-option {key}: --data {kind} does not take it (it is an option of {' and '.join(takes)})"
            )
        if key in options:
            raise _UsageError(f"--data-option {key} given twice")
        options[key] = value
    if kind == "digits":
        options.update(num_clients=args.clients or 20, alpha=args.alpha or None, test_fraction=args.test_fraction)
    elif kind == "synthetic":
        options["num_devices"] = args.clients or 30
    elif kind in ("leaf", "tff-h5") and args.clients is not None:
        raise _UsageError(
            f"--clients: {args.data} brings its own clients (its users); leave --clients out, and sample them "
            "with --clients-per-round or --sampling-rate"
        )
    return options


def _load_task(args: argparse.Namespace) -> FederatedTask:
    """The data of ``--data``; sets ``args.clients`` to its number of clients."""
    from fedmodel.data import load_federated

    options = _data_options(args)
    try:
        task = load_federated(args.data, seed=args.seed, **options)
    except DataError as exc:
        hint = " (from --clients, --alpha or --test-fraction)" if args.data == "digits" else ""
        raise _UsageError(f"{exc}{hint}") from None
    except OSError as exc:  # a file that cannot be read
        raise _UsageError(f"--data {args.data}: {exc.strerror or exc}") from None
    args.clients = len(task.data.clients)
    return task


def _check_fit(backend: str, task: FederatedTask, factory: Callable[[], Any]) -> None:
    """Build the model once and check that it takes the task's test set and first client (spec and labels)."""
    from fedmodel._specs import check_spec

    kind = task.model_kind
    try:
        model = factory()
    except TypeError as exc:  # a factory whose signature is not the kind's
        raise _UsageError(f"--backend {backend}: its models.{kind} cannot build the model: {exc}") from None
    try:
        for part in (task.data.test, task.data.clients[0]):
            if len(part):
                check_spec(model.input_spec, (part.x, part.y))
    except SpecError as exc:
        raise _UsageError(f"--backend {backend}: its {kind} model does not fit --data {task.source}: {exc}") from None


def _prepare(args: argparse.Namespace) -> _Plan:
    """Check everything a run needs before its first round; raises _UsageError with one line."""
    task = _load_task(args)
    if args.clients_per_round is not None and args.clients_per_round > args.clients:
        if args.data == "digits":
            raise _UsageError(f"--clients-per-round {args.clients_per_round} exceeds --clients {args.clients}")
        raise _UsageError(
            f"--clients-per-round {args.clients_per_round} exceeds the {args.clients} clients of --data {args.data}"
        )
    try:
        dp = _train_dp.plan(args)
    except _train_dp.DPOptionError as exc:
        raise _UsageError(str(exc)) from None
    _check_executor(args.workers, args.executor)
    backends = list(dict.fromkeys(args.backend))
    runs = []
    for backend in backends:
        try:
            factory = model_factory(backend, args.seed, None if args.data == "digits" else task)
        except ModelKindError as exc:
            raise _UsageError(str(exc)) from None
        except (ImportError, ValueError, BackendError) as exc:
            raise _UsageError(f"--backend {backend}: cannot load it: {exc}") from None
        if args.data != "digits":
            _check_fit(backend, task, factory)
        runs.append(_Run(backend, f"{backend}/{args.algorithm}", factory, _config(args, backend, dp)))
    data = task.data
    try:
        algorithm = build_algorithm(args)
        if dp is not None:  # DP-FedAvg: the algorithm's clients and server optimizer, DPMean's aggregate
            algorithm = dataclasses.replace(algorithm, aggregator=dp.aggregator)
    except ValueError as exc:
        raise _UsageError(f"{exc} (from the algorithm's options)") from None
    stems = [f"{kind}-{b}-{args.algorithm}.safetensors" for b in backends for kind in ("weights", "checkpoint")]
    try:  # the first thing written: --out itself
        check_folder(args.out, [args.out / name for name in ("metrics.csv", "curves.png", *stems)])
        earlier = earlier_rows(args.out / "metrics.csv") if args.resume else []
    except OutputError as exc:
        raise _UsageError(str(exc)) from None
    starts = {run.label: _start(run, algorithm, len(data.clients)) for run in runs}
    kept = [r for r in earlier if r["run"] not in starts or int(r["round"]) <= starts[r["run"]]]
    for run in runs:
        run.rows = [r for r in kept if r["run"] == run.label]
    return _Plan(data, algorithm, runs, kept, dp)


def _check_executor(workers: int, executor: str) -> None:
    """``--executor ray`` needs ``--workers N`` (the number of actors) and Ray installed."""
    if executor != "ray":
        return
    if workers == 0:
        raise _UsageError("--executor ray runs the clients in Ray actors: give their number with --workers N")
    if importlib.util.find_spec("ray") is None:
        raise _UsageError("--executor ray needs Ray: pip install 'fedmodel[ray]'")


def _start(run: _Run, algorithm: algorithms.FederatedAlgorithm, num_clients: int) -> int:
    """The round ``run`` resumes from (0 without a checkpoint), after checking its checkpoint fits."""
    path = run.config.checkpoint_path
    if path is None or not run.config.resume:
        return 0
    if not os.path.lexists(path):
        print(f"{run.label}: no checkpoint at {path}; --resume starts this run from round 0")
        return 0
    from fedmodel._resume import load_state  # the runner's own check, run before anything is written
    from fedmodel._weights import get_weights

    fresh = algorithm.init(get_weights(run.factory()))
    try:
        state = load_state(run.config, algorithm, fresh, num_clients)
    except FedModelError as exc:  # CheckpointError, or WeightsError: a checkpoint of another model
        raise _UsageError(f"--resume: {exc}") from None
    print(f"{run.label}: resuming from {path} after round {state.round}")
    return int(state.round)


def _train_one(args: argparse.Namespace, plan: _Plan, run: _Run, write_row: Callable[[dict[str, Any]], None]) -> None:
    from tqdm.auto import tqdm

    from fedmodel.simulation import RoundResult, run_simulation

    source = "" if args.data == "digits" else f" {args.data},"
    print(f"\n{run.label}:{source} {len(plan.data.clients)} clients, {args.rounds} rounds")
    if plan.dp is not None:
        print(plan.dp.describe(args.rounds))
    header = (
        f"{'round':>5} {'train loss':>10} {'train acc':>9} {'test loss':>9} {'test acc':>8} {'ok/failed':>9} {'s':>6}"
    )
    print(header + (f" {'epsilon':>8}" if plan.dp is not None else ""))

    def on_round(r: RoundResult) -> None:
        row = {
            "run": run.label,
            "round": r.round,
            "train_loss": r.train.get("loss"),
            "train_accuracy": _accuracy(r.train),
            "test_loss": r.test.get("loss"),
            "test_accuracy": _accuracy(r.test),
            "clients_ok": r.num_ok,
            "clients_failed": len(r.failures),
            "seconds": round(r.seconds, 3),
            "epsilon": r.epsilon,
        }
        write_row(row)
        run.rows.append(row)
        run.rounds_run += 1
        run.updates_accepted += r.num_ok
        cells = [_fmt(row[k]) for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")]
        line = f"{r.round:>5} {cells[0]:>10} {cells[1]:>9} {cells[2]:>9} {cells[3]:>8} "
        line += f"{f'{r.num_ok}/{len(r.failures)}':>9} {r.seconds:>6.2f}"
        tqdm.write(line + (f" {r.epsilon:>8.4g}" if r.epsilon is not None else ""), file=sys.stdout)
        for failure in r.failures:
            tqdm.write(f"      client {failure.client_id} dropped: {failure.reason}", file=sys.stdout)
        sys.stdout.flush()

    data = plan.data
    result = run_simulation(
        run.factory, data.clients, plan.algorithm, run.config, test_data=data.test, on_round=on_round
    )
    if result.stopped is not None:
        print(f"{run.label}: stopped after round {result.state.round}: {result.stopped}")
    saved = save_weights(result.weights, args.out / f"weights-{run.backend}-{args.algorithm}")
    print(f"final weights: {saved}")


def _accuracy(metrics: Mapping[str, Any]) -> Any:
    """The accuracy column: the standard ``accuracy``, or a next-token model's ``token_accuracy`` (its examples are
    sequences, so the standard one does not apply); None for a model with neither."""
    return metrics.get("accuracy", metrics.get("token_accuracy"))


def _train(args: argparse.Namespace, plan: _Plan) -> int:
    from fedmodel.plotting import plot_curves

    metrics = args.out / "metrics.csv"
    with metrics_file(metrics, plan.kept_rows) as write_row:  # fresh: empty; resumed: the earlier rounds
        for run in plan.runs:
            _train_one(args, plan, run, write_row)
    plot_curves({run.label: run.rows for run in plan.runs}, args.out / "curves.png")
    print(f"wrote {os.fspath(metrics)} and {os.fspath(args.out / 'curves.png')}")
    idle = [run.label for run in plan.runs if run.rounds_run and not run.updates_accepted]
    if idle:
        print(f"{PROG}: error: no client update was accepted in {', '.join(idle)} (see why above)", file=sys.stderr)
        return 1
    return 0


def _given(argv: Sequence[str] | None) -> set[str]:
    """The destinations of the options ``argv`` sets explicitly (a default is not a choice)."""
    parser = _parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(sys.argv[1:] if argv is None else list(argv))))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fedmodel train`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help or --version (0), or a usage error already printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    args.given = _given(argv)
    try:
        plan = _prepare(args)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while the data loads or the backends import: nothing has trained yet
        print(f"\n{PROG}: interrupted before the first round", file=sys.stderr)
        return 130
    try:
        return _train(args, plan)
    except KeyboardInterrupt:
        again = "rerun the same command with --resume" if args.checkpoint or args.resume else "add --checkpoint"
        print(f"\n{PROG}: interrupted; metrics.csv has every finished round ({again} to continue)", file=sys.stderr)
        return 130
    except (FedModelError, OSError) as exc:  # e.g. a checkpoint that cannot be written: the earlier one stays
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
