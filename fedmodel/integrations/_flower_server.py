"""fedmodel's algorithms as a Flower strategy (Flower's Message API: ``flwr.serverapp.strategy.Strategy``)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from logging import INFO, WARNING
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from fedmodel._backend import backend_for
from fedmodel._weights import ModelWeights, get_weights
from fedmodel.algorithms import FederatedAlgorithm, ServerState
from fedmodel.client import ClientResult
from fedmodel.data import ClientData
from fedmodel.evaluation import evaluate
from fedmodel.integrations._flower_report import NodeFailure, RoundReport, plain, save_npz, write_json
from fedmodel.integrations._flower_wire import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    WEIGHTS_META_KEY,
    MessageError,
    decode_weights,
    encode_weights,
    flatten_report,
    read_weights,
    unflatten_report,
)
from fedmodel.server import Dropped, ServerRound, report_template, sample_clients
from fedmodel.validation import ReplyLimits, check_report, validate_update

__all__ = ["FedModelStrategy", "NodeFailure", "RoundReport"]

_NODE_UNAVAILABLE = 5  # flwr.common.constant.ErrorCode.NODE_UNAVAILABLE
_MAX_PARTITION = 2**31 - 1


class FedModelStrategy(Strategy):
    """A :class:`fedmodel.algorithms.FederatedAlgorithm` driving Flower nodes that run :func:`client_app`.

    The strategy owns the global :class:`fedmodel.algorithms.ServerState` (weights and server-optimizer
    state). Each round it sends the weights to the nodes chosen by :func:`fedmodel.server.sample_clients`,
    decodes every reply and hands it — sorted by partition id, as the simulation orders its clients — to
    the same :class:`fedmodel.server.ServerRound` the simulation runs: one validation (names, shapes,
    dtypes, finite values, ``num-examples`` within ``limits``, the report against its own model's report),
    the algorithm's streaming aggregator, the server optimizer, a finite global model, and the clients'
    reports finalized with ``model.federated_output_computation``. Error replies, invalid replies and
    nodes that did not answer within the round timeout are dropped and reported in :attr:`rounds`; no
    reply can end the run. A node that did not answer is not sampled again when ``exclude_unresponsive``
    (a SuperLink lists a crashed node as online until its heartbeat expires, about a minute). A node's
    ``partition-id`` only orders the aggregation: it must be an integer in ``[0, 2**31)`` and stay the same
    for a node across rounds.

    Args:
        model_factory: returns a fresh model, the server's template (initial weights, report layout).
        algorithm: e.g. :func:`fedmodel.algorithms.fedavg`; its ``client_update`` runs on the nodes.
        clients_per_round: nodes sampled per round (seeded by ``[seed, round - 1]``); ``None``: all.
        sampling_rate: Poisson sampling instead: each online node takes part in a round independently with
            this probability (``clients_per_round`` must be ``None``), as :class:`fedmodel.privacy.DPMean`'s
            accountant (``PoissonSampling``) assumes.
        secret_sampling: draw the sample from the operating system's secure generator instead of the seed
            (:func:`fedmodel.server.sample_clients`); a deployment that promises differential privacy needs
            it, since amplification by sampling holds only for a sample nobody can predict.
        min_available_nodes: before the first round, wait (at most ``node_wait_timeout`` seconds) until this
            many nodes are online; later rounds take the nodes online then (waiting only when none is).
        seed: the run's seed, sent to the clients for their example order.
        test_data: held-out data the server evaluates the global weights on after every round.
        evaluate_clients: also run federated evaluation on the nodes after every round.
        limits: what one reply may claim (:class:`fedmodel.validation.ReplyLimits`).

    The strategy owns the global state between rounds: a wrapper that changes the weights between rounds,
    such as Flower's ``DifferentialPrivacyServerSideFixedClipping`` and its siblings, is refused (its noise
    would reset the server optimizer and the aggregator's carry, and its clipping meets FedAvg's example
    weights). Give the algorithm :class:`fedmodel.privacy.DPMean` as its aggregator instead.
    """

    def __init__(
        self,
        model_factory: Callable[[], Any],
        algorithm: FederatedAlgorithm,
        *,
        clients_per_round: int | None = None,
        min_available_nodes: int = 1,
        seed: int = 0,
        test_data: ClientData | None = None,
        evaluate_clients: bool = False,
        node_wait_timeout: float = 60.0,
        exclude_unresponsive: bool = True,
        eval_batch_size: int = 256,
        limits: ReplyLimits | None = None,
        sampling_rate: float | None = None,
        secret_sampling: bool = False,
    ) -> None:
        if sampling_rate is not None and (clients_per_round is not None or not 0 < sampling_rate <= 1):
            raise ValueError(f"sampling_rate must be in (0, 1] with clients_per_round=None, got {sampling_rate}")
        self.sampling_rate, self.secret_sampling = sampling_rate, secret_sampling
        self.model = model_factory()
        self.backend = backend_for(self.model)
        self.algorithm = algorithm
        self.state: ServerState = algorithm.init(get_weights(self.model, backend=self.backend))
        self._template_report = report_template(self.model)
        self.limits = limits or ReplyLimits()
        self.clients_per_round, self.min_available_nodes = clients_per_round, max(1, min_available_nodes)
        self.seed, self.test_data, self.evaluate_clients = seed, test_data, evaluate_clients
        self.node_wait_timeout, self.exclude_unresponsive = node_wait_timeout, exclude_unresponsive
        self.eval_batch_size = eval_batch_size
        self.rounds: list[RoundReport] = []
        self.initial_test: dict[str, Any] = {}
        self.excluded: set[int] = set()
        self._partitions: dict[int, int] = {}
        self._sent: dict[tuple[str, int], list[int]] = {}
        self._started: float = 0.0
        self._waited = False
        self._issued: ArrayRecord | None = None

    # -- helpers ------------------------------------------------------------------------------
    @property
    def weights(self) -> ModelWeights:
        """The current global weights."""
        return self.state.weights

    def arrays(self) -> ArrayRecord:
        """The current global weights as Flower's ArrayRecord (e.g. ``initial_arrays`` of ``start``)."""
        self._issued = encode_weights(self.state.weights)[0]
        return self._issued

    def _adopt(self, arrays: ArrayRecord) -> None:
        """Take ``arrays`` as the global weights unless they are the ones this strategy issued last.

        Raises:
            ValueError: after the first round: the weights were changed between rounds (a wrapper strategy).
        """
        if arrays is self._issued:
            return
        if self.state.round > 0:
            raise ValueError(
                f"after round {self.state.round} the strategy was given weights other than its own: a wrapper "
                "changed them between rounds (e.g. Flower's DifferentialPrivacyServerSideFixedClipping or "
                "...ClientSideFixedClipping / ...AdaptiveClipping). FedModelStrategy keeps the server optimizer's "
                "state and the aggregator's carry with its weights, so it cannot be wrapped; for DP-FedAvg give "
                "the algorithm fedmodel.privacy.DPMean as its aggregator (clipping, noise and accounting in the "
                "one server round)"
            )
        weights = decode_weights(arrays, encode_weights(self.state.weights)[1])
        weights = validate_update(self.state.weights, weights, client="the arrays given to the strategy")
        self.state = self.algorithm.init(weights)._replace(round=self.state.round)

    def _round(self, server_round: int) -> RoundReport:
        if not self.rounds or self.rounds[-1].round != server_round:
            self.rounds.append(RoundReport(server_round))
        return self.rounds[-1]

    def _available(self, grid: Grid) -> list[int]:
        """Online nodes not excluded; the first time, wait for ``min_available_nodes`` (later: for one)."""
        deadline = time.monotonic() + self.node_wait_timeout
        wanted = 1 if self._waited else self.min_available_nodes
        self._waited = True
        while True:
            nodes = sorted(set(grid.get_node_ids()) - self.excluded)
            if len(nodes) >= wanted or time.monotonic() >= deadline:
                return nodes
            log(INFO, "fedmodel: %d node(s) online, waiting for %d", len(nodes), wanted)
            time.sleep(0.5)

    def _messages(self, kind: str, server_round: int, nodes: list[int], config: ConfigRecord) -> list[Message]:
        self._sent[(kind, server_round)] = list(nodes)
        arrays, meta = encode_weights(self.state.weights)
        round_config = ConfigRecord({**config, "server-round": server_round, "seed": self.seed})
        messages = []
        for node in nodes:
            content = RecordDict({ARRAYS_KEY: arrays, WEIGHTS_META_KEY: meta, CONFIG_KEY: round_config})
            messages.append(Message(content, dst_node_id=node, message_type=kind, group_id=str(server_round)))
        return messages

    def _triage(self, kind: str, server_round: int, replies: Iterable[Message]) -> list[tuple[Message, int]]:
        """Replies with content, by node; error replies and silent nodes go to the round's failures."""
        report = self._round(server_round)
        sent = self._sent.pop((kind, server_round), [])
        answered: set[int] = set()
        ok, known = [], len(report.failures)
        for message in replies:
            node = message.metadata.src_node_id
            if node not in sent or node in answered:
                report.failures.append(NodeFailure(node, f"{kind}: unexpected reply (not asked, or a second one)"))
                continue
            answered.add(node)
            if message.has_error():
                reason = f"{kind}: error reply (code {message.error.code}): {message.error.reason}"
                if message.error.code == _NODE_UNAVAILABLE and self.exclude_unresponsive:
                    self.excluded.add(node)
                report.failures.append(NodeFailure(node, reason, self._partitions.get(node)))
            else:
                ok.append((message, node))
        for node in sent:
            if node not in answered:
                reason = f"{kind}: no reply within the round timeout"
                if self.exclude_unresponsive:
                    self.excluded.add(node)
                    reason += "; node excluded from later rounds"
                report.failures.append(NodeFailure(node, reason, self._partitions.get(node)))
        for failure in report.failures[known:]:
            log(WARNING, "fedmodel: round %d dropped node %d: %s", server_round, failure.node_id, failure.reason)
        return ok

    def _partition(self, node: int, claimed: Any) -> int | None:
        """The node's partition id: an integer in ``[0, 2**31)``, the same in every reply of that node."""
        if claimed is None:
            return self._partitions.get(node)
        if isinstance(claimed, bool) or not isinstance(claimed, int) or not 0 <= claimed <= _MAX_PARTITION:
            raise MessageError(f"{METRICS_KEY}['partition-id']: expected an integer in [0, 2**31), got {claimed!r}")
        earlier = self._partitions.setdefault(node, claimed)
        if earlier != claimed:
            raise MessageError(f"node {node} claims partition {claimed}, but was partition {earlier} before")
        return claimed

    def _client_metrics(self, message: Message, node: int) -> tuple[Any, int | None, dict[str, Any], str | None]:
        """``(num-examples as sent, partition id, report, why the report is unusable or None)`` of a reply."""
        metrics = message.content.metric_records.get(METRICS_KEY)
        if metrics is None:
            raise MessageError(f"the reply has no MetricRecord {METRICS_KEY!r}")
        pid = self._partition(node, metrics.get("partition-id"))
        try:
            return metrics.get("num-examples"), pid, unflatten_report(metrics, self._template_report), None
        except Exception as exc:  # the report only: the update may still be aggregated
            return metrics.get("num-examples"), pid, {}, f"{type(exc).__name__}: {exc}"

    def _record(self, report: RoundReport, dropped: Iterable[Dropped], into: list[NodeFailure]) -> None:
        for d in dropped:
            node = int(d.client) if isinstance(d.client, int) else -1
            into.append(NodeFailure(node, d.reason, self._partitions.get(node)))
            log(WARNING, "fedmodel: round %d dropped node %d: %s", report.round, node, d.reason)

    # -- the Strategy interface ---------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample nodes and send each the global weights and the round config.

        The strategy holds the global weights and the server-optimizer state; ``arrays`` other than the
        ones it returned last (e.g. ``initial_arrays`` built by the caller) replace the weights after the
        same checks as a client update.
        """
        self._started = time.perf_counter()
        self._adopt(arrays)
        nodes = sample_clients(
            self._available(grid),
            self.clients_per_round,
            self.seed,
            server_round - 1,
            rate=self.sampling_rate,
            secret=self.secret_sampling,
        )
        self._round(server_round).sampled = list(nodes)
        return self._messages(MessageType.TRAIN, server_round, nodes, config)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Decode every reply and run the round through :class:`fedmodel.server.ServerRound`, in partition order."""
        report = self._round(server_round)
        metrics = self.model.federated_output_computation
        round_ = ServerRound(self.algorithm, self.state, metrics, self._template_report, self.limits, "node")
        decoded = []
        for message, node in self._triage(MessageType.TRAIN, server_round, replies):
            try:  # whatever a reply holds, it can only drop its own node
                weights = read_weights(message.content)
                n, pid, client_report, problem = self._client_metrics(message, node)
            except Exception as exc:
                round_.drop(node, f"invalid reply: {type(exc).__name__}: {exc}")
                continue
            decoded.append((float("inf") if pid is None else float(pid), node, pid, weights, n, client_report, problem))
        decoded.sort(key=lambda v: (v[0], v[1]))  # the simulation's order: by client index
        for _, node, pid, weights, n, client_report, problem in decoded:
            if round_.add(node, ClientResult(weights, n, client_report), report_problem=problem) is None:
                report.aggregated.append({"node": node, "partition": pid})
        outcome = round_.finish()
        self.state = outcome.state
        self._record(report, outcome.dropped, report.failures)
        self._record(report, outcome.metrics_dropped, report.metric_failures)
        report.problem = outcome.problem
        report.train = plain(outcome.train)
        report.seconds = time.perf_counter() - self._started
        return self.arrays(), MetricRecord(flatten_report(report.train, prefix="")) if report.train else None

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Federated evaluation on every available node, when ``evaluate_clients``."""
        if not self.evaluate_clients:
            return []
        nodes = sorted(set(grid.get_node_ids()) - self.excluded)
        return self._messages(MessageType.EVALUATE, server_round, nodes, config)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Check and sum the nodes' evaluation reports, finalize with ``federated_output_computation``."""
        report = self._round(server_round)
        metrics = self.model.federated_output_computation
        state, count = metrics.init(), 0
        for message, node in self._triage(MessageType.EVALUATE, server_round, replies):
            try:
                _, _, client_report, problem = self._client_metrics(message, node)
                if problem is not None:
                    raise MessageError(problem)
                client_report = check_report(
                    client_report, self._template_report, client=f"node {node}", max_count=self.limits.max_count
                )
                state = metrics.accumulate(copy.deepcopy(state), client_report)
            except Exception as exc:
                report.metric_failures.append(
                    NodeFailure(
                        node, f"invalid evaluate reply: {type(exc).__name__}: {exc}", self._partitions.get(node)
                    )
                )
                continue
            count += 1
        if not count:
            return None
        report.evaluate = plain(metrics.finalize(state))
        return MetricRecord(flatten_report(report.evaluate, prefix=""))

    def summary(self) -> None:
        """Log the configuration."""
        log(
            INFO,
            "fedmodel strategy: algorithm=%s, clients_per_round=%s, seed=%d, %d variables",
            self.algorithm.name,
            self.clients_per_round or "all",
            self.seed,
            len(self.state.weights.arrays),
        )

    # -- running and reporting ----------------------------------------------------------------
    def evaluate_global(self, server_round: int, arrays: ArrayRecord | None = None) -> MetricRecord | None:
        """Evaluate the global weights on ``test_data`` (Flower's ``evaluate_fn``); recorded in the report."""
        if arrays is not None:
            self._adopt(arrays)
        if self.test_data is None:
            return None
        test = plain(
            evaluate(self.model, [self.test_data], weights=self.state.weights, batch_size=self.eval_batch_size)
        )
        if server_round == 0:
            self.initial_test = test
        else:
            self._round(server_round).test = test
        return MetricRecord(flatten_report(test, prefix=""))

    def run(self, grid: Grid, num_rounds: int, *, round_timeout: float = 60.0) -> Result:
        """``Strategy.start`` with this strategy's weights; ``round_timeout`` bounds each round's wait."""
        return self.start(
            grid, self.arrays(), num_rounds=num_rounds, timeout=round_timeout, evaluate_fn=self.evaluate_global
        )

    def report(self) -> dict[str, Any]:
        """The run as plain JSON-ready data: per round, the nodes, failures and metrics."""
        rounds = [asdict(r) for r in self.rounds]
        return {
            "algorithm": self.algorithm.name,
            "seed": self.seed,
            "rounds_completed": self.state.round,
            "initial_test": self.initial_test,
            "final_test": self.rounds[-1].test if self.rounds else self.initial_test,
            "failures": [dict(f, round=r["round"]) for r in rounds for f in r["failures"]],
            "rounds": rounds,
        }

    def write_report(self, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None) -> None:
        """Write :meth:`report` (plus ``extra``) as JSON, atomically (temporary file, then rename)."""
        write_json(path, {**self.report(), **plain(dict(extra or {}))})

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """The global weights as ``.npz`` (name -> array, no pickle), written atomically."""
        save_npz(path, self.state.weights)
