"""The edges of the commands, with real processes and files: inputs that used to end in a traceback
(a deeply nested file, a name with a newline, an unwritable video or run directory) are one line
``harness: error: ...`` naming the value and what is accepted, and nothing is left half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_suite, tiny_sweep

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


def harness(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=cwd, env=env)


def one_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """The one error line of a refused command, holding every needle."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), res.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [5000, 300])
@pytest.mark.parametrize("command", ["bench", "sweep", "train"])
def test_a_deeply_nested_file_is_one_line(tmp_path, command, depth):
    path = tmp_path / "deep.toml"
    if command == "bench":
        path.write_text(tiny_suite(50) + f"lr = {nested(depth)}\n")
        args = ["bench", path, "--dry-run", "--out", tmp_path / "out"]
    elif command == "sweep":
        path.write_text(tiny_sweep("deep", 50, 1, 1) + f"clip = {{ choices = {nested(depth)} }}\n")
        args = ["sweep", path, "--out", tmp_path / "out"]
    else:
        path.write_text(f"lr = {nested(depth)}\n")
        args = ["train", "--config", path, "--steps", 50, "--out", tmp_path / "out"]
    one_error(harness(*args), str(path), "nested more than 32 levels deep")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, shown", [("a\\nb", r"'a\nb'"), ("a\\u0000b", r"'a\x00b'"), ("a\\tb", r"'a\tb'")])
@pytest.mark.parametrize("kind", ["suite", "sweep"])
def test_a_name_with_a_newline_or_nul_is_refused_and_makes_no_directory(tmp_path, kind, name, shown):
    path = tmp_path / f"{kind}.toml"
    text = tiny_suite(50) if kind == "suite" else tiny_sweep("x", 50, 1, 1)
    path.write_text(text.replace('name = "tiny"', f'name = "{name}"').replace('name = "x"', f'name = "{name}"'))
    res = harness("bench" if kind == "suite" else "sweep", path, cwd=tmp_path)
    one_error(res, f"[{kind}] name={shown} must be a non-empty name without '/'", "a newline, a NUL byte or another "
                   "control character")
    assert not (tmp_path / "results").exists()


