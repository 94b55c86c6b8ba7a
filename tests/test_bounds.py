"""User-sized inputs are bounded before work starts: counts, threads, scheme options, the memory of
evaluation copies and the disk a video needs, each refused in one line with the figures; a budget that
one iteration overshoots is said; no echoed line shows a password or a token."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HARNESS = str(Path(sys.executable).with_name("harness"))
TINY = ["--set", "n_envs=2", "--set", "rollout_length=25", "--set", "eval_episodes=2", "--set", "eval_envs=2",
        "--set", "hidden_sizes=16", "--set", "threads=1"]


def harness(*args, timeout=300, cwd=None):
    return subprocess.run([HARNESS, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def one_line_error(res, needle):
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ") and needle in lines[0], res.stderr
    return lines[0]


def test_a_huge_eval_envs_is_refused_with_the_figures_before_anything_is_built(tmp_path):
    start = time.monotonic()
    res = harness("train", "--steps", 50, *TINY, "--set", "eval_envs=100000000", "--out", tmp_path / "run")
    line = one_line_error(res, "this config needs about")
    assert "evaluation" in line and "eval_envs=100000000" in line and "lower eval_envs" in line
    assert time.monotonic() - start < 60
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_harness_eval_refuses_evaluation_copies_that_cannot_fit(tmp_path):
    run = tmp_path / "run"
    assert harness("train", "--steps", 50, *TINY, "--out", run, "--quiet").returncode == 0
    import json
    record = json.loads((run / "config.json").read_text())
    record["config"]["eval_envs"] = 100_000_000  # as a results tree from elsewhere may say
    (run / "config.json").write_text(json.dumps(record))
    one_line_error(harness("eval", run), "lower eval_envs")


@pytest.mark.parametrize("args, needle", [
    (["--video-episodes", "1000000"], "--video-episodes 1000000 must be an integer from 1 to 1,000"),
    (["--episodes", "2147483647"], "--episodes 2147483647 must be an integer from 1 to 1,000,000"),
])
def test_eval_counts_are_bounded(tmp_path, args, needle):
    video = ["--video", tmp_path / "v.gif"] if "--video-episodes" in args else []
    one_line_error(harness("eval", tmp_path, *video, *args), needle)


def test_video_frames_are_streamed_and_a_video_the_disk_cannot_hold_is_refused_before_scoring(tmp_path, tmpfs):
    run = tmp_path / "run"
    assert harness("train", "--steps", 50, *TINY, "--out", run, "--quiet").returncode == 0
    mnt = tmpfs("size=1m")
    # 1,000 episodes of 25 steps: about 25,000 frames of a few KiB each, far more than 1 MiB
    res = harness("eval", run, "--video", mnt / "v.gif", "--video-episodes", 1000)
    line = one_line_error(res, "up to 25,001 frames")
    assert "free: lower --video-episodes or raise --frame-step" in line
    assert "mean return" not in res.stdout  # refused before scoring
    assert list(mnt.iterdir()) == []  # no partial file
    # A video that fits is written in place, frame by frame, with its temporary file gone.
    res = harness("eval", run, "--video", mnt / "v.gif", "--video-episodes", 2)
    assert res.returncode == 0, res.stderr
    from PIL import Image
    with Image.open(mnt / "v.gif") as im:
        assert im.n_frames == 50 and im.info["loop"] == 0 and im.info["duration"] == 100
    assert [p.name for p in mnt.iterdir()] == ["v.gif"]


def test_the_video_writer_keeps_no_frames_in_memory(tmp_path):
    from harness.video import VideoWriter
    writer = VideoWriter(tmp_path / "v.gif", fps=10)
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(5):
        writer.add(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        sizes.append(writer.partial.stat().st_size)  # each frame is on disk once added
    assert sizes == sorted(sizes) and sizes[0] > 0 and len(set(sizes)) == 5
    assert not (tmp_path / "v.gif").exists()
    writer.close()
    assert not writer.partial.exists()
    from PIL import Image
    with Image.open(tmp_path / "v.gif") as im:
        assert im.n_frames == 5
        im.seek(4)
        assert im.convert("RGB").size == (64, 64)


SUITE = """
[suite]
name = "s"
schemes = ["happo", "mappo"]
tasks = ["mpe/simple_spread"]
seeds = 1
steps = 100
[config]
n_envs = 2
rollout_length = 25
hidden_sizes = [16]
{extra}
"""

SWEEP = """
[sweep]
name = "w"
scheme = "happo"
tasks = ["mpe/simple_spread"]
steps = 100
{extra}
[space]
lr = {{ low = 1e-4, high = 1e-3 }}
"""


@pytest.mark.parametrize("kind, extra, needle", [
    ("suite", "[tune]\ntrials = 2\nsteps = 100\nseeds = 2147483647",
     "tune of happo: seeds=2147483647 must be a count from 1 to 1000"),
    ("suite", "[tune]\ntrials = 2147483647\nsteps = 100",
     "[sweep] trials=2147483647 must be an integer from 1 to 10,000"),
    ("suite", "[tune]\ntrials = 2\nsteps = 100\nevaluations = 2147483647",
     "[sweep] evaluations=2147483647 must be an integer from 1 to 1,000"),
    ("sweep", "trials = 99999999", "[sweep] trials=99999999 must be an integer from 1 to 10,000"),
    ("sweep", "seeds = 2147483647", "[sweep] seeds=2147483647 must be a count from 1 to 1000"),
    ("sweep", "max_retry = 2147483647", "[sweep] max_retry=2147483647 must be an integer from 0 to 1,000"),
])
def test_counts_in_suites_and_sweeps_are_bounded_at_once(tmp_path, kind, extra, needle):
    path = tmp_path / f"{kind}.toml"
    path.write_text((SUITE if kind == "suite" else SWEEP).format(extra=extra))
    start = time.monotonic()
    args = ["bench", path, "--dry-run"] if kind == "suite" else ["sweep", path]
    one_line_error(harness(*args, "--out", tmp_path / "out", timeout=120), needle)
    assert time.monotonic() - start < 60
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, needle", [
    (["bench", "{suite}", "--jobs", "100000"], "--jobs 100000 must be an integer from 1 to 1,000"),
    (["sweep", "{sweep}", "--jobs", "100000"], "--jobs 100000 must be an integer from 1 to 1,000"),
    (["sweep", "{sweep}", "--trials", "2147483647"], "--trials 2147483647 must be an integer from 1 to 10,000"),
])
def test_count_flags_are_bounded(tmp_path, args, needle):
    (tmp_path / "suite.toml").write_text(SUITE.format(extra=""))
    (tmp_path / "sweep.toml").write_text(SWEEP.format(extra=""))
    args = [a.format(suite=tmp_path / "suite.toml", sweep=tmp_path / "sweep.toml") for a in args]
    one_line_error(harness(*args, "--out", tmp_path / "out"), needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("threads", [100_000, 512])
def test_threads_are_bounded_by_the_machine(tmp_path, threads):
    import os
    cores = len(os.sched_getaffinity(0))
    start = time.monotonic()
    res = harness("train", "--steps", 50, *TINY, "--set", f"threads={threads}", "--out", tmp_path / "run")
    one_line_error(res, f"threads={threads} is more than this machine can use: {cores} core(s) here, so at most "
                        f"threads={2 * cores}")
    assert time.monotonic() - start < 60 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("option, needle", [
    ("scheme.kl_threshold=1e308", "scheme.kl_threshold=1e+308 must be from 0 to 1"),
    ("scheme.kl_threshold=nan", "scheme.kl_threshold=nan must be a finite number from 0 to 1"),
    ("scheme.ls_step=100000", "scheme.ls_step=100000 must be from 1 to 1000"),
    ("scheme.accept_ratio=-1", "scheme.accept_ratio=-1.0 must be from 0 to 1"),
])
def test_scheme_options_have_declared_ranges(tmp_path, option, needle):
    res = harness("train", "--scheme", "hatrpo", "--steps", 50, *TINY, "--set", option, "--out", tmp_path / "run")
    one_line_error(res, needle)
    assert not (tmp_path / "run").exists()


def test_task_options_have_declared_upper_bounds(tmp_path):
    one_line_error(harness("train", "--steps", 50, *TINY, "--set", "env.workers=100000", "--out", tmp_path / "r"),
                   "env.workers=100000 must be <= 1024")


def test_plugins_options_lists_the_ranges():
    res = harness("plugins", "--options", "hatrpo")
    assert res.returncode == 0 and "(from 0 to 1)" in res.stdout, res.stderr


def test_a_budget_rounded_up_to_one_iteration_is_said(tmp_path):
    res = harness("train", "--steps", 10, *TINY, "--out", tmp_path / "run", "--quiet")
    assert res.returncode == 0, res.stderr
    assert ("harness: note: steps=10 is rounded up to one iteration of n_envs=2 x rollout_length=25 = 50 steps: "
            "50 steps in all, 40 more (5.00x the budget)") in res.stderr
    # a budget that iterations meet exactly says nothing
    res = harness("train", "--steps", 100, *TINY, "--out", tmp_path / "exact", "--quiet")
    assert res.returncode == 0 and "note" not in res.stderr, res.stderr


def test_the_budget_note_counts_iterations_and_stays_quiet_for_small_roundings():
    from harness.config import build_config
    cfg = build_config({"steps": 1600, "n_envs": 5000})
    assert cfg.budget_note().startswith("steps=1,600 is rounded up to one iteration of n_envs=5000 x "
                                        "rollout_length=200 = 1,000,000 steps: 1,000,000 steps in all, 998,400 "
                                        "more (625x the budget)")
    assert build_config({"steps": 6000, "n_envs": 20}).budget_note().startswith(
        "steps=6,000 is rounded up to 2 iterations")
    assert build_config({"steps": 201_000, "n_envs": 20}).budget_note() is None  # 3,000 more: under a tenth


def test_a_malformed_storage_url_does_not_print_its_password(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(extra="trials = 2"))
    res = harness("sweep", path, "--out", tmp_path / "out", "--storage", "postgresql:/u:S3cretPW@host/db")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "S3cretPW" not in res.stderr and "postgresql:/u@host/db" in res.stderr, res.stderr


TRACKER = '''
from harness.hookspecs import hookimpl
from harness.tracking import Tracker


class Leaky(Tracker):
    name = "leaky"

    def open(self, config, record, start_iteration, saved_id):
        raise RuntimeError("login failed for https://bob:Hunter2pw@tracker.example/api?api_key=KEY123456 "
                           "(Authorization: Bearer tok_abcdefghijkl)")


@hookimpl
def register_loggers(register):
    register("leaky", Leaky, description="fails with its token in the message")
'''


def test_a_tracker_error_holding_credentials_is_printed_masked(tmp_path):
    plugin = tmp_path / "leaky.py"
    plugin.write_text(TRACKER)
    res = harness("train", "--plugin", plugin, "--steps", 50, *TINY, "--set", "loggers=leaky",
                  "--out", tmp_path / "run", "--quiet")
    assert res.returncode == 2, res.stderr
    for secret in ("Hunter2pw", "KEY123456", "tok_abcdefghijkl"):
        assert secret not in res.stderr, res.stderr
    assert "logger 'leaky'" in res.stderr and "https://bob@tracker.example/api?api_key=***" in res.stderr


@pytest.mark.parametrize("text, masked", [
    ("postgresql:/u:S3cretPW@host/db", "postgresql:/u@host/db"),
    ("postgresql://u:p@ss@host:5432/db", "postgresql://u@host:5432/db"),
    ("mysql+pymysql://root:pw@10.0.0.1/db?password=x&ssl=1", "mysql+pymysql://root@10.0.0.1/db?password=***&ssl=1"),
    ("u:pw@host", "u@host"),
    ("token=abc123 and secret: xyz", "token=*** and secret: ***"),
    ("key ghp_abcdefghijklmnopqrstuvwxyz0123", "key ***"),
    # nothing that looks like a credential is changed
    ("sqlite:////tmp/a/study.db", "sqlite:////tmp/a/study.db"),
    ("mysql://root@host/db", "mysql://root@host/db"),
    ("plugin 'x' raised in f (a.py:12): ValueError: bad", "plugin 'x' raised in f (a.py:12): ValueError: bad"),
])
def test_mask_secrets(text, masked):
    from harness.errors import mask_secrets
    assert mask_secrets(text) == masked
