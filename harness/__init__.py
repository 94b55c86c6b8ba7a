"""happo-harness: a plugin-based benchmarking harness for cooperative multi-agent RL."""

__version__ = "0.1.0"

from harness.hookspecs import hookimpl, hookspec  # noqa: E402  (the markers plugins decorate with)

__all__ = ["__version__", "hookimpl", "hookspec"]
