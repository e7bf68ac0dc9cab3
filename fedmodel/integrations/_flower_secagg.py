"""Secure aggregation through Flower's SecAgg+ (``flwr`` 1.42): the server learns the sum, never one update.

Flower 1.42 runs SecAgg+ as a workflow (``flwr.server.workflow.SecAggPlusWorkflow``) that drives a *legacy*
``flwr.server.strategy.Strategy`` (``FitIns`` / ``FitRes``), with ``secaggplus_mod`` on each ClientApp. Each
round has four stages: setup (public keys), share keys (each client's secrets split by Shamir among its
neighbours), collect masked vectors (each client trains, quantizes its update and adds pairwise and private
masks), unmask (the survivors' shares remove the masks; a client that dropped out after sharing its keys
has its pairwise masks removed from its neighbours' shares).

:class:`SecAggPlusStrategy` is that legacy strategy for a fedmodel algorithm. Each sampled client sends
its **change** from the global weights (float variables, float64), never its weights, with weight 1; after
unmasking the server holds ``Σ change / n`` over the ``n`` clients in the sum, turns it into a
:class:`fedmodel.server.SecureSum` and finishes the round with the one
:class:`fedmodel.server.ServerRound` (``add_sum``, then ``finish``: the same server step as every engine).

**Quantization.** SecAgg+ sums integers: each coordinate ``x`` of a client's change becomes
``stochastic_round((x + c) Q / 2c)`` with ``c = clipping_range`` and ``Q = quantization_range``; each
rounding moves it by less than one step ``2c/Q``, so the unmasked mean differs from the exact mean by less
than ``2c/Q`` per coordinate (``n`` errors of less than ``2c/Q`` each, divided by ``n``):
``|secure - exact| < 2c/Q`` (3.8e-6 for Flower's defaults ``c = 8``, ``Q = 2**22``; :meth:`SecAggPlus.bound`).
A value beyond ``±c`` would be clipped silently by Flower, so a client refuses to send one; the masked sum
of ``n`` clients stays below the modulus ``M`` only while ``n Q < M``, so larger samples are refused.

**What cannot run** (:func:`fedmodel.server.secure_aggregation_problem`): per-update validation, robust
aggregators, server-side norm bounds, and FedAvg's example weights (a masked count cannot be checked: every
client counts once); training metrics are not sent. What moves to the client: refusing to send non-finite
values or values beyond ``±c``, and, with :class:`fedmodel.privacy.DPMean`, clipping the change to the
round's clip norm (and adding its 0/1 "unclipped" to the sum for adaptive clipping); the server then adds
the noise to the sum. The guarantee then trusts each client's code to clip.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.common import Code, FitIns, FitRes, Parameters, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid

from fedmodel._backend import Backend, backend_for
from fedmodel._weights import ModelWeights, assign_weights, get_weights
from fedmodel.algorithms import FederatedAlgorithm, ServerState
from fedmodel.client import ClientUpdate
from fedmodel.data import ClientData
from fedmodel.evaluation import evaluate
from fedmodel.integrations._flower_report import NodeFailure, RoundReport, plain, save_npz, write_json
from fedmodel.integrations._flower_wire import MessageError
from fedmodel.privacy.clipping import clip_factor, clipped_change
from fedmodel.server import SecureSum, ServerRound, client_seed, sample_clients, secure_aggregation_problem
from fedmodel.validation import ReplyLimits, check_client_update, is_float

__all__ = ["SecAggPlus", "SecAggPlusStrategy", "secure_change", "secure_train"]

_NAMES, _CLIP, _COUNT, _RANGE = "weights-names", "clip-norm", "count-unclipped", "clipping-range"


@dataclass(frozen=True)
class SecAggPlus:
    """Settings of Flower's SecAgg+ (``SecAggPlusWorkflow``); the client weight is always 1 (``max_weight=1``).

    Args:
        num_shares: neighbours each client shares its secrets with (an int > 2, or a fraction of the sample).
        reconstruction_threshold: shares needed to rebuild a secret (an int, or a fraction of ``num_shares``):
            up to ``num_shares - threshold`` neighbours of a client may drop out; fewer than ``threshold``
            colluding neighbours learn nothing.
        clipping_range: ``c``: every coordinate of a client's change must lie in ``[-c, c]``.
        quantization_range: ``Q``: the integer grid of ``[-c, c]``.
        modulus_range: ``M`` (a power of two): masks live in ``[0, M)``; at most ``(M - 1) // Q`` clients a round.
        timeout: seconds each of the four stages waits for replies (a dropped client costs one wait).
    """

    num_shares: int | float
    reconstruction_threshold: int | float
    clipping_range: float = 8.0
    quantization_range: int = 2**22
    modulus_range: int = 2**32
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clipping_range) and self.clipping_range > 0):
            raise ValueError(f"clipping_range must be finite and > 0, got {self.clipping_range}")
        if not 0 < self.timeout < math.inf:
            raise ValueError(f"timeout must be finite and > 0, got {self.timeout}")
        self.workflow()  # Flower's own checks of the shares, the threshold and the ranges

    def bound(self) -> float:
        """``2c/Q``: the largest difference per coordinate between the secure mean and the exact mean."""
        return 2 * self.clipping_range / self.quantization_range

    @property
    def max_clients(self) -> int:
        """The most clients a round can sum without the masked sum wrapping around the modulus."""
        return (self.modulus_range - 1) // self.quantization_range

    def workflow(self) -> SecAggPlusWorkflow:
        """Flower's workflow with these settings and a client weight of 1."""
        return SecAggPlusWorkflow(
            self.num_shares,
            self.reconstruction_threshold,
            max_weight=1.0,
            clipping_range=self.clipping_range,
            quantization_range=self.quantization_range,
            modulus_range=self.modulus_range,
            timeout=self.timeout,
        )


