"""fedmodel backend for torch."""
