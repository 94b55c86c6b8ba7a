"""The ray executor on a real two-node Ray cluster on loopback: runs land on both nodes, equal the
local executor's row for row, and a suite survives a node whose raylet is killed mid-run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray executor's tests need Ray: pip install -e \".[ray]\"")

from conftest import free_port, tiny_suite, tiny_sweep  # noqa: E402

BIN = Path(sys.executable).parent
HARNESS = str(BIN / "harness")
RAY = str(BIN / "ray")
TIMING = {"steps_per_s", "collect_s", "update_s", "wall_s"}

SUITE = tiny_suite("{steps}", name="ray", eval_interval=5, checkpoint_interval=4)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and a worker node, one CPU each; yields (address, worker node's raylet port)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    port, worker_port = free_port(), free_port()
    cwd = tmp_path_factory.mktemp("ray")
    # Two addresses of the loopback range, one per node, so that all traffic stays on loopback.
    head = subprocess.run([RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.2", "--num-cpus=1",
                           "--include-dashboard=false", "--disable-usage-stats"], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=180)
    if head.returncode:
        pytest.skip(f"cannot start a Ray head node here: {head.stderr.strip().splitlines()[-1:]}")
    worker = subprocess.run([RAY, "start", f"--address=127.0.0.2:{port}", "--node-ip-address=127.0.0.3", "--num-cpus=1",
                             f"--node-manager-port={worker_port}"], capture_output=True, text=True, env=env, cwd=cwd,
                            timeout=180)
    try:
        assert worker.returncode == 0, worker.stderr
        nodes = subprocess.run(
            [sys.executable, "-c", "import json, ray; ray.init(address=%r, _node_ip_address='127.0.0.2', "
             "logging_level='ERROR'); print(json.dumps({n['NodeManagerPort']: n['NodeID'] for n in ray.nodes() "
             "if n['Alive']}))" % f"127.0.0.2:{port}"], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
        worker_node = json.loads(nodes.stdout.strip().splitlines()[-1])[str(worker_port)]
        yield f"127.0.0.2:{port}", worker_port, worker_node, env, cwd
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)


def _bench(path: Path, out: Path, *extra: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([HARNESS, "bench", str(path), "--out", str(out), "--quiet", "--no-plot", *extra],
                          capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


# The driver's own address in the cluster: the head node's loopback address.
LOOPBACK = ["--executor-option", "node_ip_address=127.0.0.2"]
RUNS = [f"mpe/simple_spread/{s}/seed_{k}" for s in ("happo", "mappo") for k in (1, 2)]


def test_a_suite_on_two_ray_nodes_equals_the_local_executor(cluster, tmp_path):
    address, _, _, env, cwd = cluster
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(steps=1000))
    res = _bench(path, tmp_path / "ray", "--executor", "ray", "--address", address, *LOOPBACK, env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert f"ray: 2 node(s), 2 CPUs at {address}" in res.stderr
    local = _bench(path, tmp_path / "local", "--jobs", "2")
    assert local.returncode == 0, local.stderr
    nodes = set()
    for run in RUNS:
        record = json.loads((tmp_path / "ray" / run / "config.json").read_text())
        assert record["executor"] == "ray" and (tmp_path / "ray" / run / "DONE").exists()
        nodes.add(record["node_id"])
        assert json.loads((tmp_path / "local" / run / "config.json").read_text())["executor"] == "local"
        assert _rows(tmp_path / "ray" / run) == _rows(tmp_path / "local" / run)
    assert len(nodes) == 2, "the runs should have landed on both nodes"


def test_an_unreachable_cluster_or_unwritable_output_is_one_line(cluster, tmp_path):
    address, _, _, env, cwd = cluster
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(steps=100))
    res = _bench(path, tmp_path / "out", "--executor", "ray", "--address", "127.0.0.2:1", *LOOPBACK, env=env)
    assert res.returncode == 2 and "cannot connect to the Ray cluster at '127.0.0.2:1': Connection refused" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _bench(path, tmp_path / "out", "--executor", "ray", "--address", address, "--executor-option", "nope=1",
                 env=env)
    assert res.returncode == 2 and "executor 'ray' has no option 'nope'; its options: address, " in res.stderr


SWEEP = tiny_sweep("rayjournal", 1000, trials=6, evaluations=2)


def test_two_ray_sweep_workers_share_one_journal_file_study(cluster, tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    address, _, _, env, cwd = cluster
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    journal = tmp_path / "study.log"
    res = subprocess.run([HARNESS, "sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "2", "--quiet",
                          "--storage", f"journal://{journal}", "--executor", "ray", "--address", address, *LOOPBACK],
                         capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr
    study = optuna.load_study(study_name="rayjournal", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 6 and len({t.number for t in trials}) == len(trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # no trial ran twice
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # the two workers, each a Ray task
    runs = list((tmp_path / "out" / "trials").glob("*/mpe/simple_spread/seed_1/config.json"))
    assert runs and {json.loads(r.read_text())["executor"] for r in runs} == {"ray"}


def test_a_killed_worker_node_is_absorbed_by_resuming_its_runs(cluster, tmp_path):
    """Last in this module: it kills the cluster's worker node."""
    address, worker_port, worker_node, env, cwd = cluster
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(steps=6000))
    reference = _bench(path, tmp_path / "reference", "--jobs", "2")
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "ray"
    proc = subprocess.Popen([HARNESS, "bench", str(path), "--out", str(out), "--quiet", "--no-plot", "--executor",
                             "ray", "--address", address, *LOOPBACK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    # Wait until a run on the worker node has checkpointed, then kill that node's raylet.
    deadline, victim = time.time() + 180, None
    while time.time() < deadline and victim is None and proc.poll() is None:
        time.sleep(0.2)
        for run in RUNS:
            d = out / run
            if (d / "checkpoint.pt").exists() and (d / "config.json").exists() and not (d / "DONE").exists() \
                    and json.loads((d / "config.json").read_text())["node_id"] == worker_node:
                raylets = subprocess.run(["pgrep", "-f", f"raylet.*node_manager_port={worker_port}"],
                                         capture_output=True, text=True).stdout.split()
                if raylets:
                    victim = int(raylets[0])
                    os.kill(victim, signal.SIGKILL)
                    break
    assert victim is not None, "no run on the worker node to interrupt"
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    resumed = 0
    for run in RUNS:
        assert (out / run / "DONE").exists()
        assert _rows(out / run) == _rows(tmp_path / "reference" / run), run
        record = json.loads((out / run / "config.json").read_text())
        resumed += bool(record.get("resumes"))
    assert resumed >= 1, "the interrupted run should have been resumed from its checkpoint"

