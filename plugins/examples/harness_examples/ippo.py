"""Update scheme ``ippo``: independent PPO.

Every agent has its own actor and its own critic V_i(o_i) on its local observation, computes its own
GAE advantage from the team reward with that critic, and updates with plain PPO-clip, independently
of the others (no permutation, no HAPPO factor, no centralised critic). Truncated episodes bootstrap
from V_i of the agent's final observation, terminated ones do not.

It declares ``state_critic = False`` so the trainer hands it the raw rollout (``Batch.next_obs``,
``rewards``, ``terminated``, ``truncated``, ``shape``) instead of advantages from a V(state) critic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness import hookimpl
from harness.advantage import gae
from harness.ppo import ActorGroup, Batch, train_actor, train_critic
from harness.scheme import PPO_SEARCH_SPACE
from harness.value_norm import ValueNorm


class IPPO:
    """Independent PPO with per-agent critics on local observations."""

    state_critic = False

    def __init__(self, task: Any, builder: Any, config: Any) -> None:
        self.cfg = config
        n = len(task.agents)
        self.groups: list[ActorGroup] = []
        self.critics: list[torch.nn.Module] = []
        self.critic_optimizers: list[torch.optim.Optimizer] = []
        self.value_norms: list[ValueNorm | None] = []
        for i in range(n):
            actor = builder.actor(task.obs_dims[i], task.action_spaces[i], config)
            self.groups.append(ActorGroup(actor, torch.optim.Adam(actor.parameters(), lr=config.lr,
                                                                  eps=config.adam_eps), [i]))
            critic = builder.critic(task.obs_dims[i], config)  # V_i(o_i): the agent's observation only
            self.critics.append(critic)
            self.critic_optimizers.append(torch.optim.Adam(critic.parameters(), lr=config.critic_lr,
                                                           eps=config.adam_eps))
            self.value_norms.append(ValueNorm() if config.value_norm else None)
        self.actors = [g.actor for g in self.groups]
        self.gen = torch.Generator().manual_seed(config.seed * 7919 + 29)

    def _values(self, i: int, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            raw = self.critics[i](obs)
        vn = self.value_norms[i]
        return raw, (vn.denormalize(raw) if vn is not None else raw)

    def update(self, batch: Batch) -> dict[str, Any]:
        cfg = self.cfg
        T, E = batch.shape
        B = T * E
        rewards = batch.rewards.reshape(T, E)
        term, trunc = batch.terminated.reshape(T, E), batch.truncated.reshape(T, E)
        per_agent = []
        for i, group in enumerate(self.groups):
            raw, vals = self._values(i, torch.cat([batch.obs[i], batch.next_obs[i]]))
            adv, ret = gae(rewards, vals[:B].reshape(T, E), vals[B:].reshape(T, E), term, trunc,
                           cfg.gamma, cfg.gae_lambda)
            adv = adv.reshape(-1)
            adv = (adv - adv.mean()) / (adv.std() + 1e-5) if adv.numel() > 1 else adv - adv.mean()
            m = train_actor(group, batch.obs[i], batch.actions[i], batch.old_logp[i], adv, cfg, self.gen)
            own = batch._replace(states=batch.obs[i], returns=ret.reshape(-1), old_values=raw[:B])
            m.update(train_critic(self.critics[i], self.critic_optimizers[i], self.value_norms[i], own, cfg,
                                  self.gen))
            per_agent.append(m)
        return {k: float(np.mean([m[k] for m in per_agent])) for k in per_agent[0]}

    def set_lr_fraction(self, frac: float) -> None:
        for g in self.groups:
            for pg in g.optimizer.param_groups:
                pg["lr"] = self.cfg.lr * frac
        for opt in self.critic_optimizers:
            for pg in opt.param_groups:
                pg["lr"] = self.cfg.critic_lr * frac

    def state_dict(self) -> dict[str, Any]:
        return {
            "actors": [g.actor.state_dict() for g in self.groups],
            "actor_optimizers": [g.optimizer.state_dict() for g in self.groups],
            "critics": [c.state_dict() for c in self.critics],
            "critic_optimizers": [o.state_dict() for o in self.critic_optimizers],
            "value_norms": [vn.state_dict() if vn is not None else None for vn in self.value_norms],
            "gen": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for g, a, o in zip(self.groups, state["actors"], state["actor_optimizers"]):
            g.actor.load_state_dict(a)
            g.optimizer.load_state_dict(o)
        for c, o, cs, os_ in zip(self.critics, self.critic_optimizers, state["critics"], state["critic_optimizers"]):
            c.load_state_dict(cs)
            o.load_state_dict(os_)
        for vn, s in zip(self.value_norms, state["value_norms"]):
            if vn is not None:
                vn.load_state_dict(s)
        self.gen.set_state(state["gen"])


@hookimpl
def register_schemes(register):
    register("ippo", IPPO, search_space=PPO_SEARCH_SPACE,
             description="IPPO: independent PPO, per-agent critics on local observations")
