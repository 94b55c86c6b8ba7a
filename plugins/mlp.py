"""Network plugin ``mlp``: HARL-style MLP actors (one per agent) and a V(state) critic.

Blocks are Linear -> ReLU -> LayerNorm after an input LayerNorm; orthogonal initialisation with
gain sqrt(2) for hidden layers, 0.01 for the actor head and 1 for the critic head. Continuous
actors are diagonal Gaussians with a learnt, state-independent std = sigmoid(log_std) * 0.5,
log_std initialised to 1 (std 0.37 at the start, at most 0.5).

Its one option, ``network.layer_norm`` (default true), drops every LayerNorm when false (the input one
and one per hidden block); the default is the network as it was before it declared options, and it
registers that value as ``legacy``, so such runs keep their config digests.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from harness import distributions as D
from harness.task_api import ActionSpace
from harness.hookspecs import hookimpl
from harness.options import Option

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


#: The options the network declares (``--set network.NAME=value``; read from ``config.network_options``).
OPTIONS = {"layer_norm": Option(bool, True, "LayerNorm on the input and after each hidden layer (false: none)")}


def trunk(in_dim: int, hidden: list[int], activation: str, layer_norm: bool = True) -> nn.Sequential:
    """Input LayerNorm, then Linear -> activation -> LayerNorm per hidden layer (without the
    LayerNorms when ``layer_norm`` is false)."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if layer_norm else []
    gain = nn.init.calculate_gain(activation)
    for h in hidden:
        layers += [_init(nn.Linear(in_dim, h), gain), act()] + ([nn.LayerNorm(h)] if layer_norm else [])
        in_dim = h
    return nn.Sequential(*layers)


class MLPActor(nn.Module):
    """A policy for one agent: ``act`` samples actions, ``evaluate`` scores given ones."""

    def __init__(self, obs_dim: int, action_space: ActionSpace, hidden: list[int], activation: str,
                 layer_norm: bool = True) -> None:
        super().__init__()
        self.discrete = action_space.kind == "discrete"
        self.activation = activation
        self.layer_norm = layer_norm
        self.body = trunk(obs_dim, hidden, activation, layer_norm)
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


    def distribution(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        """The action distribution at ``obs`` (batch shape ``[B]``; ``log_prob`` equals ``evaluate``'s),
        for schemes that need KL divergences between policies (hatrpo)."""
        out = self.head(self.body(obs))
        if self.discrete:
            return torch.distributions.Categorical(logits=out)
        return torch.distributions.Independent(torch.distributions.Normal(out, self._std().expand_as(out)), 1)


class MLPCritic(nn.Module):
    """V(state): a scalar value per global state (in normalised units when value normalisation is on)."""

    def __init__(self, state_dim: int, hidden: list[int], activation: str, layer_norm: bool = True) -> None:
        super().__init__()
        self.body = trunk(state_dim, hidden, activation, layer_norm)
        self.head = _init(nn.Linear(hidden[-1] if hidden else state_dim, 1), 1.0)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(state)).squeeze(-1)


