"""Optuna sweeps: real studies in SQLite (and PostgreSQL when a server can be started here)."""

from __future__ import annotations

import csv
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from harness.cli import main
from harness.objective import objective_value
from harness.sweep import load_sweep, parse_dimension, run_sweep

TINY_CONFIG = """
[config]
n_envs = 2
rollout_length = 25
eval_envs = 2
hidden_sizes = [16, 16]
"""


def write_sweep(tmp_path: Path, name: str = "tiny", sweep: str = "", space: str = "", config: str = TINY_CONFIG,
                extra: str = "", steps: int = 1000, seeds: int = 2, evaluations: int = 4) -> Path:
    text = textwrap.dedent(f"""
        [sweep]
        name = "{name}"
        scheme = "happo"
        tasks = ["mpe/simple_speaker_listener"]
        steps = {steps}
        seeds = {seeds}
        trials = 3
        evaluations = {evaluations}
        eval_episodes = 2
        default_space = false
        {sweep}
        """) + config + "\n[space]\n" + (space or textwrap.dedent("""
        lr = { low = 1e-4, high = 1e-2, log = true }
        clip = { choices = [0.1, 0.2] }
        ppo_epochs = { low = 1, high = 4 }
        """)) + extra
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def trials_of(path: Path, out: Path) -> list:
    sweep = load_sweep(path, out)
    return optuna.load_study(study_name=sweep.name, storage=sweep.storage_url(None)).get_trials()


def test_tiny_sweep_writes_outputs_and_best_params_round_trip(tmp_path, capsys):
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    trials = trials_of(path, out)
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for name in ("trials.csv", "best.toml", "study.json", "history.png", "slices.png", "history.pdf"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 3 and {"params_lr", "params_clip", "params_ppo_epochs"} <= set(rows[0])
    # Each trial's runs are ordinary run directories, one per seed.
    assert sorted(p.name for p in (out / "trials" / "0" / "mpe" / "simple_speaker_listener").iterdir()) == ["seed_1", "seed_2"]
    best = max(trials, key=lambda t: t.value)
    # The objective is the mean over seeds of the evaluation returns in the last quarter of training.
    evals = []
    for seed in (1, 2):
        run_rows = list(csv.DictReader(open(out / "trials" / str(best.number) / "mpe/simple_speaker_listener"
                                            / f"seed_{seed}" / "metrics.csv")))
        evals.append([(int(r["env_steps"]), float(r["eval_return"])) for r in run_rows
                      if r["eval_return"] and int(r["iteration"]) > 0])
    assert best.value == pytest.approx(sum(objective_value(e, 1000, 0.25) for e in evals) / 2)
    # best.toml feeds `harness train --config`.
    run = tmp_path / "from_best"
    assert main(["train", "--config", str(out / "best.toml"), "--task", "mpe/simple_speaker_listener",
                 "--steps", "100", "--set", "n_envs=2", "--set", "rollout_length=25", "--set", "eval_envs=2",
                 "--set", "eval_episodes=2", "--set", "hidden_sizes=16,16", "--out", str(run), "--quiet"]) == 0
    import json
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["lr"] == pytest.approx(best.params["lr"]) and cfg["clip"] == best.params["clip"]
    assert cfg["ppo_epochs"] == best.params["ppo_epochs"]
    # best.toml alone (no other flags) gives the best trial's runs' config: budget and [config] included.
    again = tmp_path / "from_best_alone"
    assert main(["train", "--config", str(out / "best.toml"), "--task", "mpe/simple_speaker_listener",
                 "--seed", "1", "--out", str(again), "--quiet"]) == 0
    trial_cfg = json.loads((out / "trials" / str(best.number) / "mpe/simple_speaker_listener/seed_1/config.json")
                           .read_text())["config"]
    alone = json.loads((again / "config.json").read_text())["config"]
    differ = {k for k in trial_cfg if trial_cfg[k] != alone[k]}
    # A sweep sets its runs' evaluation schedule and threads itself, and never takes the absolute metric.
    assert differ <= {"eval_interval", "checkpoint_interval", "absolute_factor", "threads"}


def test_objective_window():
    evals = [(100, 1.0), (200, 2.0), (300, 3.0), (400, 5.0)]
    assert objective_value(evals, 400, 0.25) == 5.0
    assert objective_value(evals, 400, 0.5) == 4.0  # evaluations after 200 steps
    assert objective_value(evals, 400, 1.0) == pytest.approx(11 / 4)
    assert objective_value([(50, 7.0)], 400, 0.1) == 7.0  # at least the final evaluation


def test_resume_adds_trials_without_repeating_finished_ones(tmp_path):
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "2"]) == 0
    first = trials_of(path, out)
    sizes = {p: p.stat().st_size for p in (out / "trials").rglob("metrics.csv")}
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "4", "--resume"]) == 0
    after = trials_of(path, out)
    assert [t.number for t in after] == [0, 1, 2, 3]
    for old, new in zip(first, after):
        assert (old.params, old.value, old.datetime_complete) == (new.params, new.value, new.datetime_complete)
    assert {p: p.stat().st_size for p in sizes} == sizes  # finished trials' runs untouched
    assert after[2].params != after[0].params  # a restarted sampler does not replay old suggestions


