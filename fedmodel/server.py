"""One server round for every engine: client sampling, client seeds, one validation, aggregation, the server step.

The simulation runner (:mod:`fedmodel.simulation`), the Flower strategy (:mod:`fedmodel.integrations.flower`)
and any later engine run the same round. They pick clients with :func:`sample_clients`, seed client ``k``
of round ``r`` with :func:`client_seed`, and hand every reply to a :class:`ServerRound`; an engine only
moves bytes. Whatever a reply holds, :meth:`ServerRound.add` either folds it into the aggregate or drops
that client with a reason; :meth:`ServerRound.finish` never returns non-finite global weights.

>>> from fedmodel import backend_for, get_weights
>>> from fedmodel.algorithms import fedavg
>>> from fedmodel.client import ClientResult
>>> from fedmodel.data import ClientData
>>> from fedmodel.reference import SoftmaxRegression
>>> model = SoftmaxRegression(2, 2)
>>> algorithm = fedavg(epochs=1, batch_size=2, client_lr=0.5)
>>> state = algorithm.init(get_weights(model))
>>> data = ClientData(np.eye(2, dtype=np.float32), np.array([0, 1]))
>>> server_round = ServerRound(algorithm, state, metrics=model.federated_output_computation)
>>> server_round.add(0, algorithm.client_update(model, backend_for(model), state.weights, data, seed=1))
>>> server_round.add(1, ClientResult(state.weights, -5, {}))
Dropped(client=1, reason='client 1: the weight must be finite and >= 0, got -5.0')
>>> outcome = server_round.finish()
>>> outcome.state.round, outcome.accepted, outcome.train["num_examples"]
(1, (0,), 2)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedmodel import _tree
from fedmodel._errors import AggregationError
from fedmodel.algorithms import FederatedAlgorithm, ServerState
from fedmodel.client import ClientResult
from fedmodel.metrics import Aggregator, to_numpy_report
from fedmodel.validation import (
    ReplyLimits,
    ReportTemplate,
    check_report,
    delta_norm,
    is_float,
    nonfinite_count,
    validate_update,
    validate_weight,
)

__all__ = [
    "Dropped",
    "RoundOutcome",
    "SecureSum",
    "ServerRound",
    "client_seed",
    "report_template",
    "sample_clients",
    "secure_aggregation_problem",
]


def sample_clients(
    population: int | Sequence[int],
    per_round: int | None,
    seed: int,
    round_index: int,
    *,
    rate: float | None = None,
    secret: bool = False,
) -> list[int]:
    """The clients of round ``round_index`` (0-based), sorted.

    ``population`` is a number of clients (ids ``0..n-1``) or the ids themselves (e.g. the Flower nodes
    online). Two schemes, the two a privacy accountant knows (:mod:`fedmodel.privacy.accounting`):

    * **fixed size** (the default): all of them take part when ``per_round`` is ``None`` or at least their
      number; otherwise ``per_round`` are drawn uniformly without replacement;
    * **Poisson** (``rate=q``, ``per_round`` must be ``None``): each client takes part independently with
      probability ``q``, so the number per round varies (it can be 0).

    The draw is seeded by ``np.random.default_rng([seed, round_index])``: reproducible, and what experiments
    need. **A deployment that promises differential privacy needs** ``secret=True``: the sample is then drawn
    from the operating system's secure generator (:mod:`secrets` for fixed size, ``os.urandom`` for Poisson),
    ``seed`` is ignored, and nobody who knows the seed can tell who was sampled. Amplification by sampling,
    which the accountant's epsilon rests on, holds only for a sample that stays secret.

    >>> sample_clients(10, 3, seed=0, round_index=0), sample_clients([40, 10, 30], None, 0, 0)
    ([5, 6, 9], [10, 30, 40])
    >>> sample_clients(10, None, seed=0, round_index=0, rate=0.3)
    [1, 2, 3]
    """
    members = list(range(population)) if isinstance(population, int) else sorted(int(c) for c in population)
    if rate is not None:
        if per_round is not None:
            raise ValueError(
                f"give per_round (fixed-size sampling) or rate (Poisson sampling), not both: {per_round}, {rate}"
            )
        if not 0 < rate <= 1:
            raise ValueError(f"the sampling rate must be in (0, 1], got {rate}")
        if secret:  # 53 secure random bits per client: a uniform in [0, 1) on the grid of float64
            bits = np.frombuffer(os.urandom(8 * len(members)), dtype=np.uint64) >> np.uint64(11)
            uniform = bits.astype(np.float64) * 2.0**-53
        else:
            uniform = np.random.default_rng([seed, round_index]).random(len(members))
        return [m for m, u in zip(members, uniform, strict=True) if u < rate]
    if per_round is None or per_round >= len(members):
        return members
    if per_round < 1:
        raise ValueError(f"per_round must be >= 1 or None, got {per_round}")
    if secret:
        return sorted(secrets.SystemRandom().sample(members, per_round))
    rng = np.random.default_rng([seed, round_index])
    return sorted(members[int(i)] for i in rng.choice(len(members), size=per_round, replace=False))


def client_seed(seed: int, round_index: int, client_id: int) -> int:
    """The seed of one client in one round (0-based): independent of which other clients were sampled.

    >>> client_seed(0, 0, 3) == client_seed(0, 0, 3) != client_seed(0, 1, 3)
    True
    """
    return int(np.random.SeedSequence([seed, round_index, client_id]).generate_state(1)[0])


def report_template(model: Any) -> dict[str, Any]:
    """The model's metric report right after ``reset_metrics()``, as numpy: what every client's report must match
    (names, nesting, shapes, integer counts). Resets the model's metrics."""
    model.reset_metrics()
    return to_numpy_report(model.report_local_outputs())


