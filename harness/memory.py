"""How much memory a run's rollout and update need, checked against the machine before it starts.

The sizes come from the task (built with one copy first when many are asked for, so that a huge
``n_envs`` is refused before its copies are built). A rollout keeps, for ``rollout_length x n_envs`` steps, every agent's observation and next
observation, action and log-probability, the global state and the state a step ended in, the reward
and the episode flags (float32); the update adds the advantages and returns and the activations of
one actor's forward and backward pass over the whole batch. Evaluation keeps its own copies
(``eval_envs`` of them per start-state stream: the evaluations', and the absolute metric's when
``absolute_factor`` > 0), their step arrays, and the returns of every episode it plays (``eval_episodes``,
times ``absolute_factor`` for the absolute metric). An off-policy scheme's replay
buffer is added to it (:func:`check_replay`). A config whose estimate exceeds the memory available
is refused with the figures, naming the settings that size the largest part, instead of failing (or
swapping) mid-run.
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


#: A rough lower bound of one environment copy's memory (simulator state, Python objects).
COPY_BYTES = 256 * 1024
#: An evaluation copy's bookkeeping (its quota, count and list of returns).
COPY_SLOTS = 128
#: One evaluated episode's return, kept in a list and written into the metrics row.
EPISODE_BYTES = 48


def _mlp_params(inputs: int, hidden: list[int], outputs: int) -> int:
    sizes = [inputs, *hidden, outputs]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def run_bytes(cfg: Any, task: Any, hidden: int = 0) -> dict[str, int]:
    """Estimates (lower bounds) of the bytes a run needs: ``rollout`` (buffers and the update's
    activations; ``hidden``: the floats of recurrent actors' states stored per step, all agents), ``networks`` (actors and critic with gradients, Adam moments, the best and the
    checkpointed copies), ``environments`` (``n_envs`` copies) and ``evaluation`` (its copies, their
    step arrays and every episode's return)."""
    steps = cfg.rollout_length * cfg.n_envs
    actions = sum(1 if s.kind == "discrete" else s.n for s in task.action_spaces)
    n = len(task.agents)
    per_step = 2 * sum(task.obs_dims) + actions + n + 2 * task.state_dim + 6 + hidden
    widest = max(task.obs_dims) + n + sum(cfg.hidden_sizes)
    update = 3 * widest * n  # forward activations kept for backward, per agent stacked in a shared actor
    params = sum(_mlp_params(d + n, list(cfg.hidden_sizes), s.n) for d, s in zip(task.obs_dims, task.action_spaces))
    params += _mlp_params(task.state_dim, list(cfg.hidden_sizes), 1)
    streams = 2 if cfg.absolute_factor > 0 else 1  # both kept open once built
    episodes = cfg.eval_episodes * max(1, cfg.absolute_factor)
    evaluation = streams * cfg.eval_envs * (COPY_BYTES + 4 * per_step + COPY_SLOTS) + EPISODE_BYTES * episodes
    return {"rollout": 4 * steps * (per_step + update), "networks": 6 * 4 * params,
            "environments": COPY_BYTES * cfg.n_envs, "evaluation": evaluation}


#: What each part is sized by, for the message.
SIZED_BY = {"rollout": "rollout_length, n_envs or hidden_sizes", "networks": "hidden_sizes",
            "environments": "n_envs", "evaluation": "eval_envs or eval_episodes (or absolute_factor)"}


def check_memory(cfg: Any, task: Any, hidden: int = 0) -> None:
    """Refuse a config whose rollout, networks, environments and evaluation cannot fit in the memory
    available (``hidden``: as :func:`run_bytes`)."""
    parts, have = run_bytes(cfg, task, hidden), available_bytes()
    need = sum(parts.values())
    if have is not None and need > have:
        detail = ", ".join(f"{k} {_gib(v)}" for k, v in parts.items())
        largest = max(parts, key=parts.get)
        raise HarnessError(f"this config needs about {_gib(need)} ({detail}; rollout_length={cfg.rollout_length}, "
                           f"n_envs={cfg.n_envs}, hidden_sizes={cfg.hidden_sizes}, eval_envs={cfg.eval_envs}, "
                           f"eval_episodes={cfg.eval_episodes}); this machine has {_gib(have)} available: lower "
                           f"{SIZED_BY[largest]}")


def check_replay(capacity: int, cfg: Any, task: Any) -> int:
    """Refuse an off-policy scheme's replay buffer of ``capacity`` transitions that cannot fit beside
    the rest of the run (before it is allocated); return its bytes."""
    from harness.replay import replay_bytes
    buffer = replay_bytes(capacity, task.obs_dims, task.action_spaces, task.state_dim)
    have = available_bytes()
    need = buffer + sum(run_bytes(cfg, task).values())
    if have is not None and need > have:
        raise HarnessError(f"the replay buffer of {capacity:,} transitions needs about {_gib(buffer)} (the run "
                           f"{_gib(need)} in all); this machine has {_gib(have)} available: lower the scheme's "
                           "buffer size")
    return buffer


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
