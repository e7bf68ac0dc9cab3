"""The server round finished from a secure sum (``ServerRound.add_sum``): the same server step as for single
replies, every hostile sum refused without touching the weights, and what a client adds to the sum."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from fedmodel import AggregationError, ModelWeights
from fedmodel import server_optimizers as so
from fedmodel.algorithms import FederatedAlgorithm, fedavg
from fedmodel.integrations.flower import secure_change
from fedmodel.privacy import AdaptiveClipping, DPMean, SeededNoise
from fedmodel.privacy.clipping import clip_factor, clipped_change
from fedmodel.robust import TrimmedMean
from fedmodel.server import SecureSum, ServerRound, secure_aggregation_problem

SERVER = ModelWeights(
    (np.zeros((2, 3), np.float32), np.ones(3, np.float32)), (np.array(7, np.int64),), ("w", "b"), ("n",)
)


def _update(seed: int) -> ModelWeights:
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=a.shape).astype(np.float32) for a in SERVER.trainable]
    return ModelWeights(tuple(arrays), (np.array(9, np.int64),), SERVER.trainable_names, SERVER.non_trainable_names)


UPDATES = [_update(s) for s in range(3)]


def _sum(updates: list[ModelWeights], scale: float = 1.0, clip: float | None = None) -> tuple[np.ndarray | None, ...]:
    sums: list[np.ndarray | None] = [np.zeros(a.shape) for a in SERVER.trainable] + [None]
    for u in updates:
        factor = scale if clip is None else clip_factor(SERVER, u, clip, client="c")[1]
        for i, (s, v) in enumerate(zip(SERVER.trainable, u.trainable, strict=True)):
            sums[i] = sums[i] + clipped_change(s, v, factor)  # type: ignore[operator]
    return tuple(sums)


def test_fedavg_from_a_secure_sum_is_the_unweighted_mean_and_integers_keep_the_servers_value() -> None:
    algorithm = fedavg()
    round_ = ServerRound(algorithm, algorithm.init(SERVER))
    assert round_.add_sum([0, 1, 2], SecureSum(_sum(UPDATES), 3)) is None
    outcome = round_.finish()
    for i, got in enumerate(outcome.state.weights.trainable):
        exact = np.mean([u.trainable[i].astype(np.float64) for u in UPDATES], axis=0).astype(np.float32)
        np.testing.assert_array_max_ulp(got, exact, maxulp=1)
    assert outcome.state.weights.non_trainable[0] == 7 and outcome.accepted == (0, 1, 2) and outcome.state.round == 1


def test_dpmean_from_a_secure_sum_is_dpmean_over_the_same_replies_bit_for_bit() -> None:
    clip = float(np.median([clip_factor(SERVER, u, 1.0, client="c")[0] for u in UPDATES]))  # one of 3 unclipped
    dp = DPMean(
        clip=AdaptiveClipping(initial_norm=clip, count_stddev=1.0),
        noise_multiplier=0.7,
        expected_clients=3,
        noise=SeededNoise(2),
    )
    algorithm = FederatedAlgorithm("dp", fedavg().client_update, so.sgd(1.0), dp)
    state = algorithm.init(SERVER)
    direct = ServerRound(algorithm, state)
    for k, update in enumerate(UPDATES):
        direct.add(k, _reply(update))
    unclipped = sum(clip_factor(SERVER, u, clip, client="c")[0] <= clip for u in UPDATES)
    assert 0 < unclipped < 3
    secure = ServerRound(algorithm, state)
    secure.add_sum([0, 1, 2], SecureSum(_sum(UPDATES, clip=clip), 3, unclipped))
    a, b = direct.finish().state, secure.finish().state
    assert a.aggregator_state == b.aggregator_state
    for x, y in zip(a.weights.arrays, b.weights.arrays, strict=True):
        np.testing.assert_array_equal(x, y)


def _reply(weights: ModelWeights) -> Any:
    from fedmodel.client import ClientResult

    return ClientResult(weights, 10, {})


GOOD = _sum(UPDATES)


@pytest.mark.parametrize(
    ("clients", "summed", "reason"),
    [
        ([0, 1, 2], SecureSum((GOOD[0] * np.nan, *GOOD[1:]), 3), "'w': the sum is not finite"),  # type: ignore[operator]
        ([0, 1, 2], SecureSum((GOOD[0][:1], *GOOD[1:]), 3), "'w': expected a sum of shape (2, 3)"),  # type: ignore[index]
        ([0, 1, 2], SecureSum((*GOOD[:2], np.zeros(())), 3), "'n': expected a sum of shape () or None"),
        ([0, 1, 2], SecureSum((None, *GOOD[1:]), 3), "'w': expected a sum of shape"),
        ([0, 1, 2], SecureSum(GOOD[:2], 3), "2 sums for 3 variables"),
        ([0, 1, 2], SecureSum(GOOD, 4), "counts 4 clients (0 unclipped) for 3 clients (3 distinct)"),
        ([0, 1, 1], SecureSum(GOOD, 3), "for 3 clients (2 distinct)"),
        ([0, 1, 2], SecureSum(GOOD, 3, unclipped=4), "counts 3 clients (4 unclipped)"),
        ([0, 1, 2], SecureSum((GOOD[0] * 1e30, *GOOD[1:]), 3), "the secure sum"),  # type: ignore[operator]
    ],
    ids=[
        "nan",
        "shape",
        "integer variable summed",
        "float variable missing",
        "count of arrays",
        "count",
        "duplicate",
        "unclipped",
        "huge",
    ],
)
def test_a_hostile_secure_sum_drops_its_clients_and_leaves_the_weights(
    clients: list[int], summed: SecureSum, reason: str
) -> None:
    algorithm = fedavg()
    state = algorithm.init(SERVER)
    round_ = ServerRound(algorithm, state)
    dropped = round_.add_sum(clients, summed)
    assert dropped is not None and dropped.client == "*" and reason in dropped.reason
    outcome = round_.finish()
    assert outcome.accepted == () and {d.client for d in outcome.dropped} == set(clients)
    assert outcome.problem is not None and outcome.state.round == 1
    for got, want in zip(outcome.state.weights.arrays, SERVER.arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_add_sum_takes_a_fresh_round_and_an_aggregator_that_can_use_a_sum() -> None:
    algorithm = fedavg()
    round_ = ServerRound(algorithm, algorithm.init(SERVER))
    round_.add(0, _reply(UPDATES[0]))
    with pytest.raises(RuntimeError, match="fresh round"):
        round_.add_sum([1], SecureSum(_sum(UPDATES[1:2]), 1))
    trimmed = FederatedAlgorithm("trimmed", fedavg().client_update, so.sgd(1.0), TrimmedMean(0.1))
    with pytest.raises(AggregationError, match="TrimmedMean needs each client's update"):
        ServerRound(trimmed, trimmed.init(SERVER)).add_sum([0], SecureSum(_sum(UPDATES[:1]), 1))
    assert secure_aggregation_problem(fedavg()) is None


CONFIG = {"clipping-range": 3.0}


def test_a_client_sends_its_float_changes_and_refuses_what_the_protocol_would_distort() -> None:
    sent = secure_change(SERVER, UPDATES[0], CONFIG)
    assert len(sent) == 2 and all(s.dtype == np.float64 for s in sent)  # the int64 counter is not sent
    np.testing.assert_array_equal(sent[0], UPDATES[0].trainable[0].astype(np.float64))
    bad = UPDATES[0].with_arrays([UPDATES[0].trainable[0] * np.nan, *UPDATES[0].arrays[1:]])
    with pytest.raises(AggregationError, match=r"non-finite|NaN|finite"):
        secure_change(SERVER, bad, CONFIG)
    far = UPDATES[0].with_arrays([UPDATES[0].trainable[0] + 5, *UPDATES[0].arrays[1:]])
    with pytest.raises(AggregationError, match="beyond SecAgg\\+'s clipping range 3"):
        secure_change(SERVER, far, CONFIG)


def test_under_dp_a_client_clips_its_change_and_says_whether_it_had_to() -> None:
    norm = clip_factor(SERVER, UPDATES[0], 1.0, client="c")[0]
    clipped = secure_change(SERVER, UPDATES[0], {**CONFIG, "clip-norm": 0.5, "count-unclipped": True})
    assert np.sqrt(sum(float(np.sum(c**2)) for c in clipped[:-1])) == pytest.approx(0.5) and clipped[-1].tolist() == [
        0.0
    ]
    whole = secure_change(SERVER, UPDATES[0], {**CONFIG, "clip-norm": norm + 1, "count-unclipped": True})
    assert whole[-1].tolist() == [1.0]
    assert len(secure_change(SERVER, UPDATES[0], {**CONFIG, "clip-norm": 0.5})) == 2  # fixed clip: no count