def test_pruning_stops_a_bad_region(tmp_path):
    # Half of this space is deliberately bad (a learning rate of 0.3 wrecks the policy).
    path = write_sweep(tmp_path, sweep='sampler = "random"\nseed = 3\npruner = "median"\npruner_startup_trials = 2\n'
                       'pruner_warmup_evals = 0\n', steps=2000,
                       space='lr = { choices = [0.0005, 0.3] }\nentropy_coef = { choices = [0.01, 0.02] }\n')
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "8"]) == 0
    trials = trials_of(path, out)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, [(t.params, t.state) for t in trials]
    assert all(len(t.intermediate_values) < 4 for t in pruned)


NAN_PLUGIN = '''
import math
from harness import hookimpl
from harness_plugins.happo import HAPPO

class Diverging(HAPPO):
    """HAPPO that reports a non-finite loss whenever its learning rate is above 1e-3."""
    def update(self, batch):
        metrics = super().update(batch)
        if self.cfg.lr > 1e-3:
            metrics["policy_loss"] = math.nan
        return metrics

@hookimpl
def register_schemes(register):
    register("diverging", Diverging, description="HAPPO that diverges at high learning rates")
'''


def test_diverging_trial_is_failed_with_its_reason_and_the_sweep_goes_on(tmp_path):
    plugin = tmp_path / "diverging.py"
    plugin.write_text(NAN_PLUGIN)
    path = write_sweep(tmp_path, sweep='plugins = ["diverging.py"]\nsampler = "random"\nseed = 0\n',
                       space='lr = { choices = [0.0005, 0.005] }\n')
    path.write_text(path.read_text().replace('scheme = "happo"', 'scheme = "diverging"'))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "3"]) == 0
    trials = trials_of(path, out)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and failed
    assert all(t.params["lr"] == 0.005 for t in failed) and all(t.params["lr"] == 0.0005 for t in complete)
    assert all("non-finite policy_loss" in t.user_attrs["fail_reason"] for t in failed)


def test_two_workers_share_one_sqlite_study(tmp_path):
    path = write_sweep(tmp_path, steps=3000)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "6", "--jobs", "2"]) == 0
    trials = trials_of(path, out)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) >= 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials
    assert len({t.number for t in trials}) == len(trials)


