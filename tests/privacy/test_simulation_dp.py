"""DP-FedAvg in the simulation runner: epsilon after every round for the sampling actually done, a budget that
stops the run before it is exceeded, and the aggregator's carry through checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedmodel import SGD, CheckpointError
from fedmodel import server_optimizers as so
from fedmodel.algorithms import FederatedAlgorithm, fedavg
from fedmodel.checkpoint import load_checkpoint, save_checkpoint
from fedmodel.client import local_sgd
from fedmodel.data import federated_digits
from fedmodel.privacy import (
    AdaptiveClipping,
    DPMean,
    FixedSizeSampling,
    PoissonSampling,
    SeededNoise,
    default_delta,
    epsilon,
)
from fedmodel.reference import SoftmaxRegression
from fedmodel.server import sample_clients
from fedmodel.simulation import SimulationConfig, SimulationResult, run_simulation

N = 30
DATA = federated_digits(N, alpha=None, seed=0)


def _dp(z: float = 1.0, expected: float = 6.0, adaptive: bool = True) -> FederatedAlgorithm:
    clip: Any = AdaptiveClipping(initial_norm=0.3, count_stddev=2.0) if adaptive else 0.3
    dp = DPMean(clip=clip, noise_multiplier=z, expected_clients=expected, noise=SeededNoise(0))
    return FederatedAlgorithm("dp-fedavg", local_sgd(epochs=1, batch_size=16, optimizer=SGD(0.5)), so.sgd(1.0), dp)


def _run(algorithm: FederatedAlgorithm, **config: Any) -> SimulationResult:
    factory = lambda: SoftmaxRegression(64, 10, seed=0)  # noqa: E731
    return run_simulation(factory, DATA.clients, algorithm, SimulationConfig(progress=False, **config))


def test_poisson_rounds_take_the_sampled_clients_and_report_poisson_epsilons() -> None:
    result = _run(_dp(), rounds=4, sampling_rate=0.2, seed=3)
    assert [r.clients for r in result.rounds] == [tuple(sample_clients(N, None, 3, r, rate=0.2)) for r in range(4)]
    assert len({len(r.clients) for r in result.rounds}) > 1  # the number per round varies
    delta = default_delta(N)
    assert delta == 0.01
    assert [r.epsilon for r in result.rounds] == [epsilon(1.0, r, delta, PoissonSampling(0.2)) for r in (1, 2, 3, 4)]


def test_fixed_size_rounds_report_the_epsilon_of_sampling_without_replacement() -> None:
    result = _run(_dp(), rounds=2, clients_per_round=6, delta=1e-3)
    assert all(len(r.clients) == 6 for r in result.rounds)
    want = [epsilon(1.0, r, 1e-3, FixedSizeSampling(6, N)) for r in (1, 2)]
    assert [r.epsilon for r in result.rounds] == want
    assert want[1] != epsilon(1.0, 2, 1e-3, PoissonSampling(6 / N))  # the scheme matters: it is the one used


def test_without_dpmean_there_is_no_epsilon_and_no_budget() -> None:
    result = _run(fedavg(client_lr=0.5), rounds=1, sampling_rate=0.5)
    assert result.rounds[0].epsilon is None and result.stopped is None
    with pytest.raises(ValueError, match="target_epsilon and delta need a DPMean aggregator, not WeightedMean"):
        _run(fedavg(), rounds=1, target_epsilon=1.0)
    with pytest.raises(ValueError, match="not both"):
        _run(_dp(), rounds=1, sampling_rate=0.5, clients_per_round=3)


def test_the_budget_stops_the_run_before_the_round_that_would_exceed_it() -> None:
    sampling, target = PoissonSampling(0.2), 2.0
    fits = max(r for r in range(1, 50) if epsilon(1.0, r, 0.01, sampling) <= target)
    assert 1 < fits < 20
    result = _run(_dp(), rounds=20, sampling_rate=0.2, target_epsilon=target)
    assert len(result.rounds) == result.state.round == fits
    assert result.rounds[-1].epsilon is not None and result.rounds[-1].epsilon <= target
    assert result.stopped is not None and f"round {fits + 1} would spend epsilon" in result.stopped
    assert f"> target_epsilon {target}" in result.stopped


def test_no_noise_spends_an_infinite_epsilon_and_a_budget_allows_no_round() -> None:
    assert _run(_dp(z=0.0), rounds=1, clients_per_round=6).rounds[0].epsilon == float("inf")
    stopped = _run(_dp(z=0.0), rounds=3, clients_per_round=6, target_epsilon=100.0)
    assert stopped.rounds == [] and stopped.state.round == 0 and stopped.stopped is not None


def test_a_dp_run_resumed_from_its_checkpoint_ends_bit_for_bit_as_the_uninterrupted_one(tmp_path: Path) -> None:
    algorithm, config = _dp(), {"sampling_rate": 0.3, "seed": 1}
    whole = _run(algorithm, rounds=4, **config)
    path = tmp_path / "ckpt.safetensors"
    _run(algorithm, rounds=2, checkpoint_path=path, **config)
    saved = load_checkpoint(path, like=whole.weights).metadata
    assert saved["carry/round"] == 2 and isinstance(saved["carry/clip_norm"], float)
    assert saved["carry/clip_norm"] != 0.3  # adapted: a resume that restarted the carry would differ
    resumed = _run(algorithm, rounds=4, checkpoint_path=path, resume=True, **config)
    assert [r.round for r in resumed.rounds] == [3, 4]
    assert resumed.state.aggregator_state == whole.state.aggregator_state
    for got, want in zip(resumed.weights.arrays, whole.weights.arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    assert [r.epsilon for r in resumed.rounds] == [r.epsilon for r in whole.rounds[2:]]


def test_a_resumed_run_keeps_to_the_budget_of_the_whole_run(tmp_path: Path) -> None:
    path, config = tmp_path / "ckpt.safetensors", {"sampling_rate": 0.2, "target_epsilon": 2.0}
    whole = _run(_dp(), rounds=20, **config)
    _run(_dp(), rounds=3, checkpoint_path=path, **config)
    resumed = _run(_dp(), rounds=20, checkpoint_path=path, resume=True, **config)
    assert resumed.state.round == whole.state.round and resumed.stopped == whole.stopped


def _rewrite(path: Path, **changes: Any) -> None:
    """The checkpoint with its metadata changed (a consistent forgery: the digest is recomputed)."""
    like = SoftmaxRegression(64, 10, seed=0)
    from fedmodel import get_weights

    ckpt = load_checkpoint(path, like=get_weights(like))
    metadata = {k: v for k, v in ckpt.metadata.items() if k not in changes or changes[k] is not None}
    metadata.update({k: v for k, v in changes.items() if v is not None})
    save_checkpoint(path, ckpt.weights, extra=ckpt.extra, metadata=metadata)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"carry/clip_norm": 0.0}, "the aggregator refuses the saved carry"),
        ({"carry/clip_norm": 1e300}, "the aggregator refuses the saved carry"),
        ({"carry/round": -1}, "the aggregator refuses the saved carry"),
        ({"carry/round": 1.5}, "carry/round: expected a int, got 1.5"),
        ({"carry/clip_norm": "big"}, "carry/clip_norm: expected a float"),
        ({"carry/round": None}, r"the aggregator's carry holds \['clip_norm'\], expected \['round', 'clip_norm'\]"),
    ],
)
def test_a_checkpoint_with_a_forged_carry_is_refused(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    path = tmp_path / "ckpt.safetensors"
    _run(_dp(), rounds=1, clients_per_round=6, checkpoint_path=path)
    _rewrite(path, **changes)
    with pytest.raises(CheckpointError, match=message):
        _run(_dp(), rounds=2, clients_per_round=6, checkpoint_path=path, resume=True)


def test_resuming_with_another_dp_aggregator_or_budget_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.safetensors"
    _run(_dp(), rounds=1, clients_per_round=6, checkpoint_path=path)
    with pytest.raises(CheckpointError, match=r"aggregator 'DPMean\(clip=AdaptiveClipping.*noise_multiplier=2\.0"):
        _run(_dp(z=2.0), rounds=2, clients_per_round=6, checkpoint_path=path, resume=True)
    with pytest.raises(CheckpointError, match=r"target_epsilon 9\.0 \(not in the checkpoint\)"):
        _run(_dp(), rounds=2, clients_per_round=6, checkpoint_path=path, resume=True, target_epsilon=9.0)


def test_an_aggregator_whose_carry_cannot_be_saved_fails_before_the_first_round(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class OddCarry(DPMean):
        def initial_carry(self, template: Any) -> Any:
            return {"round": 0}

    odd = dataclasses.replace(
        _dp(), aggregator=OddCarry(clip=0.3, noise_multiplier=1.0, expected_clients=6, noise=SeededNoise(0))
    )
    with pytest.raises(CheckpointError, match="cannot checkpoint the aggregator's carry"):
        _run(odd, rounds=1, checkpoint_path=tmp_path / "ckpt.safetensors")
    assert not (tmp_path / "ckpt.safetensors").exists()
