"""Bad input is refused before work starts, in one line naming the value and what is accepted; a disk
that fills during a run is one line that says what survives, and re-running resumes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import RunDir

HARNESS = str(Path(sys.executable).with_name("harness"))
TINY = ["--set", "n_envs=2", "--set", "rollout_length=25", "--set", "eval_episodes=2", "--set", "eval_envs=2",
        "--set", "hidden_sizes=16", "--set", "threads=1"]


def harness(*args, timeout=300):
    return subprocess.run([HARNESS, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def one_line_error(res, needle):
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ") and needle in lines[0], res.stderr


SWEEP = """
[sweep]
name = "bad"
scheme = "happo"
tasks = ["mpe/simple_spread"]
steps = 100
trials = 2
[space]
{space}
"""


@pytest.mark.parametrize("space, needle", [
    ("lr = { low = 1e-4, high = inf }", "lr: low=0.0001 and high=inf must be finite numbers with low < high"),
    ("lr = { low = 1e-4, high = 1e-3, step = 0 }", "lr: step=0 must be a positive number"),
    ("lr = { low = 1e-4, high = 1e-3, step = -1e-4 }", "lr: step=-0.0001 must be a positive number"),
    ("lr = { low = 1e-4, high = 1e-3, step = 'x' }", "lr: step='x' must be a positive number"),
    ("ppo_epochs = { low = 2, high = 8, step = 1.5 }", "ppo_epochs: step=1.5 must be a positive integer"),
    ("lr = { low = 1e-4, high = 1e-3, log = true, step = 1e-4 }", "lr: log and step cannot be combined"),
    ("clip = { choices = [] }", "clip: choices must be a non-empty list"),
])
def test_bad_sweep_spaces_are_refused_before_any_trial(tmp_path, space, needle):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(space=space))
    res = harness("sweep", path, "--out", tmp_path / "out")
    one_line_error(res, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, needle", [
    (["--seed", "-1"], "seed=-1 must be an integer from 0 to 2147483647"),
    (["--seed", "99999999999999999999"], "seed=99999999999999999999 must be an integer from 0 to 2147483647"),
    (["--seed", "true"], "seed='true' is not an integer"),
    (["--set", "rollout_length=1000000000"], "rollout_length=1000000000, n_envs=20, hidden_sizes=[128, 128], eval_envs=10, eval_episodes=20); this "
     "machine has"),
    (["--set", "n_envs=100000000", "--set", "rollout_length=1"], "environments 24414.1 GiB"),  # before building them
    (["--set", "hidden_sizes=200000,200000"], "networks 3576.9 GiB"),
    (["--set", "lr=inf"], "lr=inf must be a finite number"),
    (["--set", "clip=nan"], "clip=nan must be a finite number"),
    (["--set", "entropy_coef=-1"], "entropy_coef=-1.0 must be >= 0"),
    (["--out="], "--out '' is empty"),
])
def test_bad_train_values_are_one_line_errors_before_work(tmp_path, args, needle):
    res = harness("train", "--steps", 100, "--out", tmp_path / "run", *args)  # a later --out wins
    one_line_error(res, needle)
    assert not (tmp_path / "run" / "metrics.csv").exists()


SUITE = '[suite]\nschemes = ["happo"]\ntasks = ["mpe/simple_spread"]\nseeds = {seeds}\nsteps = 50\n'


@pytest.mark.parametrize("seeds, needle", [
    ("99999999", "[suite] seeds=99999999 must be a count from 1 to 1000"),
    ("[-3]", "[suite] seed -3 must be from 0 to 2147483647"),
    ("[true]", "[suite] seeds=[True] must be a count or a non-empty list of integers"),
    ("[99999999999]", "[suite] seed 99999999999 must be from 0 to 2147483647"),
])
def test_bad_suite_seeds_are_refused_at_once(tmp_path, seeds, needle):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(seeds=seeds))
    start = time.time()
    one_line_error(harness("bench", path, "--out", tmp_path / "out"), needle)
    assert time.time() - start < 30


@pytest.mark.parametrize("text, needle", [
    ('[suite]\nname = 5\nschemes = ["happo"]\ntasks = ["mpe/simple_spread"]\nseeds = 1\nsteps = 50\n',
     "[suite] name=5 must be a non-empty name without '/'"),
    ('[suite]\nname = "../../escape"\nschemes = ["happo"]\ntasks = ["mpe/simple_spread"]\nseeds = 1\nsteps = 50\n',
     "[suite] name='../../escape' must be a non-empty name"),
    (SUITE.format(seeds=1) + 'tuned = "yes"\n', "[suite] tuned='yes' must be true or false"),
    (SUITE.format(seeds=1) + 'plugins = "x.py"\n', "[suite] plugins='x.py' must be a list of module names or .py files"),
    (SUITE.format(seeds=1) + "[config]\nseed = 7\n", "[config] sets 'seed', which [suite] decides"),
])
def test_bad_suite_tables_are_one_line_errors(tmp_path, text, needle):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    one_line_error(harness("bench", path, "--dry-run"), needle)


@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_binary_suite_and_sweep_files_are_one_line_errors(tmp_path, command):
    path = tmp_path / "file.toml"
    path.write_bytes(bytes(range(256)))
    one_line_error(harness(command, path), f"{path}: not a text file")


def test_read_only_out_and_study_are_refused_before_anything_runs(tmp_path, tmpfs):
    mnt = tmpfs("ro,size=1m")
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(seeds=1))
    one_line_error(harness("bench", suite, "--out", mnt / "out"),
                   f"cannot write to output directory {str(mnt / 'out')!r}: Read-only file system")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP.format(space="lr = { low = 1e-4, high = 1e-3 }"))
    one_line_error(harness("sweep", sweep, "--out", mnt / "out"),
                   f"cannot write to output directory {str(mnt / 'out')!r}: Read-only file system")
    # plot into a read-only directory
    run = tmp_path / "res" / "run"
    assert harness("train", "--steps", 50, *TINY, "--out", run, "--quiet").returncode == 0
    one_line_error(harness("plot", tmp_path / "res", "--out", mnt / "plots"),
                   f"cannot write to plot directory {str(mnt / 'plots')!r}: Read-only file system")
    # A writable --out but the SQLite study on the read-only disk:
    one_line_error(harness("sweep", sweep, "--out", tmp_path / "out", "--storage", f"sqlite:///{mnt}/study.db"),
                   f"cannot write to the SQLite study's directory {str(mnt)!r}: Read-only file system")


def test_a_password_in_the_storage_query_string_is_masked(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP.format(space="lr = { low = 1e-4, high = 1e-3 }"))
    res = harness("sweep", sweep, "--out", tmp_path / "out", "--storage",
                  "postgresql://alice:hunter2@127.0.0.1:1/db?password=s3cret&sslmode=disable")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "hunter2" not in res.stderr and "s3cret" not in res.stderr
    assert "postgresql://alice@127.0.0.1:1/db?password=***&sslmode=disable" in res.stderr


def test_a_disk_that_fills_during_a_run_is_one_line_and_re_running_resumes(tmpfs):
    mnt = tmpfs("size=3m")
    out = mnt / "run"
    args = ["train", "--steps", 30000, *TINY, "--set", "eval_interval=20", "--set", "checkpoint_interval=5",
            "--out", out]
    proc = subprocess.Popen([HARNESS, *map(str, args), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint.prev.pt").exists():
        time.sleep(0.05)
    filler = mnt / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # until the disk is full
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "No space left on device" in lines[0] and "re-run the same command to resume" in lines[0]
    assert "the previous checkpoint and the rows up to it" in lines[0]
    filler.unlink()
    again = harness(*args, "--quiet", timeout=600)
    assert again.returncode == 0, again.stderr
    iterations = [int(r["iteration"]) for r in RunDir(out).rows()]
    assert iterations == list(range(601)) and RunDir(out).done