@dataclass(frozen=True)
class Dropped:
    """A client left out of a round's aggregate (or of its metrics only), and why."""

    client: Hashable
    reason: str


@dataclass(frozen=True)
class RoundOutcome:
    """What :meth:`ServerRound.finish` returns.

    Attributes:
        state: the server state after the round: new weights, or the old ones (round count + 1) when nothing
            was accepted or the aggregate was refused (``problem`` says why).
        train: the accepted clients' metrics, aggregated and finalized (empty when none).
        accepted: the clients whose update is in the aggregate, in the order they were added.
        dropped: the clients whose update is not, with the reason.
        metrics_dropped: clients whose update was aggregated but whose metric report was not, with the reason.
        problem: why the round left the weights unchanged, or ``None``.
    """

    state: ServerState
    train: dict[str, Any]
    accepted: tuple[Hashable, ...]
    dropped: tuple[Dropped, ...]
    metrics_dropped: tuple[Dropped, ...] = ()
    problem: str | None = None


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, AggregationError) else f"{type(exc).__name__}: {exc}"


def _first_nonfinite(tree: Any) -> str | None:
    """A description of the first leaf of ``tree`` holding a non-finite float, or ``None``."""
    paths, leaves, _ = _tree.flatten_with_paths(tree)
    for path, leaf in zip(paths, leaves, strict=True):
        arr = np.asarray(leaf)
        if is_float(arr) and nonfinite_count(arr):
            return f"{path}: {nonfinite_count(arr)} non-finite value(s)"
    return None


@dataclass(frozen=True)
class SecureSum:
    """What a secure-aggregation protocol (Flower's SecAgg+) reveals in place of the clients' replies: sums.

    Attributes:
        changes: per variable of the round's template, ``Σ_k (update_k - template)`` in float64 for the float
            variables, ``None`` for the others (under secure aggregation they keep the server's value).
        count: the number of clients in the sums (every client counts once: their example counts are masked).
        unclipped: with :class:`fedmodel.privacy.DPMean`, how many of them found their change within the clip
            norm (each client adds its 0 or 1 to the secure sum, for adaptive clipping).
    """

    changes: tuple[np.ndarray | None, ...]
    count: int
    unclipped: int = 0


def secure_aggregation_problem(algorithm: FederatedAlgorithm, limits: ReplyLimits | None = None) -> str | None:
    """Why ``algorithm`` cannot run when the server sees only the sum of the updates, or ``None`` when it can.

    Under secure aggregation the server never sees one client's update, so whatever needs one cannot run:
    robust aggregators (median, trimmed mean, norm clipping), the per-update validation (finite values,
    ``limits.max_delta_norm``: the client refuses to send non-finite values and clips its own change for
    DP), and FedAvg's example weights (a masked count cannot be checked: every client counts once).
    :class:`~fedmodel.aggregation.WeightedMean` (as the unweighted mean) and :class:`fedmodel.privacy.DPMean`
    (clipping on the client, noise on the server) can.
    """
    from fedmodel.aggregation import WeightedMean

    aggregator = algorithm.aggregator
    if type(aggregator) is not WeightedMean and getattr(aggregator, "from_sum", None) is None:
        return (
            f"the aggregator {type(aggregator).__name__} needs each client's update, which secure aggregation "
            "hides: use WeightedMean (FedAvg) or fedmodel.privacy.DPMean"
        )
    if limits is not None and limits.max_delta_norm is not None:
        return (
            "ReplyLimits.max_delta_norm bounds each client's update, which secure aggregation hides: "
            "clip on the clients instead (fedmodel.privacy.DPMean clips there under secure aggregation)"
        )
    return None


