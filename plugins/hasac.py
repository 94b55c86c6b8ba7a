"""Update-scheme plugin ``hasac``: HASAC (Liu et al., "Maximum Entropy Heterogeneous-Agent
Reinforcement Learning", ICLR 2024), the soft actor-critic of the HARL family.

Off-policy (``off_policy = True``): the core fills a replay buffer from every rollout and acts
uniformly at random for ``scheme.warmup_steps`` env steps first (:mod:`harness.replay`). Each
iteration makes ``scheme.update_per_train x rollout_length`` gradient updates (HARL's
``update_per_train x train_interval``), each on ``scheme.batch_size`` transitions with
``scheme.n_step``-step returns:

* **critic**: twin soft Q(state, joint action), Huber loss (``huber_delta``; the squared error with
  ``scheme.huber = false``) to the target
  ``r_n + gamma^k (1 - terminated) (min Q'(s', a') - alpha * sum_i log pi_i(a'_i | o'_i))`` with
  ``a'`` sampled from the current actors at the next observations and ``Q'`` the Polyak-averaged
  target critics (``scheme.polyak``); with ``value_norm`` the targets are normalised as HARL's are;
* **actors**, one after another in a random order (``fixed_order``: index order): agent ``i``
  maximises ``min Q(s, a) - alpha_i log pi_i(a_i | o_i)`` where ``a`` holds the fresh actions of the
  agents updated before it, ``a_i`` re-sampled with gradients, and the others' current samples;
* **temperature**: fixed ``scheme.alpha``, or learnt per agent with ``scheme.auto_alpha`` (from 1, target
  entropy ``-act_dim``), the critic's on the joint entropy.

Actors are squashed Gaussians (tanh of a Gaussian with state-dependent log std in [-20, 2], scaled
to the box), for box actions. Defaults are HARL's ``hasac.yaml``; its runs also use
``rollout_length = 50`` (its ``train_interval``) and ``hidden_sizes = [256, 256]`` (set them in the run's
config; ``tuned = true`` does for the tasks whose tuned HASAC settings ``plugins/mamujoco_tuned.toml``
holds). The replay
buffer is not kept in checkpoints unless ``scheme.save_replay = true`` (HARL keeps none): a resumed
run then warms up an empty buffer again and says so. ``best.pt`` holds the actors only.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.hookspecs import hookimpl
from harness.options import Option
from harness.value_norm import ValueNorm

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

OPTIONS = {
    "buffer_size": Option(int, 1_000_000, "replay buffer capacity, in transitions"),
    "batch_size": Option(int, 1000, "transitions per gradient update"),
    "warmup_steps": Option(int, 10_000, "env steps of uniform random actions before the first update"),
    "update_per_train": Option(float, 1.0, "gradient updates per env step of each copy (HARL's update_per_train)"),
    "n_step": Option(int, 20, "steps folded into each sampled return"),
    "polyak": Option(float, 0.005, "target critics: weight of the new critic in each Polyak average"),
    "alpha": Option(float, 0.001, "entropy temperature (with auto_alpha unused: learnt from 1, as HARL)"),
    "auto_alpha": Option(bool, False, "learn each agent's temperature towards the target entropy -act_dim"),
    "alpha_lr": Option(float, 3e-4, "learning rate of the temperatures"),
    "huber": Option(bool, True, "critic loss: Huber (huber_delta), or the squared error (HARL's use_huber_loss)"),
    "save_replay": Option(bool, False, "keep the replay buffer in checkpoints (exact resume; HARL keeps none)"),
}


def _mlp(inputs: int, hidden: list[int], outputs: int) -> nn.Sequential:
    """Input LayerNorm, Linear -> ReLU per hidden layer, a linear head (HARL's feature normalisation)."""
    layers: list[nn.Module] = [nn.LayerNorm(inputs)]
    for h in hidden:
        layers += [nn.Linear(inputs, h), nn.ReLU()]
        inputs = h
    return nn.Sequential(*layers, nn.Linear(inputs, outputs))


class SquashedGaussianActor(nn.Module):
    """A tanh-squashed Gaussian policy scaled to the box ``[low, high]``."""

    def __init__(self, obs_dim: int, space: Any, hidden: list[int]) -> None:
        super().__init__()
        self.net = _mlp(obs_dim, hidden, 2 * space.n)
        low, high = torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)
        self.register_buffer("mid", (high + low) / 2)
        self.register_buffer("radius", (high - low) / 2)

    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions ``[B, d]`` (reparameterised) and their log-probabilities ``[B]`` under the squashed density."""
        mu, log_std = self.net(obs).chunk(2, dim=-1)
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        u = mu if deterministic else mu + std * torch.randn_like(mu)
        logp = torch.distributions.Normal(mu, std).log_prob(u).sum(-1)
        # log |d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), stable for large |u|. As HARL's, the density
        # is tanh(u)'s: the box's scale is a constant, left out.
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return self.mid + self.radius * torch.tanh(u), logp

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(obs, deterministic)


class TwinQ(nn.Module):
    """Two soft Q(state, joint action) networks."""

    def __init__(self, inputs: int, hidden: list[int]) -> None:
        super().__init__()
        self.q1, self.q2 = _mlp(inputs, hidden, 1), _mlp(inputs, hidden, 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([state, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def soft_target(reward: torch.Tensor, discount: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor,
                next_logp: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """``r_n + gamma^k (1 - terminated) (min Q'(s', a') - alpha * sum_i log pi_i(a'_i))``: the soft
    n-step target (``next_q`` the min of the twin targets, ``next_logp`` summed over agents)."""
    return reward + discount * (1.0 - terminated) * (next_q - alpha * next_logp)


def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source``, parameter by parameter."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(1.0 - tau).add_(s, alpha=tau)


def temperature_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """SAC's temperature loss ``-log_alpha * (log pi + target_entropy)`` (mean): its gradient lowers
    alpha when the entropy is above the target and raises it below."""
    return -(log_alpha * (logp.detach() + target_entropy)).mean()


class HASAC:
    """Sequential soft actor-critic updates from a replay buffer."""

    off_policy = True
    core_advantages = False  # no V(state) critic: the core computes no advantages
    action_kinds = ("box",)   # the conformance kit checks it on box actions only

    def __init__(self, task: Any, builder: Any, config: Any) -> None:
        if any(s.kind != "box" for s in task.action_spaces):
            raise HarnessError(f"hasac needs box actions; {config.task} has discrete ones (for MPE: env.continuous=true)")
        unused = (f"network={config.network!r}" if config.network != "mlp" else
                  "network.layer_norm=false" if not dict(config.network_options or {}).get("layer_norm", True) else "")
        if unused:
            raise HarnessError(f"scheme 'hasac' builds its own networks (squashed-Gaussian actors and twin Q critics "
                               f"of hidden_sizes); {unused} would not be used: leave the network at mlp's defaults")
        self.cfg, opts = config, dict(config.scheme_options)
        self.opts = opts
        self.n_agents = len(task.agents)
        hidden = list(config.hidden_sizes)
        self.actors = [SquashedGaussianActor(d, s, hidden) for d, s in zip(task.obs_dims, task.action_spaces)]
        self.actor_optimizers = [torch.optim.Adam(a.parameters(), lr=config.lr) for a in self.actors]
        joint = sum(s.n for s in task.action_spaces)
        self.critic = TwinQ(task.state_dim + joint, hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.target_entropy = [-float(s.n) for s in task.action_spaces]
        start = 0.0 if opts["auto_alpha"] else math.log(opts["alpha"])  # learnt: from alpha = 1, as HARL
        self.log_alpha = [torch.tensor([start], requires_grad=True) for _ in range(self.n_agents + 1)]  # agents, critic
        self.alpha_optimizers = [torch.optim.Adam([la], lr=opts["alpha_lr"]) for la in self.log_alpha]
        self.value_norm = ValueNorm() if config.value_norm else None
        self.rng = np.random.default_rng([config.seed, 211])
        self.replay_capacity, self.warmup_steps = opts["buffer_size"], opts["warmup_steps"]
        self.save_replay = opts["save_replay"]
        self.device = torch.device("cpu")

    @staticmethod
    def check_options(opts: dict[str, Any]) -> None:
        for key in ("buffer_size", "batch_size", "n_step"):
            if opts[key] < 1:
                raise HarnessError(f"scheme.{key}={opts[key]} must be >= 1")
        if not 0 < opts["polyak"] <= 1:
            raise HarnessError(f"scheme.polyak={opts['polyak']} must be in (0, 1]")
        if not opts["alpha"] > 0 or opts["warmup_steps"] < 0 or opts["update_per_train"] <= 0:
            raise HarnessError("scheme.alpha and scheme.update_per_train must be > 0, scheme.warmup_steps >= 0")

    def to(self, device: torch.device) -> None:
        """Put every network, the temperatures and the normaliser on ``device`` (samples follow)."""
        self.device = torch.device(device)
        for m in [*self.actors, self.critic, self.target_critic, self.value_norm]:
            if m is not None:
                m.to(self.device)
        with torch.no_grad():
            for la in self.log_alpha:
                la.data = la.data.to(self.device)

    def alpha(self, i: int) -> torch.Tensor:
        """Agent ``i``'s temperature (``i = n_agents``: the critic's)."""
        return self.log_alpha[i].detach().exp()[0]

    # -- one gradient update -------------------------------------------------------------------
    def _critic_step(self, b: Any) -> dict[str, float]:
        with torch.no_grad():
            nxt = [a.sample(o) for a, o in zip(self.actors, b.next_obs)]
            q1, q2 = self.target_critic(b.next_states, torch.cat([x for x, _ in nxt], dim=-1))
            next_q = torch.min(q1, q2)
            if self.value_norm is not None:
                next_q = self.value_norm.denormalize(next_q)
            target = soft_target(b.rewards, b.discounts, b.terminated, next_q, sum(lp for _, lp in nxt),
                                 self.alpha(self.n_agents))
            if self.value_norm is not None:
                self.value_norm.update(target)
                target = self.value_norm.normalize(target)
        q1, q2 = self.critic(b.states, torch.cat(b.actions, dim=-1))
        if self.opts["huber"]:
            delta = self.cfg.huber_delta
            loss = F.huber_loss(q1, target, delta=delta) + F.huber_loss(q2, target, delta=delta)
        else:
            loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return {"critic_loss": loss.item(), "q": torch.min(q1, q2).detach().mean().item()}

    def _actor_steps(self, b: Any) -> dict[str, float]:
        self.critic.requires_grad_(False)
        with torch.no_grad():
            fresh = [a.sample(o) for a, o in zip(self.actors, b.obs)]
        actions, logps = [x for x, _ in fresh], [lp for _, lp in fresh]
        order = list(range(self.n_agents)) if self.cfg.fixed_order else [int(i) for i in self.rng.permutation(self.n_agents)]
        total = 0.0
        for i in order:
            actions[i], logps[i] = self.actors[i].sample(b.obs[i])
            q1, q2 = self.critic(b.states, torch.cat(actions, dim=-1))
            loss = -(torch.min(q1, q2) - self.alpha(i) * logps[i]).mean()
            self.actor_optimizers[i].zero_grad(set_to_none=True)
            loss.backward()
            self.actor_optimizers[i].step()
            total += loss.item()
            if self.opts["auto_alpha"]:
                self._temperature_step(i, logps[i], self.target_entropy[i])
            with torch.no_grad():  # the next agents see this agent's new policy
                actions[i], logps[i] = self.actors[i].sample(b.obs[i])
        self.critic.requires_grad_(True)
        if self.opts["auto_alpha"]:
            self._temperature_step(self.n_agents, sum(logps), sum(self.target_entropy))
        return {"actor_loss": total / self.n_agents}

    def _temperature_step(self, i: int, logp: torch.Tensor, target_entropy: float) -> None:
        loss = temperature_loss(self.log_alpha[i], logp, target_entropy)
        self.alpha_optimizers[i].zero_grad(set_to_none=True)
        loss.backward()
        self.alpha_optimizers[i].step()

    def update(self, replay: Any) -> dict[str, float]:
        """``update_per_train x rollout_length`` updates, each critic, actors, target critics."""
        updates = max(1, round(self.opts["update_per_train"] * self.cfg.rollout_length))
        sums: dict[str, float] = {}
        for _ in range(updates):
            b = replay.sample(self.opts["batch_size"], self.opts["n_step"], self.cfg.gamma, self.rng, self.device)
            for k, v in {**self._critic_step(b), **self._actor_steps(b)}.items():
                sums[k] = sums.get(k, 0.0) + v
            polyak(self.target_critic, self.critic, self.opts["polyak"])
        metrics = {k: v / updates for k, v in sums.items()}
        metrics["alpha"] = float(self.alpha(0))
        metrics["updates"] = float(updates)
        return metrics

    # -- learning rates, state ------------------------------------------------------------------
    def set_lr_fraction(self, frac: float) -> None:
        for opt in self.actor_optimizers:
            for g in opt.param_groups:
                g["lr"] = self.cfg.lr * frac
        for g in self.critic_optimizer.param_groups:
            g["lr"] = self.cfg.critic_lr * frac

    def policy_state_dict(self) -> dict[str, Any]:
        """The actors alone: what acting needs (``best.pt``)."""
        return {"actors": [a.state_dict() for a in self.actors]}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        for a, s in zip(self.actors, state["actors"]):
            a.load_state_dict(s)

    def state_dict(self) -> dict[str, Any]:
        return {**self.policy_state_dict(),
                "actor_optimizers": [o.state_dict() for o in self.actor_optimizers],
                "critic": self.critic.state_dict(), "target_critic": self.target_critic.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "log_alpha": [la.detach().clone() for la in self.log_alpha],
                "alpha_optimizers": [o.state_dict() for o in self.alpha_optimizers],
                "value_norm": self.value_norm.state_dict() if self.value_norm is not None else None,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        for o, s in zip(self.actor_optimizers, state["actor_optimizers"]):
            o.load_state_dict(s)
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        with torch.no_grad():
            for la, saved in zip(self.log_alpha, state["log_alpha"]):
                la.copy_(saved)
        for o, s in zip(self.alpha_optimizers, state["alpha_optimizers"]):
            o.load_state_dict(s)
        if self.value_norm is not None:
            self.value_norm.load_state_dict(state["value_norm"])
        self.rng.bit_generator.state = state["rng"]


@hookimpl
def register_schemes(register):
    register("hasac", HASAC, options=OPTIONS,
             # a conformance check trains 100 steps: warm up on 50, then a few small updates
             kit={"scheme.warmup_steps": 50, "scheme.batch_size": 32, "scheme.update_per_train": 0.1},
             description="HASAC: sequential soft actor-critic from a replay buffer (box actions)")