def secure_change(
    server: ModelWeights, trained: ModelWeights, config: Any, *, client: str = "this client"
) -> list[np.ndarray]:
    """What a client adds to the secure sum: its change per float variable (float64), clipped to the round's
    ``clip-norm`` for DPMean, then its 0/1 "unclipped" when the server counts them (adaptive clipping).

    Raises:
        AggregationError: for non-finite or mis-shaped weights, or a value beyond the clipping range
            (Flower would clip it silently): nothing is sent.
    """
    from fedmodel._errors import AggregationError

    check_client_update(server, trained, client=client)
    clip, limit = config.get(_CLIP), float(config[_RANGE])
    norm, scale = (0.0, 1.0) if clip is None else clip_factor(server, trained, float(clip), client=client)
    pairs = zip(server.names or [""] * len(server.arrays), server.arrays, trained.arrays, strict=True)
    changes = [(name, clipped_change(s, t, scale)) for name, s, t in pairs if is_float(s)]
    for name, change in changes:
        if change.size and not float(np.max(np.abs(change))) <= limit:
            raise AggregationError(
                f"{client}: {name!r} changes by {float(np.max(np.abs(change))):.6g}, beyond SecAgg+'s clipping "
                f"range {limit:g} (Flower would clip it silently): raise clipping_range"
            )
    out = [change for _, change in changes]
    if config.get(_COUNT, False):
        out.append(np.array([1.0 if clip is not None and norm <= float(clip) else 0.0]))
    return out


