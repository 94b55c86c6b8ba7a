"""The shipped suite files: every one loads and dry-runs; the paper suites follow HARL's conventions."""

import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench import load_suite
from harness.config import build_config

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "benchmarks").glob("*.toml"))


@pytest.mark.parametrize("suite", SUITES, ids=[p.stem for p in SUITES])
def test_every_shipped_suite_dry_runs(suite, tmp_path):
    res = subprocess.run([sys.executable, "-m", "harness.cli", "bench", str(suite), "--out", str(tmp_path / "o"),
                          "--dry-run"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("[new]") == len(load_suite(suite, tmp_path / "o").runs) > 0


def _cfg(suite, task, scheme):
    return next(build_config(r.overrides) for r in suite.runs if r.task == task and r.scheme == scheme)


def test_the_paper_mamujoco_suite_uses_harls_conventions(tmp_path):
    suite = load_suite(ROOT / "benchmarks/paper_mamujoco.toml", tmp_path)
    assert {"mamujoco/HalfCheetah-6x1", "mamujoco/Walker2d-6x1", "mamujoco/Ant-8x1",
            "mamujoco/Humanoid-17x1"} <= set(suite.tasks)
    assert suite.seeds == [1, 2, 3, 4, 5]
    for r in suite.runs:
        cfg = build_config(r.overrides)
        assert cfg.steps == 10_000_000 and cfg.eval_episodes == 40 and cfg.eval_envs == 20
        assert cfg.env["obs_mode"] == "global" and cfg.env["episode_limit"] == 1000
        assert cfg.hidden_sizes == ([256, 256] if r.scheme == "hasac" else [128, 128, 128])
        assert cfg.share_params == ("true" if r.scheme == "mappo" else "auto")
    # HARL's tuned Walker2d-6x1 (clip 0.1, entropy 0.01) for both schemes; its Humanoid-17x1 MAPPO
    # collects 100 steps per copy per iteration, its HAPPO 200.
    for scheme in ("happo", "mappo"):
        w = _cfg(suite, "mamujoco/Walker2d-6x1", scheme)
        assert (w.clip, w.entropy_coef, w.ppo_epochs, w.lr_decay) == (0.1, 0.01, 5, False)
    assert _cfg(suite, "mamujoco/Humanoid-17x1", "mappo").rollout_length == 100
    assert _cfg(suite, "mamujoco/Humanoid-17x1", "happo").rollout_length == 200


@pytest.mark.parametrize("name", ["paper_mamujoco", "paper_mpe", "paper_mpe_discrete", "paper_small"])
def test_the_paper_suites_run_hatrpo_with_harls_tuned_settings(name, tmp_path):
    from harness.scheme_config import resolved
    suite = load_suite(ROOT / f"benchmarks/{name}.toml", tmp_path)
    assert suite.schemes[:3] == ["happo", "mappo", "hatrpo"]
    for task in suite.tasks:
        cfg = resolved(_cfg(suite, task, "hatrpo"), suite.regs)
        kl = cfg.scheme_options["kl_threshold"]
        if task.startswith("mpe/"):  # HARL's MPE HATRPO configs: 0.005 everywhere
            assert kl == 0.005
        else:  # HARL's MaMuJoCo HATRPO configs: the critic's settings, a per-task threshold
            assert (cfg.clip, cfg.critic_epochs, cfg.critic_minibatches, cfg.critic_lr, cfg.lr_decay) == \
                (0.2, 5, 1, 5e-4, False)
            assert kl == {"mamujoco/Hopper-3x1": 0.001, "mamujoco/Walker2d-6x1": 0.005}.get(task, kl)
        assert (cfg.ppo_epochs, cfg.actor_minibatches, cfg.entropy_coef) == (1, 1, 0.0)  # fixed by the scheme


def test_the_hasac_suite_runs_harls_tuned_hasac_on_one_evaluation_schedule(tmp_path):
    from harness.scheme_config import resolved
    suite = load_suite(ROOT / "benchmarks/hasac_small.toml", tmp_path)
    assert suite.schemes == ["happo", "mappo", "hasac"]
    mpe = resolved(_cfg(suite, "mpe/simple_spread", "hasac"), suite.regs)
    hc = resolved(_cfg(suite, "mamujoco/HalfCheetah-2x3", "hasac"), suite.regs)
    # HARL's tuned_configs/.../hasac: lr 5e-4 and 20-step returns on MPE, 1e-3 and 10 on HalfCheetah-2x3
    assert (mpe.lr, mpe.scheme_options["n_step"], mpe.env["continuous"]) == (5e-4, 20, True)
    assert (hc.lr, hc.scheme_options["n_step"], hc.env["obs_mode"]) == (1e-3, 10, "global")
    for cfg in (mpe, hc):
        assert (cfg.rollout_length, cfg.hidden_sizes, cfg.value_norm) == (50, [256, 256], False)
        assert (cfg.scheme_options["batch_size"], cfg.scheme_options["auto_alpha"]) == (1000, True)
    # HAPPO keeps the harness's (HARL's) MPE defaults: the hasac table applies to HASAC's runs only
    assert _cfg(suite, "mpe/simple_spread", "happo").rollout_length == 200
    for task in suite.tasks:  # every arm is evaluated every 40,000 environment steps
        for scheme in suite.schemes:
            cfg = _cfg(suite, task, scheme)
            assert cfg.eval_interval * cfg.n_envs * cfg.rollout_length == 40_000, (task, scheme)


@pytest.mark.parametrize("name", ["paper_mamujoco", "paper_mpe"])
def test_the_paper_suites_run_hasac_with_harls_tuned_settings_where_harl_tunes_it(name, tmp_path):
    from harness.scheme_config import resolved
    suite = load_suite(ROOT / f"benchmarks/{name}.toml", tmp_path)
    hasac = {r.task for r in suite.runs if r.scheme == "hasac"}
    expected = ({"mamujoco/HalfCheetah-2x3", "mamujoco/HalfCheetah-6x1", "mamujoco/Walker2d-2x3",
                 "mamujoco/Walker2d-6x1", "mamujoco/Ant-4x2", "mamujoco/Ant-8x1"} if name == "paper_mamujoco"
                else set(suite.tasks))
    assert hasac == expected
    for task in sorted(hasac):
        cfg = resolved(_cfg(suite, task, "hasac"), suite.regs)
        happo = _cfg(suite, task, "happo")
        assert (cfg.rollout_length, cfg.hidden_sizes, cfg.value_norm, cfg.lr_decay) == (50, [256, 256], False, False)
        assert cfg.scheme_options["huber"] is False and cfg.scheme_options["warmup_steps"] == 10_000
        # one evaluation schedule in environment steps for every arm
        assert cfg.eval_interval * cfg.n_envs * cfg.rollout_length == \
            happo.eval_interval * happo.n_envs * happo.rollout_length, task
    if name == "paper_mamujoco":  # HARL's per-task figures: Ant-8x1's larger batch, Walker's fixed alpha
        ant = resolved(_cfg(suite, "mamujoco/Ant-8x1", "hasac"), suite.regs).scheme_options
        walker = resolved(_cfg(suite, "mamujoco/Walker2d-6x1", "hasac"), suite.regs)
        assert (ant["batch_size"], ant["n_step"]) == (2200, 5)
        assert (walker.lr, walker.critic_lr, walker.scheme_options["auto_alpha"]) == (5e-4, 1e-3, False)
