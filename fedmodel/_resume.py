"""Saving a simulation's server state after every round, and resuming from it only into the same run.

A checkpoint holds the weights, the server optimizer's state, the aggregator's carry (e.g. DPMean's clip
norm and round) and, as metadata, everything besides the round that decides the result
(:func:`run_identity`): resuming with another algorithm, seed, client count, sampling or option is a
:class:`~fedmodel.CheckpointError` naming each difference, so a resumed run ends bit for bit as the
uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fedmodel._errors import CheckpointError, WeightsError
from fedmodel._weights import ModelWeights
from fedmodel.algorithms import FederatedAlgorithm, ServerState
from fedmodel.server_optimizers import state_from_arrays, state_to_arrays

if TYPE_CHECKING:
    from fedmodel.simulation import SimulationConfig

__all__ = ["carry_metadata", "load_state", "run_identity", "save_state"]


def run_identity(
    config: SimulationConfig, algorithm: FederatedAlgorithm, num_clients: int | None
) -> dict[str, str | int | float]:
    """What decides a run's result besides its round: saved with every checkpoint, compared on resume."""
    run: dict[str, str | int | float] = {"algorithm": algorithm.name, "seed": config.seed}
    run["clients_per_round"] = "all" if config.clients_per_round is None else config.clients_per_round
    if num_clients is not None:
        run["clients"] = num_clients
    if config.sampling_rate is not None:
        run["sampling_rate"] = config.sampling_rate
    if getattr(algorithm.aggregator, "initial_carry", None) is not None:  # e.g. DPMean: clip, noise, its source
        run["aggregator"] = repr(algorithm.aggregator)
    for key in ("delta", "target_epsilon"):
        if getattr(config, key) is not None:
            run[key] = getattr(config, key)
    if config.target_epsilon is not None:
        run["accountant"] = config.accountant
    run.update(config.run_options or {})
    return run


def carry_metadata(carry: Any) -> dict[str, str | int | float]:
    """The aggregator's carry (a NamedTuple of int, float or str, e.g. ``DPCarry``) as checkpoint metadata."""
    if carry is None:
        return {}
    fields = getattr(carry, "_fields", None)
    if fields is None or any(type(value) not in (int, float, str) for value in carry):
        raise CheckpointError(
            f"cannot checkpoint the aggregator's carry {carry!r}: expected a NamedTuple of int, float, str"
        )
    return {f"carry/{name}": value for name, value in zip(fields, carry, strict=True)}


def _restore_carry(
    where: str, algorithm: FederatedAlgorithm, weights: ModelWeights, fresh: Any, metadata: Mapping[str, Any]
) -> Any:
    """The carry saved in ``metadata``, shaped like ``fresh`` (``algorithm.init``'s) and accepted by the aggregator."""
    saved = {k.removeprefix("carry/"): v for k, v in metadata.items() if k.startswith("carry/")}
    if fresh is None:
        return None
    fields = list(fresh._fields)
    if sorted(saved) != sorted(fields):
        raise CheckpointError(f"{where}: the aggregator's carry holds {sorted(saved)}, expected {fields}")
    values = [saved[name] for name in fields]
    for name, value, like in zip(fields, values, fresh, strict=True):
        if type(value) is not type(like):
            raise CheckpointError(f"{where}: carry/{name}: expected a {type(like).__name__}, got {value!r}")
    carry = type(fresh)(*values)
    try:
        algorithm.aggregator.init(weights, carry)  # type: ignore[call-arg]
    except Exception as exc:  # e.g. a clip norm out of range, a negative round
        raise CheckpointError(f"{where}: the aggregator refuses the saved carry: {exc}") from exc
    return carry


def _refuse_another_run(where: str, run: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    """Raise CheckpointError naming each difference between this run's identity and the checkpoint's."""
    saved = {k.removeprefix("run/"): v for k, v in metadata.items() if k.startswith("run/")}
    differences = []
    for key in [*run, *(k for k in saved if k not in run)]:
        now, then = run.get(key), saved.get(key)
        if key == "algorithm" and now != then:
            differences.append(f"saved by {then!r}, resumed with {now!r}")
        elif key not in saved:
            differences.append(f"{key} {now!r} (not in the checkpoint)")
        elif key not in run:
            differences.append(f"{key} missing (the checkpoint's: {then!r})")
        elif now != then:
            differences.append(f"{key} {now!r} (the checkpoint's: {then!r})")
    if differences:
        raise CheckpointError(f"{where}: cannot resume with another configuration: {'; '.join(differences)}")


def load_state(
    config: SimulationConfig, algorithm: FederatedAlgorithm, fresh: ServerState, num_clients: int | None = None
) -> ServerState:
    """The state to start from: ``fresh``, or the checkpoint's when resuming, checked against this run.

    Raises:
        CheckpointError: the file is unreadable or corrupted, its server state does not fit, its round is
            not a count of rounds or beyond ``config.rounds``, or it was saved by another configuration
            (every differing option is named).
    """
    if config.checkpoint_path is None or not config.resume or not os.path.lexists(config.checkpoint_path):
        return fresh
    from fedmodel.checkpoint import check_extra, load_checkpoint

    where = os.fspath(config.checkpoint_path)
    try:
        ckpt = load_checkpoint(where, like=fresh.weights)
    except WeightsError:  # another model: say which option made it another (e.g. --data) when one did
        _refuse_another_run(where, run_identity(config, algorithm, num_clients), load_checkpoint(where).metadata)
        raise
    saved_round = ckpt.metadata.get("round")
    if type(saved_round) is not int or saved_round < 0:
        raise CheckpointError(f"{where}: metadata 'round' must be an integer >= 0, got {saved_round!r}")
    if saved_round > config.rounds:
        raise CheckpointError(
            f"{where} is at round {saved_round}, beyond rounds={config.rounds}: a resumed run cannot go back "
            f"(ask for at least {saved_round} rounds)"
        )
    _refuse_another_run(where, run_identity(config, algorithm, num_clients), ckpt.metadata)
    check_extra(where, ckpt.extra, state_to_arrays(fresh.optimizer_state))  # e.g. no int64 momentum
    try:
        opt_state = state_from_arrays(fresh.optimizer_state, ckpt.extra)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    state = algorithm.init(ckpt.weights)
    carry = _restore_carry(where, algorithm, state.weights, state.aggregator_state, ckpt.metadata)
    return state._replace(optimizer_state=opt_state, round=saved_round, aggregator_state=carry)


def save_state(
    config: SimulationConfig, algorithm: FederatedAlgorithm, state: ServerState, num_clients: int | None = None
) -> None:
    """Save ``state`` to ``config.checkpoint_path`` (when set) with what identifies the run and the carry."""
    if config.checkpoint_path is None:
        return
    from fedmodel.checkpoint import save_checkpoint

    run = run_identity(config, algorithm, num_clients)
    meta = {"round": state.round, **{f"run/{key}": value for key, value in run.items()}}
    meta.update(carry_metadata(state.aggregator_state))
    extra = state_to_arrays(state.optimizer_state)
    save_checkpoint(config.checkpoint_path, state.weights, extra=extra, metadata=meta)