def secure_train(
    model_of: Callable[[Context], tuple[Any, Backend]],
    load_data: Callable[[Context], ClientData],
    client_update: Callable[[Context], ClientUpdate],
    client_id: Callable[[Context], int],
) -> Callable[[Message, Context], Message]:
    """The ClientApp's ``train`` under ``secaggplus_mod``: read the FitIns, train, reply a FitRes whose
    parameters are :func:`secure_change` (the mod masks them) and whose weight is 1. Raises on a malformed
    message (Flower replies with an error and SecAgg+ treats the client as dropped)."""

    def train(message: Message, context: Context) -> Message:
        fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
        config = fitins.config
        server_round, seed = config.get("server-round"), config.get("seed")
        if not (isinstance(server_round, int) and server_round >= 1 and isinstance(seed, int) and seed >= 0):
            raise MessageError(
                f"fitins.config: expected server-round >= 1 and seed >= 0, got {server_round!r}, {seed!r}"
            )
        model, backend = model_of(context)
        template = get_weights(model, backend=backend)
        names = json.loads(str(config.get(_NAMES, "null")))
        if names != [name for name, _ in template.items()]:
            raise MessageError(f"fitins.config[{_NAMES!r}]: the server's variables {names} are not this model's")
        arrays = parameters_to_ndarrays(fitins.parameters)
        if len(arrays) != len(template.arrays):
            raise MessageError(f"fitins.parameters: {len(arrays)} arrays for {len(template.arrays)} variables")
        weights = template.with_arrays(arrays)
        assign_weights(model, weights, backend=backend)  # every shape and dtype checked, all or nothing
        cid = client_id(context)
        result = client_update(context)(
            model, backend, weights, load_data(context), client_seed(seed, server_round - 1, cid)
        )
        changes = secure_change(weights, result.weights, config, client=f"partition {cid}")
        fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(changes), 1, {"partition-id": cid})
        return Message(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=message)

    return train


def _counts_unclipped(algorithm: FederatedAlgorithm) -> bool:
    """Whether the clients add their 0/1 "unclipped" to the sum: DPMean with adaptive clipping."""
    return hasattr(getattr(algorithm.aggregator, "clip", None), "initial_norm")


