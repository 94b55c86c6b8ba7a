"""Tuned comparisons: a suite tunes each scheme with the same budget, then compares the tuned
configurations on other seeds, recording the tuning in every run's provenance."""

import json
import subprocess
import sys

import optuna
import pytest

from harness.bench import load_suite
from harness.errors import HarnessError
from harness.tuning import best_so_far

from conftest import tiny_suite

TUNE = """
[tune]
trials = 2
steps = 100
seeds = 1
evaluations = 2
sampler = "random"
pruner = "none"
space = { ppo_epochs = { low = 1, high = 3 }, hidden_sizes = "16" }
"""


def _bench(suite_file, out, *args):
    return subprocess.run([sys.executable, "-m", "harness.cli", "bench", str(suite_file), "--out", str(out), "--quiet",
                           *args], capture_output=True, text=True, timeout=600)


def test_a_tuned_suite_tunes_each_scheme_then_compares_with_the_best_parameters(tmp_path):
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(tiny_suite(100, seeds="[1, 2]", extra=TUNE))
    out = tmp_path / "out"
    res = _bench(suite_file, out)
    assert res.returncode == 0, res.stderr
    for scheme in ("happo", "mappo"):
        study = optuna.load_study(study_name=f"tiny_{scheme}", storage=f"sqlite:///{out}/.tuning/{scheme}/study.db")
        assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 2
        best = study.best_trial
        # The tuning ran on seed 3 (after the comparison's last seed), with the suite's own settings.
        trial_cfg = json.loads(next((out / ".tuning" / scheme / "trials").rglob("config.json")).read_text())
        assert trial_cfg["config"]["seed"] == 3 and trial_cfg["config"]["n_envs"] == 2
        for seed in (1, 2):
            record = json.loads((out / "mpe/simple_spread" / scheme / f"seed_{seed}" / "config.json").read_text())
            assert record["tuning"]["trial"] == best.number
            assert record["tuning"]["params"] == {"hidden_sizes": "16", **best.params}
            assert record["config"]["ppo_epochs"] == best.params["ppo_epochs"]
            assert record["config"]["lr"] == best.params["lr"]
            assert record["config"]["hidden_sizes"] == [16]
            assert record["tuning"]["env_steps"] == 2 * 100  # two trials of one 100-step run
    assert (out / "plots" / "tuning.png").stat().st_size > 10_000
    runs = json.loads((out / "plots" / "provenance.json").read_text())
    assert {r["tuning"]["study"] for r in runs} == {"tiny_happo", "tiny_mappo"}
    assert len(runs) == 4  # the tuning trials' runs are not results of the comparison
    # Re-running resumes: nothing is tuned or trained again.
    res = _bench(suite_file, out, "--no-plot")
    assert res.returncode == 0, res.stderr
    study = optuna.load_study(study_name="tiny_happo", storage=f"sqlite:///{out}/.tuning/happo/study.db")
    assert len(study.trials) == 2
    assert "4 already finished" in res.stderr


def test_tuning_seeds_must_differ_from_the_comparison_seeds(tmp_path):
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(tiny_suite(100, seeds="[1, 2]", extra=TUNE.replace("seeds = 1", "seeds = [2, 5]")))
    with pytest.raises(HarnessError, match=r"tuning seeds \[2, 5\] overlap the comparison's seeds \[1, 2\]"):
        load_suite(suite_file, tmp_path / "out")


def test_unequal_tuning_is_refused_unless_the_suite_allows_it(tmp_path):
    suite_file = tmp_path / "s.toml"
    extra = ('[schemes.happo]\ntune = { trials = 2, steps = 100, seeds = [7], space = { ppo_epochs = { low = 1, '
             'high = 2 } } }\n')
    suite_file.write_text(tiny_suite(100, seeds="[1]", extra=extra))  # happo tuned, mappo not
    with pytest.raises(HarnessError, match="unequal tuning: happo tuned and mappo not"):
        load_suite(suite_file, tmp_path / "out")
    budgets = TUNE + '[schemes.mappo]\ntune = { trials = 5 }\n'  # the same [tune], but more trials for mappo
    suite_file.write_text(tiny_suite(100, seeds="[1]", extra=budgets))
    with pytest.raises(HarnessError, match="unequal tuning: trials is 2 for happo and 5 for mappo"):
        load_suite(suite_file, tmp_path / "out")
    # Allowed when the suite says so, and then recorded.
    suite_file.write_text(tiny_suite(100, seeds="[1]", extra=extra).replace("[suite]\n", "[suite]\nunequal_tuning = true\n"))
    suite = load_suite(suite_file, tmp_path / "out")
    assert list(suite.tunings) == ["happo"]
    assert suite.tunings["happo"].sweep.seeds == [7] and suite.tunings["happo"].unequal
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_suite(100, seeds="[1]", extra="[tune]\ntrials = 2\nstep = 100\n"))
    with pytest.raises(HarnessError, match=r"unknown key\(s\) \['step'\]"):
        load_suite(bad, tmp_path / "out")


def test_best_so_far_keeps_the_running_maximum_of_complete_trials(tmp_path):
    csv = tmp_path / "trials.csv"
    csv.write_text("number,value,state\n0,-5.0,COMPLETE\n1,,FAIL\n2,-7.0,COMPLETE\n3,-2.5,COMPLETE\n4,-9,PRUNED\n")
    assert best_so_far(csv) == [(0, -5.0), (2, -5.0), (3, -2.5)]


def test_a_multi_task_objective_averages_normalised_returns(tmp_path):
    """Two tasks with returns of different sizes: each run's objective is (x - floor) / (ceiling - floor),
    so the task with the larger returns does not decide; a task without a reference is refused."""
    from harness.objective import task_scales
    from harness.plugins import load_plugins
    from harness.references import floor
    from harness.sweep import sweep_from_data
    regs = load_plugins()
    data = {"sweep": {"name": "two", "scheme": "happo", "tasks": ["mpe/simple_spread", "mpe/simple_speaker_listener"],
                      "steps": 100, "seeds": 1, "eval_episodes": 2, "trials": 1},
            "config": {"n_envs": 2, "rollout_length": 25, "eval_envs": 2},
            "space": {"lr": {"low": 1e-4, "high": 1e-3}}}
    sweep = sweep_from_data(data, tmp_path / "two.toml", tmp_path / "out", regs)
    # The digest says the objective is normalised: a study made when it averaged raw returns is refused.
    import hashlib
    raw_digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert sweep.digest != raw_digest
    scales = task_scales(sweep, regs)
    assert set(scales) == set(sweep.tasks) and all(high == 0.0 for _, high in scales.values())
    from harness.objective import trial_configs
    cfg = next(c for t, _, c in trial_configs(sweep, {}) if t == "mpe/simple_spread")
    assert scales["mpe/simple_spread"][0] == floor(regs, cfg, list(sweep.seeds))["floor"] < -1
    data["sweep"]["tasks"] = ["mpe/simple_spread", "mamujoco/Walker2d-2x3"]
    with pytest.raises(HarnessError, match="mamujoco/Walker2d-2x3 has no reference return"):
        sweep_from_data(data, tmp_path / "two.toml", tmp_path / "out", regs)
