"""Built-in plugins of happo-harness (installed as ``harness_plugins``); they load through entry points."""
