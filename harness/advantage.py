"""Generalised advantage estimation with proper time-limit handling, and a rollout's advantages from a
V(state) critic.

A truncated episode (time limit) is bootstrapped from V(final state); a terminated one is not.
Unlike HARL, which zeroes the accumulator at a truncation without bootstrapping, the harness
bootstraps from the value of the state the episode was cut at.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, all ``[T, E]``.

    ``next_values[t]`` is V of the state reached by step ``t`` (the final state of an episode that
    ended at ``t``, before any reset). The recursion is cut after every episode end.
    """
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - (terminated | truncated).to(rewards.dtype)
    deltas = rewards + gamma * next_values * not_term - values
    adv = torch.zeros_like(rewards)
    acc = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        acc = deltas[t] + gamma * lam * not_done[t] * acc
        adv[t] = acc
    return adv, adv + values


def critic_advantages(values: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], states: np.ndarray,
                      final_states: np.ndarray, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                      gamma: float, lam: float, device: torch.device | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A rollout's advantages from a V(state) critic: ``(advantages, returns, old_values)``, each ``[T * E]``.

    ``states`` is ``[T + 1, E, S]`` (the state before every step and after the last), ``final_states``
    ``[T, E, S]`` the state each step reached before any reset; ``values(states)`` is the critic's
    ``(raw outputs, values)``, called on ``device`` (the CPU by default). One critic pass covers every state of the rollout and the final states
    of the truncated episodes, which are bootstrapped from. The advantages are normalised over the
    batch; ``old_values`` are the raw outputs (the critic's units) at the rollout's states.
    """
    T, E = rewards.shape
    term, trunc = torch.from_numpy(terminated), torch.from_numpy(truncated)
    st = torch.from_numpy(states).reshape((T + 1) * E, -1)
    cut = trunc.reshape(-1).nonzero().squeeze(-1)
    extra = torch.from_numpy(final_states).reshape(T * E, -1)[cut]
    raw, vals = values(torch.cat([st, extra]).to(device or "cpu"))
    raw, vals = raw.cpu(), vals.cpu()
    v = vals[: (T + 1) * E].reshape(T + 1, E)
    next_values = v[1:].clone().reshape(-1)
    next_values[cut] = vals[(T + 1) * E:]
    adv, ret = gae(torch.from_numpy(rewards), v[:T], next_values.reshape(T, E), term, trunc, gamma, lam)
    adv = adv.reshape(-1)
    adv = (adv - adv.mean()) / (adv.std() + 1e-5) if adv.numel() > 1 else adv - adv.mean()
    return adv, ret.reshape(-1), raw[: T * E]
