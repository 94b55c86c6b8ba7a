"""The PPO machinery HAPPO and MAPPO share: clipped actor epochs, the sequential factor, the critic.

HAPPO and MAPPO differ only in the agent order and in whether the factor M is carried from one
agent to the next (``update_actors(order, sequential)``); everything else lives here once. A scheme
varies the actor step through ``train_actor``'s ``surrogate`` and ``epochs`` (HAA2C) or replaces it
(HATRPO's trust-region step), through :class:`harness.scheme.OnPolicyScheme`'s override points.

A group whose actor is recurrent (:mod:`harness.sequences`) receives its data chunk after chunk and
trains on minibatches of whole chunks; its :meth:`ActorGroup.evaluate` and
:meth:`ActorGroup.distribution` pass each chunk's hidden state and episode starts to the actor, so a
scheme's step (``surrogate``, HATRPO's KL) works alike for both kinds of actor, and the sequential
factor M is carried over the same chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from harness.batch import Batch
from harness.sequences import Sequences, arrange, chunk_length, hidden_size
from harness.value_norm import ValueNorm


def one_hot_id(rows: int, index: int, n: int) -> np.ndarray:
    """``[rows, n]`` float32 rows that are one-hot at ``index``: the agent identity a shared actor sees."""
    ids = np.zeros((rows, n), np.float32)
    ids[:, index] = 1.0
    return ids


@dataclass
class ActorGroup:
    """An actor, its optimiser and the agents it acts for (one agent, or all under sharing).

    ``agent_ids`` > 0: the actor is shared and sees each agent's observation with that agent's
    one-hot identity (of width ``agent_ids``, the number of agents) appended, so it can tell agents apart.
    ``sequences``: while a recurrent actor's group is updated, the chunks its data is laid out in.
    """

    actor: nn.Module
    optimizer: torch.optim.Optimizer
    agents: list[int]
    agent_ids: int = 0
    sequences: Sequences | None = None

    def parameters(self) -> Any:
        """The actor's parameters."""
        return self.actor.parameters()

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor,
                 chunks: torch.Tensor | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's log-probabilities and entropies of ``actions``; for a recurrent actor ``obs`` are
        the rows of ``chunks`` (all by default) of its :attr:`sequences`."""
        if self.sequences is None:
            return self.actor.evaluate(obs, actions)
        return self.actor.evaluate(obs, actions, **self.sequences.inputs(chunks))

    def distribution(self, obs: torch.Tensor, chunks: torch.Tensor | slice = slice(None)) -> Any:
        """The actor's action distributions at ``obs`` (as :meth:`evaluate` takes them)."""
        if self.sequences is None:
            return self.actor.distribution(obs)
        return self.actor.distribution(obs, **self.sequences.inputs(chunks))

    def minibatches(self, rows: int, count: int, gen: torch.Generator) -> list[tuple[Any, Any]]:
        """``count`` minibatches over the group's ``rows`` rows as ``(rows, chunks)`` index pairs: random
        rows for a feed-forward actor, random whole chunks for a recurrent one."""
        if self.sequences is None:
            return [(idx, slice(None)) for idx in minibatches(rows, count, gen)]
        return [(self.sequences.rows(c), c) for c in minibatches(self.sequences.count, count, gen)]

    def arrange(self, batch: Batch) -> torch.Tensor | None:
        """Lay a recurrent actor's data out in chunks (setting :attr:`sequences`): the index that
        reorders the stacked rows of :meth:`data`; None for a feed-forward actor."""
        if not hidden_size(self.actor) or batch.hidden is None:
            self.sequences = None
            return None
        index, self.sequences = arrange(self.agents, batch, chunk_length(self.actor), batch.states.device)
        return index

    def actor_input(self, i: int, obs: Any) -> Any:
        """Agent ``i``'s observations ``[B, d]`` (numpy or torch) as this group's actor takes them."""
        if not self.agent_ids:
            return obs
        ids = one_hot_id(obs.shape[0], i, self.agent_ids)
        if isinstance(obs, torch.Tensor):
            return torch.cat([obs, torch.from_numpy(ids).to(obs.device)], dim=-1)
        return np.concatenate([obs, ids], axis=-1)

    def data(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The group's observations, actions and behaviour log-probs, agents stacked along the batch."""
        if len(self.agents) == 1:
            i = self.agents[0]
            return self.actor_input(i, batch.obs[i]), batch.actions[i], batch.old_logp[i]
        cat = torch.cat
        return (cat([self.actor_input(i, batch.obs[i]) for i in self.agents]),
                cat([batch.actions[i] for i in self.agents]), cat([batch.old_logp[i] for i in self.agents]))


def minibatches(n: int, count: int, gen: torch.Generator) -> list[torch.Tensor | slice]:
    """Index sets of ``count`` minibatches over ``n`` samples (the whole batch when ``count`` is 1)."""
    if count == 1:
        return [slice(None)]
    perm = torch.randperm(n, generator=gen)
    return list(perm.chunk(count))


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's clipped surrogate E[min(r * A, clip(r, 1 - eps, 1 + eps) * A)] (a scalar to maximise)."""
    return torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()


#: ``surrogate(ratio, advantages, logp) -> scalar``: the policy term an actor step maximises, from the
#: minibatch's ratios pi_new/pi_old ``[b]``, (factor-weighted) advantages ``[b]`` and log-probs ``[b]``.
Surrogate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def train_actor(group: ActorGroup, obs: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                adv: torch.Tensor, cfg: Any, gen: torch.Generator, surrogate: Surrogate | None = None,
                epochs: int | None = None) -> dict[str, float]:
    """``epochs`` (default ``cfg.ppo_epochs``) of Adam steps on ``cfg.actor_minibatches`` minibatches,
    each maximising ``surrogate`` (default: PPO's clipped surrogate with ``cfg.clip``) plus
    ``cfg.entropy_coef`` times the mean entropy, with the gradient norm clipped to ``cfg.max_grad_norm``."""
    stats = {"policy_loss": 0.0, "entropy": 0.0, "ratio": 0.0, "clip_frac": 0.0, "actor_grad_norm": 0.0}
    steps = 0
    for _ in range(cfg.ppo_epochs if epochs is None else epochs):
        for idx, chunks in group.minibatches(obs.shape[0], cfg.actor_minibatches, gen):
            logp, entropy = group.evaluate(obs[idx], actions[idx], chunks)
            ratio = torch.exp(logp - old_logp[idx])
            a = adv[idx]
            surr = clipped_surrogate(ratio, a, cfg.clip) if surrogate is None else surrogate(ratio, a, logp)
            ent = entropy.mean()
            loss = -surr - cfg.entropy_coef * ent
            group.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad = nn.utils.clip_grad_norm_(group.actor.parameters(), cfg.max_grad_norm)
            group.optimizer.step()
            with torch.no_grad():
                stats["policy_loss"] += -surr.item()
                stats["entropy"] += ent.item()
                stats["ratio"] += ratio.mean().item()
                stats["clip_frac"] += ((ratio - 1).abs() > cfg.clip).float().mean().item()
                stats["actor_grad_norm"] += float(grad)
            steps += 1
    return {k: v / max(steps, 1) for k, v in stats.items()}


#: ``train(group, obs, actions, old_logp, advantages) -> metrics``: one actor group's update.
GroupUpdate = Callable[[ActorGroup, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], dict[str, float]]


def update_actors(groups: Sequence[ActorGroup], order: Sequence[int], sequential: bool, batch: Batch,
                  train: GroupUpdate) -> dict[str, Any]:
    """Update the actor groups in ``order``, each with ``train``.

    With ``sequential`` (HAPPO, HATRPO) the advantage of each group is multiplied by the factor
    M = prod of pi_new/pi_old over the groups updated before it; the first sees the raw advantage.
    Without it (MAPPO) every group trains on the raw advantage. A recurrent group's rows are laid
    out chunk after chunk (:meth:`ActorGroup.arrange`), its advantages with them.
    """
    factor = torch.ones_like(batch.advantages)
    per_group = []
    for g in order:
        group = groups[g]
        obs, actions, old_logp = group.data(batch)
        index = group.arrange(batch)
        n = len(group.agents)
        adv = (batch.advantages * factor).repeat(n) if n > 1 else batch.advantages * factor
        if index is not None:
            obs, actions, old_logp, adv = obs[index], actions[index], old_logp[index], adv[index]
        per_group.append(train(group, obs, actions, old_logp, adv))
        if sequential:
            with torch.no_grad():
                new_logp, _ = group.evaluate(obs, actions)
                ratio = torch.exp(new_logp - old_logp)
                if index is not None:  # back to the batch's row order
                    ratio = torch.empty_like(ratio).index_copy_(0, index, ratio)
                factor = factor * ratio
    metrics = {k: sum(m[k] for m in per_group) / len(per_group) for k in per_group[0]}
    metrics["factor_mean"] = factor.mean().item()
    metrics["order"] = " ".join(str(g) for g in order)
    return metrics


def huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    """Elementwise Huber loss."""
    a = x.abs()
    return torch.where(a <= delta, 0.5 * x * x, delta * (a - 0.5 * delta))


def train_critic(critic: nn.Module, optimizer: torch.optim.Optimizer, value_norm: ValueNorm | None,
                 batch: Batch, cfg: Any, gen: torch.Generator) -> dict[str, float]:
    """Critic epochs on the clipped Huber value loss; the normaliser is updated per minibatch."""
    total, grads, steps = 0.0, 0.0, 0
    for _ in range(cfg.critic_epochs):
        for idx in minibatches(batch.states.shape[0], cfg.critic_minibatches, gen):
            values = critic(batch.states[idx])
            old = batch.old_values[idx]
            target = batch.returns[idx]
            if value_norm is not None:
                value_norm.update(target)
                target = value_norm.normalize(target)
            error = target - values
            loss_unclipped = huber(error, cfg.huber_delta)
            if cfg.clipped_value_loss:
                clipped = old + (values - old).clamp(-cfg.clip, cfg.clip)
                loss = torch.max(loss_unclipped, huber(target - clipped, cfg.huber_delta)).mean()
            else:
                loss = loss_unclipped.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads += float(nn.utils.clip_grad_norm_(critic.parameters(), cfg.max_grad_norm))
            optimizer.step()
            total += loss.item()
            steps += 1
    return {"value_loss": total / steps, "critic_grad_norm": grads / steps}
