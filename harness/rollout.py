"""Collection: the policy run for ``rollout_length`` steps in every copy of the training task.

:class:`Collector` keeps the task's current observations and state between iterations and fills a
:class:`Rollout` (arrays ``[T, E, ...]``, time-major) per call; every step the task returns is
checked against the task contract, and the whole rollout for non-finite values. ``Rollout.batch``
flattens it into the :class:`harness.batch.Batch` a scheme's ``update`` receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from harness.batch import Batch
from harness.policy import Policy
from harness.task_api import VecTask
from harness.task_check import TaskChecker


def _flat(x: np.ndarray) -> torch.Tensor:
    """``[T, E, ...]`` -> ``[T * E, ...]`` (time-major), sharing memory."""
    return torch.from_numpy(x).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


@dataclass
class Rollout:
    """One rollout of ``T`` steps in ``E`` copies."""

    obs: list[np.ndarray]       # per agent [T, E, obs_dim_i]
    next_obs: list[np.ndarray]  # per agent [T, E, obs_dim_i]: what each step led to (final obs at episode ends)
    actions: list[np.ndarray]   # per agent [T, E] or [T, E, act_dim_i], the policy's unclipped samples
    logp: list[np.ndarray]      # per agent [T, E], behaviour log-probabilities
    states: np.ndarray          # [T + 1, E, state_dim]: before every step, and after the last
    final_states: np.ndarray    # [T, E, state_dim]: the state each step reached, before any reset
    rewards: np.ndarray         # [T, E] team reward
    terminated: np.ndarray      # [T, E] bool
    truncated: np.ndarray       # [T, E] bool
    episode_returns: list[float]  # team returns of the episodes that ended during the rollout
    starts: np.ndarray | None = None             # [T, E] bool: an episode starts at this step
    hidden: list[np.ndarray | None] | None = None  # per agent [T, E, H] (recurrent actors): state before each step

    def batch(self, advantages: torch.Tensor | None = None, returns: torch.Tensor | None = None,
              old_values: torch.Tensor | None = None) -> Batch:
        """The rollout flattened over time and copies (``B = T * E``), sharing its memory."""
        T, E = self.rewards.shape
        return Batch(obs=[_flat(o) for o in self.obs], actions=[_flat(a) for a in self.actions],
                     old_logp=[_flat(lp) for lp in self.logp], states=_flat(self.states[:T]),
                     advantages=advantages, returns=returns, old_values=old_values,
                     next_obs=[_flat(o) for o in self.next_obs], rewards=_flat(self.rewards),
                     terminated=_flat(self.terminated), truncated=_flat(self.truncated), shape=(T, E),
                     starts=None if self.starts is None else _flat(self.starts),
                     hidden=None if self.hidden is None else [None if h is None else _flat(h) for h in self.hidden])


class Collector:
    """Runs ``policy`` on ``task`` (``rollout_length`` steps per :meth:`collect`), continuing where the
    previous rollout stopped."""

    def __init__(self, task: VecTask, policy: Policy, checker: TaskChecker, rollout_length: int) -> None:
        self.task, self.policy, self.checker, self.length = task, policy, checker, rollout_length
        self.restart()

    def restart(self, episodes: Sequence[int] | None = None) -> None:
        """Reset every copy (to its episode ``episodes[c]``, as a checkpoint saved them): every episode
        starts anew, recurrent actors from their initial state."""
        self.obs, self.state = self.task.reset(episodes)
        self.starts = np.ones(self.task.n_envs, bool)
        self.memory = self.policy.memory(self.task.n_envs)
        if episodes is None:
            self.checker.check_reset(self.task, self.obs, self.state)

    def collect(self) -> Rollout:
        task, T, E, N = self.task, self.length, self.task.n_envs, len(self.task.agents)
        obs_buf = [np.empty((T, E, d), np.float32) for d in task.obs_dims]
        next_obs_buf = [np.empty((T, E, d), np.float32) for d in task.obs_dims]
        act_buf = [np.empty((T, E) if s.kind == "discrete" else (T, E, s.n),
                            np.int64 if s.kind == "discrete" else np.float32) for s in task.action_spaces]
        logp_buf = [np.empty((T, E), np.float32) for _ in range(N)]
        states = np.empty((T + 1, E, task.state_dim), np.float32)
        final_states = np.empty((T, E, task.state_dim), np.float32)
        rewards = np.empty((T, E), np.float32)
        terminated = np.empty((T, E), bool)
        truncated = np.empty((T, E), bool)
        starts_buf = np.empty((T, E), bool)
        memory = self.memory
        hid_buf = None if memory is None else [None if h is None else np.empty((T, E, h.shape[1]), np.float32)
                                                for h in memory.hidden]
        returns: list[float] = []
        obs, state, starts = self.obs, self.state, self.starts
        check, act, to_task = self.checker.check_step, self.policy.act, self.policy.to_task
        for t in range(T):
            starts_buf[t] = starts
            if hid_buf is not None:
                for h, buf in zip(memory.hidden, hid_buf):
                    if buf is not None:
                        buf[t] = h.numpy()
            actions, logps = act(obs, False, memory, starts)
            for i in range(N):
                obs_buf[i][t] = obs[i]
                act_buf[i][t] = actions[i]
                logp_buf[i][t] = logps[i]
            states[t] = state
            res = task.step(to_task(actions))
            check(task, res)
            rewards[t] = res.reward
            terminated[t] = res.terminated
            truncated[t] = res.truncated
            final_states[t] = res.final_state
            returns.extend(res.episode_returns)
            obs, state = res.obs, res.state
            starts = res.terminated | res.truncated
            for i in range(N):
                next_obs_buf[i][t] = obs[i]
            for c, final in res.final_obs.items():
                for i in range(N):
                    next_obs_buf[i][t, c] = final[i]
        states[T] = state
        self.checker.check_rollout(obs_buf + next_obs_buf, [states, final_states], rewards)
        self.obs, self.state, self.starts = obs, state, starts
        return Rollout(obs_buf, next_obs_buf, act_buf, logp_buf, states, final_states, rewards, terminated,
                       truncated, returns, starts_buf, hid_buf)
