"""Update scheme ``matd3``: multi-agent TD3 (Ackermann et al., 2019), an off-policy example.

Written against the public contract only, as a third party would: the core fills the replay buffer,
acts uniformly at random for ``scheme.warmup_steps`` env steps, and calls ``update(replay)`` once per
iteration. Each iteration makes ``scheme.update_per_train x rollout_length`` gradient updates on
``scheme.batch_size`` sampled transitions:

* **critic**: twin Q(state, joint action), squared error to
  ``r_n + gamma^k (1 - terminated) min Q'(s', a')``, where ``a'`` are the target actors' actions at the
  next observations with clipped Gaussian noise (``policy_noise``, ``noise_clip``: target policy
  smoothing), clipped to each box;
* **actors**, every ``policy_delay`` critic updates, all at once: agent ``i`` maximises
  ``Q1(s, a)`` where ``a`` holds its own action with gradients and the other agents' current actions,
  detached; then the target actors and critics move towards the live ones (``polyak``).

Actors are deterministic (``tanh`` scaled to the box); exploration is theirs: ``act`` adds Gaussian
noise of ``expl_noise`` times the box's half-width unless asked to act deterministically. Box actions
only.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.errors import HarnessError
from harness.options import Option

OPTIONS = {
    "buffer_size": Option(int, 1_000_000, "replay buffer capacity, in transitions"),
    "batch_size": Option(int, 1000, "transitions per gradient update"),
    "warmup_steps": Option(int, 10_000, "env steps of uniform random actions before the first update"),
    "update_per_train": Option(float, 1.0, "gradient updates per env step of each copy"),
    "n_step": Option(int, 1, "steps folded into each sampled return"),
    "polyak": Option(float, 0.005, "weight of the live networks in each target's Polyak average"),
    "policy_delay": Option(int, 2, "critic updates per actor update"),
    "policy_noise": Option(float, 0.2, "target smoothing noise, in half-widths of the box"),
    "noise_clip": Option(float, 0.5, "bound of the target smoothing noise, in half-widths"),
    "expl_noise": Option(float, 0.1, "exploration noise when acting, in half-widths of the box"),
    "save_replay": Option(bool, False, "keep the replay buffer in checkpoints (exact resume)"),
}


def _mlp(inputs: int, hidden: list[int], outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inputs, h), nn.ReLU()]
        inputs = h
    return nn.Sequential(*layers, nn.Linear(inputs, outputs))


class DeterministicActor(nn.Module):
    """``mid + radius * tanh(net(obs))``: a deterministic policy on the box ``[low, high]``."""

    def __init__(self, obs_dim: int, space: Any, hidden: list[int], expl_noise: float) -> None:
        super().__init__()
        self.net = _mlp(obs_dim, hidden, space.n)
        low = torch.as_tensor(space.low, dtype=torch.float32)
        high = torch.as_tensor(space.high, dtype=torch.float32)
        self.register_buffer("mid", (high + low) / 2)
        self.register_buffer("radius", (high - low) / 2)
        self.expl_noise = expl_noise

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mid + self.radius * torch.tanh(self.net(obs))

    def noisy(self, action: torch.Tensor, scale: float, bound: float | None = None) -> torch.Tensor:
        """``action`` plus Gaussian noise of ``scale`` half-widths (clipped to ``bound`` half-widths),
        kept inside the box."""
        noise = torch.randn_like(action) * scale
        if bound is not None:
            noise = noise.clamp(-bound, bound)
        return torch.max(torch.min(action + noise * self.radius, self.mid + self.radius), self.mid - self.radius)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions ``[B, d]`` and log-probabilities ``[B]`` (zeros: a deterministic policy has none)."""
        with torch.no_grad():
            a = self(obs)
            if not deterministic:
                a = self.noisy(a, self.expl_noise)
        return a, a.new_zeros(a.shape[0])


