"""The conformance kit: every registered plugin passes it, and it catches plugins that break the contract."""

from __future__ import annotations

import pytest

from harness.conformance import check_network, check_plugin, check_scheme, check_task
from harness.errors import HarnessError
from harness.plugins import load_plugins

REGS = load_plugins()


def _assert_all_pass(checks):
    failed = [c.line() for c in checks if not c.ok]
    assert checks and not failed, "\n".join(failed)


@pytest.mark.parametrize("family", REGS.tasks.names())
def test_every_registered_task_family_conforms(regs, family):
    _assert_all_pass(check_task(regs, family))


@pytest.mark.parametrize("network", REGS.networks.names())
def test_every_registered_network_conforms(regs, network):
    _assert_all_pass(check_network(regs, network))


@pytest.mark.parametrize("scheme", REGS.schemes.names())
def test_every_registered_scheme_conforms(regs, scheme):
    _assert_all_pass(check_scheme(regs, scheme))


BROKEN = '''
import numpy as np
from harness import hookimpl
from harness_plugins.happo import HAPPO
from harness_plugins import mpe

class Frozen(HAPPO):
    """Never changes its actors."""
    def update(self, batch):
        return {"policy_loss": 0.0}

class Unseeded(HAPPO):
    """Ignores the configured seed."""
    def __init__(self, task, builder, config):
        import torch
        torch.manual_seed(np.random.SeedSequence().entropy % 2**31)
        super().__init__(task, builder, config)

def wrong_reward(scenario, n_envs, seed, options, stream=0):
    task = mpe.make_task(scenario, n_envs, seed, options, stream)
    step = task.step
    def bad_step(actions):
        res = step(actions)
        res.reward = res.reward[:1]   # one reward for all copies
        return res
    task.step = bad_step
    return task

from harness_plugins.mlp import MLPActor, MLPBuilder
import torch

class SharpActor(MLPActor):
    """Its distribution() is not the policy evaluate() scores (logits doubled)."""
    def distribution(self, obs):
        d = super().distribution(obs)
        return torch.distributions.Categorical(logits=2 * d.logits) if self.discrete else d

class BadDist(MLPBuilder):
    def actor(self, obs_dim, space, config):
        return SharpActor(obs_dim, space, list(config.hidden_sizes), config.activation)

@hookimpl
def register_networks(register):
    register("baddist", BadDist)

@hookimpl
def register_schemes(register):
    register("frozen", Frozen)
    register("unseeded", Unseeded)

from harness.envs import ActionSpace, StepResult, VecTask, episode_seed

class Seeded(VecTask):
    """Random start observations per episode; its scenario names one seeding mistake (or "sound")."""
    def __init__(self, mistake, n_envs, seed, stream):
        self.mistake, self.seed, self.stream = mistake, seed, stream
        self.agents, self.obs_dims, self.state_dim = ["a"], [2], 2
        self.action_spaces, self.n_envs, self.episode_limit = [ActionSpace("discrete", 2)], n_envs, 3
        self.episodes, self.t, self.x = [0] * n_envs, [0] * n_envs, np.zeros((n_envs, 2), np.float32)

    def _start(self, c):
        copy = 0 if self.mistake == "nocopy" else c
        stream = 0 if self.mistake == "nostream" else self.stream
        self.x[c] = np.random.default_rng(episode_seed(self.seed, copy, self.episodes[c], stream)).normal(size=2)
        self.t[c] = 0

    def reset(self, episodes=None):
        self.episodes = list(episodes) if episodes is not None else [0] * self.n_envs
        for c in range(self.n_envs):
            self._start(c)
        return [self.x.copy()], self.x.copy()

    def episode_counters(self):
        return list(self.episodes)

    def step(self, actions):
        final = self.x.copy()
        ended = []
        for c in range(self.n_envs):
            self.t[c] += 1
            if self.t[c] >= 3:
                ended.append(c)
                if self.mistake != "nocount":
                    self.episodes[c] += 1
                self._start(c)
        flags = np.array([c in ended for c in range(self.n_envs)])
        return StepResult([self.x.copy()], self.x.copy(), final.sum(1), np.zeros(self.n_envs, bool), flags, final,
                          episode_returns=[1.0] * len(ended), episode_lengths=[3] * len(ended),
                          final_obs={c: [final[c]] for c in ended})

def make_seeded(scenario, n_envs, seed, options, stream=0):
    return Seeded(scenario, n_envs, seed, stream)

@hookimpl
def register_tasks(register):
    register("wrongreward", wrong_reward, scenarios=("simple_spread",))
    for mistake in ("sound", "nocopy", "nostream", "nocount"):
        register(mistake, make_seeded, scenarios=(mistake,))
'''


