"""``harness eval``: a trained run's policy scored on fixed start states, and drawn to a GIF."""

import csv
import json
import os
import subprocess
import sys

import shutil

import numpy as np
import pytest
from PIL import Image, ImageChops


def _harness(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=cwd)


def _train(tmp_path, task, *sets):
    run = tmp_path / "run"
    if run.exists():
        return run
    res = _harness("train", "--task", task, "--steps", "400", "--out", str(run), "--quiet",
                   "--set", "n_envs=2", "--set", "rollout_length=50", "--set", "eval_interval=1",
                   "--set", "eval_episodes=4", "--set", "eval_envs=2", "--set", "hidden_sizes=32,32", *sets)
    assert res.returncode == 0, res.stderr
    return run


def _frames(path):
    gif = Image.open(path)
    frames = []
    for k in range(gif.n_frames):
        gif.seek(k)
        frames.append(gif.convert("RGB").copy())
    return frames


@pytest.fixture(scope="module")
def mpe_run(tmp_path_factory):
    """One tiny trained MPE run, shared by the tests that only read it."""
    return _train(tmp_path_factory.mktemp("mpe"), "mpe/simple_spread")


def test_eval_scores_the_best_policy_on_the_runs_own_episodes_and_draws_mpe(tmp_path, mpe_run):
    run = mpe_run
    res = _harness("eval", str(run), "--json", "--video", str(tmp_path / "spread.gif"))
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["eval_return"]]
    # The best policy on the start states it was evaluated on scores what its best evaluation scored.
    assert result["episodes"] == 4
    assert result["mean"] == pytest.approx(max(float(r["eval_return"]) for r in rows), abs=1e-4)
    assert result["ci95"][0] <= result["mean"] <= result["ci95"][1]
    # The video is the first of those episodes (copy 0, episode 0), 25 steps of MPE.
    assert result["video"]["returns"][0] == pytest.approx(result["returns"][0], abs=1e-4)
    frames = _frames(tmp_path / "spread.gif")
    assert len(frames) >= 10
    assert any(ImageChops.difference(frames[0], f).getbbox() for f in frames[1:])
    # Another seed: other start states, other returns; --policy last reads checkpoint.pt.
    other = json.loads(_harness("eval", str(run), "--json", "--seed", "5", "--policy", "last",
                                "--episodes", "3").stdout)
    assert other["seed"] == 5 and other["episodes"] == 3 and other["returns"] != result["returns"][:3]


def test_eval_draws_mamujoco_headless(tmp_path):
    run = _train(tmp_path, "mamujoco/HalfCheetah-2x3", "--set", "env.episode_limit=30")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY")}
    res = _harness("eval", str(run), "--episodes", "2", "--video", str(tmp_path / "cheetah.gif"), env=env)
    assert res.returncode == 0, res.stderr
    assert "mean return" in res.stdout and "30 frames" in res.stdout  # the start and 29 of its 30 steps
    frames = _frames(tmp_path / "cheetah.gif")
    assert len(frames) >= 10
    assert np.asarray(frames[0]).std() > 5  # a picture, not a blank frame
    assert any(ImageChops.difference(frames[0], f).getbbox() for f in frames[1:])


@pytest.mark.parametrize("args, message", [
    (["nowhere"], "run directory 'nowhere' does not exist"),
    (["{run}", "--video", "x.avi"], "--video 'x.avi': expected a file name ending in .gif or .mp4"),
    (["{run}", "--episodes", "0"], "--episodes 0 must be >= 1"),
    (["{run}", "--video", "{tmp}/no/x.gif"], "does not exist"),
])
def test_eval_bad_input_is_one_line(tmp_path, args, message, mpe_run):
    run = mpe_run
    args = [a.format(run=run, tmp=tmp_path) for a in args]
    res = _harness("eval", *args, cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_eval_without_a_best_policy_says_which_to_use(tmp_path, mpe_run):
    run = tmp_path / "run"
    shutil.copytree(mpe_run, run)
    (run / "best.pt").unlink()
    res = _harness("eval", str(run))
    assert res.returncode == 2 and "has no best.pt" in res.stderr and "--policy last" in res.stderr


def test_eval_writes_an_mp4(tmp_path, mpe_run):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg", reason="MP4 needs the video extra: pip install -e \".[video]\"")
    res = _harness("eval", str(mpe_run), "--episodes", "2", "--video", str(tmp_path / "spread.mp4"), "--fps", "5")
    assert res.returncode == 0, res.stderr
    reader = imageio.get_reader(tmp_path / "spread.mp4", format="FFMPEG")
    frames = [f for f in reader]
    reader.close()
    assert len(frames) == 25 and frames[0].shape == (700, 700, 3)
    assert any(np.abs(frames[0].astype(int) - f.astype(int)).max() > 30 for f in frames[1:])


@pytest.mark.parametrize("args, message", [
    (["{run}/config.json"], "is not a run directory"),
    (["{run}", "--video", "{tmp}/d.gif"], "is a directory; give a file name ending in .gif or .mp4"),
    (["{run}", "--video-episodes", "2"], "--video-episodes, --fps and --frame-step go with --video FILE"),
])
def test_eval_more_bad_input_is_one_line(tmp_path, args, message, mpe_run):
    (tmp_path / "d.gif").mkdir()
    res = _harness("eval", *[a.format(run=mpe_run, tmp=tmp_path) for a in args])
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_file_that_is_not_a_checkpoint_is_named_so(tmp_path, mpe_run):
    run = tmp_path / "run"
    shutil.copytree(mpe_run, run)
    (run / "best.pt").write_bytes(b"garbage, not a checkpoint")
    res = _harness("eval", str(run))
    assert res.returncode == 2 and "is not a harness checkpoint" in res.stderr
    assert "weights_only set to False" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_eval_stops_at_once_on_sigterm(tmp_path, mpe_run):
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "eval", str(mpe_run), "--episodes", "1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
