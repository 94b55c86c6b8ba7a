"""The replay buffer of off-policy schemes: transitions kept across iterations, sampled with n-step returns.

A scheme that sets ``off_policy = True`` learns from a :class:`ReplayBuffer` the core fills: each
rollout's transitions (every copy's global state, every agent's observation and action, the team
reward, the state and observations the step reached, before any reset, and whether the episode
terminated or was truncated there) go in at the end of the iteration, oldest first out when it is
full. :meth:`ReplayBuffer.sample` draws transitions uniformly and folds the ``n`` steps that follow
each one in the same copy into an n-step return, as HARL's off-policy buffer does: rewards are
summed with discount ``gamma`` until the episode ended (terminated or truncated) or the newest step
of that copy, and the sample's bootstrap state and observations are those of the last step folded,
its discount ``gamma ** k`` (``k`` the steps folded) and its ``terminated`` flag the last step's (a
truncation still bootstraps from the state it reached).

:func:`replay_bytes` is what a buffer of a given capacity takes, for the memory pre-check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from harness.task_api import ActionSpace


@dataclass
class ReplaySample:
    """``B`` transitions with their n-step returns (torch tensors)."""

    states: torch.Tensor             # [B, state_dim]
    obs: list[torch.Tensor]          # per agent [B, obs_dim_i]
    actions: list[torch.Tensor]      # per agent [B] (discrete, int64) or [B, act_dim_i]
    rewards: torch.Tensor            # [B] n-step discounted reward sums
    discounts: torch.Tensor          # [B] gamma ** k, k the steps folded
    terminated: torch.Tensor         # [B] float: the last folded step terminated (no bootstrap)
    next_states: torch.Tensor        # [B, state_dim] the state the last folded step reached
    next_obs: list[torch.Tensor]     # per agent [B, obs_dim_i]


def _action_width(space: ActionSpace) -> int:
    return 1 if space.kind == "discrete" else space.n


def replay_bytes(capacity: int, obs_dims: Sequence[int], action_spaces: Sequence[ActionSpace],
                 state_dim: int) -> int:
    """Bytes a buffer of ``capacity`` transitions holds (float32 states and observations, twice:
    before and after the step; actions; reward and flags)."""
    per = 4 * (2 * state_dim + 2 * sum(obs_dims) + sum(_action_width(s) for s in action_spaces) + 1) + 3
    return int(capacity) * per


class ReplayBuffer:
    """A ring buffer of ``capacity`` transitions from ``n_envs`` copies stepped in lockstep.

    Transitions are stored time-major: slot ``t * n_envs + c`` holds copy ``c``'s step ``t`` (modulo
    the capacity, a multiple of ``n_envs``), so a transition's successor in its copy is ``n_envs``
    slots on.
    """

    def __init__(self, capacity: int, n_envs: int, obs_dims: Sequence[int], action_spaces: Sequence[ActionSpace],
                 state_dim: int) -> None:
        rows = max(1, -(-int(capacity) // n_envs))  # whole steps of every copy
        self.capacity, self.n_envs, self.size, self.head = rows * n_envs, n_envs, 0, 0
        cap = self.capacity
        self.states = np.zeros((cap, state_dim), np.float32)
        self.next_states = np.zeros((cap, state_dim), np.float32)
        self.obs = [np.zeros((cap, d), np.float32) for d in obs_dims]
        self.next_obs = [np.zeros((cap, d), np.float32) for d in obs_dims]
        self.actions = [np.zeros(cap, np.int64) if s.kind == "discrete" else np.zeros((cap, s.n), np.float32)
                        for s in action_spaces]
        self.rewards = np.zeros(cap, np.float32)
        self.terminated = np.zeros(cap, bool)
        self.ended = np.zeros(cap, bool)  # terminated or truncated: the n-step sum stops here

    def __len__(self) -> int:
        return self.size

    def add(self, rollout: Any) -> None:
        """Append a :class:`harness.rollout.Rollout` (``T`` steps of every copy), oldest out first."""
        T, E = rollout.rewards.shape
        assert E == self.n_envs, f"a rollout of {E} copies into a buffer of {self.n_envs}"
        for t in range(T):
            s = slice(self.head, self.head + E)
            self.states[s] = rollout.states[t]
            self.next_states[s] = rollout.final_states[t]
            for i in range(len(self.obs)):
                self.obs[i][s] = rollout.obs[i][t]
                self.next_obs[i][s] = rollout.next_obs[i][t]
                self.actions[i][s] = rollout.actions[i][t]
            self.rewards[s] = rollout.rewards[t]
            self.terminated[s] = rollout.terminated[t]
            self.ended[s] = rollout.terminated[t] | rollout.truncated[t]
            self.head = (self.head + E) % self.capacity
            self.size = min(self.size + E, self.capacity)

    def _newest(self) -> np.ndarray:
        """Slots of each copy's newest step (their successors are not in the buffer yet)."""
        return (self.head - 1 - np.arange(self.n_envs)) % self.capacity

    def sample(self, batch_size: int, n_step: int, gamma: float, rng: np.random.Generator,
               device: torch.device | str = "cpu") -> ReplaySample:
        """``batch_size`` transitions drawn uniformly (with replacement) from what the buffer holds,
        with ``n_step``-step returns (see the module docstring)."""
        if self.size == 0:
            raise ValueError("sample() from an empty replay buffer")
        # Until it is full the buffer holds slots 0 .. size - 1; once full, every slot.
        idx = rng.integers(0, self.size, batch_size)
        stop = self.ended.copy()
        stop[self._newest()] = True
        rewards = np.zeros(batch_size, np.float64)
        discount = np.ones(batch_size, np.float64)
        last = idx.copy()
        running = np.ones(batch_size, bool)  # still folding
        for k in range(n_step):
            rewards[running] += discount[running] * self.rewards[last[running]]
            discount[running] *= gamma
            running &= ~stop[last]
            if k == n_step - 1 or not running.any():
                break
            last = np.where(running, (last + self.n_envs) % self.capacity, last)
        to = lambda x: torch.as_tensor(x, device=device)  # noqa: E731
        return ReplaySample(
            states=to(self.states[idx]), obs=[to(o[idx]) for o in self.obs], actions=[to(a[idx]) for a in self.actions],
            rewards=to(rewards.astype(np.float32)), discounts=to(discount.astype(np.float32)),
            terminated=to(self.terminated[last].astype(np.float32)), next_states=to(self.next_states[last]),
            next_obs=[to(o[last]) for o in self.next_obs])

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue exactly (for a scheme that keeps its buffer in checkpoints)."""
        t = lambda a: torch.from_numpy(a.copy())  # noqa: E731  (tensors: checkpoints load weights-only)
        return {"capacity": self.capacity, "head": self.head, "size": self.size,
                "arrays": {k: t(getattr(self, k)) for k in ("states", "next_states", "rewards", "terminated", "ended")},
                "obs": [t(a) for a in self.obs], "next_obs": [t(a) for a in self.next_obs],
                "actions": [t(a) for a in self.actions]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"a saved replay buffer of capacity {state['capacity']}, this run's is {self.capacity}")
        self.head, self.size = int(state["head"]), int(state["size"])
        for k, v in state["arrays"].items():
            getattr(self, k)[:] = v.numpy()
        for mine, saved in ((self.obs, state["obs"]), (self.next_obs, state["next_obs"]), (self.actions, state["actions"])):
            for a, b in zip(mine, saved):
                a[:] = b.numpy()


def is_off_policy(scheme: Any) -> bool:
    """Whether a scheme (class or object) learns from a replay buffer (``off_policy = True``)."""
    return bool(getattr(scheme, "off_policy", False))


class ReplayFeed:
    """An off-policy run's side of the loop: the buffer each rollout fills, the warm-up, and what a
    checkpoint keeps of the buffer.

    The scheme says ``replay_capacity`` (transitions), ``warmup_steps`` (env steps acted uniformly at
    random before its first update; its ``update`` is not called before) and ``save_replay`` (keep
    the buffer in ``checkpoint.pt`` so that a resumed run continues exactly; else a resumed run
    starts with an empty buffer and warms it up again, and says so).
    """

    def __init__(self, scheme: Any, task: Any) -> None:
        self.scheme = scheme
        self.buffer = ReplayBuffer(int(scheme.replay_capacity), task.n_envs, task.obs_dims, task.action_spaces,
                                   task.state_dim)
        self.warmup_steps = int(getattr(scheme, "warmup_steps", 0))
        self.save = bool(getattr(scheme, "save_replay", False))
        self.filled = 0  # env steps put into the buffer since the run (or its resume) started

    def warm(self) -> bool:
        """Whether the scheme may update (the warm-up steps are in the buffer)."""
        return self.filled >= self.warmup_steps

    def add(self, rollout: Any) -> ReplayBuffer:
        self.buffer.add(rollout)
        self.filled += rollout.rewards.size
        return self.buffer

    def checkpoint(self) -> dict[str, Any]:
        return {"replay": self.buffer.state_dict(), "replay_filled": self.filled} if self.save else {"replay": None}

    def restore(self, ckpt: dict[str, Any]) -> str | None:
        """Put a checkpoint's buffer back; a line to say when there was none to put back."""
        if ckpt.get("replay") is not None:
            self.buffer.load_state_dict(ckpt["replay"])
            self.filled = int(ckpt.get("replay_filled", self.buffer.size))
            return None
        self.filled = 0
        return (f"the replay buffer is not kept in checkpoints (the scheme's save_replay is off): resuming with an "
                f"empty one, {self.warmup_steps} warm-up steps of random actions first")
