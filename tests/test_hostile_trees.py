"""Run directories and results trees that came from someone else, or that another process is still
writing, with real processes and files: a recorded plugin never runs, a locked run is never moved, a
refused ``--extend`` changes nothing, and a FIFO or a link to ``/dev/zero`` is refused or skipped
instead of hanging (every command here has a timeout, so a regression fails instead of hanging)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_suite

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--task", "mpe/simple_spread", "--set", "n_envs=2", "--set", "rollout_length=50", "--set", "eval_interval=2",
        "--set", "eval_episodes=2", "--set", "eval_envs=2", "--set", "hidden_sizes=16", "--quiet"]
TIMEOUT = 180


def harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=cwd, env=env)


def train(out: Path, steps: int = 200, *extra: str) -> subprocess.CompletedProcess:
    return harness("train", *TINY, "--steps", str(steps), "--out", str(out), *extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 200-step run (2 iterations)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    res = train(out)
    assert res.returncode == 0, res.stderr
    return out


def copy_run(trained: Path, dest: Path) -> Path:
    shutil.copytree(trained, dest)
    return dest


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` and its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def one_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), res.stderr
    return lines[0]


# -- 1: a recorded plugin is provenance, never imported ---------------------------------------

MARKER_PLUGIN = "from pathlib import Path\nPath({marker!r}).write_text('ran')\n"


@pytest.mark.parametrize("spec", ["absolute", "relative"])
def test_eval_never_imports_a_plugin_the_run_records(trained, tmp_path, spec):
    run = copy_run(trained, tmp_path / "run")
    marker = tmp_path / "MARKER"
    (run / "notes.py").write_text(MARKER_PLUGIN.format(marker=str(marker)))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "notes.py").write_text(MARKER_PLUGIN.format(marker=str(marker)))  # a same-named file where eval runs
    record = json.loads((run / "config.json").read_text())
    record["plugins"].append({"source": "--plugin file", "spec": str(run / "notes.py") if spec == "absolute"
                              else "notes.py", "sha256": "0"})
    (run / "config.json").write_text(json.dumps(record))
    res = harness("eval", str(run), "--episodes", "1", cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert not marker.exists()  # no code of the run directory's (or of the current directory's) ran
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: warning: ") and "'notes' (" in lines[0]
    assert "is not loaded" in lines[0] and "never imported" in lines[0]
    # Named by the user, the file is loaded, and its hash is compared with the recorded one.
    res = harness("eval", str(run), "--episodes", "1", "--plugin", str(run / "notes.py"), cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert marker.exists()
    assert "'notes' differs (sha256 '0' recorded" in res.stderr


def test_eval_refuses_a_run_whose_task_only_a_recorded_plugin_registers(tmp_path):
    plugin = tmp_path / "split_lengths.py"
    shutil.copy(ROOT / "tests" / "plugins" / "split_lengths.py", plugin)
    run = tmp_path / "run"
    res = harness("train", "--task", "split/none", "--plugin", str(plugin), "--steps", "200", "--set", "n_envs=2",
                  "--set", "rollout_length=50", "--set", "eval_episodes=2", "--set", "eval_envs=2",
                  "--set", "hidden_sizes=16", "--quiet", "--out", str(run))
    assert res.returncode == 0, res.stderr
    line = one_error(harness("eval", str(run), "--episodes", "1"))
    assert "task family 'split' of plugin 'split_lengths' (" in line and str(plugin) in line
    assert "never imported: pass it with --plugin" in line
    res = harness("eval", str(run), "--episodes", "1", "--plugin", str(plugin))
    assert res.returncode == 0 and res.stderr == "", res.stderr


# -- 2: a run another process is writing is not moved ------------------------------------------

def test_rerun_changed_moves_nothing_while_a_run_is_locked(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(tiny_suite(50, seeds="1"))
    out = tmp_path / "out"
    res = harness("bench", str(suite), "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    suite.write_text(suite.read_text().replace("[config]", "[config]\nlr = 0.001"))  # both runs now "changed"
    locked = out / "mpe" / "simple_spread" / "mappo" / "seed_1"
    before = {d: snapshot(d) for d in (locked, out / "mpe" / "simple_spread" / "happo" / "seed_1")}
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom harness.run_lock import RunLock\n"
                               f"RunLock({str(locked)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(120)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        line = one_error(harness("bench", str(suite), "--out", str(out), "--quiet", "--rerun-changed"))
        assert line.startswith(f"harness: error: --rerun-changed moved nothing: run directory {str(locked)!r} is "
                               f"being written by pid {holder.pid} on host ")
        assert not (out / ".replaced").exists()
        # The runs are where they were (the earlier, unlocked one too), their files unchanged but the lock's.
        for d, files in before.items():
            now = snapshot(d)
            assert {k: v for k, v in now.items() if k != ".lock"} == {k: v for k, v in files.items() if k != ".lock"}
    finally:
        holder.kill()
        holder.wait()


# -- 3: a refused --extend leaves the run as it was ---------------------------------------------

@pytest.mark.parametrize("case", ["device", "foreign"])
def test_a_refused_extension_leaves_the_run_byte_identical(trained, tmp_path, case):
    run = copy_run(trained, tmp_path / "run")
    extra: list[str] = []
    if case == "device":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: device=cuda is not refused here")
        extra = ["--set", "device=cuda"]
    else:  # checkpoints of another run (another lr) in place of the run's own
        other = tmp_path / "other"
        assert train(other, 200, "--set", "lr=0.001").returncode == 0
        for name in ("checkpoint.pt", "checkpoint.prev.pt"):
            (run / name).unlink(missing_ok=True)
            if (other / name).exists():
                shutil.copy(other / name, run / name)
    before = snapshot(run)
    line = one_error(train(run, 400, "--extend", *extra))
    assert {"device": "device='cuda'", "foreign": "belongs to another config"}[case] in line
    assert snapshot(run) == before
    # The original command still works (the run is finished), and leaves the run as it was too.
    res = train(run, 200)
    assert res.returncode == 0, res.stderr
    assert snapshot(run) == before
    if case == "device":  # and so does the extension, on a device this machine has
        res = train(run, 400, "--extend")
        assert res.returncode == 0, res.stderr
        record = json.loads((run / "config.json").read_text())
        assert record["config"]["steps"] == 400 and (run / "DONE").exists()
        assert [(e["from_steps"], e["to_steps"]) for e in record["extended"]] == [(200, 400)]


# -- 7: FIFOs and links to devices in a results tree ---------------------------------------------

def plant(path: Path, kind: str) -> None:
    """Replace ``path`` by a FIFO (nobody writes it) or by a link to /dev/zero."""
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("name, kind", [("config.json", "fifo"), ("best.pt", "fifo"), ("best.pt", "zero"),
                                        ("config.json", "zero")])
def test_eval_refuses_a_fifo_or_a_device_in_one_line(trained, tmp_path, name, kind):
    run = copy_run(trained, tmp_path / "run")
    plant(run / name, kind)
    line = one_error(harness("eval", str(run), "--episodes", "1"))
    what = "a FIFO (named pipe)" if kind == "fifo" else "(a link to '/dev/zero') is a character device"
    assert f"{str(run / name)!r}" in line and what in line and "only regular files are read" in line


@pytest.mark.parametrize("name, kind, message", [
    ("metrics.csv", "fifo", "a FIFO (named pipe)"),
    ("metrics.csv", "zero", "is a character device"),
    ("checkpoint.pt", "zero", "(a link to '/dev/zero') is a character device"),
    (".lock", "fifo", "is not a regular file; remove it"),
])
def test_a_resume_refuses_a_fifo_or_a_device_in_one_line(trained, tmp_path, name, kind, message):
    run = copy_run(trained, tmp_path / "run")
    (run / "DONE").unlink()  # unfinished again: the same command resumes it
    if name == "checkpoint.pt":
        (run / "checkpoint.prev.pt").unlink(missing_ok=True)
    plant(run / name, kind)
    line = one_error(train(run, 200))
    assert message in line and name in line


def test_plot_skips_runs_with_a_fifo_or_a_device_and_plots_the_rest(trained, tmp_path):
    root = tmp_path / "results"
    copy_run(trained, root / "good")
    for kind in ("fifo", "zero"):
        bad = root / f"bad_{kind}"
        bad.mkdir(parents=True)
        record = json.loads((trained / "config.json").read_text())
        record["config"]["seed"] = record["seed"] = 11 if kind == "fifo" else 12
        (bad / "config.json").write_text(json.dumps(record))
        plant(bad / "metrics.csv", kind)
    res = harness("plot", str(root))
    assert res.returncode == 0, res.stderr
    assert f"skipping {root / 'bad_fifo'}: {str(root / 'bad_fifo' / 'metrics.csv')!r} is a FIFO" in res.stderr
    assert f"skipping {root / 'bad_zero'}: {str(root / 'bad_zero' / 'metrics.csv')!r} (a link to '/dev/zero')" \
        in res.stderr
    assert (root / "plots" / "summary.csv").exists()


def test_a_file_over_its_limit_is_refused_without_being_read(tmp_path, monkeypatch):
    from harness import safe_files
    from harness.results import RunDir
    monkeypatch.setitem(safe_files.LIMITS, "json", 100)
    (tmp_path / "config.json").write_text(json.dumps({"config": {}, "pad": "x" * 200}))
    with pytest.raises(safe_files.UnsafeFile, match="is 2.. bytes, more than the 100 bytes a json file"):
        RunDir(tmp_path).read_config()