def test_the_kit_catches_broken_plugins(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text(BROKEN)
    regs = load_plugins([str(plugin)])
    frozen = {c.what: c for c in check_scheme(regs, "frozen")}
    assert not frozen["changes the actors' parameters"].ok
    unseeded = {c.what: c for c in check_scheme(regs, "unseeded")}
    bad = unseeded["respects the seed (same seed repeats, another differs)"]
    assert not bad.ok and "two runs with seed 1 gave different metrics" in bad.detail
    task = [c for c in check_task(regs, "wrongreward") if not c.ok]
    assert task and "reward" in task[0].detail
    dist = {c.what: c for c in check_network(regs, "baddist")}
    bad = dist["discrete actor: act/evaluate shapes, log-probs, determinism, gradients"]
    assert not bad.ok and "distribution().log_prob disagrees with evaluate()" in bad.detail
    assert dist["box actor: act/evaluate shapes, log-probs, determinism, gradients"].ok
    names = {c.name for c in check_plugin(regs, "broken")}
    assert names == {"frozen", "unseeded", "wrongreward", "baddist", "sound", "nocopy", "nostream", "nocount"}
    # Tasks that would make evaluation play one episode many times, or replay training's episodes.
    assert all(c.ok for c in check_task(regs, "sound"))
    for family, message in (("nocopy", "copies 0 and 1 play the same episode 0"),
                            ("nostream", "streams 0 and 1 play the same episode 0"),
                            ("nocount", "copy 0 ended an episode but episode_counters() went 0 -> 0")):
        failed = [c for c in check_task(regs, family) if not c.ok]
        assert len(failed) == 1 and message in failed[0].detail, (family, failed)


def test_unknown_plugin_name(regs):
    with pytest.raises(HarnessError, match="no plugin, distribution or component named 'nope'; plugins: gru, happo, hasac, hatrpo, mamujoco"):
        check_plugin(regs, "nope")


TENSOR_METRICS = '''
import torch
from harness import hookimpl
from harness_plugins.happo import HAPPO

class TensorMetrics(HAPPO):
    def update(self, batch):
        metrics = super().update(batch)
        metrics["policy_loss"] = torch.tensor(metrics["policy_loss"])  # a tensor, not its .item()
        return metrics

@hookimpl
def register_schemes(register):
    register("tensormetrics", TensorMetrics)
'''


def test_the_kit_catches_metrics_that_are_not_plain_numbers(tmp_path):
    plugin = tmp_path / "tensors.py"
    plugin.write_text(TENSOR_METRICS)
    checks = {c.what: c for c in check_scheme(load_plugins([str(plugin)]), "tensormetrics")}
    bad = checks["returns finite metrics every iteration"]
    assert not bad.ok and "metric policy_loss is a Tensor" in bad.detail


def test_schemes_are_checked_on_the_action_kinds_they_take(regs):
    happo = [c.what for c in check_scheme(regs, "happo") if c.what.startswith("trains")]
    assert happo == ["trains 100 steps on mpe/simple_speaker_listener (heterogeneous agents, discrete actions)",
                     "trains 100 steps on mpe/simple_speaker_listener (heterogeneous agents, box actions)"]
    hasac = [c.what for c in check_scheme(regs, "hasac") if c.what.startswith("trains")]
    assert hasac == ["trains 100 steps on mpe/simple_speaker_listener (heterogeneous agents, box actions)"]


def test_check_plugin_passes_settings_to_the_schemes_checks():
    """An off-policy scheme's warm-up longer than the check's 100 steps means no update: --set reaches it."""
    import subprocess
    import sys
    from pathlib import Path
    harness = str(Path(sys.executable).with_name("harness"))
    out = subprocess.run([harness, "check-plugin", "hasac", "--set", "scheme.warmup_steps=10000"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1
    assert "FAIL  scheme hasac: changes the actors' parameters" in out.stdout


FORGETFUL = '''
import copy
from harness import hookimpl
from harness_plugins.hasac import HASAC, OPTIONS

class Forgetful(HASAC):
    def load_state_dict(self, state):
        fresh = copy.deepcopy(self.critic_optimizer.state_dict())
        super().load_state_dict(state)
        self.critic_optimizer.load_state_dict(fresh)  # forgets Adam's moments: a resume is not exact

@hookimpl
def register_schemes(register):
    register("forgetful", Forgetful, options=OPTIONS,
             kit={"scheme.warmup_steps": 50, "scheme.batch_size": 32, "scheme.update_per_train": 0.1})
'''


def test_the_kit_catches_a_scheme_that_does_not_resume_exactly(tmp_path):
    plugin = tmp_path / "forgetful.py"
    plugin.write_text(FORGETFUL)
    checks = {c.what: c for c in check_scheme(load_plugins([str(plugin)]), "forgetful")}
    bad = checks["resumes exactly (a run stopped after a checkpoint and resumed writes the rows of one that was not)"]
    assert not bad.ok and "iteration 3 differs after a resume" in bad.detail, bad.detail
    assert checks["state_dict() survives a weights-only save and load; load_state_dict() restores the policy"].ok


SCHEME_MISTAKES = '''
import torch
from harness import hookimpl
from harness.ppo import huber, update_actors
from harness_plugins.happo import HAPPO
from harness_plugins.mlp import MLPActor, MLPBuilder

class Remembering(MLPActor):
    """Adds a decaying memory of the observations it sampled for to its input, in act() only."""
    memory = None

    def act(self, obs, deterministic=False):
        if self.memory is None or self.memory.shape != obs.shape:
            self.memory = torch.zeros_like(obs)
        out = super().act(obs + self.memory, deterministic)
        if not deterministic:
            self.memory = 0.5 * self.memory + obs
        return out

class RememberingBuilder(MLPBuilder):
    def actor(self, obs_dim, space, config):
        return Remembering(obs_dim, space, list(config.hidden_sizes), config.activation)

class RememberingHAPPO(HAPPO):
    """HAPPO on stateful actors."""
    action_kinds = ("discrete",)

    def __init__(self, task, builder, config):
        super().__init__(task, RememberingBuilder(), config)

class WrongUnits(HAPPO):
    """Its value loss compares the critic's normalised outputs with return-unit targets."""
    action_kinds = ("discrete",)

    def update(self, batch):
        metrics = update_actors(self.groups, self.order(), self.sequential, batch, self.train_group)
        for _ in range(self.cfg.critic_epochs):
            self.value_norm.update(batch.returns)
            loss = huber(batch.returns - self.critic(batch.states), self.cfg.huber_delta).mean()
            self.critic_optimizer.zero_grad()
            loss.backward()
            self.critic_optimizer.step()
        metrics["value_loss"] = loss.item()
        return metrics

class Swapped(HAPPO):
    """values() returns its two outputs swapped."""
    action_kinds = ("discrete",)

    def values(self, states):
        raw, values = super().values(states)
        return values, raw

@hookimpl
def register_networks(register):
    register("remembering", RememberingBuilder)

@hookimpl
def register_schemes(register):
    register("rememberinghappo", RememberingHAPPO)
    register("wrongunits", WrongUnits)
    register("swapped", Swapped)
'''

RATIO = "pi_new/pi_old is 1 on the first rollout, before any update (act() and evaluate() agree, no undeclared state)"
UNITS = "the critic fits a batch's returns in return units (values(states)[1] against batch.returns)"
NORM = "values(states) returns (raw, value_norm.denormalize(raw))"


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory):
    plugin = tmp_path_factory.mktemp("mistakes") / "mistakes.py"
    plugin.write_text(SCHEME_MISTAKES)
    return load_plugins([str(plugin)])


def test_the_kit_catches_a_stateful_actor(mistakes):
    """An actor that keeps state between act() calls passes the network's single-call checks, and fails
    the first-rollout ratio check, as a network and inside a scheme."""
    net = {c.what: c for c in check_network(mistakes, "remembering")}
    assert all(c.ok for what, c in net.items() if RATIO not in what), [c.line() for c in net.values()]
    for kind in ("discrete", "box"):
        bad = net[f"{kind} actors in a happo run: {RATIO}"]
        assert not bad.ok and "pi_new/pi_old is off 1 by up to" in bad.detail, bad.line()
    scheme = {c.what: c for c in check_scheme(mistakes, "rememberinghappo")}
    assert not scheme[RATIO].ok and "must not keep state between act() calls" in scheme[RATIO].detail
    assert scheme[UNITS].ok and scheme[NORM].ok


def test_the_kit_catches_a_value_loss_in_the_wrong_units(mistakes):
    checks = {c.what: c for c in check_scheme(mistakes, "wrongunits")}
    bad = checks[UNITS]
    assert not bad.ok and "times the returns' size (at most 3)" in bad.detail, bad.line()
    assert checks[RATIO].ok and checks[NORM].ok


def test_the_kit_catches_values_returned_swapped(mistakes):
    checks = {c.what: c for c in check_scheme(mistakes, "swapped")}
    bad = checks[NORM]
    assert not bad.ok and "off value_norm.denormalize(raw)" in bad.detail, bad.line()
    assert checks[RATIO].ok


def test_off_policy_schemes_have_no_ratio_or_values_checks(regs):
    whats = {c.what for c in check_scheme(regs, "hasac")}
    assert not whats & {RATIO, UNITS, NORM}