class NumpyPolicy:
    """A frozen NumPy copy of MLP actors, for acting during rollouts and evaluation.

    A rollout calls the actors once per agent per step on a few dozen observations, where torch's
    per-operation overhead dominates; NumPy on stacked weights (agents with the same shapes share one
    batched matrix product) is two to four times faster. It computes the same function as
    ``MLPActor`` (tested to 1e-5); sampling uses the generator it is given (Gumbel-max for
    categorical actions, so a seeded generator gives reproducible rollouts).
    """

    def __init__(self, actors: Sequence[MLPActor]) -> None:
        groups: dict[tuple, list[int]] = {}
        for i, actor in enumerate(actors):
            shapes = tuple(tuple(p.shape) for p in actor.parameters())
            groups.setdefault((actor.discrete, actor.activation, actor.layer_norm, shapes), []).append(i)
        self.n_agents = len(actors)
        self.groups = []
        for (discrete, activation, layer_norm, _), members in groups.items():
            mods = [actors[i] for i in members]
            layers = []  # per hidden block: (W [A, in, out], b [A, 1, out], ln_w, ln_b) (ln None without LayerNorms)
            lin = [m for m in mods[0].body if isinstance(m, nn.Linear)]
            lns = [m for m in mods[0].body if isinstance(m, nn.LayerNorm)]
            stack = lambda get: np.stack([get(a).detach().cpu().numpy() for a in mods]).astype(np.float32)  # noqa: E731
            ln_in = ((stack(lambda a: a.body[0].weight)[:, None], stack(lambda a: a.body[0].bias)[:, None])
                     if layer_norm else None)
            for k in range(len(lin)):
                idx_lin = list(mods[0].body).index(lin[k])
                w = stack(lambda a, j=idx_lin: a.body[j].weight.T)
                b = stack(lambda a, j=idx_lin: a.body[j].bias)[:, None]
                if layer_norm:
                    idx_ln = list(mods[0].body).index(lns[k + 1])
                    layers.append((w, b, stack(lambda a, j=idx_ln: a.body[j].weight)[:, None],
                                   stack(lambda a, j=idx_ln: a.body[j].bias)[:, None]))
                else:
                    layers.append((w, b, None, None))
            head = (stack(lambda a: a.head.weight.T), stack(lambda a: a.head.bias)[:, None])
            std = None if discrete else stack(lambda a: a._std())[:, None]
            self.groups.append((members, discrete, activation, ln_in, layers, head, std))

    @staticmethod
    def _ln(h: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        mu = h.mean(-1, keepdims=True)
        d = h - mu
        return d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5) * w + b

    def __call__(self, obs: Sequence[np.ndarray], rng: np.random.Generator,
                 deterministic: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Actions and log-probabilities per agent for observations ``obs[i]`` of shape ``[B, d_i]``."""
        actions: list[Any] = [None] * self.n_agents
        logps: list[Any] = [None] * self.n_agents
        for members, discrete, activation, ln_in, layers, head, std in self.groups:
            h = np.stack([obs[i] for i in members])
            if ln_in is not None:
                h = self._ln(h, *ln_in)
            for w, b, lw, lb in layers:
                h = h @ w + b
                h = np.maximum(h, 0.0) if activation == "relu" else np.tanh(h)
                if lw is not None:
                    h = self._ln(h, lw, lb)
            out = h @ head[0] + head[1]
            if discrete:
                z = out - out.max(-1, keepdims=True)
                logp_all = z - np.log(np.exp(z).sum(-1, keepdims=True))
                if deterministic:
                    a = logp_all.argmax(-1)
                else:
                    a = (logp_all + rng.gumbel(size=logp_all.shape)).argmax(-1)
                lp = np.take_along_axis(logp_all, a[..., None], -1)[..., 0]
            else:
                a = out if deterministic else out + std * rng.standard_normal(out.shape, dtype=np.float32)
                zz = (a - out) / std
                lp = (-0.5 * zz * zz - np.log(std) - 0.5 * _LOG_2PI).sum(-1)
            for k, i in enumerate(members):
                actions[i] = a[k]
                logps[i] = lp[k].astype(np.float32)
        return actions, logps


_LOG_2PI = math.log(2.0 * math.pi)


class MLPBuilder:
    """Builds MLP actors and critics from the run's config (``hidden_sizes``, ``activation``, and its
    declared option ``config.network_options["layer_norm"]``, filled in by the harness; a config
    without it, as tests build by hand, gets the default)."""

    def acting_policy(self, actors: Sequence[nn.Module]) -> NumpyPolicy | None:
        """A fast NumPy copy of ``actors`` for rollouts, or None when they are not all ``MLPActor``."""
        if all(type(a) is MLPActor for a in actors):
            return NumpyPolicy(actors)
        return None

    def actor(self, obs_dim: int, action_space: ActionSpace, config: Any) -> nn.Module:
        return MLPActor(obs_dim, action_space, list(config.hidden_sizes), config.activation, _layer_norm(config))

    def critic(self, state_dim: int, config: Any) -> nn.Module:
        return MLPCritic(state_dim, list(config.hidden_sizes), config.activation, _layer_norm(config))


def _layer_norm(config: Any) -> bool:
    return bool((getattr(config, "network_options", None) or {}).get("layer_norm", OPTIONS["layer_norm"].default))


@hookimpl
def register_networks(register):
    register("mlp", MLPBuilder, options=OPTIONS, legacy={"layer_norm": True},
             description="MLP [hidden_sizes] with LayerNorm (network.layer_norm), HARL's initialisation")
