"""Network plugin ``gru``: the ``mlp`` network's recurrent sibling (HARL's ``use_recurrent_policy``).

Each actor is the ``mlp`` trunk, then a GRU of ``recurrent_layers`` layers as wide as the last hidden
layer, then a LayerNorm and the ``mlp`` heads (a categorical, or a diagonal Gaussian with the same
learnt std): HARL's MLP base, RNN layer and action layer. GRU weights are orthogonal and biases zero,
as HARL initialises them. The actor declares its hidden state (``hidden_size`` = layers x width) and
trains on chunks of ``chunk_length`` steps (HARL's ``data_chunk_length``, 10), the contract of
:mod:`harness.sequences`. The critic is the ``mlp`` V(state) critic: the global state needs no memory.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness import distributions as D
from harness.errors import HarnessError
from harness.hookspecs import hookimpl
from harness.options import Option
from harness.task_api import ActionSpace
from harness_plugins.mlp import MLPCritic, _init, trunk


class GRUActor(nn.Module):
    """A recurrent policy for one agent; ``act``/``evaluate``/``distribution`` take ``hidden`` and
    ``starts`` as :mod:`harness.sequences` describes."""

    def __init__(self, obs_dim: int, action_space: ActionSpace, hidden: list[int], activation: str,
                 layers: int = 1, chunk_length: int = 10) -> None:
        super().__init__()
        if not hidden:
            raise HarnessError("network 'gru' needs at least one hidden layer (hidden_sizes)")
        width = hidden[-1]
        self.discrete = action_space.kind == "discrete"
        self.body = trunk(obs_dim, hidden, activation)
        self.gru = nn.GRU(width, width, num_layers=layers)
        for name, p in self.gru.named_parameters():
            (nn.init.orthogonal_ if "weight" in name else nn.init.zeros_)(p)
        self.norm = nn.LayerNorm(width)
        self.head = _init(nn.Linear(width, action_space.n), 0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.ones(action_space.n))
        self.layers, self.width = layers, width
        self.hidden_size = layers * width
        self.chunk_length = chunk_length

    def _std(self) -> torch.Tensor:
        return torch.sigmoid(self.log_std) * 0.5

    def _unroll(self, obs: torch.Tensor, hidden: torch.Tensor | None,
                starts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Head outputs for every row and the state after each sequence's last row."""
        if hidden is None or starts is None:
            raise HarnessError("network 'gru': a recurrent actor needs hidden= and starts= (harness.sequences); "
                               "this scheme calls it as a feed-forward one")
        n = hidden.shape[0]
        steps = obs.shape[0] // n
        x = self.body(obs).reshape(n, steps, self.width).transpose(0, 1)             # [L, N, w]
        keep = (~starts.bool()).reshape(n, steps).transpose(0, 1).to(x.dtype)         # [L, N]
        h = hidden.reshape(n, self.layers, self.width).transpose(0, 1).contiguous()  # [layers, N, w]
        outs = []
        for t in range(steps):
            y, h = self.gru(x[t:t + 1], h * keep[t][None, :, None])  # an episode start begins from zeros
            outs.append(y[0])
        feats = self.norm(torch.stack(outs)).transpose(0, 1).reshape(n * steps, self.width)
        return self.head(feats), h.transpose(0, 1).reshape(n, self.layers * self.width)

    def act(self, obs: torch.Tensor, deterministic: bool = False, hidden: torch.Tensor | None = None,
            starts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions and log-probabilities for one step of every row, and the state after it."""
        out, h = self._unroll(obs, hidden, starts)
        a, lp = D.categorical_sample(out, deterministic) if self.discrete else \
            D.gaussian_sample(out, self._std(), deterministic)
        return a, lp, h

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor, hidden: torch.Tensor | None = None,
                 starts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies of ``action`` over the sequences' rows."""
        out, _ = self._unroll(obs, hidden, starts)
        if self.discrete:
            return D.categorical_logp_entropy(out, action)
        return D.gaussian_logp_entropy(out, self._std(), action)

    def distribution(self, obs: torch.Tensor, hidden: torch.Tensor | None = None,
                     starts: torch.Tensor | None = None) -> torch.distributions.Distribution:
        """The action distributions over the sequences' rows (for KL divergences: hatrpo)."""
        out, _ = self._unroll(obs, hidden, starts)
        if self.discrete:
            return torch.distributions.Categorical(logits=out)
        return torch.distributions.Independent(torch.distributions.Normal(out, self._std().expand_as(out)), 1)


OPTIONS = {
    "chunk_length": Option(int, 10, "steps per training sequence (HARL's data_chunk_length); rollout_length "
                           "must be a multiple of it", low=1, high=10_000),
    "recurrent_layers": Option(int, 1, "GRU layers (HARL's recurrent_n)", low=1, high=8),
}


def _option(config: Any, name: str) -> Any:
    return dict(getattr(config, "network_options", None) or {}).get(name, OPTIONS[name].default)


class GRUBuilder:
    """Builds GRU actors and ``mlp`` critics from the run's config (``hidden_sizes``, ``activation`` and
    the network options ``chunk_length`` and ``recurrent_layers``)."""

    def actor(self, obs_dim: int, action_space: ActionSpace, config: Any) -> nn.Module:
        return GRUActor(obs_dim, action_space, list(config.hidden_sizes), config.activation,
                        _option(config, "recurrent_layers"), _option(config, "chunk_length"))

    def critic(self, state_dim: int, config: Any) -> nn.Module:
        return MLPCritic(state_dim, list(config.hidden_sizes), config.activation)


@hookimpl
def register_networks(register):
    register("gru", GRUBuilder, options=OPTIONS, description="recurrent actors: the mlp trunk, a GRU and the mlp heads "
             "(HARL's use_recurrent_policy); trained on chunks of chunk_length steps")
