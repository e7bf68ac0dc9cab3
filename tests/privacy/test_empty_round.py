"""A DP round that accepts no client still releases the template plus noise, as the accountant assumes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fedmodel import get_weights
from fedmodel.algorithms import fedavg
from fedmodel.client import ClientResult
from fedmodel.privacy import DPMean, SeededNoise
from fedmodel.reference import SoftmaxRegression
from fedmodel.server import ServerRound


def test_an_empty_dp_round_releases_noise_and_advances_the_carry() -> None:
    model = SoftmaxRegression(4, 3)
    algorithm = replace(
        fedavg(), aggregator=DPMean(clip=1.0, noise_multiplier=1.0, expected_clients=2.0, noise=SeededNoise(0))
    )
    state = algorithm.init(get_weights(model))
    server_round = ServerRound(algorithm, state)
    server_round.add(0, ClientResult(state.weights, -1, {}))  # refused: nobody is accepted
    outcome = server_round.finish()
    assert outcome.accepted == () and outcome.problem is None
    assert outcome.state.round == 1 and outcome.state.aggregator_state.round == 1
    moved = outcome.state.weights.trainable[0] - state.weights.trainable[0]
    assert np.all(moved != 0) and np.std(moved) > 0.1  # noise of std 1.0 / 2 on every coordinate


def test_an_empty_round_without_dp_keeps_the_weights() -> None:
    model = SoftmaxRegression(4, 3)
    state = fedavg().init(get_weights(model))
    outcome = ServerRound(fedavg(), state).finish()
    assert outcome.problem == "no client update was accepted; the weights are unchanged"
    assert outcome.state.weights is state.weights