@dataclass
class ServerRound:
    """One round of the server: validated replies folded into the algorithm's aggregator, then the server step.

    Create one per round from the current state, :meth:`add` every client's reply (or :meth:`drop` a client
    the engine lost), then :meth:`finish`. Replies are folded in the order they are added, so an engine
    that adds them in client order gets bit-identical weights to any other engine that does.

    Args:
        algorithm: the :class:`~fedmodel.algorithms.FederatedAlgorithm` (its aggregator and server optimizer).
        state: the server state the round starts from (``state.weights`` is every update's template).
        metrics: the model's ``federated_output_computation``; ``None`` ignores the clients' reports.
        report_template: the server model's own report (:func:`report_template`): each client's report must
            match it (names, paths, shapes, integer counts within ``limits.max_count``, finite values).
        limits: what one reply may claim (:class:`~fedmodel.validation.ReplyLimits`).
        label: how messages name a client (``"client 3"``; the Flower strategy says ``"node"``).
    """

    algorithm: FederatedAlgorithm
    state: ServerState
    metrics: Aggregator | None = None
    report_template: Mapping[str, Any] | None = None
    limits: ReplyLimits = field(default_factory=ReplyLimits)
    label: str = "client"

    def __post_init__(self) -> None:
        aggregator = self.algorithm.aggregator
        if getattr(aggregator, "initial_carry", None) is not None:
            self._acc: Any = aggregator.init(self.state.weights, self.state.aggregator_state)  # type: ignore[call-arg]
        else:
            self._acc = aggregator.init(self.state.weights)
        self._metric_state: Any = None if self.metrics is None else self.metrics.init()
        self._template = None if self.report_template is None else ReportTemplate.of(self.report_template)
        self._reports = 0
        self._seen: set[Hashable] = set()
        self._accepted: list[Hashable] = []
        self._dropped: list[Dropped] = []
        self._metrics_dropped: list[Dropped] = []
        self._finished = False

    def add(self, client: Hashable, result: Any, *, report_problem: str | None = None) -> Dropped | None:
        """Validate one client's reply and fold it into the round; ``None`` when accepted, else the rejection.

        ``result`` should be a :class:`~fedmodel.client.ClientResult`; its weights must match the round's
        template and be finite (within ``limits.value_limit``), its ``num_examples`` (the aggregation weight)
        a number in ``(0, limits.max_weight]``, and with ``limits.max_delta_norm`` its change from the template
        bounded.
        An invalid report (or an engine's ``report_problem``, e.g. one it could not decode) leaves the client
        in the aggregate but out of the round's metrics. A second reply of the same client is dropped. No
        exception a reply causes escapes.
        """
        if self._finished:
            raise RuntimeError("this round is finished; start a new ServerRound")
        label = f"{self.label} {client}"
        if client in self._seen:
            return self.drop(client, f"{label}: a second reply in the same round")
        self._seen.add(client)
        try:
            if not isinstance(result, ClientResult):
                raise AggregationError(f"{label}: expected a fedmodel.client.ClientResult, got {type(result).__name__}")
            weights, num_examples, report = result.weights, result.num_examples, result.metrics
            weight = validate_weight(num_examples, client=label, max_weight=self.limits.max_weight)
            if weight == 0:
                raise AggregationError(f"{label}: reported 0 examples, nothing to aggregate")
            update = validate_update(self.state.weights, weights, client=label, limits=self.limits)
            bound = self.limits.max_delta_norm
            if bound is not None and not (norm := delta_norm(self.state.weights, update)) <= bound:
                raise AggregationError(f"{label}: the update moves the weights by {norm:.6g} (L2), above {bound}")
            self._acc = self.algorithm.aggregator.accumulate(self._acc, update, weight)
        except Exception as exc:  # whatever the reply causes, it drops this client and nothing else
            return self.drop(client, _reason(exc))
        self._accepted.append(client)
        if self.metrics is not None:
            self._add_report(client, label, report, report_problem)
        return None

    def _add_report(self, client: Hashable, label: str, report: Any, problem: str | None) -> None:
        assert self.metrics is not None
        try:
            if problem is not None:
                raise AggregationError(f"{label}: {problem}")
            if self._template is not None:
                report = check_report(report, self._template, client=label, max_count=self.limits.max_count)
            self._metric_state = self.metrics.accumulate(self._metric_state, report)  # all or nothing
        except Exception as exc:
            self._metrics_dropped.append(Dropped(client, _reason(exc)))
        else:
            self._reports += 1

    def add_sum(self, clients: Sequence[Hashable], summed: SecureSum) -> Dropped | None:
        """Fold a secure aggregate of ``clients`` into the round, in place of their replies (once, alone).

        The server step that :meth:`finish` runs is the same: :class:`~fedmodel.aggregation.WeightedMean`
        gets the mean ``template + Σ change / count`` as one update, an aggregator with ``from_sum``
        (:class:`fedmodel.privacy.DPMean`: the noise, the fixed denominator, adaptive clipping) its sums.
        A sum that does not fit the template (a variable's shape, a non-finite value, a count that is not
        the number of clients) drops every client of it with the reason (returned as ``Dropped("*", ...)``).
        """
        if self._finished or self._seen:
            raise RuntimeError("add_sum takes a fresh round: one secure sum, no other reply")
        problem = secure_aggregation_problem(self.algorithm)
        if problem is not None:
            raise AggregationError(problem)
        self._seen.update(clients)
        try:
            self._acc = self._fold_sum(list(clients), summed)
        except Exception as exc:
            reason = f"the secure sum of {len(clients)} {self.label}s was refused: {_reason(exc)}"
            for client in clients:
                self.drop(client, reason)
            return Dropped("*", reason)
        self._accepted.extend(clients)
        return None

    def _fold_sum(self, clients: list[Hashable], summed: SecureSum) -> Any:
        template = self.state.weights
        if not (summed.count == len(clients) == len(set(clients)) >= 1 and 0 <= summed.unclipped <= summed.count):
            raise AggregationError(
                f"counts {summed.count} clients ({summed.unclipped} unclipped) "
                f"for {len(clients)} clients ({len(set(clients))} distinct)"
            )
        if len(summed.changes) != len(template.arrays):
            raise AggregationError(f"{len(summed.changes)} sums for {len(template.arrays)} variables")
        for (name, like), total in zip(template.items(), summed.changes, strict=True):
            if (total is None) == is_float(like) or (total is not None and np.shape(total) != like.shape):
                raise AggregationError(
                    f"{name!r}: expected a sum of shape {like.shape} or None for an integer variable"
                )
            if total is not None and nonfinite_count(np.asarray(total, np.float64)):
                raise AggregationError(f"{name!r}: the sum is not finite")
        from_sum = getattr(self.algorithm.aggregator, "from_sum", None)
        if from_sum is not None:
            return from_sum(self._acc, summed.changes, summed.count, summed.unclipped)
        with np.errstate(over="ignore"):  # the mean, cast back; validate_update refuses what does not fit
            means = [like if total is None else (like + np.asarray(total) / summed.count).astype(like.dtype)
                     for total, like in zip(summed.changes, template.arrays, strict=True)]  # fmt: skip
        mean = validate_update(template, template.with_arrays(means), client="the secure sum", limits=self.limits)
        return self.algorithm.aggregator.accumulate(self._acc, mean, 1.0)

    def drop(self, client: Hashable, reason: str) -> Dropped:
        """Record that ``client`` takes no part in this round (it failed, timed out, or sent nothing usable)."""
        self._seen.add(client)
        dropped = Dropped(client, reason)
        self._dropped.append(dropped)
        return dropped

    def finish(self) -> RoundOutcome:
        """Aggregate, apply the server optimizer, and return the new state with the round's metrics.

        The new weights (and the server optimizer's state) must be finite; otherwise the round is refused,
        the old weights are kept (with the round count + 1) and ``problem`` says why. Can be called once.
        """
        if self._finished:
            raise RuntimeError("this round is finished already")
        self._finished = True
        state = self.state
        after, problem = state._replace(round=state.round + 1), None
        if not self._accepted and not getattr(self.algorithm.aggregator, "releases_empty_rounds", False):
            problem = "no client update was accepted; the weights are unchanged"
        else:  # an aggregator that releases empty rounds (DP: the template plus noise) finishes them too
            try:
                after = self._step()
            except Exception as exc:
                problem = f"the round's aggregate was refused ({_reason(exc)}); the weights are unchanged"
        train: dict[str, Any] = {}
        if self.metrics is not None and self._reports:
            try:
                train = dict(self.metrics.finalize(self._metric_state))
            except Exception as exc:
                self._metrics_dropped.append(Dropped("*", f"the round's metrics cannot be finalized ({_reason(exc)})"))
        return RoundOutcome(
            after,
            train,
            tuple(self._accepted),
            tuple(self._dropped),
            tuple(self._metrics_dropped),
            problem,
        )

    def _step(self) -> ServerState:
        """The aggregate, the server optimizer's step and the aggregator's carry; raises if anything is not finite."""
        aggregator = self.algorithm.aggregator
        aggregated = aggregator.finalize(self._acc)
        next_carry = getattr(aggregator, "next_carry", None)
        carry = next_carry(self._acc) if next_carry is not None else self.state.aggregator_state
        after = self.algorithm.apply(self.state, aggregated)._replace(aggregator_state=carry)
        for what, tree in (("weights", dict(after.weights.items())), ("server optimizer state", after.optimizer_state)):
            bad = _first_nonfinite(tree)
            if bad is not None:
                raise AggregationError(f"the new {what} are not finite at {bad}")
        return after
