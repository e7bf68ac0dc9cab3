"""The simulation runner: many clients, one process, one model instance, reproducible from a seed.

Each round samples clients with ``np.random.default_rng([seed, round])`` and gives each client the seed
``SeedSequence([seed, round, client_id])`` for its example order, so a run resumed at round ``r`` (from a
checkpoint or an ``initial_state``) continues exactly as the uninterrupted run. Clients run one after
another on one model instance (weights assigned, metrics reset, a fresh optimizer each time). A client
that raises, overruns ``client_timeout`` or returns an invalid update (wrong shape or dtype, NaN) is
dropped and reported in :attr:`RoundResult.failures`; the server state only ever sees validated updates.

>>> from fedmodel.reference import SoftmaxRegression
>>> from fedmodel.data import federated_digits
>>> from fedmodel.algorithms import fedavg
>>> data = federated_digits(num_clients=5, alpha=None)
>>> result = run_simulation(lambda: SoftmaxRegression(64, 10), data.clients, fedavg(client_lr=0.5),
...                         SimulationConfig(rounds=2, progress=False), test_data=data.test)
>>> [r.round for r in result.rounds], result.rounds[-1].test["accuracy"] > 0.5
([1, 2], True)
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmodel._backend import Backend, backend_for
from fedmodel._errors import CheckpointError
from fedmodel._weights import ModelWeights, get_weights
from fedmodel.aggregation import check_update
from fedmodel.algorithms import FederatedAlgorithm, ServerState
from fedmodel.client import ClientResult
from fedmodel.data import ClientData
from fedmodel.evaluation import evaluate
from fedmodel.server_optimizers import state_from_arrays, state_to_arrays

__all__ = [
    "ClientFailure",
    "RoundResult",
    "SimulationConfig",
    "SimulationResult",
    "client_seed",
    "run_simulation",
    "sample_clients",
]


@dataclass(frozen=True)
class SimulationConfig:
    """How a simulation runs.

    Args:
        rounds: total number of rounds (a resumed run continues up to this number).
        clients_per_round: clients sampled (without replacement) per round; ``None``: all of them.
        seed: the root of every random choice of the run.
        client_timeout: seconds a client may take; an overrunning client is abandoned in its worker
            thread, reported, and the runner continues on a fresh model instance from the factory.
        eval_batch_size: batch size of the held-out evaluation.
        progress: show a tqdm progress bar.
        checkpoint_path: save weights and server-optimizer state there after every round.
        resume: start from ``checkpoint_path`` when it exists. The checkpoint must be of this run: its
            round at most ``rounds``, and the same algorithm (by name), ``seed``, ``clients_per_round``
            and ``run_options``; otherwise :class:`~fedmodel.CheckpointError` names each difference.
        run_options: what else decides the result (e.g. the command line's data split and
            hyperparameters, which the runner cannot see): ``str`` keys to ``str``, ``int`` or finite
            ``float`` values, saved with every checkpoint and compared on resume.
    """

    rounds: int = 10
    clients_per_round: int | None = None
    seed: int = 0
    client_timeout: float | None = None
    eval_batch_size: int = 256
    progress: bool = True
    checkpoint_path: str | os.PathLike[str] | None = None
    resume: bool = False
    run_options: Mapping[str, str | int | float] | None = None


@dataclass(frozen=True)
class ClientFailure:
    """A client dropped from a round, and why."""

    client_id: int
    reason: str


@dataclass(frozen=True)
class RoundResult:
    """One round: the sampled clients, aggregated train metrics, held-out metrics, failures, duration."""

    round: int
    clients: tuple[int, ...]
    train: dict[str, Any]
    test: dict[str, Any]
    failures: tuple[ClientFailure, ...]
    seconds: float

    @property
    def num_ok(self) -> int:
        """Clients whose update was aggregated."""
        return len(self.clients) - len(self.failures)


@dataclass
class SimulationResult:
    """The final server state and every round's result."""

    state: ServerState
    rounds: list[RoundResult] = field(default_factory=list)

    @property
    def weights(self) -> ModelWeights:
        """The final global weights."""
        return self.state.weights


def sample_clients(num_clients: int, per_round: int | None, seed: int, round_index: int) -> list[int]:
    """Client ids for round ``round_index`` (0-based), sorted, from ``default_rng([seed, round_index])``."""
    if per_round is None or per_round >= num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng([seed, round_index])
    return sorted(int(i) for i in rng.choice(num_clients, size=per_round, replace=False))


def client_seed(seed: int, round_index: int, client_id: int) -> int:
    """The seed of one client in one round: independent of which other clients were sampled."""
    return int(np.random.SeedSequence([seed, round_index, client_id]).generate_state(1)[0])


class _TimeoutError(Exception):
    pass


