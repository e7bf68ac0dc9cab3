"""fedmodel backend for jax."""
