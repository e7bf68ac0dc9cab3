"""Systems heterogeneity: stragglers decided by the client's round seed, dropped (FedAvg) or kept (FedProx)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedmodel import FedModelError, backend_for, get_weights
from fedmodel.algorithms import fedavg
from fedmodel.data import ClientData
from fedmodel.heterogeneity import StragglerDroppedError, StragglingSGD, straggler_epochs
from fedmodel.optimizers import SGD
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, client_seed, run_simulation


def test_without_stragglers_every_client_does_all_its_epochs() -> None:
    assert {straggler_epochs(s, fraction=0.0, epochs=20) for s in range(500)} == {20}


def test_stragglers_do_a_uniform_1_to_e_minus_1_epochs() -> None:
    work = np.array([straggler_epochs(s, fraction=1.0, epochs=5) for s in range(4000)])
    assert set(work.tolist()) == {1, 2, 3, 4}
    np.testing.assert_allclose(np.bincount(work)[1:] / len(work), 0.25, atol=0.03)


def test_the_fraction_of_stragglers_matches_and_the_draw_depends_on_the_seed_alone() -> None:
    seeds = [client_seed(7, r, c) for r in range(40) for c in range(50)]
    late = np.mean([straggler_epochs(s, fraction=0.3, epochs=20) < 20 for s in seeds])
    assert abs(late - 0.3) < 0.03
    assert [straggler_epochs(s, fraction=0.3, epochs=20) for s in seeds[:50]] == [
        straggler_epochs(s, fraction=0.3, epochs=20) for s in seeds[:50]
    ]


@pytest.mark.parametrize(
    ("fraction", "epochs", "batch_size", "message"),
    [
        (1.5, 20, 4, r"\[0, 1\], got 1.5"),
        (0.5, 1, 4, "epochs >= 2"),
        # without stragglers nothing checked these: every client failed in the run instead (2.5 epochs even
        # trained the stragglers alone, range(2.5) failing only the clients on time)
        (0.0, 0, 4, r"epochs must be an int >= 1, got 0"),
        (0.5, 2.5, 4, r"epochs must be an int >= 1, got 2.5"),
        (0.0, None, 4, r"epochs must be an int >= 1, got None"),
        (0.0, 2, 0, r"batch_size must be an int >= 1, got 0"),
        (0.0, 2, None, r"batch_size must be an int >= 1, got None"),
    ],
)
def test_impossible_settings_are_rejected_when_the_client_is_built(
    fraction: float, epochs: int, batch_size: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        StragglingSGD(epochs, batch_size, SGD(0.1), fraction=fraction)


def test_an_optimizer_that_is_not_a_spec_is_rejected_when_the_client_is_built() -> None:
    with pytest.raises(TypeError, match=r"optimizer must be a fedmodel OptimizerSpec .*got None"):
        StragglingSGD(2, 4, None, fraction=0.0)  # type: ignore[arg-type]


def _client() -> ClientData:
    rng = np.random.default_rng(0)
    return ClientData(rng.normal(size=(10, 3)).astype(np.float32), rng.integers(0, 2, 10))


def test_a_kept_straggler_returns_its_partial_work_and_a_dropped_one_raises() -> None:
    seed = next(s for s in range(100) if straggler_epochs(s, fraction=0.5, epochs=6) < 6)
    work = straggler_epochs(seed, fraction=0.5, epochs=6)
    model = SoftmaxRegression(3, 2)
    server = get_weights(model)
    keep = StragglingSGD(6, 4, SGD(0.1, proximal_mu=1.0), fraction=0.5)
    result = keep(model, backend_for(model), server, _client(), seed)
    assert result.num_steps == work * 3 and result.num_examples == 10  # 3 batches of at most 4 per epoch
    drop = dataclasses.replace(keep, drop_stragglers=True)
    with pytest.raises(StragglerDroppedError, match=f"straggler: {work} of 6 epochs") as info:
        drop(model, backend_for(model), server, _client(), seed)
    assert isinstance(info.value, FedModelError)
    on_time = next(s for s in range(100) if straggler_epochs(s, fraction=0.5, epochs=6) == 6)
    assert drop(model, backend_for(model), server, _client(), on_time).num_steps == 18


def test_in_the_runner_fedavg_drops_exactly_the_stragglers_fedprox_keeps() -> None:
    clients = [_client() for _ in range(8)]
    config = SimulationConfig(rounds=3, clients_per_round=4, seed=5, progress=False)

    def run(drop: bool) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        client = StragglingSGD(4, 5, SGD(0.1), fraction=0.5, drop_stragglers=drop)
        algorithm = dataclasses.replace(fedavg(), client_update=client)
        result = run_simulation(lambda: SoftmaxRegression(3, 2), clients, algorithm, config)
        return [(r.clients, tuple(f.client_id for f in r.failures)) for r in result.rounds]

    dropped, kept = run(True), run(False)
    for r, ((ids, failed), (same_ids, none)) in enumerate(zip(dropped, kept, strict=True)):
        expected = tuple(c for c in ids if straggler_epochs(client_seed(5, r, c), fraction=0.5, epochs=4) < 4)
        assert ids == same_ids and failed == expected and none == ()
    assert sum(len(f) for _, f in dropped) > 0
