"""The JAX backend's tests: skipped as a whole, with the reason, when JAX or Optax is not installed."""

from __future__ import annotations

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")
