"""Shared fixtures: the real plugin registries and a tiny-budget config."""

from __future__ import annotations

import pytest
import torch

from harness.plugins import load_plugins

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def regs():
    """Registries filled by the installed built-in plugins (through entry points)."""
    return load_plugins()


TINY = {"n_envs": 2, "rollout_length": 25, "eval_episodes": 2, "eval_envs": 2, "eval_interval": 1,
        "hidden_sizes": [32, 32], "threads": 1}
