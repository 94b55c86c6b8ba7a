"""HASAC: its numerics against hand-computed values, and the off-policy contract end to end
(warm-up, replay, policy-only best.pt, exact resume with the buffer saved, the buffer's memory check)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import build_config
from harness.results import RunDir
from harness.task_api import ActionSpace
from harness.trainer import Trainer
from harness_plugins.hasac import SquashedGaussianActor, TwinQ, polyak, soft_target, temperature_loss

HARNESS = str(Path(sys.executable).with_name("harness"))
TINY = {"scheme": "hasac", "task": "mpe/simple_spread", "env": {"continuous": True}, "n_envs": 2,
        "rollout_length": 25, "eval_envs": 2, "eval_episodes": 2, "eval_interval": 2, "hidden_sizes": [16],
        "threads": 1, "scheme_options": {"warmup_steps": 100, "batch_size": 32, "n_step": 3, "update_per_train": 0.2}}
TIMING = ("steps_per_s", "collect_s", "update_s", "wall_s")


def test_the_soft_target_by_hand():
    """r = 1, gamma^k = 0.81, min Q' = 2, sum log pi = -3, alpha = 0.1: 1 + 0.81 (2 + 0.3) = 2.863; a
    terminated sample is its reward alone."""
    t = lambda *x: torch.tensor(x)  # noqa: E731
    out = soft_target(t(1.0, 1.0), t(0.81, 0.81), t(0.0, 1.0), t(2.0, 2.0), t(-3.0, -3.0), 0.1)
    assert out.tolist() == pytest.approx([2.863, 1.0])


def test_polyak_moves_the_target_by_tau():
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.fill_(0.0), a.bias.fill_(4.0), b.weight.fill_(1.0), b.bias.fill_(0.0)
    polyak(a, b, 0.005)
    assert a.weight.tolist() == [[pytest.approx(0.005)] * 2] and a.bias.item() == pytest.approx(4.0 * 0.995)


def test_the_temperature_gradient_by_hand():
    """loss = -log_alpha * mean(log pi + H): d loss / d log_alpha = -mean(log pi + H). log pi = -1, -3
    and H = -2: -((-3) + (-5)) / 2 = 4, so a step lowers log_alpha (the entropy 2 is above the target)."""
    log_alpha = torch.zeros(1, requires_grad=True)
    temperature_loss(log_alpha, torch.tensor([-1.0, -3.0]), -2.0).backward()
    assert log_alpha.grad.item() == pytest.approx(4.0)


def test_the_squashed_log_probability_is_the_change_of_variables():
    """log pi(a) = log N(u; mu, std) - sum log(1 - tanh(u)^2) for a = tanh(u), computed here directly."""
    torch.manual_seed(0)
    space = ActionSpace("box", 3, (-1.0,) * 3, (1.0,) * 3)
    actor = SquashedGaussianActor(5, space, [8])
    obs = torch.randn(64, 5)
    torch.manual_seed(1)
    a, logp = actor.sample(obs)
    torch.manual_seed(1)
    mu, log_std = actor.net(obs).chunk(2, dim=-1)
    std = log_std.clamp(-20, 2).exp()
    u = mu + std * torch.randn_like(mu)
    direct = torch.distributions.Normal(mu, std).log_prob(u).sum(-1) - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    torch.testing.assert_close(a, torch.tanh(u))
    torch.testing.assert_close(logp, direct, rtol=1e-4, atol=1e-4)


def test_actions_are_scaled_to_the_box():
    space = ActionSpace("box", 2, (0.0, -0.4), (2.0, 0.4))
    actor = SquashedGaussianActor(3, space, [8])
    a, _ = actor.sample(torch.randn(500, 3) * 50)
    assert (a[:, 0] >= 0).all() and (a[:, 0] <= 2).all() and (a[:, 1].abs() <= 0.4).all()


def test_twin_critics_take_the_state_and_the_joint_action():
    q = TwinQ(5 + 3, [8])
    q1, q2 = q(torch.randn(7, 5), torch.randn(7, 3))
    assert q1.shape == q2.shape == (7,) and not torch.equal(q1, q2)


def rows(path):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in RunDir(path).rows()]


def test_warm_up_then_updates_and_a_policy_only_best_pt(tmp_path, regs):
    trainer = Trainer(build_config({**TINY, "steps": 300}), regs, tmp_path / "run", progress=False)
    out = trainer.run_training()
    # 50 env steps per iteration: the first two fill the 100 warm-up steps, acting at random; the
    # first update comes after the second (row 0 is the evaluation before training)
    assert [("critic_loss" in r) for r in out] == [False, False, True, True, True, True, True]
    assert out[1]["replay_size"] == 50 and out[-1]["updates"] == 5.0
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert set(best["scheme"]) == {"actors"}  # no buffer, no critics, no optimisers
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["replay"] is None and "critic" in ckpt["scheme"]


@pytest.mark.parametrize("save", [True, False])
def test_resume(tmp_path, regs, save, capsys):
    """With the buffer saved a stopped run resumes exactly (the same rows as an uninterrupted run);
    without it, the resume says so in one line and warms up again."""
    cfg = {**TINY, "steps": 300, "checkpoint_interval": 1,
           "scheme_options": {**TINY["scheme_options"], "save_replay": save}}
    Trainer(build_config(cfg), regs, tmp_path / "whole", progress=False).run_training()
    first = Trainer(build_config(cfg), regs, tmp_path / "stopped", progress=False)
    for row in first.iterate():
        if row["iteration"] == 3:
            break  # a stop after iteration 3's checkpoint
    first.close()
    Trainer(build_config(cfg), regs, tmp_path / "stopped", progress=True).run_training()
    err = capsys.readouterr().err
    assert "150/300" in err  # it resumed after iteration 3 (50 steps each)
    if save:
        assert rows(tmp_path / "stopped") == rows(tmp_path / "whole")
        assert "replay buffer" not in err
    else:
        assert "the replay buffer is not kept in checkpoints" in err and "100 warm-up steps" in err
        assert "critic_loss" not in rows(tmp_path / "stopped")[4] or rows(tmp_path / "stopped")[4]["critic_loss"] == ""


def test_a_buffer_that_cannot_fit_is_refused_before_work_starts(tmp_path):
    out = subprocess.run([HARNESS, "train", "--scheme", "hasac", "--task", "mpe/simple_spread", "--steps", "4000",
                          "--set", "env.continuous=true", "--set", "scheme.buffer_size=1000000000",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "the replay buffer of 1,000,000,000 transitions needs about" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "r" / "metrics.csv").exists()


def test_discrete_actions_are_refused_in_one_line(tmp_path):
    out = subprocess.run([HARNESS, "train", "--scheme", "hasac", "--task", "mpe/simple_spread", "--steps", "100",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "hasac needs box actions" in out.stderr and "env.continuous=true" in out.stderr
    assert not (tmp_path / "r").exists()  # a refusal while the scheme is built leaves no empty run directory
    (tmp_path / "mine").mkdir()  # ... but a directory the user made is theirs
    out = subprocess.run([HARNESS, "train", "--scheme", "hasac", "--task", "mpe/simple_spread", "--steps", "100",
                          "--out", str(tmp_path / "mine")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and (tmp_path / "mine").is_dir()