class TwinQ(nn.Module):
    """Two Q(state, joint action) networks."""

    def __init__(self, inputs: int, hidden: list[int]) -> None:
        super().__init__()
        self.q1, self.q2 = _mlp(inputs, hidden, 1), _mlp(inputs, hidden, 1)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([state, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau source``."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(1.0 - tau).add_(s, alpha=tau)


class MATD3:
    """Twin-critic deterministic actors trained together from a replay buffer."""

    off_policy = True
    core_advantages = False
    action_kinds = ("box",)

    def __init__(self, task: Any, builder: Any, config: Any) -> None:
        if any(s.kind != "box" for s in task.action_spaces):
            raise HarnessError(f"matd3 needs box actions; {config.task} has discrete ones (for MPE: env.continuous=true)")
        self.cfg, self.opts = config, dict(config.scheme_options)
        hidden = list(config.hidden_sizes)
        self.actors = [DeterministicActor(d, s, hidden, self.opts["expl_noise"])
                       for d, s in zip(task.obs_dims, task.action_spaces)]
        self.target_actors = [copy.deepcopy(a).requires_grad_(False) for a in self.actors]
        self.actor_optimizers = [torch.optim.Adam(a.parameters(), lr=config.lr) for a in self.actors]
        self.critic = TwinQ(task.state_dim + sum(s.n for s in task.action_spaces), hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.rng = np.random.default_rng([config.seed, 421])
        self.critic_updates = 0
        # what the core reads: the buffer's size, the warm-up, whether checkpoints keep the buffer
        self.replay_capacity, self.warmup_steps = self.opts["buffer_size"], self.opts["warmup_steps"]
        self.save_replay = self.opts["save_replay"]
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> None:
        """Put every network on ``device`` (sampled transitions follow)."""
        self.device = torch.device(device)
        for m in [*self.actors, *self.target_actors, self.critic, self.target_critic]:
            m.to(self.device)

    @staticmethod
    def check_options(opts: dict[str, Any]) -> None:
        for key in ("buffer_size", "batch_size", "n_step", "policy_delay"):
            if opts[key] < 1:
                raise HarnessError(f"scheme.{key}={opts[key]} must be >= 1")
        if not 0 < opts["polyak"] <= 1:
            raise HarnessError(f"scheme.polyak={opts['polyak']} must be in (0, 1]")

    def _critic_step(self, b: Any) -> dict[str, float]:
        o = self.opts
        with torch.no_grad():
            nxt = [t.noisy(t(x), o["policy_noise"], o["noise_clip"]) for t, x in zip(self.target_actors, b.next_obs)]
            q1, q2 = self.target_critic(b.next_states, torch.cat(nxt, dim=-1))
            target = b.rewards + b.discounts * (1.0 - b.terminated) * torch.min(q1, q2)
        q1, q2 = self.critic(b.states, torch.cat(b.actions, dim=-1))
        loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return {"value_loss": loss.item(), "q": q1.detach().mean().item()}

    def _actor_step(self, b: Any) -> float:
        self.critic.requires_grad_(False)
        with torch.no_grad():
            current = [a(x) for a, x in zip(self.actors, b.obs)]
        total = 0.0
        for i, actor in enumerate(self.actors):
            joint = current[:i] + [actor(b.obs[i])] + current[i + 1:]
            loss = -self.critic(b.states, torch.cat(joint, dim=-1))[0].mean()
            self.actor_optimizers[i].zero_grad(set_to_none=True)
            loss.backward()
            self.actor_optimizers[i].step()
            total += loss.item()
        self.critic.requires_grad_(True)
        for t, a in zip(self.target_actors, self.actors):
            polyak(t, a, self.opts["polyak"])
        polyak(self.target_critic, self.critic, self.opts["polyak"])
        return total / len(self.actors)

    def update(self, replay: Any) -> dict[str, float]:
        """``update_per_train x rollout_length`` critic updates, the actors every ``policy_delay``."""
        o = self.opts
        updates = max(1, round(o["update_per_train"] * self.cfg.rollout_length))
        sums = {"value_loss": 0.0, "q": 0.0}
        actor_losses = []
        for _ in range(updates):
            b = replay.sample(o["batch_size"], o["n_step"], self.cfg.gamma, self.rng, self.device)
            for k, v in self._critic_step(b).items():
                sums[k] += v
            self.critic_updates += 1
            if self.critic_updates % o["policy_delay"] == 0:
                actor_losses.append(self._actor_step(b))
        metrics = {k: v / updates for k, v in sums.items()}
        if actor_losses:
            metrics["policy_loss"] = float(np.mean(actor_losses))
        return metrics

    def set_lr_fraction(self, frac: float) -> None:
        for opt in self.actor_optimizers:
            for g in opt.param_groups:
                g["lr"] = self.cfg.lr * frac
        for g in self.critic_optimizer.param_groups:
            g["lr"] = self.cfg.critic_lr * frac

    def policy_state_dict(self) -> dict[str, Any]:
        """The actors alone (``best.pt``, evaluation)."""
        return {"actors": [a.state_dict() for a in self.actors]}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        for a, s in zip(self.actors, state["actors"]):
            a.load_state_dict(s)

    def state_dict(self) -> dict[str, Any]:
        return {**self.policy_state_dict(),
                "target_actors": [t.state_dict() for t in self.target_actors],
                "actor_optimizers": [o.state_dict() for o in self.actor_optimizers],
                "critic": self.critic.state_dict(), "target_critic": self.target_critic.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "critic_updates": self.critic_updates, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        for t, s in zip(self.target_actors, state["target_actors"]):
            t.load_state_dict(s)
        for o, s in zip(self.actor_optimizers, state["actor_optimizers"]):
            o.load_state_dict(s)
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.critic_updates = state["critic_updates"]
        self.rng.bit_generator.state = state["rng"]


@hookimpl
def register_schemes(register):
    register("matd3", MATD3, options=OPTIONS,
             # the conformance kit trains 100 steps: warm up on 50, then a few small updates
             kit={"scheme.warmup_steps": 50, "scheme.batch_size": 32, "scheme.update_per_train": 0.1},
             description="MATD3: twin-critic deterministic actors from a replay buffer (box actions)")
