"""The evaluation protocol: a fixed set of start states, one episode each, whatever the policy does.

``eval_episodes`` episodes are spread over the evaluation copies (copy ``c`` plays
``episodes // copies`` episodes, plus one for the first ``episodes % copies`` copies) and copy ``c``
always plays its episodes ``0, 1, ...`` from the same seeded start states. A copy that has played its
quota keeps stepping but no longer counts. So every policy, at every evaluation, is scored on the
same start states, and a policy whose episodes end early (a robot that falls) is not scored on more
of them than a policy whose episodes run to the time limit: counting "the first N episodes to end"
over-counts short, failed episodes.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from harness.task_api import VecTask
from harness.task_check import TaskChecker


def episode_quota(episodes: int, copies: int) -> np.ndarray:
    """How many episodes each of ``copies`` copies plays so that exactly ``episodes`` are played."""
    quota = np.full(copies, episodes // copies, dtype=np.int64)
    quota[: episodes % copies] += 1
    return quota


def play_fixed_episodes(task: VecTask, act: Callable[[list[np.ndarray], np.ndarray], Sequence[np.ndarray]],
                        episodes: int, checker: TaskChecker) -> list[float]:
    """Team returns of exactly ``episodes`` episodes on fixed start states, ordered by (copy, episode).

    ``act(obs, starts)`` gives one action array per agent; ``starts`` ``[copies]`` marks the copies whose
    episode starts at this step (all of them first; a recurrent policy resets there). ``task`` is reset
    to episode 0 of every copy first. ``checker`` checks what the task returns and names the task plugin when it is wrong.
    """
    quota = episode_quota(episodes, task.n_envs)
    played = np.zeros_like(quota)
    returns: list[list[float]] = [[] for _ in range(task.n_envs)]
    obs, state = task.reset()
    checker.check_reset(task, obs, state)
    # Enough steps for the longest quota of full-length episodes; a task that never ends them is an error.
    limit = max(1, task.episode_limit) * (int(quota.max()) + 1) + 10_000
    starts = np.ones(task.n_envs, bool)
    for _ in range(limit):
        res = task.step(act(obs, starts))
        for c, ret in zip(checker.check_step(task, res), res.episode_returns):
            if played[c] < quota[c]:
                returns[c].append(float(ret))
                played[c] += 1
        if (played >= quota).all():
            break
        obs, starts = res.obs, res.terminated | res.truncated
    else:
        checker.fail(f"evaluation stepped {limit} times without ending {episodes} episodes "
                     f"({int(played.sum())} ended); its episodes must end by termination or truncation")
    flat = [r for per_copy in returns for r in per_copy]
    checker.check_returns(flat)
    return flat
