"""Systems heterogeneity on the client side: stragglers that finish less local work in a round.

Li et al., "Federated Optimization in Heterogeneous Networks" (FedProx, MLSys 2020) simulate slow
devices by making a fraction of each round's clients *stragglers*: a straggler completes a number of
local epochs drawn uniformly from ``1 .. E-1`` instead of ``E``. FedAvg drops the stragglers (their
updates miss the deadline); FedProx keeps their partial work. :class:`StragglingSGD` is that client
update. Whether a client straggles, and how many epochs it does, comes from its round seed alone
(``SeedSequence([run seed, round, client])`` in the simulation runner), so a FedAvg and a FedProx run
with the same seed have the same stragglers, as in the paper's code. Each client straggles
independently with probability ``fraction`` (the paper's code makes exactly that fraction of each
round's clients stragglers; a client update sees only its own seed).

>>> from dataclasses import replace
>>> from fedmodel.algorithms import fedprox
>>> from fedmodel.optimizers import SGD
>>> client = StragglingSGD(epochs=20, batch_size=10, optimizer=SGD(0.01, proximal_mu=1.0), fraction=0.9)
>>> algorithm = replace(fedprox(mu=1.0, epochs=20, batch_size=10, client_lr=0.01), client_update=client)
>>> [straggler_epochs(seed, fraction=0.5, epochs=20) for seed in range(6)]
[20, 10, 8, 20, 18, 20]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedmodel._backend import Backend
from fedmodel._errors import FedModelError
from fedmodel._weights import ModelWeights
from fedmodel.client import ClientResult, check_local_settings, train_client
from fedmodel.data import ClientData
from fedmodel.optimizers import OptimizerSpec

__all__ = ["StragglerDroppedError", "StragglingSGD", "straggler_epochs"]

_STREAM = 0x57A6  # keeps the straggler draw independent of the example order, which uses the bare seed


class StragglerDroppedError(FedModelError, RuntimeError):
    """A straggler's update missed the round (FedAvg's handling): the runner drops and reports the client."""


def straggler_epochs(seed: int, *, fraction: float, epochs: int) -> int:
    """How many local epochs the client with round seed ``seed`` completes: ``epochs``, or for a straggler
    (probability ``fraction``) a number drawn uniformly from ``1 .. epochs - 1``.

    Raises:
        ValueError: for ``fraction`` outside [0, 1], or stragglers with ``epochs < 2`` (no fewer whole epochs).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"the straggler fraction must be in [0, 1], got {fraction}")
    if fraction > 0 and epochs < 2:
        raise ValueError(f"stragglers need epochs >= 2 to do fewer whole epochs, got epochs={epochs}")
    rng = np.random.default_rng([seed, _STREAM])
    if rng.random() >= fraction:
        return epochs
    return int(rng.integers(1, epochs))


@dataclass(frozen=True)
class StragglingSGD:
    """FedAvg's / FedProx's local SGD under systems heterogeneity (a :class:`fedmodel.client.ClientUpdate`).

    A client on time runs ``epochs`` epochs of mini-batch ``optimizer`` steps (FedProx's proximal term
    when ``optimizer.proximal_mu > 0``). A straggler (see :func:`straggler_epochs`) runs fewer and
    returns that partial work, or, with ``drop_stragglers=True`` (FedAvg in the paper), raises
    :class:`StragglerDroppedError` so the runner drops it from the round. A frozen dataclass, so it pickles.
    """

    epochs: int
    batch_size: int
    optimizer: OptimizerSpec
    fraction: float
    drop_stragglers: bool = False

    def __post_init__(self) -> None:
        check_local_settings(self.epochs, self.batch_size, self.optimizer)
        straggler_epochs(0, fraction=self.fraction, epochs=self.epochs)  # validates the straggling

    def __call__(
        self, model: Any, backend: Backend, server_weights: ModelWeights, data: ClientData, seed: int
    ) -> ClientResult:
        """Train from ``server_weights`` for this client's share of ``epochs``, or drop it."""
        work = straggler_epochs(seed, fraction=self.fraction, epochs=self.epochs)
        if work < self.epochs and self.drop_stragglers:
            raise StragglerDroppedError(f"straggler: {work} of {self.epochs} epochs done when the round closed")
        return train_client(
            model,
            server_weights,
            data,
            epochs=work,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            seed=seed,
            backend=backend,
        )
