"""Network plugin ``mlp``: HARL-style MLP actors (one per agent) and a V(state) critic.

Blocks are Linear -> ReLU -> LayerNorm after an input LayerNorm; orthogonal initialisation with
gain sqrt(2) for hidden layers, 0.01 for the actor head and 1 for the critic head. Continuous
actors are diagonal Gaussians with a learnt, state-independent std = sigmoid(log_std) * 0.5,
log_std initialised to 1 (std 0.37 at the start, at most 0.5).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from harness import distributions as D
from harness.envs import ActionSpace
from harness.hookspecs import hookimpl

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


def trunk(in_dim: int, hidden: list[int], activation: str) -> nn.Sequential:
    """Input LayerNorm, then Linear -> activation -> LayerNorm per hidden layer."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)]
    gain = nn.init.calculate_gain(activation)
    for h in hidden:
        layers += [_init(nn.Linear(in_dim, h), gain), act(), nn.LayerNorm(h)]
        in_dim = h
    return nn.Sequential(*layers)


class MLPActor(nn.Module):
    """A policy for one agent: ``act`` samples actions, ``evaluate`` scores given ones."""

    def __init__(self, obs_dim: int, action_space: ActionSpace, hidden: list[int], activation: str) -> None:
        super().__init__()
        self.discrete = action_space.kind == "discrete"
        self.body = trunk(obs_dim, hidden, activation)
        self.head = _init(nn.Linear(hidden[-1] if hidden else obs_dim, action_space.n), 0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.ones(action_space.n))

    def _std(self) -> torch.Tensor:
        return torch.sigmoid(self.log_std) * 0.5

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions ``[B]`` (discrete) or ``[B, d]`` and their log-probabilities ``[B]``."""
        out = self.head(self.body(obs))
        if self.discrete:
            return D.categorical_sample(out, deterministic)
        return D.gaussian_sample(out, self._std(), deterministic)

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``[B]`` and entropies ``[B]`` of ``action`` under the current policy."""
        out = self.head(self.body(obs))
        if self.discrete:
            return D.categorical_logp_entropy(out, action)
        return D.gaussian_logp_entropy(out, self._std(), action)


class MLPCritic(nn.Module):
    """V(state): a scalar value per global state (in normalised units when value normalisation is on)."""

    def __init__(self, state_dim: int, hidden: list[int], activation: str) -> None:
        super().__init__()
        self.body = trunk(state_dim, hidden, activation)
        self.head = _init(nn.Linear(hidden[-1] if hidden else state_dim, 1), 1.0)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(state)).squeeze(-1)


class MLPBuilder:
    """Builds MLP actors and critics from the run's config (``hidden_sizes``, ``activation``)."""

    def actor(self, obs_dim: int, action_space: ActionSpace, config: Any) -> nn.Module:
        return MLPActor(obs_dim, action_space, list(config.hidden_sizes), config.activation)

    def critic(self, state_dim: int, config: Any) -> nn.Module:
        return MLPCritic(state_dim, list(config.hidden_sizes), config.activation)


@hookimpl
def register_networks(register):
    register("mlp", MLPBuilder, description="MLP [hidden_sizes] with LayerNorm, HARL's initialisation")
