"""Fault injection with real processes and real signals: killed, corrupted, diverging, full-disk runs."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HARNESS = str(Path(sys.executable).with_name("harness"))
TIMING = {"steps_per_s", "collect_s", "update_s", "wall_s"}
# MPE episodes are 25 steps and rollouts 25 steps, so every checkpoint falls on an episode boundary
# and a resumed run continues exactly.
RUN = ["train", "--task", "mpe/simple_spread", "--steps", "1500", "--seed", "3", "--quiet",
       "--set", "n_envs=2", "--set", "rollout_length=25", "--set", "eval_episodes=2", "--set", "eval_envs=2",
       "--set", "hidden_sizes=32,32", "--set", "threads=1", "--set", "eval_interval=4",
       "--set", "checkpoint_interval=3"]


def harness(*args, timeout=600):
    return subprocess.run([HARNESS, *args], capture_output=True, text=True, timeout=timeout)


def rows(path: Path) -> list[dict]:
    with open(path / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "run"
    done = harness(*RUN, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def _row_count(path: Path) -> int:
    try:
        return (path / "metrics.csv").read_text().count("\n") - 1
    except FileNotFoundError:
        return -1


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_metrics(reference, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(12)
    kills = 0
    while True:
        proc = subprocess.Popen([HARNESS, *RUN, "--out", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        if kills == 4:  # enough: let the last one finish
            assert proc.wait(timeout=300) == 0
            break
        # Kill at a random moment after the run has made progress (a few new rows), so every kill
        # lands mid-run whatever the machine's speed: between checkpoints, mid-write, anywhere.
        target, deadline = _row_count(out) + rng.randint(2, 5), time.time() + 120
        while _row_count(out) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            assert proc.returncode == 0
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 2, "the run finished before it could be killed twice"
    assert rows(out) == rows(reference)  # row for row, every value except timings
    assert (out / "DONE").exists()
    assert json.loads((out / "absolute.json").read_text()) == json.loads((reference / "absolute.json").read_text())


def test_damaged_checkpoint_falls_back_to_the_previous_one(reference, tmp_path):
    out = tmp_path / "run"
    assert harness(*RUN, "--out", str(out)).returncode == 0
    # Make it an unfinished run whose newest checkpoint is damaged, then resume it.
    (out / "DONE").unlink()
    (out / "absolute.json").unlink()
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # truncated, as a failing disk leaves it
    resumed = harness(*RUN, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "checkpoint.pt (" in resumed.stderr and "resuming from checkpoint.prev.pt" in resumed.stderr
    assert rows(out) == rows(reference)


def test_every_checkpoint_damaged_is_a_clear_error(reference, tmp_path):
    out = tmp_path / "run"
    assert harness(*RUN, "--out", str(out)).returncode == 0
    (out / "DONE").unlink()
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (out / name).write_bytes(b"garbage")
    res = harness(*RUN, "--out", str(out))
    assert res.returncode == 2
    assert "every checkpoint in" in res.stderr and "checkpoint.pt (" in res.stderr and "Traceback" not in res.stderr


def test_damaged_metrics_line_is_a_clear_error(reference, tmp_path):
    out = tmp_path / "run"
    assert harness(*RUN, "--out", str(out)).returncode == 0
    (out / "DONE").unlink()
    lines = (out / "metrics.csv").read_text().splitlines(keepends=True)
    lines[4] = "3,75,garbage\n"
    (out / "metrics.csv").write_text("".join(lines))
    res = harness(*RUN, "--out", str(out))
    assert res.returncode == 2
    assert "metrics.csv: line 5 is damaged ('3,75,garbage')" in res.stderr and "Traceback" not in res.stderr


NAN_PLUGIN = '''
import math
from harness import hookimpl
from harness_plugins.happo import HAPPO

class BlowsUp(HAPPO):
    """HAPPO whose policy loss turns NaN at the 5th update."""
    calls = 0
    def update(self, batch):
        metrics = super().update(batch)
        BlowsUp.calls += 1
        if BlowsUp.calls == 5:
            metrics["policy_loss"] = math.nan
        return metrics

@hookimpl
def register_schemes(register):
    register("blows_up", BlowsUp)
'''


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    plugin = tmp_path / "blows_up.py"
    plugin.write_text(NAN_PLUGIN)
    out = tmp_path / "run"
    res = harness(*RUN, "--plugin", str(plugin), "--scheme", "blows_up", "--out", str(out))
    assert res.returncode == 2
    assert "training diverged at iteration 5: non-finite policy_loss; the last checkpoint is kept" in res.stderr
    import torch
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 3  # checkpoint_interval=3: the last one before the NaN
    assert [int(r["iteration"]) for r in rows(out)] == [0, 1, 2, 3, 4]  # nothing of the bad iteration
    assert not (out / "DONE").exists()


def test_full_disk_is_reported_before_training(tmpfs):
    mnt = tmpfs("size=64k")
    res = harness(*RUN, "--out", str(mnt / "run"))
    assert res.returncode == 2
    assert "has 64.0 KiB free; this run needs about" in res.stderr, res.stderr
    assert not (mnt / "run" / "metrics.csv").exists()  # nothing started


def test_absolute_metric_re_evaluates_the_best_policy(reference):
    absolute = json.loads((reference / "absolute.json").read_text())
    evals = [(float(r["eval_return"]), int(r["iteration"])) for r in rows(reference) if r["eval_return"]]
    best_return, best_iteration = max(evals, key=lambda e: e[0])  # first maximum wins ties
    assert absolute["best_eval_return"] == pytest.approx(best_return, abs=1e-3)
    assert absolute["best_iteration"] == min(i for r, i in evals if r == best_return)
    assert absolute["episodes"] == 20  # 10 x eval_episodes
    assert (reference / "best.pt").exists()


def test_a_metric_the_harness_does_not_know_gets_its_own_column(tmp_path):
    from harness.results import METRIC_COLUMNS, RunDir
    run = RunDir(tmp_path / "run")
    run.prepare()
    run.append_row({"iteration": 0, "env_steps": 0, "eval_return": -1.5})
    run.append_row({"iteration": 1, "env_steps": 100, "policy_loss": 0.25, "kl": 0.0125, "phase": "warmup"})
    run.append_row({"iteration": 2, "env_steps": 200, "kl": 0.02})
    assert run.header() == METRIC_COLUMNS + ["kl", "phase"]
    rows = run.rows()
    assert [r["kl"] for r in rows] == ["", "0.0125", "0.02"] and rows[1]["phase"] == "warmup"
    assert rows[0]["eval_return"] == "-1.5" and rows[1]["policy_loss"] == "0.25"
    run.keep_rows_up_to(1)  # a resume keeps the extra columns
    assert run.header() == METRIC_COLUMNS + ["kl", "phase"] and [r["kl"] for r in run.rows()] == ["", "0.0125"]
