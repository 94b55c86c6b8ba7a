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


def test_a_scheme_can_take_its_own_budget_or_skip_tuning(tmp_path):
    suite_file = tmp_path / "s.toml"
    extra = ('[schemes.happo]\ntune = { trials = 2, steps = 100, seeds = [7], space = { ppo_epochs = { low = 1, '
             'high = 2 } } }\n')
    suite_file.write_text(tiny_suite(100, seeds="[1]", extra=extra))
    suite = load_suite(suite_file, tmp_path / "out")
    assert list(suite.tunings) == ["happo"]
    assert suite.tunings["happo"].sweep.seeds == [7]
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_suite(100, seeds="[1]", extra="[tune]\ntrials = 2\nstep = 100\n"))
    with pytest.raises(HarnessError, match=r"unknown key\(s\) \['step'\]"):
        load_suite(bad, tmp_path / "out")


def test_best_so_far_keeps_the_running_maximum_of_complete_trials(tmp_path):
    csv = tmp_path / "trials.csv"
    csv.write_text("number,value,state\n0,-5.0,COMPLETE\n1,,FAIL\n2,-7.0,COMPLETE\n3,-2.5,COMPLETE\n4,-9,PRUNED\n")
    assert best_so_far(csv) == [(0, -5.0), (2, -5.0), (3, -2.5)]
