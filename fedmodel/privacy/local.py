"""Local (client-side) differential privacy: each client clips and noises its own update before sending.

:func:`local_dp` wraps any :data:`~fedmodel.client.ClientUpdate`: after local training, the client's
change from the server weights is clipped to L2 norm ``C`` and Gaussian noise of standard deviation
``z * C`` is added to every coordinate, so what leaves the client is already private, whoever the
server is. The server aggregates the noised weights with any aggregator (FedAvg's mean).

**Guarantee** (per client, against the server and anyone who sees its messages): replacing all of a
client's data moves its clipped change anywhere in a ball of radius ``C``, so each message is a
Gaussian mechanism of multiplier ``z / 2`` (sensitivity ``2C``); ``T`` participations compose to
:func:`fedmodel.privacy.local_epsilon` ``(z, T, delta)``. No amplification by sampling: the server knows
who sent what. The price: the mean of ``K`` clients carries noise ``z C / sqrt(K)`` per coordinate,
against ``z C / K`` for central DP (:class:`~fedmodel.privacy.DPMean`).

Only the weights are protected. By default the wrapper also withholds what would leak in the clear:
the metrics (``{}`` is sent), and the number of examples and of steps (``1`` and ``0`` are sent, so
FedAvg weighs every client equally); ``send_metrics`` / ``send_num_examples`` opt back in, outside the
guarantee. Integer and other non-float variables are sent as the server's values.

>>> import numpy as np
>>> from fedmodel import ModelWeights
>>> from fedmodel.privacy import SeededNoise
>>> server = ModelWeights((np.zeros(2, np.float32),))
>>> trained = ModelWeights((np.array([3.0, 4.0], np.float32),))
>>> sent = privatize(server, trained, clip=1.0, noise_multiplier=0.0, noise=SeededNoise(0), key=(5,))
>>> sent.trainable[0].tolist()  # clipped to norm 1, no noise
[0.6000000238418579, 0.800000011920929]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedmodel._backend import Backend
from fedmodel._errors import AggregationError
from fedmodel._weights import ModelWeights
from fedmodel.client import ClientResult, ClientUpdate
from fedmodel.data import ClientData
from fedmodel.privacy.clipping import MAX_CLIP, clip_factor, clipped_change, is_float
from fedmodel.privacy.noise import NoiseSource
from fedmodel.validation import check_client_update

__all__ = ["local_dp", "privatize"]

_LOCAL = 1  # the noise stream of local DP: (client seed, _LOCAL, variable)


def _check_settings(clip: float, noise_multiplier: float, noise: Any) -> None:
    if not 0 < clip <= MAX_CLIP:
        raise ValueError(f"clip must be in (0, {MAX_CLIP}], got {clip}")
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ValueError(f"noise_multiplier must be finite and >= 0, got {noise_multiplier}")
    if not isinstance(noise, NoiseSource):
        raise TypeError(f"noise must be a NoiseSource (SeededNoise or SecureNoise), got {type(noise).__name__}")


def privatize(
    server_weights: ModelWeights,
    weights: ModelWeights,
    *,
    clip: float,
    noise_multiplier: float,
    noise: NoiseSource,
    key: tuple[int, ...],
) -> ModelWeights:
    """``server + clip(weights - server) + N(0, (z C)^2)``, each variable in its dtype (integers: the server's).

    Args:
        server_weights: the weights the client started from.
        weights: the client's trained weights.
        clip: ``C``; noise_multiplier: ``z``; noise: where the noise comes from.
        key: the noise key (the client's seed with :class:`~fedmodel.privacy.SeededNoise`).

    Raises:
        AggregationError: when ``weights`` are invalid (non-finite, mis-shaped) or the noised values do
            not fit their dtype: nothing is sent.
    """
    _check_settings(clip, noise_multiplier, noise)
    check_client_update(server_weights, weights, client="local update")
    _, scale = clip_factor(server_weights, weights, clip, client="local update")
    names = server_weights.names or tuple(f"#{i}" for i in range(len(server_weights.arrays)))
    out = []
    for i, (name, origin, value) in enumerate(zip(names, server_weights.arrays, weights.arrays, strict=True)):
        if not is_float(origin):
            out.append(np.array(origin, copy=True))
            continue
        noised = noise.normal(origin.shape, noise_multiplier * clip, (*key, _LOCAL, i))
        noised += clipped_change(origin, value, scale)
        noised += np.asarray(origin, np.float64)
        with np.errstate(over="ignore"):
            result = noised.astype(origin.dtype)
        if not np.isfinite(result).all():
            raise AggregationError(f"local update: {name!r}: the noised weights do not fit dtype {origin.dtype}")
        out.append(result)
    return server_weights.with_arrays(out)


def local_dp(
    update: ClientUpdate,
    *,
    clip: float,
    noise_multiplier: float,
    noise: NoiseSource,
    send_metrics: bool = False,
    send_num_examples: bool = False,
) -> ClientUpdate:
    """Wrap ``update`` so the client sends only clipped, noised weights (see the module's guarantee).

    Args:
        update: the client update to wrap (e.g. :func:`fedmodel.client.local_sgd`).
        clip: ``C``, the largest L2 norm of the client's change.
        noise_multiplier: ``z``: noise of standard deviation ``z * C`` per coordinate.
        noise: :class:`~fedmodel.privacy.SeededNoise` (keyed by the client's seed: reproducible, and no
            protection against whoever knows the seeds, such as a simulation's server) or
            :class:`~fedmodel.privacy.SecureNoise`.
        send_metrics: also send the training metrics (in the clear).
        send_num_examples: also send the true number of examples and steps (in the clear).
    """
    _check_settings(clip, noise_multiplier, noise)

    def private_update(
        model: Any, backend: Backend, server_weights: ModelWeights, data: ClientData, seed: int
    ) -> ClientResult:
        result = update(model, backend, server_weights, data, seed)
        weights = privatize(
            server_weights, result.weights, clip=clip, noise_multiplier=noise_multiplier, noise=noise, key=(seed,)
        )
        return ClientResult(
            weights,
            result.num_examples if send_num_examples else 1,
            result.metrics if send_metrics else {},
            result.num_steps if send_num_examples else 0,
        )

    return private_update
