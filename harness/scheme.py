"""The base class of on-policy update schemes: actors, the shared V(state) critic and its update.

A scheme plugin subclasses :class:`OnPolicyScheme` and overrides what it changes:

- ``order()``: the order in which actor groups are updated; ``sequential``: whether the HAPPO
  factor M is carried from one group to the next;
- ``surrogate(ratio, advantages, logp)``: the policy term each actor step maximises (PPO's clipped
  surrogate by default) and ``actor_epochs()``: how many passes over the batch (``ppo_epochs``);
- ``train_group(group, obs, actions, old_logp, advantages)``: one group's whole update (HATRPO
  replaces the Adam epochs with a trust-region step);
- ``make_groups``: how agents map to actors (parameter sharing); a group that shares one actor
  between several agents sets ``agent_ids`` so the actor sees which agent it acts for;
- ``joint_ratio = True`` with ``joint_surrogate(ratio, others, advantages, logp)``: every actor
  trained together, each agent's surrogate given the other agents' current ratios on the same rows,
  detached (CoPPO-style schemes; :mod:`harness.joint`).

:data:`PPO_SEARCH_SPACE` is the PPO family's default sweep space, registered with the schemes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.joint import train_jointly
from harness.ppo import ActorGroup, Batch, clipped_surrogate, train_actor, train_critic, update_actors
from harness.value_norm import ValueNorm


# The default search space of the PPO-family schemes (HAPPO, MAPPO): ranges around HARL's defaults
# and tuned MaMuJoCo values. Registered by the scheme plugins as ``search_space=``.
PPO_SEARCH_SPACE: dict[str, Any] = {
    "lr": {"low": 1e-4, "high": 2e-3, "log": True},
    "critic_lr": {"low": 1e-4, "high": 2e-3, "log": True},
    "clip": {"choices": [0.05, 0.1, 0.2, 0.3]},
    "ppo_epochs": {"low": 3, "high": 15},
    "critic_epochs": {"low": 3, "high": 15},
    "entropy_coef": {"choices": [0.0, 0.001, 0.01, 0.05]},
    "gae_lambda": {"low": 0.9, "high": 0.99},
    "hidden_sizes": {"choices": ["64,64", "128,128", "256,256", "128,128,128"]},
}


def core_advantages(scheme: Any) -> bool:
    """Whether the core computes ``scheme``'s advantages: its ``core_advantages``, or the earlier name
    ``state_critic`` where a scheme sets only that (default True)."""
    # The most derived setting wins: the object's own, then its class's, then the bases'.
    for found in [getattr(scheme, "__dict__", {}), *(vars(k) for k in type(scheme).__mro__)]:
        for name in ("core_advantages", "state_critic"):
            if name in found:
                return bool(getattr(scheme, name))  # a property or descriptor is evaluated
    return True


def policy_state(scheme: Any) -> dict[str, Any]:
    """What acting needs of ``scheme`` (``best.pt``, the absolute metric): its ``policy_state_dict()``
    where it has one (an off-policy scheme's actors without its critics' targets and optimisers), else
    its whole ``state_dict()``."""
    own = getattr(scheme, "policy_state_dict", None)
    return own() if own is not None else scheme.state_dict()


def load_policy_state(scheme: Any, state: dict[str, Any]) -> None:
    """Load a :func:`policy_state` (or a whole state, which holds it) into ``scheme``."""
    own = getattr(scheme, "load_policy_state_dict", None)
    (own if own is not None else scheme.load_state_dict)(state)


class OnPolicyScheme:
    """Actors (one group per agent by default), a centralised critic, and the PPO-style update."""

    sequential: bool = False
    # True: every actor trains together, each agent's joint_surrogate seeing the others' ratios (harness.joint).
    joint_ratio: bool = False
    # True: the core computes the batch's advantages (GAE) from this scheme's V(state) critic (``values``).
    # False: the batch carries the raw rollout and the scheme computes its own (e.g. per-agent critics).
    # ``state_critic`` is the earlier name of this flag and is still honoured (see core_advantages()).
    core_advantages: bool = True

    def __init__(self, task: Any, builder: Any, config: Any) -> None:
        self.cfg = config
        self.n_agents = len(task.agents)
        self._obs_dims = [int(d) for d in task.obs_dims]
        self._obs_has_id = bool(getattr(task, "obs_has_agent_id", False))
        self.groups: list[ActorGroup] = self.make_groups(task, builder)
        self.actors: list[torch.nn.Module] = [None] * self.n_agents  # type: ignore[list-item]
        self._group_of: list[ActorGroup] = [None] * self.n_agents  # type: ignore[list-item]
        for g in self.groups:
            for i in g.agents:
                self.actors[i] = g.actor
                self._group_of[i] = g
        self._with_ids = any(g.agent_ids for g in self.groups)
        self.critic = builder.critic(task.state_dim, config)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, eps=config.adam_eps)
        self.value_norm = ValueNorm() if config.value_norm else None
        self.rng = np.random.default_rng([config.seed, 101])
        self.gen = torch.Generator().manual_seed(config.seed * 7919 + 13)

    def make_groups(self, task: Any, builder: Any) -> list[ActorGroup]:
        """One actor per agent, each with its own observation and action space."""
        groups = []
        for i in range(len(task.agents)):
            actor = builder.actor(task.obs_dims[i], task.action_spaces[i], self.cfg)
            opt = torch.optim.Adam(actor.parameters(), lr=self.cfg.lr, eps=self.cfg.adam_eps)
            groups.append(ActorGroup(actor, opt, [i]))
        return groups

    def actor_inputs(self, obs: list[np.ndarray]) -> list[np.ndarray]:
        """Every agent's observations ``[B, d_i]`` as its actor takes them (with the agent's one-hot
        identity appended where the actor is shared; the list itself when no actor needs that)."""
        if not self._with_ids:
            return obs
        return [g.actor_input(i, o) for i, (g, o) in enumerate(zip(self._group_of, obs))]

    def actor_layout(self) -> list[dict[str, Any]]:
        """Which agents each actor acts for and what it takes as input (recorded in config.json)."""
        return [{"agents": list(g.agents), "shared": len(g.agents) > 1,
                 "agent_id": ("one-hot appended" if g.agent_ids else "not needed" if len(g.agents) == 1
                              else "in the observation" if self._obs_has_id else "none"),
                 "input_dim": self._obs_dims[g.agents[0]] + g.agent_ids}
                for g in self.groups]

    def order(self) -> list[int]:
        """The order in which groups are updated this iteration."""
        return list(range(len(self.groups)))

    def random_order(self) -> list[int]:
        """A fresh random permutation of the agents from the run's seeded generator, or index order
        with ``fixed_order`` (HAPPO's and HATRPO's ``order``)."""
        if self.cfg.fixed_order:
            return list(range(self.n_agents))
        return [int(i) for i in self.rng.permutation(self.n_agents)]

    def surrogate(self, ratio: torch.Tensor, advantages: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
        """The policy term an actor step maximises on a minibatch (a scalar): PPO's clipped surrogate.
        ``ratio`` = pi_new/pi_old, ``advantages`` (times the factor M in sequential schemes) and the
        new ``logp`` are ``[b]`` tensors; the entropy bonus (``entropy_coef``) is added by the core."""
        return clipped_surrogate(ratio, advantages, self.cfg.clip)

    def joint_surrogate(self, ratio: torch.Tensor, others: torch.Tensor, advantages: torch.Tensor,
                        logp: torch.Tensor) -> torch.Tensor:
        """With ``joint_ratio``: the policy term of one agent's step, from its own ``ratio`` (with
        gradient) and ``others``, the product of the other agents' current ratios on the same rows
        (detached); by default ``surrogate`` on the joint ratio ``ratio * others``."""
        return self.surrogate(ratio * others, advantages, logp)

    def actor_epochs(self) -> int:
        """Passes over the batch per actor update (``ppo_epochs``)."""
        return self.cfg.ppo_epochs

    def train_group(self, group: ActorGroup, obs: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                    advantages: torch.Tensor) -> dict[str, float]:
        """One actor group's update on its agents' data (agents stacked along the batch): Adam epochs
        on ``surrogate`` (see :func:`harness.ppo.train_actor`). Returns float metrics."""
        return train_actor(group, obs, actions, old_logp, advantages, self.cfg, self.gen, self.surrogate,
                           self.actor_epochs())

    def update(self, batch: Batch) -> dict[str, Any]:
        """Update every actor group (in ``order()``, each with ``train_group``; all together with
        ``joint_ratio``), then the critic."""
        if self.joint_ratio:
            metrics = train_jointly(self.groups, batch, self.cfg, self.gen, self.joint_surrogate, self.actor_epochs())
        else:
            metrics = update_actors(self.groups, self.order(), self.sequential, batch, self.train_group)
        metrics.update(train_critic(self.critic, self.critic_optimizer, self.value_norm, batch, self.cfg, self.gen))
        return metrics

    @torch.no_grad()
    def values(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Critic outputs (normalised units) and the values they stand for (return units)."""
        raw = self.critic(states)
        return raw, (self.value_norm.denormalize(raw) if self.value_norm is not None else raw)

    def set_lr_fraction(self, frac: float) -> None:
        """Scale both learning rates to ``frac`` of their configured values (linear decay)."""
        for g in self.groups:
            for pg in g.optimizer.param_groups:
                pg["lr"] = self.cfg.lr * frac
        for pg in self.critic_optimizer.param_groups:
            pg["lr"] = self.cfg.critic_lr * frac

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly."""
        return {
            "actors": [g.actor.state_dict() for g in self.groups],
            "actor_optimizers": [g.optimizer.state_dict() for g in self.groups],
            "critic": self.critic.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "value_norm": self.value_norm.state_dict() if self.value_norm is not None else None,
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for g, a, o in zip(self.groups, state["actors"], state["actor_optimizers"]):
            g.actor.load_state_dict(a)
            g.optimizer.load_state_dict(o)
        self.critic.load_state_dict(state["critic"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.value_norm is not None:
            self.value_norm.load_state_dict(state["value_norm"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
