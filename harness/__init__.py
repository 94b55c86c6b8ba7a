"""happo-harness: a plugin-based benchmarking harness for cooperative multi-agent RL."""

__version__ = "0.1.0"
