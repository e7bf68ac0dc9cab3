"""fedmodel on Flower's deployment engine: a SuperLink, SuperNodes and ``flwr run``, each its own OS process,
on 127.0.0.1 only, with free ports chosen at run time; every process is stopped by its PID at the end.

The Flower app is ``examples/flower_app`` (reference softmax regression, FedAvg, digits split IID across
3 nodes). Flower's SuperNodes and grid poll every 3 s and each message starts a ClientApp process, so a
round takes 5-15 s on a loaded 2-core machine; each test stays near a minute.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from fedmodel.algorithms import fedavg
from fedmodel.data import federated_digits
from fedmodel.reference import SoftmaxRegression
from fedmodel.simulation import SimulationConfig, run_simulation

pytestmark = [
    pytest.mark.flower,
    pytest.mark.skipif(sys.platform != "linux", reason="process groups and /proc: the harness is Linux-only"),
]

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "flower_app"
ROUNDS = 3
SETTINGS = 'alpha=0.0 seed=0 model="numpy" algorithm="fedavg" client-lr=0.5 server-lr=1.0 epochs=1 batch-size=32'
MIXED_FRAMEWORKS = ("torch", "tensorflow", "jax")  # node i's framework in examples/flower_app (model="mixed")
ACCURACY_TOLERANCE = 0.005  # under 2 of the 359 test images; the runs below agree exactly


def simulation(rounds: int = ROUNDS) -> Any:
    """The same model, data split, algorithm and seed in fedmodel's in-process simulation."""
    data = federated_digits(num_clients=3, alpha=None, seed=0)
    algorithm = fedavg(epochs=1, batch_size=32, client_lr=0.5, server_lr=1.0)
    config = SimulationConfig(rounds=rounds, seed=0, progress=False)
    factory = lambda: SoftmaxRegression(64, 10, seed=0)  # noqa: E731
    return run_simulation(factory, data.clients, algorithm, config, test_data=data.test)


def test_the_script_trains_digits_across_processes_to_the_simulations_accuracy(
    tmp_path: Path, group_alive: Any
) -> None:
    results = tmp_path / "results"
    run = subprocess.run(
        [str(ROOT / "scripts" / "flower_local.sh"), "--clients", "3", "--rounds", str(ROUNDS), "--results",
         str(results), "--timeout", "150", "--run-config", f"{SETTINGS} round-timeout=60.0"],
        capture_output=True, text=True, timeout=200, env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    stopped = re.search(r"stopped processes \(by PID\): ([\d ]+);", run.stdout)
    assert stopped is not None, run.stdout
    pids = [int(p) for p in stopped.group(1).split()]
    assert len(pids) == 4  # the SuperLink and three SuperNodes
    assert not {pid: group_alive(pid) for pid in pids if group_alive(pid)}, "a process outlived the script"

    report = json.loads((results / "results.json").read_text())
    sim = simulation()
    assert report["rounds_completed"] == ROUNDS and not report["failures"]
    assert [[a["partition"] for a in r["aggregated"]] for r in report["rounds"]] == [[0, 1, 2]] * ROUNDS
    flower_acc = [r["test"]["accuracy"] for r in report["rounds"]]
    sim_acc = [r.test["accuracy"] for r in sim.rounds]
    assert np.allclose(flower_acc, sim_acc, rtol=0, atol=ACCURACY_TOLERANCE), (flower_acc, sim_acc)
    assert sim_acc[-1] > 0.85
    with np.load(results / "weights.npz", allow_pickle=False) as final:
        for name, want in sim.weights.items():
            np.testing.assert_allclose(final[name], want, rtol=0, atol=1e-6)


def test_a_supernode_killed_mid_round_is_dropped_and_the_run_finishes_with_the_others(
    loopback: Any, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    loopback.start(3)
    run = loopback.launch(
        APP,
        f'{SETTINGS} num-rounds={ROUNDS} num-partitions=3 min-nodes=3 round-timeout=30.0 results-dir="{results}"',
    )
    victim, deadline = 2, time.monotonic() + 120
    while loopback.log(f"supernode-{victim}.log").count("Receiving: train message") < 2:  # round 2 reached it
        assert run.poll() is None, loopback.log("flwr-run.log")
        assert time.monotonic() < deadline, "round 2 never reached the victim"
        time.sleep(0.05)
    loopback.kill_node(victim)
    killed_at_round_2 = (
        "Sending: train message" not in loopback.log(f"supernode-{victim}.log").split("Receiving: train message")[2]
    )
    assert run.wait(timeout=150) == 0, loopback.log("flwr-run.log")

    report = json.loads((results / "results.json").read_text())
    assert report["rounds_completed"] == ROUNDS
    [failure] = report["failures"]
    assert failure["partition_id"] == victim
    assert failure["reason"] == "train: no reply within the round timeout; node excluded from later rounds"
    assert failure["round"] == (2 if killed_at_round_2 else 3)
    for r in report["rounds"]:
        expected = [0, 1, 2] if r["round"] < failure["round"] else [0, 1]
        assert [a["partition"] for a in r["aggregated"]] == expected
        if r["round"] > failure["round"]:
            assert failure["node_id"] not in r["sampled"]
    assert report["final_test"]["accuracy"] > 0.8


def test_torch_keras_and_jax_supernodes_train_one_model(tmp_path: Path) -> None:
    """Issue 11 on real processes: node i runs the digits MLP of PyTorch, Keras or JAX (i mod 3), canonical layout."""
    pytest.importorskip("fedmodel_torch")
    pytest.importorskip("fedmodel_tensorflow")
    pytest.importorskip("fedmodel_jax")
    from fedmodel.layout import canonical

    rounds, results = 2, tmp_path / "results"
    settings = SETTINGS.replace('model="numpy"', 'model="mixed"')
    run = subprocess.run(
        [str(ROOT / "scripts" / "flower_local.sh"), "--clients", "3", "--rounds", str(rounds), "--results",
         str(results), "--timeout", "240", "--run-config", f"{settings} round-timeout=120.0"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((results / "results.json").read_text())
    assert report["rounds_completed"] == rounds and not report["failures"]

    import importlib

    factories = {
        fw: (lambda fw=fw: canonical(importlib.import_module(f"fedmodel_{fw}").models.mlp(seed=0)))
        for fw in MIXED_FRAMEWORKS
    }
    data = federated_digits(num_clients=3, alpha=None, seed=0)
    sim = run_simulation(
        factories, data.clients, fedavg(epochs=1, batch_size=32, client_lr=0.5, server_lr=1.0),
        SimulationConfig(rounds=rounds, seed=0, progress=False), test_data=data.test,
    )  # fmt: skip
    flower_acc = [r["test"]["accuracy"] for r in report["rounds"]]
    sim_acc = [r.test["accuracy"] for r in sim.rounds]
    assert np.allclose(flower_acc, sim_acc, rtol=0, atol=0.01), (flower_acc, sim_acc)
