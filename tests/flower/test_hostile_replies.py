"""Hostile replies through both engines: the simulation runner and the Flower strategy run one ServerRound.

Client (partition) 1 of four sends what an attacker may send. Each engine must finish the run, keep the global
weights finite, report client 1 (dropped, or left out of the metrics), leave the honest clients' result as it
would be without the attacker, and agree with the other engine bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("flwr")
ml_dtypes = pytest.importorskip("ml_dtypes")

from flwr.app import MetricRecord, RecordDict  # noqa: E402

from fedmodel import ModelWeights  # noqa: E402
from fedmodel.algorithms import FederatedAlgorithm, fedavg  # noqa: E402
from fedmodel.client import ClientResult  # noqa: E402
from fedmodel.data import ClientData  # noqa: E402
from fedmodel.integrations.flower import (  # noqa: E402
    METRICS_KEY,
    FedModelStrategy,
    client_app,
    flatten_report,
    partition_id,
    read_weights,
    unflatten_report,
    write_weights,
)
from fedmodel.robust import CoordinateMedian, NormClipping, TrimmedMean  # noqa: E402
from fedmodel.server import report_template  # noqa: E402
from fedmodel.simulation import SimulationConfig, run_simulation  # noqa: E402
from tests._models import MixedDtypes, mixed_clients  # noqa: E402
from tests.flower.conftest import InProcessGrid, over_the_wire  # noqa: E402

pytestmark = pytest.mark.usefixtures("task_identity")

CLIENTS = mixed_clients(4)
ATTACKER = 1
INT64_MAX = np.iinfo(np.int64).max
AGGREGATORS: dict[str, Callable[[], Any]] = {
    "weighted mean": lambda: None,
    "median": CoordinateMedian,
    "trimmed mean": TrimmedMean,
    "norm clipping": lambda: NormClipping(max_norm=0.5),
}


def algorithm(aggregator: str = "weighted mean") -> FederatedAlgorithm:
    base = fedavg(epochs=1, batch_size=8, client_lr=0.3)
    made = AGGREGATORS[aggregator]()
    return base if made is None else replace(base, aggregator=made)


@dataclass(frozen=True)
class Reply:
    """What a client sends, in the terms both engines share: weights, example count and report."""

    weights: ModelWeights
    num_examples: Any
    report: dict[str, Any]


Mutation = Callable[[Reply], Reply]


# -- the two engines ------------------------------------------------------------------------------
@dataclass
class Run:
    """One engine's run: the final weights and, per round, the dropped and metric-dropped clients."""

    weights: ModelWeights
    dropped: list[list[tuple[int, str]]]
    metrics_dropped: list[list[tuple[int, str]]]
    train: list[dict[str, Any]]


def simulate(aggregator: str, mutate: dict[int, Mutation], rounds: int = 1, crash: frozenset[int] = frozenset()) -> Run:
    """The simulation runner, with ``mutate[cid]`` rewriting client ``cid``'s result."""
    algo = algorithm(aggregator)
    inner = algo.client_update

    def update(model: Any, backend: Any, weights: ModelWeights, data: ClientData, seed: int) -> Any:
        cid = next(i for i, c in enumerate(CLIENTS) if c is data)
        if cid in crash:
            raise RuntimeError("crashed")
        honest = inner(model, backend, weights, data, seed)
        if cid not in mutate:
            return honest
        reply = mutate[cid](Reply(honest.weights, honest.num_examples, honest.metrics))
        return ClientResult(reply.weights, reply.num_examples, reply.report, honest.num_steps)

    out = run_simulation(
        MixedDtypes,
        CLIENTS,
        replace(algo, client_update=update),
        SimulationConfig(rounds=rounds, seed=3, progress=False),
    )
    return Run(
        out.weights,
        [[(f.client_id, f.reason) for f in r.failures] for r in out.rounds],
        [[(f.client_id, f.reason) for f in r.metrics_failures] for r in out.rounds],
        [r.train for r in out.rounds],
    )


TEMPLATE = report_template(MixedDtypes())


def wire_mutation(mutate: Mutation) -> Callable[[RecordDict], RecordDict]:
    """``mutate`` applied to a Flower reply: decode, rewrite, encode as a client would, serialize."""

    def tamper(content: RecordDict) -> RecordDict:
        metrics = content.metric_records[METRICS_KEY]
        honest = Reply(read_weights(content), metrics["num-examples"], unflatten_report(metrics, TEMPLATE))
        bad = mutate(honest)
        out = RecordDict()
        write_weights(out, bad.weights)
        values = {"partition-id": metrics["partition-id"], **flatten_report(bad.report)}
        if bad.num_examples is not None:
            values["num-examples"] = bad.num_examples
        out[METRICS_KEY] = MetricRecord(values)
        return out

    return tamper


