"""Recurrent actors (harness.sequences, the gru network): hidden state through collection and
evaluation, resets at episode starts, chunked training, HAPPO's factor and HATRPO over the chunks,
exact resume and exact replay of the best evaluation."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import build_config
from harness.conformance import check_network
from harness.plugins import load_plugins
from harness.ppo import update_actors
from harness.sequences import arrange, chunk_index
from harness.trainer import Trainer

HARNESS = str(Path(sys.executable).with_name("harness"))

#: speaker_listener: two agents with different spaces, 25-step episodes, so episodes start inside chunks.
GRU = {"task": "mpe/simple_speaker_listener", "network": "gru", "n_envs": 2, "rollout_length": 20,
       "steps": 80, "eval_episodes": 2, "eval_envs": 2, "eval_interval": 1, "hidden_sizes": [16, 16],
       "threads": 1, "ppo_epochs": 2, "critic_epochs": 2}


def rows(run: Path) -> list[dict[str, str]]:
    drop = {"steps_per_s", "collect_s", "update_s", "wall_s"}
    return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(open(run / "metrics.csv"))]


def test_chunks_are_consecutive_steps_of_one_copy():
    # time-major rows t * copies + c; 4 steps, 2 copies, chunks of 2
    assert chunk_index(4, 2, 2).tolist() == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert chunk_index(6, 1, 3).tolist() == [[0, 1, 2], [3, 4, 5]]


def _fresh(regs, **over):
    trainer = Trainer(build_config({**GRU, **over}), regs, None, progress=False)
    batch, _ = trainer.collect()
    return trainer, batch


@pytest.mark.parametrize("scheme", ["happo", "mappo"])
def test_the_first_rollout_scores_ratio_one_in_chunks_and_not_row_by_row(regs, scheme):
    task = "mpe/simple_spread" if scheme == "mappo" else GRU["task"]  # mappo shares one actor there
    trainer, batch = _fresh(regs, scheme=scheme, task=task)
    try:
        assert batch.starts[:2].all() and batch.starts.sum() >= 2  # the first step, and later episodes
        for group in trainer.scheme.groups:
            obs, actions, old = group.data(batch)
            index = group.arrange(batch)
            with torch.no_grad():
                logp, _ = group.evaluate(obs[index], actions[index])
                assert torch.allclose(logp, old[index], atol=1e-5)
                # the same rows each from the initial state (what a feed-forward layout would score): off
                alone = group.actor.evaluate(obs, actions, hidden=torch.zeros(obs.shape[0], group.actor.hidden_size),
                                             starts=torch.ones(obs.shape[0], dtype=torch.bool))[0]
                assert (alone - old).abs().max() > 1e-4  # small: the heads start near uniform
        if scheme == "mappo":
            assert len(trainer.scheme.groups) == 1 and len(trainer.scheme.groups[0].agents) == 3
    finally:
        trainer.close()


def _brute_logp(actor, batch, agent, E):
    """Every row's log-probability, chunk by chunk, one step at a time from the stored state."""
    T = batch.shape[0]
    out = torch.empty(T * E)
    for rows_of_chunk in chunk_index(T, E, actor.chunk_length).tolist():
        state = batch.hidden[agent][rows_of_chunk[0]][None]
        for r in rows_of_chunk:
            s = batch.starts[r:r + 1]
            out[r] = actor.evaluate(batch.obs[agent][r:r + 1], batch.actions[agent][r:r + 1], hidden=state, starts=s)[0][0]
            _, _, state = actor.act(batch.obs[agent][r:r + 1], deterministic=True, hidden=state, starts=s)
    return out


def test_happos_factor_is_carried_over_the_chunks(regs):
    trainer, batch = _fresh(regs, scheme="happo", rollout_length=40, **{"network_options": {"chunk_length": 5}})
    try:
        scheme = trainer.scheme
        metrics = update_actors(scheme.groups, [1, 0], True, batch, scheme.train_group)
        with torch.no_grad():
            ratios = [torch.exp(_brute_logp(scheme.actors[i], batch, i, 2) - batch.old_logp[i]) for i in (0, 1)]
        brute = (ratios[0] * ratios[1]).mean().item()
        assert abs(brute - 1.0) > 1e-4  # the update moved the policies
        assert metrics["factor_mean"] == pytest.approx(brute, abs=1e-5)
    finally:
        trainer.close()