TINY = ["--task", "mpe/simple_spread", "--set", "n_envs=2", "--set", "rollout_length=50", "--set", "eval_interval=2",
        "--set", "eval_episodes=2", "--set", "eval_envs=2", "--set", "hidden_sizes=16", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 200-step run (2 iterations)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    res = harness("train", *TINY, "--steps", 200, "--out", out)
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_eval_video_into_a_read_only_directory_is_refused_before_scoring(trained, tmpfs, suffix):
    ro = tmpfs("ro,size=1m")
    res = harness("eval", trained, "--video", ro / f"v{suffix}")
    one_error(res, f"--video '{ro / f'v{suffix}'}': cannot write there (Read-only file system)")
    assert "mean return" not in res.stdout  # refused before the episodes are scored
    assert not list(ro.iterdir())


def fill_when_partial_appears(directory: Path, stop: threading.Event) -> None:
    """Once a partial video in ``directory`` holds its first frame, fill the rest of its disk."""
    while not stop.is_set():
        if any(p.stat().st_size > 0 for p in directory.glob(".*.partial.*")):
            with open(directory / "filler", "wb") as fh:
                try:
                    while True:
                        fh.write(b"\0" * 4096)
                        fh.flush()
                except OSError:
                    return
        time.sleep(0.005)


@pytest.mark.parametrize("json_output", [False, True])
def test_eval_video_onto_a_disk_that_fills_keeps_the_score_and_is_one_line(trained, tmpfs, json_output):
    mnt = tmpfs("size=2m")
    stop = threading.Event()
    filler = threading.Thread(target=fill_when_partial_appears, args=(mnt, stop), daemon=True)
    filler.start()
    try:
        res = harness("eval", trained, "--episodes", 200, "--video", mnt / "v.gif", *(["--json"] if json_output else []))
    finally:
        stop.set()
        filler.join(5)
    one_error(res, f"--video '{mnt / 'v.gif'}': writing frame", "No space left on device", "no video was written")
    if json_output:
        assert json.loads(res.stdout)["episodes"] == 200 and "video" not in json.loads(res.stdout)
    else:
        assert "mean return" in res.stdout and "over 200 episodes" in res.stdout
    assert sorted(p.name for p in mnt.iterdir()) == ["filler"]  # no partial video left


PROBER = """
import sys, time
from pathlib import Path
from harness.errors import HarnessError
from harness.results import check_writable
directory, go, probes = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
failed = []
for _ in range(probes):
    try:
        check_writable(directory)
    except HarnessError as exc:
        failed.append(str(exc))
print(len(failed), failed[:1])
"""


def test_processes_probing_one_directory_at_once_never_fail_each_other(tmp_path):
    directory, go = tmp_path / "out", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", PROBER, str(directory), str(go), "1500"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(3)  # every process has imported the harness and waits
    go.touch()
    outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert [out.split(" ", 1)[0] for out, _ in outputs] == ["0"] * 4, outputs
    assert list(directory.iterdir()) == []  # every probe removed


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` and its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_extending_a_read_only_run_is_one_line_and_changes_nothing(tmpfs):
    mnt = tmpfs("size=16m")
    run = mnt / "run"
    assert harness("train", *TINY, "--steps", 200, "--out", run).returncode == 0
    before = snapshot(run)
    assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode == 0
    res = harness("train", *TINY, "--steps", 400, "--out", run, "--extend")
    one_error(res, f"cannot write to output directory {str(run)!r}: Read-only file system")
    assert snapshot(run) == before


@pytest.mark.parametrize("seed", ["abc", -1, True, 2**40])
def test_plot_skips_a_run_whose_seed_is_not_a_seed_by_name(trained, tmp_path, seed):
    good, bad = tmp_path / "tree" / "good", tmp_path / "tree" / "bad"
    shutil.copytree(trained, good)
    shutil.copytree(trained, bad)
    record = json.loads((bad / "config.json").read_text())
    record["config"]["seed"] = seed
    (bad / "config.json").write_text(json.dumps(record))
    res = harness("plot", tmp_path / "tree", "--out", tmp_path / "plots")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert f"skipping {bad}: config.json seed={seed!r} is not a seed (an integer from 0 to 2147483647)" in res.stderr
    assert (tmp_path / "plots" / "summary.csv").read_text().count("mpe/simple_spread") == 1  # the good run


@pytest.mark.parametrize("table, line, key, instead", [
    ("space", "seed = { low = 1, high = 5 }", "seed", "[sweep] seeds"),
    ("space", 'task = { choices = ["mpe/simple_spread", "mpe/simple_reference"] }', "task", "[sweep] tasks"),
    ("space", "steps = { low = 50, high = 500 }", "steps", "[sweep] steps"),
    ("config", "seed = 3", "seed", "[sweep] seeds"),
    ("config", "steps = 500", "steps", "[sweep] steps"),
    ("config", 'task = "mpe/simple_reference"', "task", "[sweep] tasks"),
])
def test_sweep_keys_the_sweep_decides_are_refused_naming_what_to_use(tmp_path, table, line, key, instead):
    text = tiny_sweep("decided", 50, 1, 1)
    text = text + line + "\n" if table == "space" else text.replace("[space]", line + "\n[space]")
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    one_error(harness("sweep", path, "--out", tmp_path / "out"),
              f"[{table}] sets {key!r}, which the sweep decides for every trial; use {instead} instead")
    assert not (tmp_path / "out").exists()


def test_an_integer_task_option_is_sampled_as_an_integer(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(tiny_sweep("ints", 50, 2, 1) + "env.max_cycles = { low = 10, high = 30 }\n")
    res = harness("sweep", path, "--out", tmp_path / "out", "--quiet")
    assert res.returncode == 0, res.stderr
    import csv
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert len(rows) == 2 and all(r["state"] == "COMPLETE" for r in rows), rows
    assert all(r["params_env.max_cycles"].isdigit() and 10 <= int(r["params_env.max_cycles"]) <= 30 for r in rows)
    # Float bounds for an integer option are refused before any trial.
    path.write_text(tiny_sweep("ints", 50, 2, 1) + "env.max_cycles = { low = 10.0, high = 30 }\n")
    one_error(harness("sweep", path, "--out", tmp_path / "out2"),
              "env.max_cycles is an integer option: low=10.0 and high=30 must be integers")
    assert not (tmp_path / "out2").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("where", ["config", "space"])
def test_a_sweep_on_cuda_without_cuda_is_refused_before_any_trial(tmp_path, where):
    text = tiny_sweep("cuda", 50, 2, 1)
    text = (text.replace("[space]", 'device = "cuda"\n[space]') if where == "config"
            else text + 'device = { choices = ["cpu", "cuda"] }\n')
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    one_error(harness("sweep", path, "--out", tmp_path / "out"),
              "device='cuda': CUDA is not available on this machine", "use device=cpu or device=auto")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, needle", [
    (["--executor-option", "foo=1"], "executor 'local' has no option 'foo'; its options: (none)"),
    (["--address", "auto"], "executor 'local' has no option 'address'; its options: (none)"),
])
def test_executor_options_at_one_local_worker_are_not_ignored(tmp_path, args, needle):
    path = tmp_path / "sweep.toml"
    path.write_text(tiny_sweep("opts", 50, 1, 1))
    one_error(harness("sweep", path, "--out", tmp_path / "out", "--jobs", 1, *args), needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, detail", [('{"config": {', "not valid JSON"), ("[1]", "holds a list, not a JSON object")])
@pytest.mark.parametrize("target", ["run", "best.pt"])
def test_init_from_a_run_with_a_damaged_config_names_the_source_run(trained, tmp_path, content, detail, target):
    source = tmp_path / "source"
    shutil.copytree(trained, source)
    (source / "config.json").write_text(content)
    spec = source if target == "run" else source / "best.pt"
    res = harness("train", *TINY, "--steps", 100, "--out", tmp_path / "new", "--set", f"init_from={spec}")
    one_error(res, f"init_from={str(spec)!r}: best.pt is in run {str(source)!r}, whose config.json cannot be read: "
                   f"{source / 'config.json'}: {detail}", "restore it, or copy best.pt out of that run")
    assert not (tmp_path / "new").exists()  # refused before the new run directory is made


HANGING = f'''
import sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT / "tests" / "plugins")!r})
from harness import hookimpl
from split_lengths import SplitLengths

MARK = Path(__file__).with_name("hanging")


class Hanging(SplitLengths):
    """Works for a few iterations (checkpoints are written), then its third reset or its 160th step
    (those of the evaluation copies, evaluated every iteration) never returns."""

    resets = 0

    def _hang(self):
        MARK.touch()
        while True:
            time.sleep(0.05)

    def reset(self, episodes=None):
        self.resets += 1
        if self.fault == "reset" and self.resets >= 3:
            self._hang()
        return super().reset(episodes)

    def step(self, actions):
        if self.fault == "step" and self.steps >= 160:
            self._hang()
        return super().step(actions)


@hookimpl
def register_tasks(register):
    register("hang", lambda scenario, n_envs, seed, options, stream=0: Hanging(scenario, n_envs),
             scenarios=("step", "reset"), description="a task whose step or reset hangs")
'''


@pytest.mark.parametrize("call", ["step", "reset"])
def test_a_hung_task_stops_within_seconds_on_one_sigterm_and_says_nothing_was_checkpointed(tmp_path, call):
    plugin = tmp_path / "hang.py"
    plugin.write_text(HANGING)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "train", "--plugin", str(plugin), "--task",
                             f"hang/{call}", "--steps", "10000", "--out", str(tmp_path / "run"), "--quiet",
                             "--set", "n_envs=2", "--set", "rollout_length=25", "--set", "eval_interval=1",
                             "--set", "eval_episodes=2", "--set", "eval_envs=2",
                             "--set", "hidden_sizes=16", "--set", "checkpoint_interval=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "hanging").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "hanging").exists(), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert time.monotonic() - sent < 15
    last = err.strip().splitlines()[-1]
    assert last == (f"harness: stopped by SIGTERM (the task's {call}() had not returned 5 s after the stop was "
                    "asked): that work stopped where it was, without a checkpoint at the stop, and keeps the "
                    "checkpoints and rows it wrote before; any other running work was checkpointed and queued work "
                    "not started; re-run the same command to resume"), err
    assert "Traceback" not in err
    assert (tmp_path / "run" / "checkpoint.pt").exists()  # the one written before the hang is kept


def test_eval_stopped_by_sigterm_says_it_has_nothing_to_resume(trained):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "eval", str(trained), "--episodes", "1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(6)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines() == [
        "harness: eval stopped by SIGTERM: the evaluation was not finished and nothing was written (there is "
        "nothing to resume; re-run it to score the policy)"], err
    assert "checkpointed" not in err and out == ""


DEEP_JSON = '{"config": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize("content, detail", [(DEEP_JSON, "nested too deeply to be a run's config.json"),
                                             ('{"config": {', "not valid JSON")])
def test_a_damaged_or_deeply_nested_config_json_is_skipped_by_plot_and_one_line_for_eval(trained, tmp_path, content,
                                                                                           detail):
    good, bad = tmp_path / "tree" / "good", tmp_path / "tree" / "bad"
    shutil.copytree(trained, good)
    shutil.copytree(trained, bad)
    (bad / "config.json").write_text(content)
    res = harness("plot", tmp_path / "tree", "--out", tmp_path / "plots")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert f"skipping {bad}: config.json is unreadable ({bad / 'config.json'}: {detail}" in res.stderr
    assert (tmp_path / "plots" / "summary.csv").read_text().count("mpe/simple_spread") == 1
    one_error(harness("eval", bad), f"{bad / 'config.json'}: {detail}")


def test_a_bench_whose_task_hangs_stops_within_seconds_naming_the_runs_stopped_without_a_checkpoint(tmp_path):
    plugin = tmp_path / "hang.py"
    plugin.write_text(HANGING)
    suite = tmp_path / "suite.toml"
    suite.write_text(f'[suite]\nname = "hb"\nschemes = ["happo"]\ntasks = ["hang/step"]\nseeds = 1\nsteps = 10000\n'
                     f'eval_interval = 1\neval_episodes = 2\nplugins = ["{plugin}"]\n[config]\nn_envs = 2\n'
                     "rollout_length = 25\neval_envs = 2\nhidden_sizes = [16]\ncheckpoint_interval = 1\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "bench", str(suite), "--out", str(tmp_path / "out"),
                             "--jobs", "1", "--quiet", "--no-plot"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "hanging").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "hanging").exists(), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)  # to the bench only: it stops its worker
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert time.monotonic() - sent < 15
    assert err.strip().splitlines()[-1].startswith(
        "harness: stopped by SIGTERM (happo hang/step seed 1: the task's step() had not returned 5 s after the stop "
        "was asked): that work stopped where it was, without a checkpoint at the stop"), err


SLOW_IMPORT = '''
import time
from pathlib import Path
Path(__file__).with_name("importing").touch()
while True:  # an import that never finishes
    time.sleep(0.05)
'''

SLOW_BUILD = '''
import time
from pathlib import Path
from harness import hookimpl


def build(scenario, n_envs, seed, options, stream=0):
    Path(__file__).with_name("building").touch()
    while True:  # a task factory that never returns
        time.sleep(0.05)


@hookimpl
def register_tasks(register):
    register("slowbuild", build, scenarios=("x",), description="a task whose factory hangs")
'''


@pytest.mark.parametrize("where, source, task, reason", [
    ("importing", SLOW_IMPORT, "mpe/simple_spread", "importing plugin {plugin!r}"),
    ("building", SLOW_BUILD, "slowbuild/x", "building task 'slowbuild/x'"),
])
def test_a_stop_takes_effect_within_seconds_in_a_plugin_import_or_a_task_build_that_hangs(tmp_path, where, source,
                                                                                         task, reason):
    plugin = tmp_path / "slow.py"
    plugin.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "train", "--plugin", str(plugin), "--task", task,
                             "--steps", "1000", "--out", str(tmp_path / "run"), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / where).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tmp_path / where).exists(), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert time.monotonic() - sent < 15
    why = reason.format(plugin=str(plugin))
    assert err.strip().splitlines()[-1].startswith(
        f"harness: stopped by SIGTERM ({why} had not returned 5 s after the stop was asked): that work stopped "
        "where it was, without a checkpoint at the stop"), err
    assert "Traceback" not in err
