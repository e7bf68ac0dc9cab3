"""The simulation runner: many clients, one process, one model instance, reproducible from a seed.

Each round samples clients with :func:`fedmodel.server.sample_clients` and gives each client the seed
:func:`fedmodel.server.client_seed` for its example order, so a run resumed at round ``r`` (from a
checkpoint or an ``initial_state``) continues exactly as the uninterrupted run. Clients run one after
another on one model instance (weights assigned, metrics reset, a fresh optimizer each time), and every
result goes through the one :class:`fedmodel.server.ServerRound` that the Flower strategy runs too. A
client that raises, overruns ``client_timeout`` or returns an invalid update (wrong shape or dtype, NaN, an
impossible number of examples) is dropped and reported in :attr:`RoundResult.failures`; a client whose
metric report is invalid is left out of the round's metrics (:attr:`RoundResult.metrics_failures`); the
server state only ever sees validated updates and is never non-finite. With ``SimulationConfig(workers=N)``
the clients run in N worker processes (or Ray actors) and their results reach the same server round in the
same order, so the weights are bit-identical (:mod:`fedmodel._executors`).

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

import contextlib
import dataclasses
import numbers
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fedmodel import _executors
from fedmodel._backend import Backend
from fedmodel._batch import check_batch
from fedmodel._errors import SpecError
from fedmodel._executors import MAX_CLIENT_TIMEOUT
from fedmodel._resume import carry_metadata, load_state, save_state
from fedmodel._weights import ModelWeights, get_weights
from fedmodel._worker import Failed, Setup, Task, WorkerError, build_model
from fedmodel.algorithms import FederatedAlgorithm, ServerState
from fedmodel.client import ClientResult
from fedmodel.data import ClientData
from fedmodel.evaluation import evaluate
from fedmodel.server import Dropped, ServerRound, client_seed, report_template, sample_clients
from fedmodel.validation import ReplyLimits

__all__ = [
    "MAX_CLIENT_TIMEOUT",
    "ClientFailure",
    "RoundResult",
    "SimulationConfig",
    "SimulationResult",
    "WorkerError",
    "checked_config",
    "run_simulation",
]


@dataclass(frozen=True)
class SimulationConfig:
    """How a simulation runs.

    Args:
        rounds: total number of rounds (a resumed run continues up to this number).
        clients_per_round: clients sampled (without replacement) per round; ``None``: all of them.
        seed: the root of every random choice of the run.
        client_timeout: seconds a client may take; an overrunning client is abandoned in its worker
            thread, reported, and the runner continues on a fresh model instance from the factory (with
            ``workers``, its worker is stopped and replaced).
        workers: ``0`` runs the clients one after another in this process; ``N`` runs them in ``N`` worker
            processes (each builds its models once and keeps them between rounds), with bit-identical
            results: the results are handed to the server round in client order either way. See
            :mod:`fedmodel._executors` for what crosses the process boundary.
        executor: ``"processes"`` (workers are processes on this machine, started with ``spawn``) or
            ``"ray"`` (workers are Ray actors, local or on a cluster: the Ray instance already initialized,
            else ``ray.init()``; needs ``pip install 'fedmodel[ray]'``).
        threads_per_worker: the size of each worker process's math thread pools (OpenMP, MKL, OpenBLAS,
            TensorFlow's, XLA's Eigen pool); ``None``: the CPUs shared out, ``os.cpu_count() // workers`` (at
            least 1), unless ``OMP_NUM_THREADS`` is set in the environment. Without a cap every worker would
            start one thread per CPU: with two workers on two CPUs a round took 4-6x longer than in process.
            Ray actors keep Ray's cap (one thread per actor CPU).
        eval_batch_size: batch size of the held-out evaluation.
        progress: show a tqdm progress bar.
        checkpoint_path: save weights and server-optimizer state there after every round.
        resume: start from ``checkpoint_path`` when it exists. The checkpoint must be of this run: its
            round at most ``rounds``, and the same algorithm (by name), ``seed``, ``clients_per_round``
            and ``run_options``; otherwise :class:`~fedmodel.CheckpointError` names each difference.
        limits: what one client's reply may claim (:class:`fedmodel.validation.ReplyLimits`: the cap on its
            number of examples, on report counts, and optionally on the norm of its change).
        run_options: what else decides the result (e.g. the command line's data split and
            hyperparameters, which the runner cannot see): ``str`` keys to ``str``, ``int`` or finite
            ``float`` values, saved with every checkpoint and compared on resume.
        sampling_rate: Poisson sampling instead of a fixed number per round: each client takes part in each
            round independently with this probability (``clients_per_round`` must be ``None``).
        delta: with a :class:`fedmodel.privacy.DPMean` aggregator, the delta at which the epsilon spent is
            reported after every round (:attr:`RoundResult.epsilon`); ``None``: the largest power of ten
            below ``1 / len(clients)`` (:func:`fedmodel.privacy.default_delta`).
        target_epsilon: with a ``DPMean`` aggregator, the privacy budget: the run stops *before* a round
            whose epsilon would exceed it (:attr:`SimulationResult.stopped` says so).
        accountant: ``"rdp"`` or ``"pld"`` (:func:`fedmodel.privacy.epsilon`). The accountant is told the
            sampling the runner does: ``PoissonSampling(sampling_rate)``, or ``FixedSizeSampling`` of
            ``clients_per_round`` (all clients when ``None``) among ``len(clients)``. The runner's sample is
            seeded (an experiment); a deployment must draw it in secret (``sample_clients(secret=True)``).
    """

    rounds: int = 10
    clients_per_round: int | None = None
    seed: int = 0
    client_timeout: float | None = None
    workers: int = 0
    executor: Literal["processes", "ray"] = "processes"
    threads_per_worker: int | None = None
    eval_batch_size: int = 256
    progress: bool = True
    checkpoint_path: str | os.PathLike[str] | None = None
    resume: bool = False
    limits: ReplyLimits = field(default_factory=ReplyLimits)
    run_options: Mapping[str, str | int | float] | None = None
    sampling_rate: float | None = None
    delta: float | None = None
    target_epsilon: float | None = None
    accountant: str = "rdp"


def _integral(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def checked_config(config: SimulationConfig) -> SimulationConfig:
    """``config`` with its numbers as plain Python ones (a numpy seed checkpoints as an int), after checking every
    field that nothing else checks before the first round.

    Raises:
        TypeError: for a field of the wrong type; ValueError: for one out of range, naming the field and value.
    """

    def fail(name: str, wanted: str, value: object, *, kind: bool) -> None:
        error = TypeError if kind else ValueError
        raise error(f"SimulationConfig.{name} must be {wanted}, got {value!r}")

    for name, minimum in (("rounds", 0), ("eval_batch_size", 1)):
        value = getattr(config, name)
        if not _integral(value) or value < minimum:
            fail(name, f"an int >= {minimum}", value, kind=not _integral(value))
    per_round = config.clients_per_round
    if per_round is not None and (not _integral(per_round) or per_round < 1):
        fail("clients_per_round", "an int >= 1 or None (all clients)", per_round, kind=not _integral(per_round))
    if not _integral(config.seed) or not 0 <= config.seed < 2**63:
        fail("seed", "an int in [0, 2**63)", config.seed, kind=not _integral(config.seed))
    timeout = config.client_timeout
    if timeout is not None:
        real = isinstance(timeout, numbers.Real) and not isinstance(timeout, bool)
        if not real or not 0 < timeout <= MAX_CLIENT_TIMEOUT:
            wanted = f"None (no deadline) or a number in (0, {MAX_CLIENT_TIMEOUT}] (seconds; at most a week)"
            fail("client_timeout", wanted, timeout, kind=not real)
    if not isinstance(config.limits, ReplyLimits):
        name = "None" if config.limits is None else type(config.limits).__name__
        raise TypeError(f"SimulationConfig.limits must be a fedmodel.validation.ReplyLimits, got {name}")
    if config.resume and config.checkpoint_path is None:
        raise ValueError("SimulationConfig.resume=True needs a checkpoint_path to resume from")
    rate = config.sampling_rate
    return dataclasses.replace(
        config,
        rounds=int(config.rounds),
        eval_batch_size=int(config.eval_batch_size),
        clients_per_round=None if per_round is None else int(per_round),
        seed=int(config.seed),
        client_timeout=None if timeout is None else float(timeout),
        sampling_rate=float(rate) if isinstance(rate, numbers.Real) and not isinstance(rate, bool) else rate,
    )


@dataclass(frozen=True)
class ClientFailure:
    """A client dropped from a round, and why."""

    client_id: int
    reason: str


@dataclass(frozen=True)
class RoundResult:
    """One round: the sampled clients, aggregated train metrics, held-out metrics, failures, duration.

    ``failures`` are the clients whose update was not aggregated; ``metrics_failures`` those whose update
    was but whose metric report was invalid; ``problem`` says why the round left the weights unchanged
    (no valid update, or an aggregate that was not finite), ``None`` when it did not. ``epsilon``: with a
    :class:`fedmodel.privacy.DPMean` aggregator, the epsilon spent after this round (at
    :attr:`SimulationConfig.delta`), else ``None``.
    """

    round: int
    clients: tuple[int, ...]
    train: dict[str, Any]
    test: dict[str, Any]
    failures: tuple[ClientFailure, ...]
    seconds: float
    metrics_failures: tuple[ClientFailure, ...] = ()
    problem: str | None = None
    epsilon: float | None = None

    @property
    def num_ok(self) -> int:
        """Clients whose update was aggregated."""
        return len(self.clients) - len(self.failures)


@dataclass
class SimulationResult:
    """The final server state, every round's result, and why the run stopped before ``config.rounds``
    (the privacy budget), or ``None``."""

    state: ServerState
    rounds: list[RoundResult] = field(default_factory=list)
    stopped: str | None = None

    @property
    def weights(self) -> ModelWeights:
        """The final global weights."""
        return self.state.weights


def _failure(dropped: Dropped) -> ClientFailure:
    """A dropped client as a :class:`ClientFailure` (``-1`` for the round as a whole)."""
    return ClientFailure(dropped.client if isinstance(dropped.client, int) else -1, dropped.reason)


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


class _Runner:
    """One reused model instance per model kind (replaced only after a timeout), the workers if any (a
    context manager: leaving it stops them) and the round logic."""

    def __init__(
        self,
        factories: Mapping[str, Callable[[], Any]],
        groups: Sequence[str],
        algorithm: FederatedAlgorithm,
        config: SimulationConfig,
    ) -> None:
        _executors.check_options(config.workers, config.executor, config.threads_per_worker)
        self.factories, self.groups, self.algorithm, self.config = factories, groups, algorithm, config
        self.pool: _executors.Pool | None = None
        self._deadline = config.client_timeout is not None  # clients must not pay a framework's set-up
        self.models: dict[str, tuple[Any, Backend]] = {}
        for kind in factories:
            self.fresh_model(kind)
        first = next(iter(factories))
        self.model, self.backend = self.models[first]
        self.report_template = report_template(self.model)

    def fresh_model(self, kind: str) -> None:
        """Forget ``kind``'s instance (an abandoned client thread may still use it) and make a new one (warm when
        clients train here under a deadline; with workers it only evaluates and sets the report template)."""
        self.models[kind] = build_model(self.factories[kind], warm=not self.config.workers and self._deadline)

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def replies(
        self, state: ServerState, clients: Sequence[ClientData], ids: Sequence[int]
    ) -> Iterator[tuple[int, ClientResult | Failed]]:
        """Each sampled client's result (or why there is none), in client order, from this process or the workers."""
        config = self.config

        def task(cid: int) -> Task:
            return Task(cid, self.groups[cid], client_seed(config.seed, state.round, cid))

        if config.workers:
            if self.pool is None:
                setup = Setup(self.factories, self.algorithm, clients, warm=self._deadline)
                self.pool = _executors.open_pool(config.workers, config.executor, setup, config.threads_per_worker)
            model_bytes = sum(int(a.nbytes) for a in state.weights.arrays)
            chunk = _executors.chunk_size(len(ids), config.workers, model_bytes)
            ahead = _executors.AHEAD_PER_WORKER * config.workers * chunk
            with contextlib.closing(
                _executors.ordered_replies(
                    self.pool, state.weights, ids, task, timeout=config.client_timeout, ahead=ahead, chunk=chunk
                )
            ) as replies:
                yield from replies
            return
        for cid in ids:
            kind, seed = self.groups[cid], client_seed(config.seed, state.round, cid)
            model, backend = self.models[kind]
            try:
                reply: ClientResult | Failed = _run_client(
                    self.algorithm, model, backend, state.weights, clients[cid], seed, config.client_timeout
                )
            except _TimeoutError as exc:
                reply = Failed(str(exc))
                self.fresh_model(kind)
                self.model, self.backend = self.models[next(iter(self.factories))]
            except Exception as exc:  # the client's own failure: reported, the round goes on
                reply = Failed(f"{type(exc).__name__}: {exc}")
            yield cid, reply

    def round(
        self, state: ServerState, clients: Sequence[ClientData], test_data: ClientData | None
    ) -> tuple[ServerState, RoundResult]:
        """Run one round from ``state``: sample, train each client, hand its result to the server round."""
        start, config, algorithm = time.perf_counter(), self.config, self.algorithm
        ids = sample_clients(
            len(clients), config.clients_per_round, config.seed, state.round, rate=config.sampling_rate
        )
        server_round = ServerRound(
            algorithm,
            state,
            metrics=self.model.federated_output_computation,
            report_template=self.report_template,
            limits=config.limits,
        )
        for cid, reply in self.replies(state, clients, ids):
            if isinstance(reply, Failed):
                server_round.drop(cid, reply.reason)
            else:
                server_round.add(cid, reply)
        outcome = server_round.finish()
        test: dict[str, Any] = {}
        if test_data is not None:
            test = evaluate(self.model, [test_data], weights=outcome.state.weights, batch_size=config.eval_batch_size)
        seconds = time.perf_counter() - start
        result = RoundResult(
            outcome.state.round,
            tuple(ids),
            outcome.train,
            test,
            tuple(_failure(d) for d in outcome.dropped),
            seconds,
            tuple(_failure(d) for d in outcome.metrics_dropped),
            outcome.problem,
        )
        return outcome.state, result