def _run_client(
    algorithm: FederatedAlgorithm,
    model: Any,
    backend: Backend,
    weights: ModelWeights,
    data: ClientData,
    seed: int,
    timeout: float | None,
) -> ClientResult:
    if timeout is None:
        return algorithm.client_update(model, backend, weights, data, seed)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = algorithm.client_update(model, backend, weights, data, seed)
        except BaseException as exc:  # reported by the caller, in the runner's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="fedmodel-client", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise _TimeoutError(f"no result within client_timeout={timeout}s; the client was abandoned")
    if "error" in box:
        raise box["error"]
    result: ClientResult = box["result"]
    return result


def _load(
    config: SimulationConfig, algorithm: FederatedAlgorithm, fresh: ServerState, num_clients: int | None = None
) -> ServerState:
    """The state to start from: ``fresh``, or the checkpoint's when resuming, checked against this run.

    Raises:
        CheckpointError: the file is unreadable or corrupted, its server state does not fit, its round is
            not a count of rounds or beyond ``config.rounds``, or it was saved by another configuration
            (every differing option is named).
    """
    if config.checkpoint_path is None or not config.resume or not os.path.lexists(config.checkpoint_path):
        return fresh
    from fedmodel.checkpoint import check_extra, load_checkpoint

    where = os.fspath(config.checkpoint_path)
    ckpt = load_checkpoint(where, like=fresh.weights)
    saved_round = ckpt.metadata.get("round")
    if type(saved_round) is not int or saved_round < 0:
        raise CheckpointError(f"{where}: metadata 'round' must be an integer >= 0, got {saved_round!r}")
    if saved_round > config.rounds:
        raise CheckpointError(
            f"{where} is at round {saved_round}, beyond rounds={config.rounds}: a resumed run cannot go back "
            f"(ask for at least {saved_round} rounds)"
        )
    # the same entries as _save writes: what decides the result besides the round
    run: dict[str, str | int | float] = {"algorithm": algorithm.name, "seed": config.seed}
    run["clients_per_round"] = "all" if config.clients_per_round is None else config.clients_per_round
    if num_clients is not None:
        run["clients"] = num_clients
    run.update(config.run_options or {})
    saved = {k.removeprefix("run/"): v for k, v in ckpt.metadata.items() if k.startswith("run/")}
    differences = []
    for key in [*run, *(k for k in saved if k not in run)]:
        now, then = run.get(key), saved.get(key)
        if key == "algorithm" and now != then:
            differences.append(f"saved by {then!r}, resumed with {now!r}")
        elif key not in saved:
            differences.append(f"{key} {now!r} (not in the checkpoint)")
        elif key not in run:
            differences.append(f"{key} missing (the checkpoint's: {then!r})")
        elif now != then:
            differences.append(f"{key} {now!r} (the checkpoint's: {then!r})")
    if differences:
        raise CheckpointError(f"{where}: cannot resume with another configuration: {'; '.join(differences)}")
    check_extra(where, ckpt.extra, state_to_arrays(fresh.optimizer_state))  # e.g. no int64 momentum
    try:
        opt_state = state_from_arrays(fresh.optimizer_state, ckpt.extra)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    return algorithm.init(ckpt.weights)._replace(optimizer_state=opt_state, round=saved_round)


def _save(
    config: SimulationConfig, algorithm: FederatedAlgorithm, state: ServerState, num_clients: int | None = None
) -> None:
    if config.checkpoint_path is None:
        return
    from fedmodel.checkpoint import save_checkpoint

    # what decides the result besides the round; _load compares every entry, so the two cannot drift apart
    run: dict[str, str | int | float] = {"algorithm": algorithm.name, "seed": config.seed}
    run["clients_per_round"] = "all" if config.clients_per_round is None else config.clients_per_round
    if num_clients is not None:
        run["clients"] = num_clients
    run.update(config.run_options or {})
    meta = {"round": state.round, **{f"run/{key}": value for key, value in run.items()}}
    extra = state_to_arrays(state.optimizer_state)
    save_checkpoint(config.checkpoint_path, state.weights, extra=extra, metadata=meta)