def flower(
    aggregator: str,
    tamper: dict[int, Callable[[RecordDict], RecordDict]],
    rounds: int = 1,
    crash: frozenset[int] = frozenset(),
) -> Run:
    """The Flower strategy over an in-process grid; ``tamper[pid]`` rewrites partition ``pid``'s reply content."""
    algo = algorithm(aggregator)

    def load(ctx: Any) -> ClientData:
        if partition_id(ctx) in crash:
            raise RuntimeError("crashed")
        return CLIENTS[partition_id(ctx)]

    app = client_app(lambda ctx: MixedDtypes(), load, lambda ctx: algo.client_update)
    grid = InProcessGrid(app, len(CLIENTS))
    pids = {node: int(grid.contexts[node].node_config["partition-id"]) for node in grid.node_ids}

    def rewrite(node: int, content: RecordDict) -> RecordDict:
        change = tamper.get(pids[node])
        return content if change is None else over_the_wire(change(content))

    grid.tamper = rewrite
    strategy = FedModelStrategy(MixedDtypes, algo, min_available_nodes=len(CLIENTS), seed=3)
    strategy.run(grid, rounds, round_timeout=5.0)

    def by_partition(failures: Any) -> list[tuple[int, str]]:
        return [(pids.get(f.node_id, -1), f.reason) for f in failures]

    return Run(
        strategy.weights,
        [by_partition(r.failures) for r in strategy.rounds],
        [by_partition(r.metric_failures) for r in strategy.rounds],
        [r.train for r in strategy.rounds],
    )


def both(aggregator: str, mutate: Mutation, rounds: int = 1) -> tuple[Run, Run]:
    return (
        simulate(aggregator, {ATTACKER: mutate}, rounds),
        flower(aggregator, {ATTACKER: wire_mutation(mutate)}, rounds),
    )


_CACHE: dict[tuple[str, str, int], Run] = {}


def reference(aggregator: str, attacker: str, rounds: int = 1) -> Run:
    """The simulation when the attacker crashes (``"crashed"``) or behaves (``"honest"``)."""
    key = (aggregator, attacker, rounds)
    if key not in _CACHE:
        crash = frozenset({ATTACKER}) if attacker == "crashed" else frozenset()
        _CACHE[key] = simulate(aggregator, {}, rounds, crash)
    return _CACHE[key]


def assert_same_weights(a: ModelWeights, b: ModelWeights) -> None:
    for (na, x), (nb, y) in zip(a.items(), b.items(), strict=True):
        assert na == nb and x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def assert_survived(sim: Run, fl: Run, aggregator: str, *, dropped: bool, reason: str, rounds: int = 1) -> None:
    """Both engines: the run went on, weights finite and equal, the attacker reported, the others unaffected."""
    for run in (sim, fl):
        assert all(np.isfinite(np.asarray(a, np.float64)).all() for a in run.weights.arrays)
        where = run.dropped if dropped else run.metrics_dropped
        for r in range(rounds):
            ((client, why),) = where[r]
            assert client == ATTACKER and reason in why, why
        others = run.metrics_dropped if dropped else run.dropped
        assert all(not r for r in others)
    assert_same_weights(sim.weights, fl.weights)
    assert sim.train == fl.train
    assert_same_weights(sim.weights, reference(aggregator, "crashed" if dropped else "honest", rounds).weights)


# -- the reproductions of the issue, over both engines ---------------------------------------------
def with_array(name: str, value: Callable[[np.ndarray], np.ndarray]) -> Mutation:
    def mutate(reply: Reply) -> Reply:
        arrays = [value(a) if n == name else a for n, a in reply.weights.items()]
        return replace(reply, weights=reply.weights.with_arrays(arrays))

    return mutate


def with_report(**changes: Any) -> Mutation:
    return lambda reply: replace(reply, report={**reply.report, **changes})


def with_count(value: Any) -> Mutation:
    return lambda reply: replace(reply, num_examples=value)


def test_a_report_count_of_2_to_the_63_leaves_the_attacker_out_of_the_metrics_only() -> None:
    sim, fl = both("weighted mean", with_report(num_examples=2**63), rounds=2)
    assert_survived(sim, fl, "weighted mean", dropped=False, reason="num_examples", rounds=2)


