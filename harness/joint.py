"""Joint-ratio actor updates: every agent's surrogate sees the other agents' current ratios.

A scheme that sets ``joint_ratio = True`` (CoPPO-style schemes, Wu et al. 2021) has all its actors
trained together: each epoch draws minibatches of the same rows (whole chunks for recurrent actors)
for every agent, scores every agent's ratio pi_new/pi_old there with the current weights, and gives
each agent's ``joint_surrogate(ratio, others, advantages, logp)`` its own ratio (with gradient) and
``others``, the product of the other agents' ratios on the same rows, detached: an agent's step moves
its own policy only. The losses are summed and every actor steps once per minibatch, its gradient
norm clipped on its own.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from harness.batch import Batch
from harness.errors import HarnessError
from harness.ppo import ActorGroup, minibatches
from harness.sequences import Sequences, arrange, chunk_length, hidden_size

#: ``joint_surrogate(ratio, others, advantages, logp) -> scalar``, all ``[b]`` tensors but the result.
JointSurrogate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class _AgentData:
    """One agent's rows as its group's actor takes them, laid out as every agent's are."""

    def __init__(self, group: ActorGroup, i: int, batch: Batch, index: torch.Tensor | None,
                 sequences: Sequences | None) -> None:
        self.group, self.actor = group, group.actor
        self.obs = group.actor_input(i, batch.obs[i])
        self.actions, self.old_logp, self.adv = batch.actions[i], batch.old_logp[i], batch.advantages
        if index is not None:
            self.obs, self.actions = self.obs[index], self.actions[index]
            self.old_logp, self.adv = self.old_logp[index], self.adv[index]
        self.sequences = sequences if hidden_size(self.actor) else None

    def evaluate(self, rows: Any, chunks: Any) -> tuple[torch.Tensor, torch.Tensor]:
        kw = self.sequences.inputs(chunks) if self.sequences is not None else {}
        return self.actor.evaluate(self.obs[rows], self.actions[rows], **kw)


def _layout(groups: Sequence[ActorGroup], batch: Batch) -> tuple[torch.Tensor | None, list[Sequences | None]]:
    """One row order for every agent: chunk after chunk when any actor is recurrent (all recurrent
    actors must then train on chunks of one length), else the batch's own."""
    lengths = {chunk_length(g.actor) for g in groups if hidden_size(g.actor)}
    if not lengths or batch.hidden is None:
        return None, [None] * len(batch.obs)
    if len(lengths) > 1:
        raise HarnessError(f"a joint-ratio update needs one chunk_length for every recurrent actor, got {sorted(lengths)}")
    length = lengths.pop()
    index, seqs = None, []
    for i in range(len(batch.obs)):
        if batch.hidden[i] is None:
            seqs.append(None)
            continue
        index, seq = arrange([i], batch, length, batch.states.device)
        seqs.append(seq)
    if index is None:  # every agent feed-forward after all
        return None, seqs
    return index, seqs


def train_jointly(groups: Sequence[ActorGroup], batch: Batch, cfg: Any, gen: torch.Generator,
                  joint_surrogate: JointSurrogate, epochs: int) -> dict[str, Any]:
    """``epochs`` passes of joint Adam steps on ``cfg.actor_minibatches`` minibatches (module docstring);
    each agent's loss is ``-joint_surrogate - cfg.entropy_coef * entropy``. Returns metrics averaged
    over agents and steps (``others_mean``: the mean of the others' product)."""
    index, seqs = _layout(groups, batch)
    agents = []
    for group in groups:
        for i in group.agents:
            agents.append(_AgentData(group, i, batch, index, seqs[i]))
    chunked = next((a.sequences for a in agents if a.sequences is not None), None)
    rows = batch.advantages.shape[0]
    stats = {"policy_loss": 0.0, "entropy": 0.0, "ratio": 0.0, "clip_frac": 0.0, "others_mean": 0.0,
             "actor_grad_norm": 0.0}
    steps = 0
    for _ in range(epochs):
        units = minibatches(chunked.count if chunked is not None else rows, cfg.actor_minibatches, gen)
        for unit in units:
            idx, chunks = (chunked.rows(unit), unit) if chunked is not None else (unit, slice(None))
            scored = [a.evaluate(idx, chunks) for a in agents]
            ratios = [torch.exp(lp - a.old_logp[idx]) for (lp, _), a in zip(scored, agents)]
            loss = 0.0
            for k, (a, (lp, ent), ratio) in enumerate(zip(agents, scored, ratios)):
                others = torch.ones_like(ratio)
                for j, r in enumerate(ratios):
                    if j != k:
                        others = others * r.detach()
                surr = joint_surrogate(ratio, others, a.adv[idx], lp)
                loss = loss - surr - cfg.entropy_coef * ent.mean()
                with torch.no_grad():
                    n = len(agents)
                    stats["policy_loss"] += -surr.item() / n
                    stats["entropy"] += ent.mean().item() / n
                    stats["ratio"] += ratio.mean().item() / n
                    stats["clip_frac"] += ((ratio - 1).abs() > cfg.clip).float().mean().item() / n
                    stats["others_mean"] += others.mean().item() / n
            for g in groups:
                g.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for g in groups:
                stats["actor_grad_norm"] += float(nn.utils.clip_grad_norm_(g.actor.parameters(), cfg.max_grad_norm)) / len(groups)
                g.optimizer.step()
            steps += 1
    return {k: v / max(steps, 1) for k, v in stats.items()}