def _check_test_data(model: Any, test_data: Any) -> None:
    if not isinstance(test_data, ClientData):
        raise TypeError(f"test_data must be a fedmodel.data.ClientData, got {type(test_data).__name__}")
    try:
        check_batch(model.input_spec, (test_data.x[:1], test_data.y[:1]))
    except SpecError as exc:
        raise SpecError(f"test_data does not fit the model: {exc}") from None


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
        TypeError: for a :class:`SimulationConfig` field of the wrong type (:func:`checked_config`), or
            ``test_data`` that is not a ``ClientData``.
        SpecError: for ``test_data`` that does not fit the model's ``input_spec`` (checked before round 1).
        ValueError: for a field out of range (:func:`checked_config`), or settings that cannot hold together
            (``sampling_rate`` with ``clients_per_round``, a privacy budget without a ``DPMean`` aggregator, an
            adaptive clip whose count noise is too small).
    """
    config = checked_config(config or SimulationConfig())
    if not clients:
        raise ValueError("a simulation needs at least one client")
    factories = dict(model_factory) if isinstance(model_factory, Mapping) else {"model": model_factory}
    if not factories:
        raise ValueError("model_factory is an empty mapping")
    kinds = list(factories)
    groups = list(client_kinds) if client_kinds is not None else [kinds[i % len(kinds)] for i in range(len(clients))]
    if len(groups) != len(clients) or not set(groups) <= set(kinds):
        raise ValueError(f"client_kinds must name one of {kinds} for each of the {len(clients)} clients")
    from fedmodel.privacy import run_budget

    budget = run_budget(
        algorithm.aggregator,
        len(clients),
        clients_per_round=config.clients_per_round,
        sampling_rate=config.sampling_rate,
        delta=config.delta,
        target_epsilon=config.target_epsilon,
        accountant=config.accountant,
    )
    runner = _Runner(factories, groups, algorithm, config)
    if test_data is not None:  # before a round trains, not when the first one ends
        _check_test_data(runner.model, test_data)
    fresh = algorithm.init(get_weights(runner.model, backend=runner.backend))
    if config.checkpoint_path is not None:
        carry_metadata(fresh.aggregator_state)  # an aggregator whose carry cannot be saved fails now, not later
    if initial_state is not None and initial_state.round > config.rounds:
        raise ValueError(
            f"initial_state is at round {initial_state.round}, past SimulationConfig.rounds={config.rounds} "
            "(rounds counts from the start of the run)"
        )
    state = initial_state or load_state(config, algorithm, fresh, len(clients))
    result = SimulationResult(state)
    from tqdm.auto import tqdm

    progress = tqdm(total=config.rounds, initial=state.round, disable=not config.progress, desc=algorithm.name)
    with runner, progress as bar:
        while state.round < config.rounds:
            if budget is not None and not budget.allows(state.round):  # stop *before* the budget is exceeded
                result.stopped = (
                    f"privacy budget: round {state.round + 1} would spend epsilon {budget.spent(state.round + 1):.4g} "
                    f"> target_epsilon {budget.target_epsilon} (delta {budget.delta})"
                )
                break
            state, round_result = runner.round(state, clients, test_data)
            if budget is not None:
                round_result = dataclasses.replace(round_result, epsilon=budget.spent(state.round))
            result.rounds.append(round_result)
            result.state = state
            if on_round is not None:  # before the save: a kill between the two never loses a round's row
                on_round(round_result)
            save_state(config, algorithm, state, len(clients))
            bar.update(1)
    return result
