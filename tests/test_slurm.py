"""The slurm executor on a real one-node Slurm cluster (Debian's slurmctld, slurmd and munge) started
on loopback by the test: runs equal the local executor's, and a job cancelled mid-run is submitted
again and resumes from its checkpoint."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port, tiny_suite

pytest.importorskip("submitit", reason="the slurm executor's tests need submitit: pip install -e \".[slurm]\"")

HARNESS = str(Path(sys.executable).with_name("harness"))
TIMING = {"steps_per_s", "collect_s", "update_s", "wall_s"}
RUNS = [f"mpe/simple_spread/{s}/seed_{k}" for s in ("happo", "mappo") for k in (1, 2)]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """munged (if not running), slurmctld and slurmd with a configuration in a temporary directory."""
    for binary in ("slurmctld", "slurmd", "munged", "sbatch"):
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            pytest.skip(f"{binary} is not installed (apt-get install slurmctld slurmd munge slurm-client)")
    d = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    (d / "state").mkdir()
    (d / "spool").mkdir()
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=harnesstest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MpiDefault=none
KillWait=30
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started_munge = None
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], capture_output=True).returncode:
            pytest.skip("munged does not start here (needs root and /etc/munge/munge.key)")
        started_munge = subprocess.run(["pgrep", "-x", "munged"], capture_output=True, text=True).stdout.split()
    for daemon in ("slurmctld", "slurmd"):
        res = subprocess.run([f"/usr/sbin/{daemon}", "-f", str(conf)], capture_output=True, text=True, env=env)
        if res.returncode:
            pytest.skip(f"{daemon} does not start here: {res.stderr.strip()[-200:]}")
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout.split()
            if "idle" in state:
                break
            time.sleep(1)
        else:
            pytest.skip(f"the Slurm node did not become idle: {state}")
        yield env, d
    finally:
        for daemon in ("slurmd", "slurmctld"):
            pid_file = d / f"{daemon}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
        for pid in started_munge or []:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass  # munged already gone: nothing to stop


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


def _bench(path, out, *extra, env=None):
    return subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--quiet", "--no-plot", *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def test_a_suite_through_slurm_equals_the_local_executor(slurm, tmp_path):
    env, _ = slurm
    path = tmp_path / "suite.toml"
    path.write_text(tiny_suite(1000, name="slurm", eval_interval=5, checkpoint_interval=4,
                               extra='[executor.slurm]\npartition = "main"\ntime_min = 10\n'))
    res = _bench(path, tmp_path / "slurm", "--executor", "slurm", env=env)
    assert res.returncode == 0, res.stderr
    assert "slurm: partition/nodes/CPUs" in res.stderr
    assert _bench(path, tmp_path / "local", "--jobs", "2").returncode == 0
    jobs = set()
    for run in RUNS:
        record = json.loads((tmp_path / "slurm" / run / "config.json").read_text())
        assert record["executor"] == "slurm" and record["node_id"].endswith(f"@{socket.gethostname()}")
        jobs.add(record["node_id"])
        assert _rows(tmp_path / "slurm" / run) == _rows(tmp_path / "local" / run)
    assert len(jobs) == 4  # one Slurm job per run


def test_a_cancelled_job_is_submitted_again_and_resumes(slurm, tmp_path):
    env, _ = slurm
    path = tmp_path / "suite.toml"
    path.write_text(tiny_suite(6000, name="slurm", eval_interval=5, checkpoint_interval=4))
    assert _bench(path, tmp_path / "reference", "--jobs", "2").returncode == 0
    out = tmp_path / "slurm"
    proc = subprocess.Popen([HARNESS, "bench", str(path), "--out", str(out), "--quiet", "--no-plot", "--executor",
                             "slurm"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline, cancelled = time.time() + 180, None
    while time.time() < deadline and cancelled is None and proc.poll() is None:
        time.sleep(0.2)
        for run in RUNS:
            d = out / run
            if (d / "checkpoint.pt").exists() and (d / "config.json").exists() and not (d / "DONE").exists():
                job = json.loads((d / "config.json").read_text())["node_id"].split("@")[0]
                subprocess.run(["scancel", job], env=env, check=True)  # as an operator or a preemption would
                cancelled = run
                break
    assert cancelled is not None, "no running job to cancel"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    for run in RUNS:
        assert (out / run / "DONE").exists()
        assert _rows(out / run) == _rows(tmp_path / "reference" / run), run
    record = json.loads((out / cancelled / "config.json").read_text())
    assert record.get("resumes"), "the cancelled run should have resumed from its checkpoint in a new job"
