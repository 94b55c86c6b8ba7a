"""Joint-ratio updates (harness.joint): each agent's surrogate sees the others' current ratios,
detached; the kit catches a CoPPO that lets them carry gradient."""

import pytest
import torch

from harness.config import build_config
from harness.conformance import JOINT_CHECK, TINY, check_scheme
from harness.joint import train_jointly
from harness.plugins import load_plugins
from harness.ppo import clipped_surrogate
from harness.trainer import Trainer

CFG = {**TINY, "task": "mpe/simple_speaker_listener", "ppo_epochs": 3, "entropy_coef": 0.0}


def test_every_agent_sees_the_others_current_ratios_detached(regs):
    trainer = Trainer(build_config(CFG), regs, None, progress=False)
    try:
        batch, _ = trainer.collect()
        scheme, seen = trainer.scheme, []

        def spy(ratio, others, advantages, logp):
            seen.append((ratio.detach().clone(), others.clone(), others.requires_grad, ratio.requires_grad))
            return clipped_surrogate(ratio * others, advantages, 0.2)
        train_jointly(scheme.groups, batch, scheme.cfg, scheme.gen, spy, 3)
    finally:
        trainer.close()
    assert len(seen) == 3 * 2  # three steps, two agents each
    for step in range(3):
        (r0, o0, g0, own0), (r1, o1, g1, own1) = seen[2 * step], seen[2 * step + 1]
        assert own0 and own1 and not g0 and not g1  # own ratio with gradient, the others' without
        assert torch.equal(o0, r1) and torch.equal(o1, r0)  # the other agent's ratio on the same rows
    assert torch.allclose(seen[0][1], torch.ones_like(seen[0][1]))  # before any step: 1
    assert (seen[4][1] - 1).abs().max() > 1e-3  # later: the other agent has moved


# A CoPPO written by replacing update() whole, as a plugin author did before joint_ratio existed,
# forgetting to detach the other agents' ratios.
ATTACHED = '''
import torch
from harness.hookspecs import hookimpl
from harness.ppo import clipped_surrogate, train_critic
from harness.scheme import OnPolicyScheme


class AttachedCoPPO(OnPolicyScheme):
    joint_ratio = True

    def joint_surrogate(self, ratio, others, advantages, logp):
        return clipped_surrogate(ratio * others, advantages, self.cfg.clip)

    def update(self, batch):
        for _ in range(self.cfg.ppo_epochs):
            ratios = []
            for g in self.groups:
                i = g.agents[0]
                logp, _ = g.actor.evaluate(batch.obs[i], batch.actions[i])
                ratios.append(torch.exp(logp - batch.old_logp[i]))
            joint = torch.stack(ratios).prod(0)  # not detached: every agent's loss reaches every actor
            loss = -sum(clipped_surrogate(joint, batch.advantages, self.cfg.clip) for _ in self.groups)
            for g in self.groups:
                g.optimizer.zero_grad()
            loss.backward()
            for g in self.groups:
                g.optimizer.step()
        return train_critic(self.critic, self.critic_optimizer, self.value_norm, batch, self.cfg, self.gen)


@hookimpl
def register_schemes(register):
    register("attached", AttachedCoPPO)
'''


def test_the_kit_catches_a_coppo_whose_other_ratios_carry_gradient(tmp_path):
    plugin = tmp_path / "attached.py"
    plugin.write_text(ATTACHED)
    checks = [c for c in check_scheme(load_plugins([str(plugin)]), "attached") if c.what == JOINT_CHECK]
    assert checks and not any(c.ok for c in checks), [c.line() for c in checks]
    assert "gradient is 2 x its own" in checks[0].detail and "detached" in checks[0].detail


def test_a_joint_ratio_subclass_of_a_few_lines_passes_the_joint_check(tmp_path):
    plugin = tmp_path / "joint.py"
    plugin.write_text('''
from harness.hookspecs import hookimpl
from harness.scheme import OnPolicyScheme


class Joint(OnPolicyScheme):
    joint_ratio = True  # the default joint_surrogate: PPO-clip on ratio * others


@hookimpl
def register_schemes(register):
    register("joint", Joint)
''')
    checks = {c.what: c for c in check_scheme(load_plugins([str(plugin)]), "joint")}
    assert checks[JOINT_CHECK].ok, checks[JOINT_CHECK].line()
    assert all(c.ok for c in checks.values()), [c.line() for c in checks.values() if not c.ok]
