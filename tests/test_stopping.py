"""Stopping bench and sweep with real signals: queued work cancelled, running runs checkpointed,
exit within seconds with 130/143, no worker outliving its parent, interrupted sweep trials retried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import RunDir

from conftest import tiny_suite, tiny_sweep

HARNESS = str(Path(sys.executable).with_name("harness"))

SUITE = tiny_suite(60000, name="stop", schemes=["happo"], seeds="[1, 2, 3, 4]", eval_interval=50,
                   checkpoint_interval=1000)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(c) for c in out]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_rows(run: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.csv").exists() and len(RunDir(run).rows()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{run} did not reach {n} rows")


def _runs(out: Path) -> list[Path]:
    return [out / "mpe" / "simple_spread" / "happo" / f"seed_{s}" for s in (1, 2, 3, 4)]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_bench_checkpoints_running_runs_cancels_queued_ones_and_exits(tmp_path, sig, code):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    out = tmp_path / "out"
    proc = subprocess.Popen([HARNESS, "bench", str(path), "--out", str(out), "--jobs", "2", "--quiet", "--no-plot"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first, second, third, fourth = _runs(out)
    _wait_rows(first, 5, proc)
    _wait_rows(second, 5, proc)
    workers = _children(proc.pid)
    sent = time.time()
    proc.send_signal(sig)  # to the main process only, as `kill` does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert time.time() - sent < 20, "bench took too long to stop"
    assert "harness: stopped by SIG" in err and "Traceback" not in err
    time.sleep(0.5)
    assert not [w for w in workers if _alive(w)], "a worker outlived the stopped bench"
    for run in (first, second):  # checkpointed at the iteration they reached, not at 1000
        rows = RunDir(run).rows()
        assert rows and not RunDir(run).done
        import torch
        ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
        assert ckpt["iteration"] == int(rows[-1]["iteration"]) >= 5
    assert not (third / "metrics.csv").exists() and not (fourth / "metrics.csv").exists()  # never started
    # A re-run resumes from those checkpoints: no row lost or doubled.
    before = {run: len(RunDir(run).rows()) for run in (first, second)}
    again = subprocess.Popen([HARNESS, "bench", str(path), "--out", str(out), "--jobs", "2", "--quiet", "--no-plot"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_rows(first, before[first] + 3, again)
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=60)
    for run in (first, second):
        iterations = [int(r["iteration"]) for r in RunDir(run).rows()]
        assert iterations == list(range(len(iterations))) and len(iterations) >= before[run]


def test_bench_workers_stop_when_the_bench_is_killed(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    out = tmp_path / "out"
    proc = subprocess.Popen([HARNESS, "bench", str(path), "--out", str(out), "--jobs", "2", "--quiet", "--no-plot"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = _runs(out)[0]
    _wait_rows(first, 5, proc)
    workers = [w for w in _children(proc.pid) if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text(errors="ignore")]
    assert workers
    proc.kill()  # SIGKILL: no chance to tell anyone
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "orphaned workers kept training"
    rows = RunDir(first).rows()
    assert not RunDir(first).done and int(rows[-1]["iteration"]) < 2400
    import torch
    assert torch.load(first / "checkpoint.pt", weights_only=True)["iteration"] == int(rows[-1]["iteration"])
    # and a re-run is not blocked by a leftover writer
    res = subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--dry-run"], capture_output=True, text=True)
    assert "[partial]" in res.stdout


SWEEP = tiny_sweep("stop", 6000, trials=2, evaluations=3)


def test_an_interrupted_sweep_trial_is_retried_from_its_checkpoints(tmp_path):
    import optuna
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    proc = subprocess.Popen([HARNESS, "sweep", str(path), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run = out / "trials" / "0" / "mpe" / "simple_spread" / "seed_1"
    _wait_rows(run, 20, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = RunDir(run).rows()
    stopped_at = int(kept[-1]["iteration"])
    study = optuna.load_study(study_name="stop", storage=f"sqlite:///{out / 'study.db'}")
    first = study.trials[0]
    assert first.state.name == "FAIL" and first.user_attrs["interrupted"]
    assert "re-running the sweep retries it" in first.user_attrs["fail_reason"]
    res = subprocess.run([HARNESS, "sweep", str(path), "--out", str(out), "--resume"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert "retrying interrupted trial(s) [0] from their checkpoints" in res.stderr
    study = optuna.load_study(study_name="stop", storage=f"sqlite:///{out / 'study.db'}")
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == first.params
    rows = RunDir(run).rows()
    assert [int(r["iteration"]) for r in rows] == list(range(121)) and RunDir(run).done  # 6000 steps / 50
    assert rows[: stopped_at + 1] == kept  # resumed from its checkpoint (timings too), not retrained