def test_an_episode_start_resets_the_acting_state(regs):
    trainer = Trainer(build_config(GRU), regs, None, progress=False)
    try:
        policy, obs = trainer.policy, trainer.obs
        memory = policy.memory(2)
        for _ in range(3):
            policy.act(obs, True, memory, np.zeros(2, bool))
        assert all(h.abs().sum() > 0 for h in memory.hidden)
        carried = policy.act(obs, True, memory, np.zeros(2, bool))[1]
        memory2 = policy.memory(2)
        for _ in range(3):
            policy.act(obs, True, memory2, np.zeros(2, bool))
        reset = policy.act(obs, True, memory2, np.array([True, False]))[1]
        fresh = policy.act(obs, True, policy.memory(2), np.ones(2, bool))[1]
        for i in range(2):
            assert reset[i][0] == pytest.approx(fresh[i][0], abs=1e-6)     # copy 0 started anew
            assert reset[i][1] == pytest.approx(carried[i][1], abs=1e-6)   # copy 1 carried on
            assert abs(carried[i][0] - fresh[i][0]) > 1e-6
    finally:
        trainer.close()


def test_hatrpo_trains_recurrent_actors_within_its_kl_bound(regs):
    trainer = Trainer(build_config({**GRU, "scheme": "hatrpo"}), regs, None, progress=False)
    out = trainer.run_training()
    steps = [r for r in out if r.get("iteration")]
    assert steps and all(r["kl"] <= 0.01 + 1e-9 for r in steps)
    assert any(r["step_accepted"] > 0 for r in steps)


@pytest.mark.parametrize("scheme", ["happo", "mappo"])
def test_a_stopped_recurrent_run_resumes_exactly(tmp_path, regs, scheme):
    cfg = {**GRU, "scheme": scheme, "task": "mpe/simple_spread" if scheme == "mappo" else GRU["task"],
           "rollout_length": 50, "steps": 300, "checkpoint_interval": 1}  # two whole episodes per iteration
    Trainer(build_config(cfg), regs, tmp_path / "whole", progress=False).run_training()
    first = Trainer(build_config(cfg), regs, tmp_path / "stopped", progress=False)
    for row in first.iterate():
        if row["iteration"] == 1:
            break
    first.close()
    Trainer(build_config(cfg), regs, tmp_path / "stopped", progress=False).run_training()
    assert rows(tmp_path / "stopped") == rows(tmp_path / "whole")