@pytest.mark.parametrize("aggregator", ["median", "trimmed mean", "norm clipping"])
def test_a_bfloat16_nan_sent_as_float32_is_dropped_under_every_robust_aggregator(aggregator: str) -> None:
    nan = with_array("input_scale", lambda a: np.array([1, np.nan, 1, 1], ml_dtypes.bfloat16))
    sim, fl = both(aggregator, nan, rounds=2)
    assert_survived(sim, fl, aggregator, dropped=True, reason="'input_scale' has 1 non-finite value(s)", rounds=2)


def test_finite_weights_of_3e38_cannot_make_the_global_model_infinite() -> None:
    huge = with_array("kernel", lambda a: np.full(a.shape, 3e38, np.float32))
    sim, fl = both("weighted mean", huge, rounds=3)
    assert_survived(sim, fl, "weighted mean", dropped=True, reason="above the limit", rounds=3)


@pytest.mark.parametrize(
    ("aggregator", "count", "reason"),
    [
        ("weighted mean", 1e39, "above the cap"),
        ("norm clipping", 1e308, "above the cap"),
        ("weighted mean", 2**64 - 1, "above the cap"),
        ("weighted mean", -999041, "finite and >= 0, got -999041"),
        ("median", math.nan, "finite and >= 0, got nan"),
        ("weighted mean", [10, 10], "is not a real number"),
        ("trimmed mean", None, "is not a real number"),
    ],
)
def test_an_impossible_example_count_drops_the_attacker(aggregator: str, count: Any, reason: str) -> None:
    sim, fl = both(aggregator, with_count(count), rounds=2)
    assert_survived(sim, fl, aggregator, dropped=True, reason=reason, rounds=2)


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        ({"loss": (math.nan, 12)}, "non-finite"),
        ({"accuracy": (695410, 12)}, "695410.0 correct out of 12.0 examples"),
        ({"num_examples": -5}, "num_examples"),
        ({"accuracy": (3, 13)}, "disagree on the number of examples"),
    ],
)
def test_a_poisoned_report_is_left_out_of_the_metrics(report: dict[str, Any], reason: str) -> None:
    sim, fl = both("weighted mean", with_report(**report), rounds=2)
    assert_survived(sim, fl, "weighted mean", dropped=False, reason=reason, rounds=2)


@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS))
def test_integer_variables_saturate_at_the_int64_maximum_in_both_engines(aggregator: str) -> None:
    top = with_array("steps", lambda a: np.array(INT64_MAX, np.int64))
    mutations = dict.fromkeys(range(len(CLIENTS)), top)
    sim = simulate(aggregator, mutations)
    fl = flower(aggregator, {pid: wire_mutation(m) for pid, m in mutations.items()})
    for run in (sim, fl):
        assert int(run.weights.non_trainable[1]) == INT64_MAX and run.dropped == [[]]
    assert_same_weights(sim.weights, fl.weights)


@pytest.mark.parametrize(
    ("claim", "reason"),
    [(-1, "expected an integer in [0, 2**31)"), (2**40, "expected an integer in [0, 2**31)"), (1.5, "got 1.5")],
)
def test_a_partition_id_is_checked_and_only_orders_the_aggregation(claim: Any, reason: str) -> None:
    def tamper(content: RecordDict) -> RecordDict:
        content[METRICS_KEY]["partition-id"] = claim
        return content

    fl = flower("weighted mean", {ATTACKER: tamper})
    ((client, why),) = fl.dropped[0]
    assert client == ATTACKER and reason in why
    assert_same_weights(fl.weights, reference("weighted mean", "crashed").weights)


def test_a_node_that_changes_its_partition_id_is_dropped() -> None:
    calls = []

    def tamper(content: RecordDict) -> RecordDict:
        calls.append(1)
        if len(calls) == 2:
            content[METRICS_KEY]["partition-id"] = 0
        return content

    fl = flower("weighted mean", {ATTACKER: tamper}, rounds=2)
    assert fl.dropped[0] == []
    ((client, why),) = fl.dropped[1]
    assert client == ATTACKER and "claims partition 0, but was partition 1 before" in why


