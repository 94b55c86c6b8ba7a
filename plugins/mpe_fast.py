"""A batched NumPy implementation of the three MPE tasks (``env.fast=true`` on ``mpe/...``).

mpe2 steps each copy in pure Python, entity by entity. Here every copy of a task lives in a few
arrays (positions, velocities, communication states, goals) and one step is a handful of
vectorised operations over all copies, so the cost per step barely grows with the number of copies.

It reproduces mpe2 exactly, not approximately: the same physics (damping 0.25, dt 0.1, action
sensitivity 5, soft contact forces summed in mpe2's order), the same observations, rewards
(``local_ratio`` 0.5 for spread and reference), 25-step truncation, and the same initial states:
each episode is reset with a generator seeded exactly as ``mpe2``'s ``reset(seed=...)`` seeds its own,
and the draws are made in mpe2's order. ``tests/test_mpe_fast.py`` checks observations, global states,
rewards and flags against mpe2 to 1e-6 over whole episodes with random actions.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.task_api import ActionSpace, StepResult, VecTask, episode_seed

DT, DAMPING, SENSITIVITY = 0.1, 0.25, 5.0
CONTACT_FORCE, CONTACT_MARGIN = 1e2, 1e-3
SPEAKER_COLOURS = np.array([[0.65, 0.15, 0.15], [0.15, 0.65, 0.15], [0.15, 0.15, 0.65]])
REFERENCE_COLOURS = np.array([[0.75, 0.25, 0.25], [0.25, 0.75, 0.25], [0.25, 0.25, 0.75]])


def _movement(actions: np.ndarray, continuous: bool) -> np.ndarray:
    """mpe2's force from a movement action: discrete 0..4 (none, -x, +x, -y, +y) or the continuous
    5-vector (u_x = a2 - a1, u_y = a4 - a3, differences taken in the action's own float32)."""
    if continuous:
        a = np.asarray(actions, dtype=np.float32)
        u = np.stack([a[..., 2] - a[..., 1], a[..., 4] - a[..., 3]], axis=-1).astype(np.float64)
    else:
        a = np.asarray(actions)
        u = np.zeros(a.shape + (2,))
        u[..., 0] = np.where(a == 1, -1.0, np.where(a == 2, 1.0, 0.0))
        u[..., 1] = np.where(a == 3, -1.0, np.where(a == 4, 1.0, 0.0))
    return u * SENSITIVITY


def _one_hot(index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(index.shape + (n,))
    np.put_along_axis(out, index[..., None].astype(np.int64), 1.0, axis=-1)
    return out


def _norm(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.square(x), axis=-1))


class FastMPETask(VecTask):
    """``n_envs`` copies of one MPE scenario, stepped together."""

    def __init__(self, scenario: str, n_envs: int, seed: int, continuous: bool, max_cycles: int,
                 stream: int = 0, copy_offset: int = 0) -> None:
        self.scenario, self.n_envs, self.seed, self.stream = scenario, n_envs, seed, stream
        self.copy_offset, self.continuous, self.episode_limit = copy_offset, continuous, max_cycles
        if scenario == "simple_spread":
            self.agents = ["agent_0", "agent_1", "agent_2"]
            self.n_move, self.dim_c = 3, 2
            self.obs_dims = [18, 18, 18]
            spaces = [ActionSpace("box", 5, (0.0,) * 5, (1.0,) * 5) if continuous else ActionSpace("discrete", 5)] * 3
        elif scenario == "simple_speaker_listener":
            self.agents = ["speaker_0", "listener_0"]
            self.dim_c = 3
            self.obs_dims = [3, 11]
            spaces = ([ActionSpace("box", 3, (0.0,) * 3, (1.0,) * 3), ActionSpace("box", 5, (0.0,) * 5, (1.0,) * 5)]
                      if continuous else [ActionSpace("discrete", 3), ActionSpace("discrete", 5)])
        elif scenario == "simple_reference":
            self.agents = ["agent_0", "agent_1"]
            self.dim_c = 10
            self.obs_dims = [21, 21]
            spaces = [ActionSpace("box", 15, (0.0,) * 15, (1.0,) * 15) if continuous else ActionSpace("discrete", 50)] * 2
        else:
            raise ValueError(f"no fast path for {scenario!r}")
        self.action_spaces = list(spaces)
        self.state_dim = sum(self.obs_dims)
        n_agents, E = len(self.agents), n_envs
        self.pos = np.zeros((E, n_agents, 2))
        self.vel = np.zeros((E, n_agents, 2))
        self.lpos = np.zeros((E, 3, 2))
        self.comm = np.zeros((E, n_agents, self.dim_c))
        self.goal = np.zeros((E, n_agents), dtype=np.int64)
        self.steps = np.zeros(E, dtype=np.int64)
        self.episodes = np.zeros(E, dtype=np.int64)
        self._returns = np.zeros(E)
        self._lengths = np.zeros(E, dtype=np.int64)
        self.reset()

    # -- resets: mpe2's draws, in mpe2's order, from a generator seeded as mpe2 seeds its own --------
    def _reset_copy(self, c: int) -> None:
        rng = np.random.default_rng(episode_seed(self.seed, self.copy_offset + c, int(self.episodes[c]), self.stream))
        if self.scenario == "simple_speaker_listener":
            self.goal[c, 0] = int(rng.integers(3))
        elif self.scenario == "simple_reference":
            self.goal[c, 0] = int(rng.integers(3))
            self.goal[c, 1] = int(rng.integers(3))
        for i in range(len(self.agents)):
            self.pos[c, i] = rng.uniform(-1, +1, 2)
        for k in range(3):
            self.lpos[c, k] = rng.uniform(-1, +1, 2)
        self.vel[c] = 0.0
        self.comm[c] = 0.0
        self.steps[c] = 0

    def reset(self, episodes: Sequence[int] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        self.episodes[:] = 0 if episodes is None else np.asarray(episodes, dtype=np.int64)
        for c in range(self.n_envs):
            self._reset_copy(c)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        obs = self._observe()
        return obs, np.concatenate(obs, axis=1)

    def episode_counters(self) -> list[int]:
        return [int(x) for x in self.episodes]

    # -- one step of every copy ------------------------------------------------------------------
    def _apply_actions(self, actions: Sequence[np.ndarray]) -> np.ndarray:
        """Set communication states from the actions; return the forces on the movable agents."""
        E = self.n_envs
        force = np.zeros((E, len(self.agents), 2))
        if self.scenario == "simple_spread":
            for i in range(3):
                a = actions[i] if self.continuous else np.asarray(actions[i]) % 5
                force[:, i] = _movement(a, self.continuous)
            self._contact_forces(force)
        elif self.scenario == "simple_speaker_listener":
            speaker, listener = actions
            if self.continuous:
                self.comm[:, 0] = np.asarray(speaker, dtype=np.float32)
            else:
                self.comm[:, 0] = _one_hot(np.asarray(speaker), 3)
            force[:, 1] = _movement(listener, self.continuous)
        else:  # simple_reference
            for i in range(2):
                a = actions[i]
                if self.continuous:
                    a = np.asarray(a, dtype=np.float32)
                    force[:, i] = _movement(a[:, :5], True)
                    self.comm[:, i] = a[:, 5:]
                else:
                    a = np.asarray(a)
                    force[:, i] = _movement(a % 5, False)
                    self.comm[:, i] = _one_hot(a // 5, 10)
        return force

    def _contact_forces(self, force: np.ndarray) -> None:
        """mpe2's soft contact between colliding agents (spread), added pair by pair in its order."""
        size = 0.15
        for a in range(3):
            for b in range(a + 1, 3):
                delta = self.pos[:, a] - self.pos[:, b]
                dist = np.sqrt(np.sum(np.square(delta), axis=-1))
                penetration = np.logaddexp(0, -(dist - 2 * size) / CONTACT_MARGIN) * CONTACT_MARGIN
                f = CONTACT_FORCE * delta / dist[:, None] * penetration[:, None]
                force[:, a] = f + force[:, a]
                force[:, b] = -f + force[:, b]

    def _integrate(self, force: np.ndarray) -> None:
        movable = slice(1, 2) if self.scenario == "simple_speaker_listener" else slice(None)
        self.pos[:, movable] += self.vel[:, movable] * DT
        self.vel[:, movable] = self.vel[:, movable] * (1 - DAMPING)
        self.vel[:, movable] += (force[:, movable] / 1.0) * DT

    def _rewards(self) -> list[np.ndarray]:
        """Each agent's reward, as mpe2 computes it."""
        if self.scenario == "simple_spread":
            d = _norm(self.pos[:, :, None, :] - self.lpos[:, None, :, :])  # [E, agent, landmark]
            global_reward = np.zeros(self.n_envs)
            for k in range(3):
                global_reward = global_reward - d[:, :, k].min(axis=1)
            pair = _norm(self.pos[:, :, None, :] - self.pos[:, None, :, :])
            collide = (pair < 0.3) & ~np.eye(3, dtype=bool)[None]
            local = [-collide[:, :, i].sum(axis=1).astype(np.float64) for i in range(3)]
            return [global_reward * 0.5 + local[i] * 0.5 for i in range(3)]
        if self.scenario == "simple_speaker_listener":
            target = self.lpos[np.arange(self.n_envs), self.goal[:, 0]]
            r = -np.sum(np.square(self.pos[:, 1] - target), axis=-1)
            return [r, r]
        rows = np.arange(self.n_envs)
        local = [-_norm(self.pos[:, 1 - i] - self.lpos[rows, self.goal[:, i]]) for i in range(2)]
        global_reward = (local[0] + local[1]) / 2
        return [global_reward * 0.5 + local[i] * 0.5 for i in range(2)]

    def _observe(self) -> list[np.ndarray]:
        rel = self.lpos[:, None, :, :] - self.pos[:, :, None, :]  # [E, agent, landmark, 2]
        E = self.n_envs
        if self.scenario == "simple_spread":
            out = []
            for i in range(3):
                others = [j for j in range(3) if j != i]
                parts = [self.vel[:, i], self.pos[:, i], rel[:, i].reshape(E, 6)]
                parts += [self.pos[:, j] - self.pos[:, i] for j in others]
                parts += [self.comm[:, j] for j in others]
                out.append(np.concatenate(parts, axis=1).astype(np.float32))
            return out
        if self.scenario == "simple_speaker_listener":
            speaker = SPEAKER_COLOURS[self.goal[:, 0]].astype(np.float32)
            listener = np.concatenate([self.vel[:, 1], rel[:, 1].reshape(E, 6), self.comm[:, 0]], axis=1)
            return [speaker, listener.astype(np.float32)]
        return [np.concatenate([self.vel[:, i], rel[:, i].reshape(E, 6), REFERENCE_COLOURS[self.goal[:, i]],
                                self.comm[:, 1 - i]], axis=1).astype(np.float32) for i in range(2)]

    def step(self, actions: Sequence[np.ndarray]) -> StepResult:
        if self.continuous:  # as the mpe2-backed task does: actions clipped to the box, in float32
            actions = [np.clip(a, 0.0, 1.0).astype(np.float32) for a in actions]
        force = self._apply_actions(actions)
        self._integrate(force)
        if self.scenario == "simple_spread":
            self.comm[:] = 0.0  # silent agents
        elif self.scenario == "simple_speaker_listener":
            self.comm[:, 1] = 0.0
        per_agent = self._rewards()
        reward = np.zeros(self.n_envs)
        for r in per_agent:
            reward = reward + r
        self.steps += 1
        truncated = self.steps >= self.episode_limit
        terminated = np.zeros(self.n_envs, dtype=bool)
        final_obs = self._observe()
        final_state = np.concatenate(final_obs, axis=1)
        self._returns += reward
        self._lengths += 1
        result = StepResult(final_obs, final_state.copy(), reward.astype(np.float32), terminated, truncated.copy(),
                            final_state)
        ended = np.flatnonzero(truncated)
        if len(ended):
            result.obs = [o.copy() for o in final_obs]
            for c in ended:
                result.episode_returns.append(float(self._returns[c]))
                result.episode_lengths.append(int(self._lengths[c]))
                result.final_obs[int(c)] = [o[c].copy() for o in final_obs]
                self._returns[c] = 0.0
                self._lengths[c] = 0
                self.episodes[c] += 1
                self._reset_copy(c)
            fresh = self._observe()
            for o, f in zip(result.obs, fresh):
                o[ended] = f[ended]
            result.state[ended] = np.concatenate(fresh, axis=1)[ended]
        return result

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "implementation": "harness_plugins.mpe_fast (batched NumPy, equal to mpe2)"}