def _partition(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class SecAggPlusStrategy(Strategy):
    """A fedmodel algorithm whose rounds aggregate through SecAgg+ (see the module); run it with :meth:`run`.

    Args:
        model_factory: the server's model (initial weights, evaluation).
        algorithm: with :class:`~fedmodel.aggregation.WeightedMean` (unweighted: every client counts once) or
            :class:`fedmodel.privacy.DPMean`; anything else is refused (:func:`secure_aggregation_problem`).
        secagg: the protocol's settings.
        clients_per_round, sampling_rate, secret_sampling, seed: as :class:`FedModelStrategy`.
        min_available_nodes: wait for this many nodes before the first round (SecAgg+ needs 2).
        test_data: evaluated with the global weights after every round.
        exclude_unresponsive: never sample again a node that dropped out of a round.
        on_round: called with each round's report and the new global weights.
    """

    def __init__(
        self,
        model_factory: Callable[[], Any],
        algorithm: FederatedAlgorithm,
        secagg: SecAggPlus,
        *,
        clients_per_round: int | None = None,
        sampling_rate: float | None = None,
        secret_sampling: bool = False,
        min_available_nodes: int = 2,
        seed: int = 0,
        test_data: ClientData | None = None,
        node_wait_timeout: float = 60.0,
        exclude_unresponsive: bool = True,
        limits: ReplyLimits | None = None,
        on_round: Callable[[RoundReport, ModelWeights], None] | None = None,
    ) -> None:
        problem = secure_aggregation_problem(algorithm, limits)
        if problem is not None:
            raise ValueError(f"secure aggregation: {problem}")
        self.model = model_factory()
        self.backend = backend_for(self.model)
        self.algorithm, self.secagg, self.limits = algorithm, secagg, limits or ReplyLimits()
        self.state: ServerState = algorithm.init(get_weights(self.model, backend=self.backend))
        for name, array in self.state.weights.items():
            if array.dtype.kind not in "biuf" or array.dtype.isbuiltin != 1:
                raise ValueError(f"secure aggregation: {name!r} has dtype {array.dtype}, which FitIns cannot carry")
        clip = getattr(algorithm.aggregator, "clip", None)
        start = getattr(clip, "initial_norm", clip)
        if start is not None and start > secagg.clipping_range:
            raise ValueError(f"a clip norm of {start} exceeds SecAgg+'s clipping_range {secagg.clipping_range}")
        if clients_per_round is not None and clients_per_round > secagg.max_clients:
            raise ValueError(f"clients_per_round {clients_per_round} exceeds SecAgg+'s {secagg.max_clients}")
        self.clients_per_round, self.sampling_rate, self.secret_sampling = (
            clients_per_round,
            sampling_rate,
            secret_sampling,
        )
        self.min_available_nodes, self.seed, self.test_data = max(2, min_available_nodes), seed, test_data
        self.node_wait_timeout, self.exclude_unresponsive, self.on_round = (
            node_wait_timeout,
            exclude_unresponsive,
            on_round,
        )
        self.rounds: list[RoundReport] = []
        self.initial_test: dict[str, Any] = {}
        self.excluded: set[int] = set()
        self._started = 0.0

    @property
    def weights(self) -> ModelWeights:
        """The current global weights."""
        return self.state.weights

    def run(self, grid: Grid, context: Context, num_rounds: int) -> None:
        """Run ``num_rounds`` rounds with Flower's ``DefaultWorkflow`` and this strategy's SecAgg+ workflow."""
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=num_rounds), strategy=self)
        DefaultWorkflow(fit_workflow=self.secagg.workflow())(grid, legacy)

    # -- the legacy Strategy interface ------------------------------------------------------
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """The global weights (the strategy keeps its own; the workflow's copy is informational)."""
        return ndarrays_to_parameters(list(self.state.weights.arrays))

    def _catch_up(self, rounds_done: int) -> None:
        """Count a round the workflow halted before ``aggregate_fit`` (too few nodes left): weights unchanged."""
        if self.state.round < rounds_done:
            self._report(rounds_done).problem = "secure aggregation halted (too few nodes replied); no update"
            self.state = self.state._replace(round=rounds_done)

    def _report(self, server_round: int) -> RoundReport:
        if not self.rounds or self.rounds[-1].round != server_round:
            self.rounds.append(RoundReport(server_round))
        return self.rounds[-1]

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Sample nodes (as :class:`FedModelStrategy`) and send each the weights and the round's settings."""
        self._catch_up(server_round - 1)
        self._started = time.perf_counter()
        deadline = time.monotonic() + (self.node_wait_timeout if len(self.rounds) == 0 else 0.0)
        while True:  # the workflow's client manager refreshes the online nodes on each all()
            proxies = {p.node_id: p for p in client_manager.all().values() if p.node_id not in self.excluded}
            if len(proxies) >= self.min_available_nodes or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        nodes = sample_clients(
            sorted(proxies), self.clients_per_round, self.seed, server_round - 1,
            rate=self.sampling_rate, secret=self.secret_sampling,
        )  # fmt: skip
        if len(nodes) > self.secagg.max_clients:
            raise ValueError(f"round {server_round}: {len(nodes)} nodes exceed SecAgg+'s {self.secagg.max_clients}")
        self._report(server_round).sampled = list(nodes)
        names = json.dumps([name for name, _ in self.state.weights.items()])
        config: dict[str, Any] = {"server-round": server_round, "seed": self.seed, _NAMES: names}
        config[_RANGE] = self.secagg.clipping_range
        carry = self.state.aggregator_state
        if carry is not None and hasattr(carry, "clip_norm"):  # DPMean: the clients clip, the server counts
            config[_CLIP] = float(carry.clip_norm)
            config[_COUNT] = _counts_unclipped(self.algorithm)
        fitins = FitIns(ndarrays_to_parameters(list(self.state.weights.arrays)), config)
        return [(proxies[node], fitins) for node in nodes]

    def aggregate_fit(
        self, server_round: int, results: Sequence[tuple[ClientProxy, FitRes]], failures: Sequence[Any]
    ) -> tuple[Parameters | None, dict[str, Any]]:
        """Finish the round from the unmasked mean (every result carries it) through ``ServerRound.add_sum``."""
        report = self._report(server_round)
        partitions = {int(proxy.node_id): _partition(res.metrics.get("partition-id")) for proxy, res in results}
        in_sum = sorted(partitions, key=lambda node: (partitions[node] is None, partitions[node] or 0, node))
        round_ = ServerRound(self.algorithm, self.state, limits=self.limits, label="node")
        if results:
            try:
                summed = self._secure_sum(parameters_to_ndarrays(results[0][1].parameters), len(results))
            except ValueError as exc:
                for node in in_sum:
                    round_.drop(node, f"the unmasked sum does not fit the model: {exc}")
            else:
                round_.add_sum(in_sum, summed)
        outcome = round_.finish()
        self.state = outcome.state
        accepted = [node for node in outcome.accepted if isinstance(node, int)]
        report.aggregated = [{"node": node, "partition": partitions[node]} for node in accepted]
        for dropped in outcome.dropped:
            if isinstance(dropped.client, int):
                report.failures.append(NodeFailure(dropped.client, dropped.reason, partitions.get(dropped.client)))
        for node in sorted(set(report.sampled) - set(partitions)):
            reason = "not in the secure sum (dropped out; SecAgg+ removed its masks with its neighbours' shares)"
            report.failures.append(NodeFailure(node, reason))
            if self.exclude_unresponsive:
                self.excluded.add(node)
        report.problem, report.seconds = outcome.problem, time.perf_counter() - self._started
        if self.on_round is not None:
            self.on_round(report, self.state.weights)
        return ndarrays_to_parameters(list(self.state.weights.arrays)), {}

    def _secure_sum(self, mean: list[np.ndarray], count: int) -> SecureSum:
        """The workflow's mean over ``count`` clients as a :class:`SecureSum` (sums of changes, unclipped)."""
        template = self.state.weights.arrays
        floats = [i for i, a in enumerate(template) if is_float(a)]
        counting = _counts_unclipped(self.algorithm)
        if len(mean) != len(floats) + counting:
            raise ValueError(f"{len(mean)} arrays for {len(floats)} float variables (+1 count: {counting})")
        changes: list[np.ndarray | None] = [None] * len(template)
        for i, total in zip(floats, mean[: len(floats)], strict=True):
            changes[i] = np.asarray(total, np.float64) * count
        unclipped = min(count, max(0, round(float(mean[-1].reshape(-1)[0]) * count))) if counting else 0
        return SecureSum(tuple(changes), count, unclipped)

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: ClientManager) -> list[Any]:
        """No federated evaluation under secure aggregation (a client's metrics would travel in the clear)."""
        return []

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> tuple[float | None, dict[str, Any]]:
        """Nothing to aggregate."""
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Any]] | None:
        """The global weights on ``test_data`` (recorded in the round's report); ``parameters`` are ignored."""
        self._catch_up(server_round)
        if self.test_data is None:
            return None
        test = plain(evaluate(self.model, [self.test_data], weights=self.state.weights))
        if server_round == 0:
            self.initial_test = test
        else:
            self._report(server_round).test = test
        return float(test.get("loss", math.nan)), test

    # -- reporting ----------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The run as plain JSON-ready data: per round, the nodes in the sum, the dropped ones, the test metrics."""
        from dataclasses import asdict

        rounds = [asdict(r) for r in self.rounds]
        return {
            "algorithm": self.algorithm.name,
            "secure_aggregation": plain(self.secagg.__dict__),
            "rounds_completed": self.state.round,
            "initial_test": self.initial_test,
            "final_test": self.rounds[-1].test if self.rounds else self.initial_test,
            "failures": [dict(f, round=r["round"]) for r in rounds for f in r["failures"]],
            "rounds": rounds,
        }

    def write_report(self, path: str, extra: dict[str, Any] | None = None) -> None:
        """:meth:`report` (plus ``extra``) as JSON, written atomically."""
        write_json(path, {**self.report(), **plain(dict(extra or {}))})

    def save_weights(self, path: str) -> None:
        """The global weights as ``.npz`` (name -> array, no pickle), written atomically."""
        save_npz(path, self.state.weights)
