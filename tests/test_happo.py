"""HAPPO's numerics: the sequential factor, the permutations, and the one-agent identity."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from harness.config import build_config
from harness.envs import ActionSpace
from harness.ppo import Batch
from harness_plugins.happo import HAPPO
from harness_plugins.mappo import MAPPO
from harness_plugins.mlp import MLPBuilder


def spec(obs_dims, spaces, state_dim=6):
    """The static description a scheme is built from (what a VecTask exposes)."""
    return SimpleNamespace(agents=[f"a{i}" for i in range(len(obs_dims))], obs_dims=obs_dims,
                           action_spaces=spaces, state_dim=state_dim)


def make_batch(scheme, task, B=64, seed=0):
    """Random observations, actions sampled from the current actors, behaviour log-probs from them."""
    g = torch.Generator().manual_seed(seed)
    obs = [torch.randn(B, d, generator=g) for d in task.obs_dims]
    actions, logps = [], []
    with torch.no_grad():
        for i, o in enumerate(obs):
            a, lp = scheme.actors[i].act(o)
            actions.append(a)
            logps.append(lp)
    adv = torch.randn(B, generator=g)
    adv = (adv - adv.mean()) / adv.std()
    states = torch.randn(B, task.state_dim, generator=g)
    with torch.no_grad():
        old_values = scheme.critic(states)
    return Batch(obs, actions, logps, states, adv, torch.randn(B, generator=g) * 3, old_values)


HETERO = spec([3, 5, 2], [ActionSpace("discrete", 4), ActionSpace("box", 2, (-1.0, -1.0), (1.0, 1.0)),
                          ActionSpace("discrete", 3)])


def test_factor_is_product_of_ratios_of_earlier_agents(monkeypatch):
    torch.manual_seed(0)
    cfg = build_config({"hidden_sizes": [16], "ppo_epochs": 4, "lr": 1e-2, "seed": 3})
    scheme = HAPPO(HETERO, MLPBuilder(), cfg)
    batch = make_batch(scheme, HETERO)
    seen = []
    real = scheme.train_group

    def recording(group, obs, actions, old_logp, adv):
        seen.append((group.agents[0], adv.clone()))
        return real(group, obs, actions, old_logp, adv)

    monkeypatch.setattr(scheme, "train_group", recording)
    metrics = scheme.update(batch)
    order = [a for a, _ in seen]
    assert sorted(order) == [0, 1, 2]
    assert metrics["order"] == " ".join(map(str, order))
    with torch.no_grad():
        ratios = {i: torch.exp(scheme.actors[i].evaluate(batch.obs[i], batch.actions[i])[0] - batch.old_logp[i])
                  for i in range(3)}
    # the updates really moved every policy, so the factor is not trivially one
    assert all((r - 1).abs().max() > 1e-3 for r in ratios.values())
    expected = torch.ones(64)
    for pos, (agent, adv) in enumerate(seen):
        if pos == 0:
            torch.testing.assert_close(adv, batch.advantages)  # the first agent sees the raw advantage
        torch.testing.assert_close(adv, batch.advantages * expected, rtol=1e-5, atol=1e-6)
        expected = expected * ratios[agent]
    assert abs(metrics["factor_mean"] - expected.mean().item()) < 1e-5


def test_mappo_trains_every_agent_on_the_raw_advantage(monkeypatch):
    torch.manual_seed(0)
    cfg = build_config({"hidden_sizes": [16], "lr": 1e-2})
    scheme = MAPPO(HETERO, MLPBuilder(), cfg)
    batch = make_batch(scheme, HETERO)
    seen = []
    real = scheme.train_group

    def recording(group, obs, actions, old_logp, adv):
        seen.append(adv.clone())
        return real(group, obs, actions, old_logp, adv)

    monkeypatch.setattr(scheme, "train_group", recording)
    scheme.update(batch)
    assert len(seen) == 3
    for adv in seen:
        torch.testing.assert_close(adv, batch.advantages)


def test_permutations_cover_every_position_and_repeat_with_the_seed():
    task = spec([2, 2, 2], [ActionSpace("discrete", 2)] * 3)
    cfg = build_config({"hidden_sizes": [8], "seed": 5})
    a, b = HAPPO(task, MLPBuilder(), cfg), HAPPO(task, MLPBuilder(), cfg)
    orders_a = [tuple(a.order()) for _ in range(300)]
    orders_b = [tuple(b.order()) for _ in range(300)]
    assert orders_a == orders_b
    counts = torch.zeros(3, 3)
    for o in orders_a:
        assert sorted(o) == [0, 1, 2]
        for pos, agent in enumerate(o):
            counts[agent, pos] += 1
    assert (counts > 50).all(), counts  # 100 expected per cell
    assert len(set(orders_a)) == 6
    other = HAPPO(task, MLPBuilder(), build_config({"hidden_sizes": [8], "seed": 6}))
    assert [tuple(other.order()) for _ in range(300)] != orders_a
    fixed = HAPPO(task, MLPBuilder(), build_config({"hidden_sizes": [8], "fixed_order": True}))
    assert all(fixed.order() == [0, 1, 2] for _ in range(20))


def reference_ppo_update(actor, critic, batch, cfg):
    """Single-agent PPO written independently with torch.distributions and F.huber_loss."""
    import torch.nn.functional as F
    from harness.value_norm import ValueNorm

    obs, act, old = batch.obs[0], batch.actions[0], batch.old_logp[0]
    opt = torch.optim.Adam(actor.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    for _ in range(cfg.ppo_epochs):
        out = actor.head(actor.body(obs))
        if actor.discrete:
            dist = torch.distributions.Categorical(logits=out)
            logp, ent = dist.log_prob(act), dist.entropy()
        else:
            dist = torch.distributions.Normal(out, torch.sigmoid(actor.log_std) * 0.5)
            logp, ent = dist.log_prob(act).sum(-1), dist.entropy().sum(-1)
        r = torch.exp(logp - old)
        obj = torch.min(r * batch.advantages, torch.clamp(r, 1 - cfg.clip, 1 + cfg.clip) * batch.advantages)
        loss = -obj.mean() - cfg.entropy_coef * ent.mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(actor.parameters(), cfg.max_grad_norm)
        opt.step()
    copt = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr, eps=cfg.adam_eps)
    vn = ValueNorm()
    for _ in range(cfg.critic_epochs):
        v = critic(batch.states)
        vn.update(batch.returns)
        target = vn.normalize(batch.returns)
        clipped = batch.old_values + torch.clamp(v - batch.old_values, -cfg.clip, cfg.clip)
        loss = torch.max(F.huber_loss(v, target, reduction="none", delta=cfg.huber_delta),
                         F.huber_loss(clipped, target, reduction="none", delta=cfg.huber_delta)).mean()
        copt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.max_grad_norm)
        copt.step()


@pytest.mark.parametrize("space", [ActionSpace("discrete", 4), ActionSpace("box", 3, (-1.0,) * 3, (1.0,) * 3)])
def test_one_agent_happo_equals_mappo_equals_single_agent_ppo(space):
    task = spec([5], [space])
    cfg = build_config({"hidden_sizes": [32, 32], "lr": 3e-3, "critic_lr": 3e-3, "max_grad_norm": 0.5})
    torch.manual_seed(1)
    happo = HAPPO(task, MLPBuilder(), cfg)
    mappo = MAPPO(task, MLPBuilder(), cfg)
    mappo.actors[0].load_state_dict(happo.actors[0].state_dict())
    mappo.critic.load_state_dict(happo.critic.state_dict())
    ref_actor, ref_critic = copy.deepcopy(happo.actors[0]), copy.deepcopy(happo.critic)
    batch = make_batch(happo, task, B=128)
    initial = [p.clone() for p in happo.actors[0].parameters()]
    happo.update(batch)
    mappo.update(batch)
    reference_ppo_update(ref_actor, ref_critic, batch, cfg)
    moved = max((p - q).abs().max().item() for p, q in zip(happo.actors[0].parameters(), initial))
    assert moved > 1e-4
    for h, m, r in zip(happo.actors[0].parameters(), mappo.actors[0].parameters(), ref_actor.parameters()):
        torch.testing.assert_close(h, m, rtol=0, atol=0)
        torch.testing.assert_close(h, r, rtol=1e-5, atol=1e-6)
    for h, m, r in zip(happo.critic.parameters(), mappo.critic.parameters(), ref_critic.parameters()):
        torch.testing.assert_close(h, m, rtol=0, atol=0)
        torch.testing.assert_close(h, r, rtol=1e-5, atol=1e-6)


def test_mappo_shares_parameters_when_spaces_match_and_refuses_otherwise():
    from harness.errors import HarnessError
    homo = spec([4, 4], [ActionSpace("discrete", 3)] * 2)
    shared = MAPPO(homo, MLPBuilder(), build_config({"hidden_sizes": [8]}))
    assert shared.actors[0] is shared.actors[1] and len(shared.groups) == 1
    separate = MAPPO(homo, MLPBuilder(), build_config({"hidden_sizes": [8], "share_params": "false"}))
    assert separate.actors[0] is not separate.actors[1]
    assert MAPPO(HETERO, MLPBuilder(), build_config({"hidden_sizes": [8]})).groups[0].actor is not None
    with pytest.raises(HarnessError, match="share_params=true is impossible"):
        MAPPO(HETERO, MLPBuilder(), build_config({"hidden_sizes": [8], "share_params": "true"}))


@pytest.mark.parametrize("space", [ActionSpace("discrete", 4), ActionSpace("box", 3, (-1.0,) * 3, (1.0,) * 3)])
def test_surrogate_and_epoch_override_points_train_the_actor(space):
    """A scheme that overrides ``surrogate`` (unclipped, HAA2C's) and ``actor_epochs`` (3) trains its
    actor exactly as an independent PPO whose clip never binds, run for 3 epochs."""
    class Unclipped(HAPPO):
        def surrogate(self, ratio, advantages, logp):
            return (ratio * advantages).mean()

        def actor_epochs(self):
            return 3

    task = spec([5], [space])
    cfg = build_config({"hidden_sizes": [32], "lr": 1e-2, "ppo_epochs": 7, "clip": 0.01})
    torch.manual_seed(2)
    scheme = Unclipped(task, MLPBuilder(), cfg)
    ref_actor = copy.deepcopy(scheme.actors[0])
    batch = make_batch(scheme, task, B=128)
    metrics = scheme.update(batch)
    reference_ppo_update(ref_actor, copy.deepcopy(scheme.critic),
                         batch, SimpleNamespace(**{**vars(cfg), "clip": 1e9, "ppo_epochs": 3}))
    for a, r in zip(scheme.actors[0].parameters(), ref_actor.parameters()):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)
    assert metrics["clip_frac"] > 0  # with PPO's clip of 0.01 the update would have been clipped