@pytest.mark.slow
def test_killed_worker_trial_is_retried_and_resumes_its_runs(tmp_path):
    # Checkpoints every 7 iterations, evaluations every 20: a kill can leave evaluation rows after
    # the last checkpoint, which the resumed run drops and makes again.
    path = write_sweep(tmp_path, steps=20000, seeds=1, evaluations=20,
                       sweep='heartbeat = 1\ngrace = 3\npruner = "none"\n',
                       config=TINY_CONFIG + "checkpoint_interval = 7\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "harness.cli", "sweep", str(path), "--out", str(out), "--trials", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    ckpt = out / "trials" / "0" / "mpe" / "simple_speaker_listener" / "seed_1" / "checkpoint.pt"
    metrics = ckpt.parent / "metrics.csv"

    def eval_after_checkpoint() -> bool:
        """An evaluation row logged after the newest checkpoint (iterations are multiples of 7)."""
        try:
            lines = metrics.read_text().splitlines()[1:]
        except FileNotFoundError:
            return False
        done = [line.split(",") for line in lines if line.count(",") == lines[0].count(",")]
        if not done:
            return False
        last = int(done[-1][0])
        return any(int(f[0]) > 7 * (last // 7) and f[3] for f in done)

    deadline = time.time() + 120
    while not eval_after_checkpoint() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rows_before = len(list(csv.DictReader(open(metrics))))
    assert 0 < rows_before
    time.sleep(4)  # past the grace period: the trial's heartbeat is stale
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials = trials_of(path, out)
    assert trials[0].state == TrialState.FAIL
    retry = trials[1]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[0].params
    assert retry.system_attrs["retry_history"] == [0]
    rows = list(csv.DictReader(open(metrics)))
    iterations = [int(r["iteration"]) for r in rows]
    assert iterations == list(range(len(iterations))) and iterations[-1] == 400  # resumed, no duplicates
    assert (ckpt.parent / "DONE").exists()
    # The retry's objective covers the whole run, the evaluations before the kill included, once each.
    evals = [(int(r["env_steps"]), float(r["eval_return"])) for r in rows if r["eval_return"] and int(r["iteration"]) > 0]
    assert len(evals) == 20
    assert retry.value == pytest.approx(objective_value(evals, 20000, 0.25))
    assert sorted(retry.intermediate_values) == list(range(1, 21))


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sweep, space, message", [
    ("colour = 1", "", "unknown [sweep] key(s) ['colour']"),
    ('sampler = "grid"', "", "sampler='grid' is not one of: tpe, random"),
    ('pruner = "sometimes"', "", "pruner='sometimes' is not one of: median, hyperband, none"),
    ("steps = 0", "", "steps=0 must be an integer >= 1"),
    ("", "lr = { low = 1e-2, high = 1e-4 }\n", "low=0.01 and high=0.0001 must be finite numbers with low < high"),
    ("", "learning_rate = { low = 1e-4, high = 1e-2 }\n", "'learning_rate' is not a config key"),
    ("", "lr = { low = 0.0, high = 1e-2, log = true }\n", "needs a boolean and low > 0"),
    ("", "clip = { choices = [] }\n", "choices must be a non-empty list"),
    ("", "lr = 0.001\n", "the search space is empty"),
    ("", "lr = { low = -1.0, high = 1e-2 }\n", "lr=-1.0 must be > 0"),
    ('exclude = ["lr"]', "clip = { choices = [0.1] }\n", "exclude names 'lr', which is not in the search space"),
])
def test_bad_sweep_files_give_one_line_errors(tmp_path, capsys, sweep, space, message):
    steps = 0 if sweep == "steps = 0" else 1000
    sweep = "" if sweep == "steps = 0" else sweep
    path = write_sweep(tmp_path, sweep=sweep, space=space or "lr = { low = 1e-4, high = 1e-2 }\n", steps=steps)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_unknown_scheme_and_missing_study(tmp_path, capsys):
    path = write_sweep(tmp_path)
    path.write_text(path.read_text().replace('scheme = "happo"', 'scheme = "hapo"'))
    assert main(["sweep", str(path), "--out", str(tmp_path / "o1")]) == 2
    assert "hapo" in capsys.readouterr().err
    path = write_sweep(tmp_path, name="fresh")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume: no study 'fresh'" in err and len(err.strip().splitlines()) == 1


def test_changed_sweep_file_does_not_join_an_old_study(tmp_path, capsys):
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "1"]) == 0
    path.write_text(path.read_text().replace("steps = 1000", "steps = 1500"))
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "2"]) == 2
    assert "was made by a different sweep file" in capsys.readouterr().err


def test_unreachable_storage_is_a_one_line_error(tmp_path, capsys):
    path = write_sweep(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--storage", f"postgresql://nobody:secret@127.0.0.1:{port}/db"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot open storage 'postgresql://nobody@127.0.0.1" in err and "secret" not in err
    assert len(err.splitlines()) == 1


def test_default_space_is_declared_by_the_scheme_plugin(regs):
    space = regs.schemes.get("happo").extra["search_space"]
    assert {"lr", "clip", "ppo_epochs", "entropy_coef", "gae_lambda", "hidden_sizes"} <= set(space)
    assert regs.schemes.get("mappo").extra["search_space"] == space
    dims = {n: parse_dimension(n, s, "x") for n, s in space.items()}
    assert dims["ppo_epochs"].kind == "int" and dims["lr"].kind == "float" and dims["lr"].log
    assert dims["hidden_sizes"].kind == "categorical"


# -- PostgreSQL --------------------------------------------------------------------------------------
def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on loopback, started from the machine's binaries."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine; .ci/run installs Debian's postgresql")
    base = tempfile.mkdtemp(prefix="harness-pg-", dir="/tmp")
    os.chmod(base, 0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = f"{base}/data"
    try:
        subprocess.run(prefix + [initdb, "-D", data, "-A", "trust", "-U", "harness"], check=True,
                       capture_output=True, timeout=120)
        subprocess.run(prefix + [pg_ctl, "-D", data, "-l", f"{base}/log", "-w", "-t", "60", "-o",
                                 f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server: {getattr(exc, 'stderr', b'') or exc}")
    try:
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=port, user="harness", dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE sweeps")
        yield f"postgresql://harness@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", data, "-m", "fast", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, postgres_url):
    path = write_sweep(tmp_path, name="pg", steps=3000)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "6", "--jobs", "2",
                 "--storage", postgres_url]) == 0
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    trials = study.get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) >= 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert not (out / "study.db").exists()  # nothing went to the default SQLite file
    assert (out / "best.toml").exists()
    # A second invocation joins the same study and adds to it.
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "7", "--resume",
                 "--storage", postgres_url]) == 0
    assert len(optuna.load_study(study_name="pg", storage=postgres_url).get_trials()) >= 7


