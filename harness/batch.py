"""The batch: one iteration's training data as a scheme's ``update`` receives it."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    """One iteration's training data, flattened over time and copies (``B = T * E``)."""

    obs: list[torch.Tensor]        # per agent [B, obs_dim_i]
    actions: list[torch.Tensor]    # per agent [B] (discrete) or [B, act_dim_i]
    old_logp: list[torch.Tensor]   # per agent [B], behaviour log-probabilities
    states: torch.Tensor           # [B, state_dim]
    advantages: torch.Tensor | None  # [B], normalised over the batch (None where the scheme computes its own)
    returns: torch.Tensor | None     # [B], value targets (unnormalised)
    old_values: torch.Tensor | None  # [B], critic outputs at collection (normalised units if value_norm)
    # The raw rollout, for schemes that compute their own advantages (per-agent critics):
    next_obs: list[torch.Tensor] | None = None  # per agent [B, obs_dim_i]: the observation each step led to
    rewards: torch.Tensor | None = None         # [B] team reward
    terminated: torch.Tensor | None = None      # [B] bool: the episode ended by termination at this step
    truncated: torch.Tensor | None = None       # [B] bool: the episode was cut by the time limit here
    shape: tuple[int, int] | None = None        # (T, E): B = T * E, time-major
    # Recurrent actors (harness.sequences): where episodes start, and each agent's hidden state
    # before every step (None for an agent whose actor is feed-forward).
    starts: torch.Tensor | None = None              # [B] bool: an episode starts at this step
    hidden: list[torch.Tensor | None] | None = None  # per agent [B, hidden_size_i] or None
