"""Gaussian noise for differential privacy: a seeded stream for experiments, a secure one for deployments.

A :class:`NoiseSource` draws float64 Gaussian noise of a given standard deviation for a *key* (a tuple
of non-negative integers, such as ``(round, variable)``). Two sources:

* :class:`SeededNoise` — numpy's PCG64 generator seeded with ``SeedSequence(seed, spawn_key=key)``: the
  same seed and key give the same noise, bit for bit, so a DP experiment can be rerun and resumed
  exactly. **It gives no privacy against anyone who knows the seed**: PCG64 is predictable and the seed
  of a simulation is written in its config, so whoever holds it can subtract the noise again. Use it
  to study the accuracy a noise level costs, never to protect real data.
* :class:`SecureNoise` — uniform bits from the operating system's cryptographically secure generator
  (``os.urandom``: ``getrandom(2)`` on Linux), turned into normals by the Box-Muller transform on
  53-bit uniforms in ``(0, 1]``. Each value is the sum of four independent normals, halved (Holohan &
  Braghin, "Secure Random Sampling in Differential Privacy", ESORICS 2021, as Opacus's ``secure_mode``
  does): Mironov ("On Significance of the Least Significant Bits for Differential Privacy", CCS 2012)
  showed that textbook floating-point samplers leave gaps in the set of outputs that reveal the input,
  and Jin et al. ("Are We There Yet? Timing and Floating-Point Attacks on Differential Privacy
  Systems", S&P 2022) showed it for Gaussian samplers too; a sum of independent samples fills those
  gaps. This is a mitigation, not a proof: the exact answer is a discrete Gaussian on a grid (Canonne,
  Kamath & Steinke, NeurIPS 2020), which fedmodel does not implement. Costs 32 random bytes per value.

>>> SeededNoise(7).normal((3,), 1.0, (0, 1)).tolist() == SeededNoise(7).normal((3,), 1.0, (0, 1)).tolist()
True
>>> SecureNoise().normal((2, 2), 0.5, (0,)).shape
(2, 2)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["NoiseSource", "SecureNoise", "SeededNoise"]

_BLOCK = 1 << 16  # values drawn per block: the uniform bits of one block stay small
_SUMMANDS = 4  # Holohan & Braghin: the sum of 2n normals (n = 2) divided by sqrt(2n) = 2 is exact in binary


@runtime_checkable
class NoiseSource(Protocol):
    """Where Gaussian noise comes from: ``normal(shape, std, key)`` returns float64 ``N(0, std^2)`` values."""

    @property
    def reproducible(self) -> bool:
        """Whether the same key gives the same noise again (true only for a seeded source)."""
        ...

    def normal(self, shape: tuple[int, ...], std: float, key: tuple[int, ...]) -> np.ndarray:
        """Independent ``N(0, std^2)`` values of ``shape``, in float64, for ``key`` (non-negative ints)."""
        ...


def _check(shape: tuple[int, ...], std: float, key: tuple[int, ...]) -> None:
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"the noise standard deviation must be finite and >= 0, got {std}")
    if any(not isinstance(k, int | np.integer) or k < 0 for k in key):
        raise ValueError(f"a noise key is a tuple of non-negative integers, got {key!r}")
    if any(d < 0 for d in shape):
        raise ValueError(f"invalid shape {shape}")


@dataclass(frozen=True)
class SeededNoise:
    """Reproducible noise: PCG64 seeded with ``SeedSequence(seed, spawn_key=key)`` (experiments only).

    Args:
        seed: a non-negative integer; whoever knows it can remove the noise.
    """

    seed: int

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def reproducible(self) -> bool:
        """Always true: the same seed and key give the same values."""
        return True

    def normal(self, shape: tuple[int, ...], std: float, key: tuple[int, ...]) -> np.ndarray:
        """``std *`` standard normals from the stream of ``(seed, key)``."""
        _check(shape, std, key)
        seq = np.random.SeedSequence(int(self.seed), spawn_key=tuple(int(k) for k in key))
        out = np.random.Generator(np.random.PCG64(seq)).standard_normal(shape)
        out *= std
        return out


def _uniform_open_closed(count: int) -> np.ndarray:
    """``count`` float64 uniforms in ``(0, 1]`` from 53 secure random bits each: ``(k + 1) / 2**53``."""
    bits = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> np.uint64(11)
    return (bits.astype(np.float64) + 1.0) * 2.0**-53


def _box_muller(count: int) -> np.ndarray:
    """``count`` standard normals by Box-Muller on secure uniforms (two normals per pair of uniforms)."""
    pairs = (count + 1) // 2
    u = _uniform_open_closed(2 * pairs)
    radius = np.sqrt(-2.0 * np.log(u[:pairs]))
    angle = (2.0 * math.pi) * u[pairs:]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]


@dataclass(frozen=True)
class SecureNoise:
    """Noise from the operating system's cryptographically secure generator; never reproducible.

    Each value is ``(z1 + z2 + z3 + z4) / 2 * std`` with four independent Box-Muller normals on 53-bit
    secure uniforms (see the module's note on floating-point attacks). ``key`` is accepted and ignored.
    """

    @property
    def reproducible(self) -> bool:
        """Always false: every call draws fresh random bits."""
        return False

    def normal(self, shape: tuple[int, ...], std: float, key: tuple[int, ...]) -> np.ndarray:
        """Fresh ``N(0, std^2)`` values, drawn block by block (a few MB of temporaries at most)."""
        _check(shape, std, key)
        out = np.empty(shape, np.float64)
        flat = out.reshape(-1)
        for start in range(0, flat.size, _BLOCK):
            stop = min(start + _BLOCK, flat.size)
            total = _box_muller(stop - start)
            for _ in range(_SUMMANDS - 1):
                total += _box_muller(stop - start)
            flat[start:stop] = total * (0.5 * std)
        return out