def test_harness_eval_replays_the_best_evaluation_of_a_recurrent_run(tmp_path):
    run = tmp_path / "run"
    subprocess.run([HARNESS, "train", "--network", "gru", "--task", GRU["task"], "--steps", "400", "--quiet",
                    "--set", "n_envs=2", "--set", "rollout_length=50", "--set", "eval_interval=1",
                    "--set", "eval_episodes=4", "--set", "eval_envs=2", "--set", "hidden_sizes=16,16",
                    "--set", "threads=1", "--out", str(run)], check=True, capture_output=True, timeout=300)
    res = subprocess.run([HARNESS, "eval", str(run), "--json", "--video", str(tmp_path / "v.gif")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    evals = [float(r["eval_return"]) for r in csv.DictReader(open(run / "metrics.csv")) if r["eval_return"]]
    assert len(set(evals)) > 1  # the policy changed between evaluations
    result = json.loads(res.stdout)
    assert result["mean"] == pytest.approx(max(evals), abs=1e-4)
    # the video plays the first of those episodes from a fresh state, and scores what it scored
    assert result["video"]["returns"][0] == pytest.approx(result["returns"][0], abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--set", "rollout_length=25"], "rollout_length=25 is not a multiple of network 'gru''s chunk_length=10"),
    (["--set", "network.chunk_length=0"], "network.chunk_length=0 must be from 1 to 10000"),
    (["--scheme", "hasac", "--set", "env.continuous=true"], "off-policy scheme 'hasac' learns from single transitions and cannot train them"),
])
def test_recurrent_misuse_is_one_line(tmp_path, args, message):
    out = subprocess.run([HARNESS, "train", "--network", "gru", "--steps", "100", "--out", str(tmp_path / "r"), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


@pytest.mark.parametrize("arm, message", [
    ('scheme = "happo"\nnetwork = "gru"\n"network.chunk_length" = 3',
     "rollout_length=20 is not a multiple of network 'gru''s chunk_length=3"),
    ('scheme = "hasac"\nnetwork = "gru"', "off-policy scheme 'hasac'"),
])
def test_a_suite_refuses_a_recurrent_arm_that_cannot_run_before_any_run(tmp_path, arm, message):
    suite = tmp_path / "s.toml"
    suite.write_text(f'''[suite]
name = "rec"
tasks = ["mpe/simple_speaker_listener"]
seeds = 1
steps = 40

[config]
n_envs = 2
rollout_length = 20
env = {{ continuous = true }}

[arms.plain]
scheme = "happo"

[arms.bad]
{arm}
''')
    for extra in (["--dry-run"], []):
        out = subprocess.run([HARNESS, "bench", str(suite), "--out", str(tmp_path / "out"), *extra],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, out.stdout + out.stderr
        assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not list(tmp_path.rglob("metrics.csv"))  # no run was started


# An actor with a GRU that keeps its hidden state inside the module between act() calls and does
# not declare it: it trains, silently wrongly, today's failure the ratio check must catch.
STATEFUL_GRU = '''
import torch
from harness.hookspecs import hookimpl
from harness_plugins.gru import GRUActor, GRUBuilder


class HiddenGRU(GRUActor):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.hidden_size = 0  # the state is kept, not declared
        self.h = None

    def act(self, obs, deterministic=False):
        if self.h is None or self.h.shape[0] != obs.shape[0]:
            self.h = torch.zeros(obs.shape[0], self.width)
        a, lp, self.h = super().act(obs, deterministic, hidden=self.h, starts=torch.zeros(obs.shape[0], dtype=torch.bool))
        return a, lp

    def evaluate(self, obs, action):
        n = obs.shape[0]
        return super().evaluate(obs, action, hidden=torch.zeros(n, self.width), starts=torch.ones(n, dtype=torch.bool))

    def distribution(self, obs):
        n = obs.shape[0]
        return super().distribution(obs, hidden=torch.zeros(n, self.width), starts=torch.ones(n, dtype=torch.bool))


class Builder(GRUBuilder):
    def actor(self, obs_dim, space, config):
        return HiddenGRU(obs_dim, space, list(config.hidden_sizes), config.activation)


@hookimpl
def register_networks(register):
    register("hiddengru", Builder)
'''


def test_the_kit_fails_a_gru_that_hides_its_state_and_passes_the_built_in_one(tmp_path, regs):
    plugin = tmp_path / "hiddengru.py"
    plugin.write_text(STATEFUL_GRU)
    broken = {c.what: c for c in check_network(load_plugins([str(plugin)]), "hiddengru")}
    ratio = [c for what, c in broken.items() if "pi_new/pi_old is 1" in what]
    assert ratio and not any(c.ok for c in ratio), [c.line() for c in ratio]
    assert "off 1 by up to" in ratio[0].detail
    good = check_network(regs, "gru")
    assert all(c.ok for c in good), [c.line() for c in good if not c.ok]


def test_the_memory_estimate_counts_the_stored_states(regs):
    from harness.memory import run_bytes
    from harness.tasks import make_task
    cfg = build_config(GRU)
    task = make_task(regs, cfg.task, 1, 1, {})
    try:
        extra = run_bytes(cfg, task, hidden=32)["rollout"] - run_bytes(cfg, task)["rollout"]
    finally:
        task.close()
    assert extra == 4 * 32 * cfg.rollout_length * cfg.n_envs  # float32 states of every step


# Recurrent actors wrong in two other ways: one never begins anew at episode starts, one returns a
# state narrower than it declares.
MISTAKES = '''
import torch
from harness.hookspecs import hookimpl
from harness_plugins.gru import GRUActor, GRUBuilder


class NoReset(GRUActor):
    def _unroll(self, obs, hidden, starts):
        return super()._unroll(obs, hidden, torch.zeros_like(starts))


class Narrow(GRUActor):
    def act(self, obs, deterministic=False, hidden=None, starts=None):
        a, lp, h = super().act(obs, deterministic, hidden, starts)
        return a, lp, h[:, :-1]


def builder(cls):
    class B(GRUBuilder):
        def actor(self, obs_dim, space, config):
            return cls(obs_dim, space, list(config.hidden_sizes), config.activation)
    return B


@hookimpl
def register_networks(register):
    register("noreset", builder(NoReset))
    register("narrow", builder(Narrow))
'''


def test_the_kit_and_training_catch_recurrent_actors_that_break_the_contract(tmp_path):
    plugin = tmp_path / "mistakes.py"
    plugin.write_text(MISTAKES)
    regs = load_plugins([str(plugin)])
    noreset = [c for c in check_network(regs, "noreset") if "recurrent actor" in c.what]
    assert noreset and not any(c.ok for c in noreset)
    assert "where starts is True the actor must begin from zeros" in noreset[0].detail
    narrow = {c.what: c for c in check_network(regs, "narrow")}
    assert "want (7, 16) (hidden_size)" in narrow["discrete actor: act/evaluate shapes, log-probs, determinism, gradients"].detail
    out = subprocess.run([HARNESS, "train", "--plugin", str(plugin), "--network", "narrow", "--task", GRU["task"],
                          "--steps", "40", "--set", "n_envs=2", "--set", "rollout_length=20", "--set", "hidden_sizes=16,16",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "actor Narrow (agent 0): act() returned a state of shape (10, 15); its hidden_size says (10, 16)" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_recurrent_run_trains_on_cuda_as_on_the_cpu(regs):
    rows = {d: Trainer(build_config({**GRU, "device": d}), regs, None, progress=False).run_training()
            for d in ("cpu", "cuda")}
    for a, b in zip(rows["cpu"][1:], rows["cuda"][1:]):
        assert a["ratio"] == pytest.approx(b["ratio"], abs=1e-3)
        assert a["policy_loss"] == pytest.approx(b["policy_loss"], abs=1e-3)
