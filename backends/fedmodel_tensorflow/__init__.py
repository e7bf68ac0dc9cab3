"""fedmodel backend for tensorflow."""
