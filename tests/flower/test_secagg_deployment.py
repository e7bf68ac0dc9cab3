"""SecAgg+ over Flower's deployment engine on loopback: a SuperLink, four SuperNodes and ``flwr run``, each its
own OS process (``tests/flower/secagg_app``), one round: node 3 shares its keys, stalls in its training and is
killed there (SIGKILL of its process group), within the dropout threshold (3 shares of 4 rebuild a secret).
The round's weights must be plain unweighted FedAvg of the three others, within SecAgg+'s quantization bound
2c/Q, and far from FedAvg with the victim. (The round without a dropout, and DP under SecAgg+, run over
Flower's own workflow and mod in one process: ``test_secagg.py``.) A SecAgg+ round is four message exchanges
(SuperNodes poll every 3 s) plus one stage timeout for the killed node: about 70 s on a loaded 2-core machine."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from fedmodel import ModelWeights, backend_for, get_weights
from fedmodel.aggregation import WeightedMean
from fedmodel.algorithms import fedavg
from fedmodel.data import federated_digits
from fedmodel.integrations.flower import SecAggPlus
from fedmodel.reference import SoftmaxRegression
from fedmodel.server import client_seed

pytestmark = [
    pytest.mark.flower,
    pytest.mark.skipif(sys.platform != "linux", reason="process groups and /proc: the harness is Linux-only"),
]

APP = Path(__file__).resolve().parent / "secagg_app"
NODES, VICTIM, SEED, TIMEOUT = 4, 3, 5, 30.0  # a stage under load can take 15 s
BOUND = SecAggPlus(num_shares=4, reconstruction_threshold=3).bound()  # 2 * 8 / 2**22 = 3.8e-6
DATA = federated_digits(num_clients=NODES, alpha=None, seed=0)
ALGORITHM = fedavg(epochs=1, batch_size=32, client_lr=0.5)


def plain_fedavg(weights: ModelWeights, round_index: int, clients: list[int]) -> ModelWeights:
    """Unweighted FedAvg of ``clients`` trained from ``weights``, in this process, as each node trains."""
    model = SoftmaxRegression(64, 10, seed=0)
    updates = [
        ALGORITHM.client_update(model, backend_for(model), weights, DATA.clients[c], client_seed(SEED, round_index, c))
        for c in clients
    ]
    return WeightedMean().aggregate([(u.weights, 1.0) for u in updates])


def largest_difference(got: ModelWeights, want: ModelWeights) -> float:
    """max |got - want|, asserted within 2c/Q plus one float32 rounding of the weights."""
    worst = 0.0
    for g, w in zip(got.arrays, want.arrays, strict=True):
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        assert np.all(diff <= BOUND + np.spacing(np.abs(w)).astype(np.float64)), (diff.max(), BOUND)
        worst = max(worst, float(diff.max()))
    return worst


def test_secagg_equals_fedavg_within_the_bound_and_survives_a_node_killed_mid_round(
    loopback: Any, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    loopback.start(NODES)
    run = loopback.launch(
        APP,
        f"num-rounds=1 num-partitions={NODES} min-nodes={NODES} timeout={TIMEOUT} seed={SEED} "
        f'results-dir="{results}" stall-partition={VICTIM} stall-round=1',
    )
    deadline = time.monotonic() + 300
    while not (results / f"stalled-{VICTIM}").exists():  # stage 3 of 4: keys shared, now training
        assert run.poll() is None, loopback.log("flwr-run.log")
        assert time.monotonic() < deadline, "the round never reached the victim's training"
        time.sleep(0.2)
    loopback.kill_node(VICTIM)
    assert run.wait(timeout=300) == 0, loopback.log("flwr-run.log")

    report = json.loads((results / "results.json").read_text())
    assert report["rounds_completed"] == 1
    [round_1] = report["rounds"]
    assert [a["partition"] for a in round_1["aggregated"]] == [0, 1, 2]
    [failure] = report["failures"]
    assert failure["node_id"] not in [a["node"] for a in round_1["aggregated"]]
    assert "not in the secure sum" in failure["reason"]

    like = get_weights(SoftmaxRegression(64, 10, seed=0))
    with np.load(results / "weights-round-1.npz", allow_pickle=False) as saved:
        after = like.with_arrays([saved[name] for name, _ in like.items()])
    worst = largest_difference(after, plain_fedavg(like, 0, [0, 1, 2]))
    with_victim = plain_fedavg(like, 0, [0, 1, 2, 3])
    assert (
        max(float(np.max(np.abs(a - b))) for a, b in zip(after.arrays, with_victim.arrays, strict=True)) > 100 * BOUND
    )
    print(f"SecAgg+ vs FedAvg of the 3 survivors: {worst:.3g} (bound {BOUND:.3g}); round: {round_1['seconds']:.1f} s")
