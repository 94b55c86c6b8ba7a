"""Generalised advantage estimation with proper time-limit handling.

A truncated episode (time limit) is bootstrapped from V(final state); a terminated one is not.
Unlike HARL, which zeroes the accumulator at a truncation without bootstrapping, the harness
bootstraps from the value of the state the episode was cut at.
"""

from __future__ import annotations

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
