"""What makes a comparison fair: the evaluation protocol, a shared actor that knows its agent, task
outputs checked and blamed on the task, plugin code recorded, per-episode returns exported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import build_config
from harness.errors import HarnessError, PluginError
from harness.plot import plot_results
from harness.plugins import load_plugins
from harness.results import RunDir
from harness.tasks import make_task
from harness.trainer import EVAL_STREAM, Trainer

from conftest import TINY

SPLIT = str(Path(__file__).parent / "plugins" / "split_lengths.py")


@pytest.fixture(scope="module")
def split_regs():
    return load_plugins([SPLIT])


def split_trainer(regs, fault="none", **over):
    cfg = build_config({**TINY, "task": f"split/{fault}", "hidden_sizes": [8], **over})
    return Trainer(cfg, regs, None, progress=False)


# -- 1. evaluation: a fixed set of start states ------------------------------------------------

def test_episode_quota_spreads_exactly_the_episodes():
    from harness.evaluation import episode_quota
    assert episode_quota(4, 4).tolist() == [1, 1, 1, 1]
    assert episode_quota(6, 4).tolist() == [2, 2, 1, 1]
    assert episode_quota(3, 5).tolist() == [1, 1, 1, 0, 0]
    assert episode_quota(40, 20).sum() == 40


def test_short_episodes_are_not_over_counted(split_regs):
    # Copies 0-1 end after 5 steps, copies 2-3 after 50; one episode per start state gives 27.5
    # ("the first 4 episodes to end" gives 5.0).
    trainer = split_trainer(split_regs, eval_envs=4, eval_episodes=4)
    try:
        assert float(np.mean(trainer.evaluate())) == 27.5
        assert sorted(trainer.evaluate(6)) == [5.0, 5.0, 5.0, 5.0, 50.0, 50.0]  # quota [2, 2, 1, 1]
        assert trainer._evaluation()["eval_return"] == 27.5
    finally:
        trainer.close()


def test_evaluation_on_a_real_terminating_task_plays_episode_k_of_copy_c(regs):
    """Hopper falls: copy 1's episodes end a step earlier than copy 0's, so "the first 5 episodes to
    end" would take 3 from copy 1. The protocol takes episodes 0-2 of copy 0 and 0-1 of copy 1,
    checked against the same episodes played by hand and summed from the rewards."""
    cfg = build_config({**TINY, "task": "mamujoco/Hopper-3x1", "eval_envs": 2, "eval_episodes": 5,
                        "hidden_sizes": [16], "env": {"episode_limit": 300}})
    trainer = Trainer(cfg, regs, None, progress=False)
    task = make_task(regs, cfg.task, 2, cfg.seed, cfg.env, stream=EVAL_STREAM)
    try:
        got = trainer.evaluate()
        obs, _ = task.reset()
        running, per_copy, lengths, steps = np.zeros(2), [[], []], [[], []], np.zeros(2, int)
        fell = False
        while min(len(p) for p in per_copy) < 3:
            res = task.step(trainer.act(obs, deterministic=True)[0])
            running += res.reward
            steps += 1
            fell |= bool(res.terminated.any())
            for c in np.flatnonzero(res.terminated | res.truncated):
                per_copy[c].append(running[c])
                lengths[c].append(steps[c])
                running[c] = steps[c] = 0
            obs = res.obs
        assert fell, "the hoppers should fall (episodes ending by termination)"
        assert lengths[0][:3] != lengths[1][:3], "the copies' episodes should differ in length"
        expected = per_copy[0][:3] + per_copy[1][:2]
        assert len(got) == 5
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    finally:
        task.close()
        trainer.close()


def test_absolute_metric_uses_the_same_protocol(split_regs, tmp_path):
    cfg = build_config({**TINY, "task": "split/none", "hidden_sizes": [8], "steps": 50, "eval_envs": 4,
                        "eval_episodes": 4, "absolute_factor": 2})
    Trainer(cfg, split_regs, tmp_path / "run", progress=False).run_training()
    absolute = json.loads((tmp_path / "run" / "absolute.json").read_text())
    assert absolute["episodes"] == 8 and sorted(absolute["returns"]) == [5.0] * 4 + [50.0] * 4
    assert absolute["absolute_return"] == 27.5
    rows = RunDir(tmp_path / "run").rows()
    assert [float(r["eval_return"]) for r in rows if r["eval_return"]] == [27.5, 27.5]


# -- 2. a shared actor knows which agent it acts for ----------------------------------------

def _mappo(regs, task, **over):
    cfg = build_config({**TINY, "scheme": "mappo", "task": task, "env": {"episode_limit": 30}, **over})
    return Trainer(cfg, regs, None, progress=False)


def test_shared_mappo_actor_gets_a_one_hot_agent_id(regs):
    trainer = _mappo(regs, "mamujoco/HalfCheetah-2x3")
    try:
        scheme = trainer.scheme
        assert len(scheme.groups) == 1 and scheme.actors[0] is scheme.actors[1]
        assert scheme.actor_layout() == [{"agents": [0, 1], "shared": True, "agent_id": "one-hot appended",
                                          "input_dim": 12 + 2}]
        first_layer = [p for p in scheme.actors[0].parameters() if p.dim() == 2][0]
        assert first_layer.shape[1] == 14
        # The same observation gives different actions for the two agents.
        obs = trainer.obs[0][:1]
        a0, a1 = trainer.act([obs, obs], deterministic=True)[0]
        assert not np.allclose(a0, a1)
        # Acting (the NumPy policy) and training (the group's batch) see the same inputs:
        # the rollout's log-probs equal the shared actor's on the batch before any update.
        batch, _ = trainer.collect()
        group = scheme.groups[0]
        obs_b, act_b, old_b = group.data(batch)
        with torch.no_grad():
            logp, _ = group.actor.evaluate(obs_b, act_b)
        np.testing.assert_allclose(logp.numpy(), old_b.numpy(), atol=1e-4)
        assert obs_b.shape[1] == 14 and torch.equal(obs_b[: len(batch.obs[0]), 12:],
                                                    torch.tensor([[1.0, 0.0]]).expand(len(batch.obs[0]), 2))
    finally:
        trainer.close()


def test_observations_that_carry_the_id_get_none_appended(regs):
    trainer = _mappo(regs, "mamujoco/HalfCheetah-2x3", env={"episode_limit": 30, "obs_mode": "global"})
    try:
        layout = trainer.scheme.actor_layout()
        assert layout[0]["agent_id"] == "in the observation"
        assert layout[0]["input_dim"] == trainer.task.obs_dims[0]
    finally:
        trainer.close()


def test_unshared_actors_and_config_json_record_the_rule(regs, tmp_path):
    out = tmp_path / "run"
    cfg = build_config({**TINY, "scheme": "mappo", "task": "mamujoco/Hopper-3x1", "steps": 50,
                        "env": {"episode_limit": 30}})
    Trainer(cfg, regs, out, progress=False).run_training()
    actors = json.loads((out / "config.json").read_text())["actors"]
    # Hopper-3x1's local observations differ in size (8, 9, 8): one actor per agent.
    assert [a["input_dim"] for a in actors] == [8, 9, 8] and not any(a["shared"] for a in actors)


# -- 4. results say which plugin code made them -------------------------------------------

SCHEME_FILE = '''
from harness import hookimpl
from harness_plugins.happo import HAPPO

class Mine(HAPPO):
    pass

@hookimpl
def register_schemes(register):
    register("mine", Mine)
'''


def test_runs_record_plugins_and_plot_refuses_mixed_plugin_code(tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text(SCHEME_FILE)
    root = tmp_path / "results"
    for seed in (1, 2):
        if seed == 2:
            plugin.write_text(SCHEME_FILE + "\n# edited between two runs of one comparison\n")
        regs = load_plugins([str(plugin)])
        cfg = build_config({**TINY, "scheme": "mine", "steps": 50, "seed": seed})
        Trainer(cfg, regs, root / "mpe/simple_spread" / "mine" / f"seed_{seed}", progress=False).run_training()
    records = [json.loads((root / "mpe/simple_spread" / "mine" / f"seed_{s}" / "config.json").read_text())
               for s in (1, 2)]
    for record, text in zip(records, (SCHEME_FILE, SCHEME_FILE + "\n# edited between two runs of one comparison\n")):
        mine = [p for p in record["plugins"] if p["name"] == "mine"][0]
        assert mine["source"] == "--plugin file" and mine["file"] == str(plugin.resolve())
        import hashlib
        assert mine["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        builtin = [p for p in record["plugins"] if p["name"] == "mappo"][0]
        assert builtin["distribution"] == "happo-harness" and builtin["version"]
        assert set(record["code"]) == {"scheme", "task", "network"}
    assert records[0]["code_digest"] != records[1]["code_digest"]
    assert records[0]["code"]["task"] == records[1]["code"]["task"]
    with pytest.raises(HarnessError, match=r"different plugin code: harness_inline_mine=\w+ in .*seed_1.* vs "):
        plot_results(root)
    assert plot_results(root, allow_mixed=True)


# -- 5. a task's bad output is blamed on the task ------------------------------------------

@pytest.mark.parametrize("fault, needle", [
    ("nan_reward", "non-finite values (NaN or inf) in its rewards"),
    ("nan_obs", "non-finite values (NaN or inf) in its observations"),
    ("obs_dim", "reset: agent 0's observation has shape (2, 4), expected (2, 3)"),
    ("obs_dtype", "agent 0's observation has dtype float64, expected float32"),
    ("state_dim", "global state has shape (2, 5), expected (2, 4)"),
    ("per_copy_returns", "episode_returns while 0 copies ended"),
])
def test_bad_task_output_is_blamed_on_the_task_plugin(split_regs, fault, needle):
    with pytest.raises(PluginError) as info:
        trainer = split_trainer(split_regs, fault, steps=200, eval_envs=4)
        trainer.run_training()
    message = str(info.value)
    assert message.startswith(f"task plugin 'split_lengths' (split/{fault}): ") and needle in message
    assert "diverged" not in message and "\n" not in message


def test_bad_task_output_from_the_command_line_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "train", "--plugin", SPLIT, "--task", "split/obs_dim",
                           "--steps", "100", "--out", str(tmp_path / "r"), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "harness: error: task plugin 'split_lengths' (split/obs_dim): reset: agent 0's observation has shape "
        "(20, 4), expected (20, 3) (from the task's declared sizes)"]


# -- 6. marl-eval export carries per-episode returns ----------------------------------------

def test_marl_eval_export_holds_each_evaluations_episode_returns(split_regs, tmp_path):
    root = tmp_path / "results"
    for scheme in ("happo", "mappo"):
        for seed in (1, 2):
            cfg = build_config({**TINY, "task": "split/none", "scheme": scheme, "hidden_sizes": [8], "steps": 100,
                                "seed": seed, "eval_envs": 4, "eval_episodes": 6, "eval_interval": 2})
            Trainer(cfg, split_regs, root / "split" / scheme / f"seed_{seed}", progress=False).run_training()
    plot_results(root)
    data = json.loads((root / "plots" / "marl_eval.json").read_text())
    run = data["split"]["none"]["happo"]["run_1"]
    evals = [r for r in RunDir(root / "split" / "happo" / "seed_1").rows() if r["eval_return"]]
    assert len(run) == len(evals) + 1
    for i, row in enumerate(evals):
        step = run[f"step_{i}"]
        assert step["step_count"] == int(row["env_steps"])
        assert sorted(step["return"]) == [5.0, 5.0, 5.0, 5.0, 50.0, 50.0]
        assert np.mean(step["return"]) == pytest.approx(float(row["eval_return"]))
    assert len(run["absolute_metrics"]["return"]) == 60

    marl_eval = pytest.importorskip("marl_eval.utils.data_processing_utils",
                                    reason="id-marl-eval is not installed (pip install --no-deps id-marl-eval colorama)")
    from marl_eval.utils.diagnose_data_errors import DiagnoseData
    checks = DiagnoseData(json.loads(json.dumps(data))).check_data()
    assert all(all(v for v in c.values()) for c in checks.values()), checks
    processed = marl_eval.data_process_pipeline(json.loads(json.dumps(data)), ["return"])
    got = processed["split"]["none"]["happo"]["run_1"]
    assert got["step_0"]["mean_return"] == pytest.approx(20.0)  # (4 x 5 + 2 x 50) / 6
    assert got["absolute_metrics"]["mean_return"] == pytest.approx(27.5)  # 15 episodes on each of the 4 copies
    matrix, _ = marl_eval.create_matrices_for_rliable(processed, "split", ["return"])
    assert set(matrix["mean_norm_return"]) == {"happo", "mappo"}


def test_continuous_actions_reach_every_task_clipped_to_its_box():
    # The policy's Gaussian samples leave [-1, 1]; the task gets them clipped, the batch keeps them whole.
    regs = load_plugins([SPLIT])
    cfg = build_config({"task": "split/none", "n_envs": 4, "rollout_length": 50, "eval_episodes": 4,
                        "eval_envs": 4, "hidden_sizes": [16], "threads": 1, "seed": 3})
    trainer = Trainer(cfg, regs, None, progress=False)
    try:
        batch, _ = trainer.collect()
        assert max(float(a.abs().max()) for a in batch.actions) > 1.0
        assert trainer.task.max_abs_action <= 1.0
        trainer.evaluate()
        assert trainer.eval_task.max_abs_action <= 1.0
    finally:
        trainer.close()