# -- hostile replies at random, through both engines ----------------------------------------------
def _weights_mutation(draw: st.DrawFn) -> tuple[Mutation, str]:
    name = draw(st.sampled_from(["kernel", "bias", "input_scale", "steps"]))
    kind = draw(
        st.sampled_from(["nan", "inf", "huge", "dtype64", "dtype16", "int32", "shape", "scalar", "missing", "renamed"])
    )
    if kind in ("nan", "inf", "huge") and name == "steps":
        kind = "dtype64"
    value = {"nan": np.nan, "inf": draw(st.sampled_from([np.inf, -np.inf])), "huge": 1e20}.get(kind)
    at = draw(st.integers(0, 11))

    def poke(a: np.ndarray) -> np.ndarray:
        out = a.astype(np.float32).copy() if a.dtype.name == "bfloat16" else a.copy()
        out.reshape(-1)[at % out.size] = value
        return out.astype(a.dtype) if a.dtype.name == "bfloat16" else out

    changes: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "nan": poke,
        "inf": poke,
        "huge": poke,
        "dtype64": lambda a: a.astype(np.float64),
        "dtype16": lambda a: a.astype(np.float16),
        "int32": lambda a: a.astype(np.int32),
        "shape": lambda a: np.zeros((*a.shape, 2), a.dtype),
        "scalar": lambda a: np.zeros((), a.dtype) if a.ndim else np.zeros(2, a.dtype),
    }
    if kind == "missing":
        return (lambda r: replace(r, weights=ModelWeights(r.weights.trainable, r.weights.non_trainable[:1]))), kind
    if kind == "renamed":
        return (
            lambda r: replace(
                r, weights=ModelWeights(r.weights.trainable, r.weights.non_trainable, ("k", "b"), ("i", "s"))
            ),
            kind,
        )
    return with_array(name, changes[kind]), f"{kind} {name}"


COUNTS = [-1, -999041, 0, 2**31 + 1, 2**63, 2**64 - 1, math.nan, math.inf, -math.inf, 1e39, 1e308, -0.5, None, [1]]


def _count_mutation(draw: st.DrawFn) -> tuple[Mutation, str]:
    value = draw(st.sampled_from(COUNTS))
    return with_count(value), f"count {value!r}"


def _report_mutation(draw: st.DrawFn) -> tuple[Mutation, str]:
    metric, index = draw(
        st.sampled_from([("loss", 0), ("loss", 1), ("accuracy", 0), ("accuracy", 1), ("num_examples", None)])
    )
    float_leaf = metric == "loss" and index == 0
    value = draw(
        st.sampled_from([math.nan, math.inf, -math.inf])
        if float_leaf
        else st.sampled_from([-1, -(2**63), 2**63, 2**64 - 1, 1.5, math.nan, 10**6, [1, 2]])
    )

    def mutate(reply: Reply) -> Reply:
        report = dict(reply.report)
        if index is None:
            report[metric] = value
        else:
            pair = list(report[metric])
            pair[index] = value
            report[metric] = tuple(pair)
        return replace(reply, report=report)

    return mutate, f"report {metric}/{index} = {value!r}"


@st.composite
def mutations(draw: st.DrawFn) -> tuple[Mutation, str, bool]:
    """A hostile reply: ``(mutation, description, whether it drops the client from the aggregate)``."""
    kind = draw(st.sampled_from(["weights", "count", "report"]))
    if kind == "weights":
        return (*_weights_mutation(draw), True)
    if kind == "count":
        return (*_count_mutation(draw), True)
    return (*_report_mutation(draw), False)


@settings(
    max_examples=667,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(aggregator=st.sampled_from(sorted(AGGREGATORS)), plan=st.tuples(mutations(), mutations(), mutations()))
def test_two_thousand_hostile_replies_never_end_a_run_nor_reach_the_global_weights(
    aggregator: str, plan: tuple[tuple[Mutation, str, bool], ...]
) -> None:
    """Clients 1, 2 and 3 are hostile in each of 667 examples: 2,001 hostile replies through each engine."""
    hostile = dict(enumerate(plan, start=1))
    sim = simulate(aggregator, {cid: m for cid, (m, _, _) in hostile.items()})
    fl = flower(aggregator, {cid: wire_mutation(m) for cid, (m, _, _) in hostile.items()})
    for run in (sim, fl):
        assert all(np.isfinite(np.asarray(a, np.float64)).all() for a in run.weights.arrays)
        reported = {c for c, _ in run.dropped[0]} | {c for c, _ in run.metrics_dropped[0]}
        assert reported == {1, 2, 3}, (hostile, run.dropped, run.metrics_dropped)  # client 0 is honest
        dropped = {c for c, _ in run.dropped[0]}
        assert dropped == {c for c, (_, _, drops) in hostile.items() if drops}, (hostile, run.dropped)
    assert_same_weights(sim.weights, fl.weights)
    assert sim.train == fl.train
