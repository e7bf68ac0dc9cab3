"""fedmodel conformance suite (placeholder until the suite lands)."""
