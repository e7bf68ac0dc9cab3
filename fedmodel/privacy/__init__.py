"""Differential privacy for federated learning: central DP-FedAvg, local DP, and their accounting.

* :class:`DPMean` — the server's clipped, noised, fixed-denominator mean of DP-FedAvg (McMahan et al.
  2018), fixed or :class:`AdaptiveClipping` (Andrew et al. 2021); a drop-in weights aggregator with a
  carry between rounds (:class:`DPCarry`).
* :func:`local_dp` — a client update wrapper that clips and noises the update before it is sent.
* :class:`SeededNoise` (reproducible experiments, no protection) and :class:`SecureNoise` (the
  operating system's secure generator) — where the noise comes from.
* :func:`epsilon`, :func:`noise_multiplier_for`, :class:`PrivacyBudget`, :func:`local_epsilon` — the
  accounting, by ``dp-accounting`` (imported on first use; ``pip install 'fedmodel[privacy]'``);
  :func:`run_budget` — a run's budget for the sampling its server does (the simulation runner's, the
  command line's), :func:`default_delta` — a delta below ``1 / N``.

The simulation runner and ``fedmodel train --dp-...`` report epsilon after every round and stop before a
budget is exceeded; :class:`fedmodel.integrations.flower.SecAggPlusStrategy` runs ``DPMean`` under
Flower's secure aggregation (the clients clip, the server noises the sum).

What is guaranteed: client-level (epsilon, delta)-DP of the sequence of global models, against anyone
who sees them but the server (central DP: the server is trusted to clip, noise and keep the secure
noise secret), provided clients are sampled as the accountant assumes and the noise is
:class:`SecureNoise`. Training metrics, the clients' example counts and the list of clients refused in
a round are not covered.

``import fedmodel.privacy`` loads numpy only (never dp-accounting until an accounting function runs).
"""

from fedmodel.privacy.accounting import Accountant as Accountant
from fedmodel.privacy.accounting import FixedSizeSampling as FixedSizeSampling
from fedmodel.privacy.accounting import PoissonSampling as PoissonSampling
from fedmodel.privacy.accounting import PrivacyBudget as PrivacyBudget
from fedmodel.privacy.accounting import Sampling as Sampling
from fedmodel.privacy.accounting import default_delta as default_delta
from fedmodel.privacy.accounting import epsilon as epsilon
from fedmodel.privacy.accounting import local_epsilon as local_epsilon
from fedmodel.privacy.accounting import noise_multiplier_for as noise_multiplier_for
from fedmodel.privacy.accounting import rdp_curve as rdp_curve
from fedmodel.privacy.accounting import round_event as round_event
from fedmodel.privacy.accounting import run_budget as run_budget
from fedmodel.privacy.central import AdaptiveClipping as AdaptiveClipping
from fedmodel.privacy.central import DPCarry as DPCarry
from fedmodel.privacy.central import DPMean as DPMean
from fedmodel.privacy.central import DPState as DPState
from fedmodel.privacy.central import adaptive_noise_multiplier as adaptive_noise_multiplier
from fedmodel.privacy.local import local_dp as local_dp
from fedmodel.privacy.local import privatize as privatize
from fedmodel.privacy.noise import NoiseSource as NoiseSource
from fedmodel.privacy.noise import SecureNoise as SecureNoise
from fedmodel.privacy.noise import SeededNoise as SeededNoise

__all__ = [
    "Accountant",
    "AdaptiveClipping",
    "DPCarry",
    "DPMean",
    "DPState",
    "FixedSizeSampling",
    "NoiseSource",
    "PoissonSampling",
    "PrivacyBudget",
    "Sampling",
    "SecureNoise",
    "SeededNoise",
    "adaptive_noise_multiplier",
    "default_delta",
    "epsilon",
    "local_dp",
    "local_epsilon",
    "noise_multiplier_for",
    "privatize",
    "rdp_curve",
    "round_event",
    "run_budget",
]
