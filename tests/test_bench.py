"""Benchmark suites: validation of suite files, resume after a killed worker, plots at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.bench import load_suite
from harness.errors import HarnessError
from harness.results import RunDir

from conftest import tiny_suite

HARNESS = str(Path(sys.executable).with_name("harness"))

SUITE = tiny_suite("{steps}", extra='[schemes.mappo]\nshare_params = "false"\n')


def write(tmp_path, text, name="suite.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_suite_expands_runs_with_overrides_in_order(tmp_path, regs):
    suite = load_suite(write(tmp_path, SUITE.format(steps=100)), tmp_path / "out", regs)
    assert [(r.scheme, r.seed) for r in suite.runs] == [("happo", 1), ("happo", 2), ("mappo", 1), ("mappo", 2)]
    assert suite.runs[0].out == tmp_path / "out" / "mpe" / "simple_spread" / "happo" / "seed_1"
    over = dict(suite.runs[2].overrides)
    assert over["share_params"] == "false" and over["threads"] == 1 and over["steps"] == 100


def test_tuned_suite_applies_the_task_plugins_values(tmp_path, regs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = ('[suite]\nschemes=["happo"]\ntasks=["mamujoco/HalfCheetah-2x3"]\nseeds=1\nsteps=1000\ntuned=true\n'
            '[config]\nppo_epochs=3\n')
    suite = load_suite(write(tmp_path, text), tmp_path / "o", regs)
    over = dict(suite.runs[0].overrides)
    assert over["clip"] == 0.05 and over["ppo_epochs"] == 3  # tuned value, then [config] wins


def test_suite_tables_include_override_files(tmp_path, regs):
    (tmp_path / "best.toml").write_text("lr = 0.0007\nclip = 0.1\n[env]\ncontinuous = true\n")
    text = SUITE.format(steps=100).replace('[schemes.mappo]', '[schemes.happo]\ninclude = "best.toml"\nclip = 0.3\n'
                                            '[schemes.mappo]')
    suite = load_suite(write(tmp_path, text), tmp_path / "out", regs)
    happo = dict(suite.runs[0].overrides)
    assert happo["lr"] == 0.0007 and happo["clip"] == 0.3 and happo["env"] == {"continuous": True}
    assert "lr" not in dict(suite.runs[2].overrides)  # mappo is untouched
    bad = write(tmp_path, SUITE.format(steps=100) + 'include = "missing.toml"\n', name="bad.toml")
    with pytest.raises(HarnessError, match="include: config file .*missing.toml' does not exist"):
        load_suite(bad, tmp_path / "out", regs)


@pytest.mark.parametrize("text,needle", [
    ("[suite]\nschemes=['happo']\ntasks=['mpe/simple_spread']\nseeds=1\nsteps=0\n", "steps=0 must be a positive integer"),
    ("[suite]\nschemes=['happo']\ntasks=['mpe/simple_spread']\nseeds=1\nsteps=-5\n", "steps=-5 must be a positive"),
    ("[suite]\nschemes=['happo']\ntasks=['mpe/simple_tag']\nseeds=1\nsteps=10\n", "unknown task 'mpe/simple_tag'"),
    ("[suite]\nschemes=['hapo']\ntasks=['mpe/simple_spread']\nseeds=1\nsteps=10\n", "unknown scheme 'hapo'"),
    ("[suite]\nschemes=['happo']\ntasks=['mpe/simple_spread']\nseeds=1\nsteps=10\nbudget=3\n", "unknown [suite] key(s) ['budget']"),
    ("[suite]\nschemes=['happo']\ntasks=['mpe/simple_spread']\nseeds=1\nsteps=10\n[configs]\n", "unknown table(s) ['configs']"),
    ("[suite]\nschemes=['happo']\ntasks=['mpe/simple_spread']\nseeds=1\nsteps=10\n[config]\nlr='x'\n", "lr='x' is not a number"),
    ("[suite]\nschemes=['happo']\ntasks=['mpe/simple_spread']\nseeds=1\n", "[suite] needs 'steps'"),
    ("[suite]\nschemes='happo'\ntasks=['mpe/simple_spread']\nseeds=1\nsteps=10\n", "schemes must be a non-empty list"),
    ("[suite\n", "not valid TOML"),
])
def test_bad_suite_files_give_one_line_errors(tmp_path, text, needle):
    path = write(tmp_path, text)
    out = subprocess.run([HARNESS, "bench", str(path), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_bench_resumes_after_a_killed_worker_without_duplicates(tmp_path):
    path = write(tmp_path, SUITE.format(steps=1500))
    out = tmp_path / "out"
    proc = subprocess.Popen([HARNESS, "bench", str(path), "--out", str(out), "--jobs", "2", "--no-plot", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 120
    while time.time() < deadline and victim is None:
        time.sleep(0.5)
        run = RunDir(out / "mpe" / "simple_spread" / "happo" / "seed_1")
        if run.checkpoint_file.exists() and len(run.rows()) >= 4 and not run.done:
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            workers = [int(c) for c in children
                       if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="ignore")]
            if workers:
                victim = workers[0]
                os.kill(victim, signal.SIGKILL)
    assert victim is not None, "no worker to kill"
    proc.wait(timeout=120)
    assert proc.returncode != 0
    done_before = {r: RunDir(r).done_file.stat().st_mtime for r in out.glob("mpe/simple_spread/*/seed_*")
                   if RunDir(r).done}
    again = subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--jobs", "2", "--quiet"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    for run_path in out.glob("mpe/simple_spread/*/seed_*"):
        rows = RunDir(run_path).rows()
        iterations = [int(r["iteration"]) for r in rows]
        assert iterations == list(range(31)), (run_path, iterations)  # 1500 steps / 50 per iteration
    for r, mtime in done_before.items():
        assert RunDir(r).done_file.stat().st_mtime == mtime  # finished runs were not re-run
    assert (out / "plots" / "curves.png").stat().st_size > 10_000
    assert (out / "plots" / "summary.md").read_text().count("mpe/simple_spread") >= 2


@pytest.mark.slow
def test_a_sigkilled_worker_fails_only_its_run_and_the_others_finish(tmp_path):
    path = write(tmp_path, SUITE.format(steps=750))
    out = tmp_path / "out"
    proc = subprocess.Popen([HARNESS, "bench", str(path), "--out", str(out), "--jobs", "2", "--no-plot", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    run = RunDir(out / "mpe" / "simple_spread" / "happo" / "seed_1")
    deadline = time.time() + 180
    while time.time() < deadline and victim is None:
        time.sleep(0.2)
        holder = (run.path / ".lock").read_text() if (run.path / ".lock").exists() else ""
        if holder.startswith("pid ") and run.checkpoint_file.exists() and len(run.rows()) >= 3 and not run.done:
            victim = int(holder.split()[1])
            os.kill(victim, signal.SIGKILL)
    assert victim is not None, "no worker to kill"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err
    failed = [line for line in err.splitlines() if line.startswith("harness: run failed")]
    assert failed == [f"harness: run failed: happo mpe/simple_spread seed 1: WorkerDied: worker killed by SIGKILL "
                      f"(process {victim} on {socket.gethostname()})"], err
    assert "BrokenProcessPool" not in err and "Traceback" not in err
    for run_path in out.glob("mpe/simple_spread/*/seed_*"):
        iterations = [int(r["iteration"]) for r in RunDir(run_path).rows()]
        if run_path == run.path:  # its rows up to its last checkpoint, none twice
            assert not RunDir(run_path).done and iterations == list(range(len(iterations))), iterations
        else:  # the others went on in a new pool: finished, each row once
            assert RunDir(run_path).done and iterations == list(range(16)), (run_path, iterations)


def test_an_edited_suite_does_not_reuse_runs_made_with_another_config(tmp_path):
    path = write(tmp_path, SUITE.format(steps=50).replace("seeds = 2", "seeds = 1"))
    out = tmp_path / "out"
    first = subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--quiet"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    happo = out / "mpe" / "simple_spread" / "happo" / "seed_1"
    old_metrics = (happo / "metrics.csv").read_text()
    # Raise the budget and change lr: the finished runs no longer count for the suite.
    path.write_text(path.read_text().replace("steps = 50", "steps = 100").replace("[config]", "[config]\nlr = 0.001"))
    dry = subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0
    assert f"-> {happo} [changed: lr 0.0005 -> 0.001, steps 50 -> 100]" in dry.stdout
    refused = subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"harness: error: {happo} was made with another config than the suite now asks (lr 0.0005 -> 0.001, "
        "steps 50 -> 100) (and 1 more run(s)); pass --rerun-changed to move such runs aside and train them afresh, "
        "or use another --out"]
    assert (happo / "metrics.csv").read_text() == old_metrics  # nothing was touched
    again = subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--quiet", "--rerun-changed"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    moved = list((out / ".replaced").glob("*/mpe/simple_spread/happo/seed_1"))
    assert len(moved) == 1 and (moved[0] / "metrics.csv").read_text() == old_metrics
    assert f"moved {happo} (lr 0.0005 -> 0.001, steps 50 -> 100) to {moved[0]}" in again.stderr
    assert [int(r["env_steps"]) for r in RunDir(happo).rows()][-1] == 100
    assert "[finished]" in subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--dry-run"],
                                          capture_output=True, text=True).stdout
    summary = (out / "plots" / "summary.csv").read_text()  # the moved runs are not plotted beside the new ones
    assert summary.count("mpe/simple_spread") == 2


def test_train_refusal_names_the_differing_keys(tmp_path):
    base = [HARNESS, "train", "--steps", "50", "--set", "n_envs=2", "--set", "rollout_length=25", "--set",
            "eval_episodes=2", "--set", "eval_envs=2", "--out", str(tmp_path / "r"), "--quiet"]
    assert subprocess.run(base, capture_output=True, text=True, timeout=300).returncode == 0
    proc = subprocess.run(base + ["--set", "clip=0.1", "--set", "env.continuous=true"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"harness: error: {str(tmp_path / 'r')!r} holds a run with a different config "
                                   "(clip 0.2 -> 0.1, env.continuous (unset) -> true); use another --out")


def test_task_options_that_mean_the_same_give_one_digest(tmp_path, regs):
    from harness.scheme_config import resolved
    from harness.config import build_config
    digests = set()
    for value in ("true", "True", "1", "yes", True, 1):
        literal = f'"{value}"' if isinstance(value, str) else str(value).lower()
        text = SUITE.format(steps=100) + f'[tasks."mpe/simple_spread"]\n"env.continuous" = {literal}\n'
        suite = load_suite(write(tmp_path, text), tmp_path / "out", regs)
        cfg = resolved(build_config(suite.runs[0].overrides), regs)
        assert cfg.env == {"continuous": True}
        digests.add(cfg.digest())
    assert len(digests) == 1
    bad = write(tmp_path, SUITE.format(steps=100) + '[tasks."mpe/simple_spread"]\n"env.continuous" = "maybe"\n',
                "bad.toml")
    with pytest.raises(HarnessError, match=r"env.continuous='maybe' is not a boolean \(use true or false\)"):
        load_suite(bad, tmp_path / "out", regs)


def test_a_run_trained_with_set_string_is_the_same_run_as_a_suites_bool(tmp_path):
    out = tmp_path / "out"
    run = out / "mpe" / "simple_spread" / "happo" / "seed_1"
    suite = write(tmp_path, tiny_suite(50, schemes=("happo",), seeds="1", extra="[config.env]\ncontinuous = true\n"))
    flags = ["--set", "threads=1", "--set", "eval_interval=1", "--set", "eval_episodes=2", "--set", "n_envs=2",
             "--set", "rollout_length=25", "--set", "eval_envs=2", "--set", "hidden_sizes=16",
             "--set", "checkpoint_interval=1"]
    train = subprocess.run([HARNESS, "train", "--scheme", "happo", "--task", "mpe/simple_spread", "--steps", "50",
                            "--seed", "1", "--out", str(run), "--quiet", "--set", "env.continuous=true"] + flags,
                           capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    dry = subprocess.run([HARNESS, "bench", str(suite), "--out", str(out), "--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert f"-> {run} [finished]" in dry.stdout, dry.stdout