def test_run_sweep_rejects_bad_counts(tmp_path):
    from harness.errors import HarnessError
    sweep = load_sweep(write_sweep(tmp_path), tmp_path / "out")
    with pytest.raises(HarnessError, match="--jobs 0 must be >= 1"):
        run_sweep(sweep, jobs=0)
    with pytest.raises(HarnessError, match="--trials 0 must be >= 1"):
        run_sweep(sweep, trials=0)


def test_two_workers_share_a_journal_file_study(tmp_path):
    """Optuna's journal storage: one file on a (shared) filesystem, no database server."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = write_sweep(tmp_path, name="journal", steps=3000)
    out = tmp_path / "out"
    journal = tmp_path / "shared" / "study.log"
    assert main(["sweep", str(path), "--out", str(out), "--quiet", "--trials", "6", "--jobs", "2",
                 "--storage", f"journal://{journal}"]) == 0
    study = optuna.load_study(study_name="journal", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) >= 6
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took trials from the one file
    assert len({t.number for t in trials}) == len(trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # no trial ran twice
    assert not (out / "study.db").exists() and (out / "best.toml").exists()


@pytest.mark.slow
def test_a_sigkilled_sweep_worker_fails_its_trial_saying_why(tmp_path):
    path = write_sweep(tmp_path, steps=3000, seeds=1, evaluations=4, sweep='pruner = "none"\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "harness.cli", "sweep", str(path), "--out", str(out), "--trials", "3", "--jobs", "2",
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 180
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if (out / "study.db").exists():
            try:
                running = [t for t in trials_of(path, out) if t.state == TrialState.RUNNING and "worker" in t.user_attrs
                           and (Path(t.user_attrs["run_dir"]) / "mpe").exists()]
            except Exception:  # noqa: BLE001 - the study is still being created
                continue
            if running:
                victim = running[0]
                os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    assert victim is not None, proc.stderr.read() if proc.poll() is not None else "no trial ran"
    _, err = proc.communicate(timeout=600)
    pid = victim.user_attrs["worker"].rsplit(":", 1)[1]
    assert f"worker killed by SIGKILL (process {pid} on " in err and "Traceback" not in err, err
    trials = {t.number: t for t in trials_of(path, out)}
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["fail_reason"] == f"worker killed by SIGKILL (process {pid} on {socket.gethostname()})"
    retries = [t for t in trials.values() if t.system_attrs.get("retry_history") == [victim.number]]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert not retries[0].user_attrs.get("fail_reason") or retries[0].state == TrialState.FAIL


def test_a_queued_retry_does_not_carry_the_reason_of_the_trial_it_retries(tmp_path):
    from harness.study import fail_trials_of, open_study
    sweep = load_sweep(write_sweep(tmp_path), tmp_path / "out")
    study = open_study(sweep, None, resume=False)
    trial = study.ask({"clip": optuna.distributions.CategoricalDistribution((0.1, 0.2))})
    trial.set_user_attr("worker", "vm:123")
    assert fail_trials_of(sweep, None, "vm:123", "worker killed by SIGKILL (process 123 on vm)") == [trial.number]
    trials = {t.number: t for t in study.get_trials()}
    assert trials[trial.number].state == TrialState.FAIL
    assert trials[trial.number].user_attrs["fail_reason"] == "worker killed by SIGKILL (process 123 on vm)"
    (retry,) = [t for t in trials.values() if t.number != trial.number]
    assert retry.state == TrialState.WAITING and retry.params == trials[trial.number].params
    assert not retry.user_attrs.get("fail_reason") and not retry.user_attrs.get("worker")


def _open_at_once(path: str, out: str, barrier, answers) -> None:
    """Open the sweep's storage as soon as every other process is ready to (a child process)."""
    from harness.errors import HarnessError
    from harness.study import make_storage
    sweep = load_sweep(Path(path), Path(out))
    barrier.wait()
    try:
        make_storage(sweep, None)
        answers.put("ok")
    except HarnessError as exc:
        answers.put(str(exc))


def test_processes_creating_one_new_study_database_at_once_all_open_it(tmp_path):
    # Several processes making a new SQLite study at once race to create its tables: the losers saw
    # "table studies already exists" or "UNIQUE constraint failed: alembic_version.version_num".
    import multiprocessing
    path = write_sweep(tmp_path)
    ctx = multiprocessing.get_context("fork")  # the parent has imported the harness already
    failed = []
    for attempt in range(4):
        out = tmp_path / f"out{attempt}"
        barrier, answers = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(str(path), str(out), barrier, answers)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        failed += [a for a in (answers.get(timeout=10) for _ in procs) if a != "ok"]
    assert not failed, failed