class _Runner:
    """One reused model instance per model kind (replaced only after a timeout) and the round logic."""

    def __init__(
        self,
        factories: Mapping[str, Callable[[], Any]],
        groups: Sequence[str],
        algorithm: FederatedAlgorithm,
        config: SimulationConfig,
    ) -> None:
        self.factories, self.groups, self.algorithm, self.config = factories, groups, algorithm, config
        self.models: dict[str, tuple[Any, Backend]] = {}
        for kind in factories:
            self.fresh_model(kind)
        first = next(iter(factories))
        self.model, self.backend = self.models[first]

    def fresh_model(self, kind: str) -> None:
        """Forget ``kind``'s instance (an abandoned client thread may still use it) and make a new one."""
        model = self.factories[kind]()
        self.models[kind] = (model, backend_for(model))

    def round(
        self, state: ServerState, clients: Sequence[ClientData], test_data: ClientData | None
    ) -> tuple[ServerState, RoundResult]:
        """Run one round from ``state``: sample, train, validate, aggregate, step the server, evaluate."""
        start, config, algorithm = time.perf_counter(), self.config, self.algorithm
        ids = sample_clients(len(clients), config.clients_per_round, config.seed, state.round)
        metrics = self.model.federated_output_computation
        acc, metric_state = algorithm.aggregator.init(state.weights), metrics.init()
        failures, ok = [], 0
        for cid in ids:
            seed = client_seed(config.seed, state.round, cid)
            kind = self.groups[cid]
            model, backend = self.models[kind]
            try:
                update = _run_client(
                    algorithm, model, backend, state.weights, clients[cid], seed, config.client_timeout
                )
                check_update(state.weights, update.weights, client=f"client {cid}")
                if not update.num_examples > 0:
                    raise ValueError(f"client {cid} reported {update.num_examples} examples")
                # a report that cannot be summed must not leave half of itself in the round's metrics
                next_metrics = metrics.accumulate(copy.deepcopy(metric_state), update.metrics)
                acc = algorithm.aggregator.accumulate(acc, update.weights, float(update.num_examples))
                metric_state, ok = next_metrics, ok + 1
            except _TimeoutError as exc:
                failures.append(ClientFailure(cid, str(exc)))
                self.fresh_model(kind)
                self.model, self.backend = self.models[next(iter(self.factories))]
            except Exception as exc:
                failures.append(ClientFailure(cid, f"{type(exc).__name__}: {exc}"))
        if ok:
            state = algorithm.apply(state, algorithm.aggregator.finalize(acc))
        else:  # nothing valid arrived: the weights and the optimizer state stay as they were
            state = state._replace(round=state.round + 1)
        train = metrics.finalize(metric_state) if ok else {}
        test: dict[str, Any] = {}
        if test_data is not None:
            test = evaluate(self.model, [test_data], weights=state.weights, batch_size=config.eval_batch_size)
        seconds = time.perf_counter() - start
        return state, RoundResult(state.round, tuple(ids), train, test, tuple(failures), seconds)


def run_simulation(
    model_factory: Callable[[], Any] | Mapping[str, Callable[[], Any]],
    clients: Sequence[ClientData],
    algorithm: FederatedAlgorithm,
    config: SimulationConfig | None = None,
    *,
    client_kinds: Sequence[str] | None = None,
    test_data: ClientData | None = None,
    initial_state: ServerState | None = None,
    on_round: Callable[[RoundResult], None] | None = None,
) -> SimulationResult:
    """Run ``algorithm`` over ``clients`` for ``config.rounds`` rounds.

    Args:
        model_factory: returns a fresh model; called once (and again after a client timeout). A mapping
            ``{kind: factory}`` mixes models in one federation, e.g. clients of several frameworks whose
            models are wrapped by :func:`fedmodel.layout.canonical` so their weights agree; the first kind's
            model gives the initial weights and evaluates the global model.
        client_kinds: with a mapping, each client's kind (one per client); by default the kinds take
            turns over the clients in the mapping's order.
        clients: one :class:`~fedmodel.data.ClientData` per client; the client id is its index.
        algorithm: e.g. :func:`fedmodel.algorithms.fedavg`.
        config: :class:`SimulationConfig` (defaults when ``None``).
        test_data: held-out data evaluated with the global weights after every round.
        initial_state: start from this server state (e.g. a saved one) instead of the model's weights.
        on_round: called with each :class:`RoundResult` as soon as the round ends.

    Raises:
        CheckpointError: when a checkpoint cannot be written (the previous one is intact; resume from it).
    """
    config = config or SimulationConfig()
    if not clients:
        raise ValueError("a simulation needs at least one client")
    factories = dict(model_factory) if isinstance(model_factory, Mapping) else {"model": model_factory}
    if not factories:
        raise ValueError("model_factory is an empty mapping")
    kinds = list(factories)
    groups = list(client_kinds) if client_kinds is not None else [kinds[i % len(kinds)] for i in range(len(clients))]
    if len(groups) != len(clients) or not set(groups) <= set(kinds):
        raise ValueError(f"client_kinds must name one of {kinds} for each of the {len(clients)} clients")
    runner = _Runner(factories, groups, algorithm, config)
    fresh = algorithm.init(get_weights(runner.model, backend=runner.backend))
    state = initial_state or _load(config, algorithm, fresh)
    result = SimulationResult(state)
    from tqdm.auto import tqdm

    with tqdm(total=config.rounds, initial=state.round, disable=not config.progress, desc=algorithm.name) as bar:
        while state.round < config.rounds:
            state, round_result = runner.round(state, clients, test_data)
            _save(config, algorithm, state)
            result.rounds.append(round_result)
            result.state = state
            bar.update(1)
            if on_round is not None:
                on_round(round_result)
    return result
