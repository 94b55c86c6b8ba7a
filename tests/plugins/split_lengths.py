"""A test task plugin: ``split/<fault>``. Copies 0..E/2-1 end every episode after 5 steps, the others
after 50, reward 1 per step (one agent pair, box actions). ``fault`` (``none`` for a sound task)
makes the task misbehave in one way, for the checks that blame a task plugin for its bad output
(``raises``: its third step raises)."""

from __future__ import annotations

import numpy as np

from harness import hookimpl
from harness.envs import ActionSpace, StepResult, VecTask

FAULTS = ("none", "nan_reward", "nan_obs", "obs_dim", "obs_dtype", "per_copy_returns", "state_dim", "raises")


class SplitLengths(VecTask):
    def __init__(self, fault: str, n_envs: int) -> None:
        self.fault = fault
        self.agents = ["a", "b"]
        self.obs_dims = [3, 3]
        self.action_spaces = [ActionSpace("box", 1, (-1.0,), (1.0,))] * 2
        self.state_dim = 4
        self.n_envs = n_envs
        self.episode_limit = 50
        self.lengths = np.where(np.arange(n_envs) < n_envs // 2, 5, 50)
        self.t = np.zeros(n_envs, np.int64)
        self.episodes = np.zeros(n_envs, np.int64)
        self.steps = 0

    def _obs(self):
        dim = 4 if self.fault == "obs_dim" else 3
        dtype = np.float64 if self.fault == "obs_dtype" else np.float32
        base = np.stack([self.t, self.episodes, np.arange(self.n_envs)], 1)[:, :3]
        obs = np.concatenate([base, np.zeros((self.n_envs, dim - 3))], 1).astype(dtype)
        if self.fault == "nan_obs" and self.steps >= 3:
            obs[0, 0] = np.nan
        return [obs.copy(), obs.copy()]

    def _state(self):
        dim = 5 if self.fault == "state_dim" else 4
        return np.zeros((self.n_envs, dim), np.float32) + self.t[:, None].astype(np.float32)

    def reset(self, episodes=None):
        self.episodes[:] = 0 if episodes is None else np.asarray(episodes)
        self.t[:] = 0
        return self._obs(), self._state()

    def episode_counters(self):
        return [int(e) for e in self.episodes]

    def step(self, actions):
        self.steps += 1
        if self.fault == "raises" and self.steps >= 3:
            raise RuntimeError("the simulator lost its connection")
        self.max_abs_action = max(getattr(self, "max_abs_action", 0.0), *(float(np.abs(a).max()) for a in actions))
        self.t += 1
        final = self._state()
        reward = np.ones(self.n_envs, np.float32)
        if self.fault == "nan_reward" and self.steps >= 3:
            reward[-1] = np.nan
        ended = self.t >= self.lengths
        returns = [float(self.lengths[c]) for c in np.flatnonzero(ended)]
        if self.fault == "per_copy_returns":
            returns = [float(self.t[c]) if ended[c] else 0.0 for c in range(self.n_envs)]
        self.episodes[ended] += 1
        self.t[ended] = 0
        return StepResult(self._obs(), self._state(), reward, np.zeros(self.n_envs, bool), ended.copy(), final,
                          episode_returns=returns, episode_lengths=[int(self.lengths[c]) for c in np.flatnonzero(ended)])


def make_task(scenario, n_envs, seed, options, stream=0):
    return SplitLengths(scenario, n_envs)


@hookimpl
def register_tasks(register):
    register("split", make_task, scenarios=FAULTS, description="test task: copies with 5- and 50-step episodes")
