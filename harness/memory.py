"""How much memory a run's rollout and update need, checked against the machine before it starts.

A rollout keeps, for ``rollout_length x n_envs`` steps, every agent's observation and next
observation, action and log-probability, the global state and the state a step ended in, the reward
and the episode flags (float32); the update adds the advantages and returns and the activations of
one actor's forward and backward pass over the whole batch. A config whose estimate exceeds the
memory available is refused with the figure, instead of failing (or swapping) mid-run.
"""

from __future__ import annotations

import os
from typing import Any

from harness.errors import HarnessError


def available_bytes() -> int | None:
    """Memory available to a new allocation (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def run_bytes(cfg: Any, task: Any) -> int:
    """An estimate (a lower bound) of the bytes a run's rollout buffers and update need."""
    steps = cfg.rollout_length * cfg.n_envs
    actions = sum(1 if s.kind == "discrete" else s.n for s in task.action_spaces)
    n = len(task.agents)
    per_step = 2 * sum(task.obs_dims) + actions + n + 2 * task.state_dim + 6
    widest = max(task.obs_dims) + n + sum(cfg.hidden_sizes)
    update = 3 * widest * n  # forward activations kept for backward, per agent stacked in a shared actor
    return 4 * steps * (per_step + update)


def check_memory(cfg: Any, task: Any) -> None:
    """Refuse a config whose rollout and update cannot fit in the memory available."""
    need, have = run_bytes(cfg, task), available_bytes()
    if have is not None and need > have:
        raise HarnessError(f"rollout_length={cfg.rollout_length} x n_envs={cfg.n_envs} needs about {_gib(need)} "
                           f"for the rollout and the update; this machine has {_gib(have)} available: lower "
                           "rollout_length or n_envs")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
