"""Continuing training: ``--extend`` a finished run to a larger budget, and ``init_from`` another run."""

import csv
import json
import subprocess
import sys

import pytest

TIMING = {"steps_per_s", "collect_s", "update_s", "wall_s"}
BASE = ["--task", "mpe/simple_spread", "--set", "n_envs=2", "--set", "rollout_length=50", "--set", "eval_interval=2",
        "--set", "eval_episodes=2", "--set", "eval_envs=2", "--set", "hidden_sizes=16", "--quiet"]


def _train(out, steps, *extra):
    return subprocess.run([sys.executable, "-m", "harness.cli", "train", *BASE, "--steps", str(steps), "--out", str(out),
                           *extra], capture_output=True, text=True, timeout=300)


def _rows(run):
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


def test_an_extended_run_is_the_longer_run(tmp_path):
    assert _train(tmp_path / "ext", 200).returncode == 0
    res = _train(tmp_path / "ext", 400, "--extend")
    assert res.returncode == 0, res.stderr
    assert _train(tmp_path / "long", 400).returncode == 0
    assert _rows(tmp_path / "ext") == _rows(tmp_path / "long")
    assert json.loads((tmp_path / "ext/absolute.json").read_text()) == json.loads((tmp_path / "long/absolute.json").read_text())
    record = json.loads((tmp_path / "ext/config.json").read_text())
    assert record["config"]["steps"] == 400 and (tmp_path / "ext/DONE").exists()
    assert [(e["from_steps"], e["to_steps"]) for e in record["extended"]] == [(200, 400)]
    # The summary line reports the run's first evaluation, not the resumed part's.
    first = next(r["eval_return"] for r in _rows(tmp_path / "ext") if r["eval_return"])
    assert f"eval return {float(first):.2f} ->" in res.stdout


@pytest.mark.parametrize("extra, message", [
    (["--set", "lr=0.001"], "--extend changes only steps; this also changes lr 0.0005 -> 0.001"),
    (["--set", "steps=100"], "--extend: steps=100 must be larger than the run's 200"),
])
def test_an_extension_that_changes_more_than_steps_is_refused(tmp_path, extra, message):
    assert _train(tmp_path / "run", 200).returncode == 0
    res = _train(tmp_path / "run", 400, "--extend", *extra)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert json.loads((tmp_path / "run/config.json").read_text())["config"]["steps"] == 200


def test_a_decaying_schedule_is_extended_only_when_accepted(tmp_path):
    assert _train(tmp_path / "run", 200, "--set", "lr_decay=true").returncode == 0
    res = _train(tmp_path / "run", 400, "--set", "lr_decay=true", "--extend")
    assert res.returncode == 2 and "--accept-new-schedule" in res.stderr
    res = _train(tmp_path / "run", 400, "--set", "lr_decay=true", "--extend", "--accept-new-schedule")
    assert res.returncode == 0, res.stderr
    fractions = [float(r["lr_fraction"]) for r in _rows(tmp_path / "run") if r["lr_fraction"]]
    # 2 iterations of 100 steps decay 1, 0.5; then the new budget's schedule from iteration 2 of 4.
    assert fractions == pytest.approx([1, 0.5, 0.5, 0.25])


def test_a_run_initialised_from_another_starts_from_its_best_policy(tmp_path):
    assert _train(tmp_path / "src", 400).returncode == 0
    res = _train(tmp_path / "warm", 200, "--set", f"init_from={tmp_path / 'src'}")
    assert res.returncode == 0, res.stderr
    best = json.loads((tmp_path / "src/absolute.json").read_text())["best_eval_return"]
    first = next(float(r["eval_return"]) for r in _rows(tmp_path / "warm") if r["eval_return"])
    assert first == pytest.approx(best, abs=1e-4)  # same seed, same evaluation episodes, the same policy
    record = json.loads((tmp_path / "warm/config.json").read_text())
    assert record["init_from"]["file"].endswith("best.pt") and len(record["init_from"]["sha256"]) == 64
    # init_from is part of the config: the same directory without it is another run.
    res = _train(tmp_path / "warm", 200)
    assert res.returncode == 2 and "init_from" in res.stderr
    # A policy of other sizes is a one-line error.
    res = _train(tmp_path / "bad", 200, "--set", f"init_from={tmp_path / 'src'}", "--set", "hidden_sizes=32")
    assert res.returncode == 2 and "does not fit this run's networks" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("case, message", [
    ("missing", "--extend: there is no run in"),
    ("edited", "damaged: its config does not match its config_digest"),
])
def test_extend_refuses_a_missing_or_edited_run(tmp_path, case, message):
    run = tmp_path / "run"
    if case == "edited":
        assert _train(run, 200).returncode == 0
        record = json.loads((run / "config.json").read_text())
        record["config"]["lr"] = 0.1  # edited by hand; the digest no longer matches
        (run / "config.json").write_text(json.dumps(record))
    res = _train(run, 400, "--extend", *(["--set", "lr=0.1"] if case == "edited" else []))
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_init_from_a_file_that_is_not_a_checkpoint_says_so(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    res = _train(tmp_path / "run", 200, "--set", f"init_from={bad}")
    assert res.returncode == 2 and "is not a harness checkpoint" in res.stderr
    res = _train(tmp_path / "run2", 200, "--set", f"init_from={tmp_path / 'nowhere'}")
    assert res.returncode == 2 and "does not exist" in res.stderr and not (tmp_path / "run2").exists()


def test_a_warm_started_run_is_evaluated_after_its_source_is_gone(tmp_path):
    import shutil
    pytest.importorskip("tensorboard", reason="the run logs to TensorBoard: pip install -e \".[test]\"")
    assert _train(tmp_path / "src", 200).returncode == 0
    assert _train(tmp_path / "warm", 200, "--set", f"init_from={tmp_path / 'src'}",
                  "--set", "loggers=tensorboard").returncode == 0
    shutil.rmtree(tmp_path / "src")
    res = subprocess.run([sys.executable, "-m", "harness.cli", "eval", str(tmp_path / "warm"), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["episodes"] == 2
