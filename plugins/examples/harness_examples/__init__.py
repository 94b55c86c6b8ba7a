"""Example third-party plugins for happo-harness (installed separately from the harness)."""
