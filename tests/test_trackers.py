"""Experiment trackers (``loggers``): each library's own reader gets back what metrics.csv holds, a
resumed run continues the same tracker run, and trackers never change a run's config digest."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import build_config
from harness.plugins import load_plugins
from harness.trainer import Trainer

from conftest import TINY
from wandb_log import history_and_summary

LOGGERS = ["tensorboard", "mlflow", "wandb"]


def _installed():
    import importlib.util
    missing = [m for m in LOGGERS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {missing} (pip install -e \".[tensorboard,mlflow,wandb]\")")


def _cfg(**over):
    return build_config({"task": "mpe/simple_spread", **TINY, "steps": 300, "checkpoint_interval": 1,
                         "loggers": LOGGERS, **over})


def _evals(run: Path) -> list[tuple[int, float]]:
    with open(run / "metrics.csv", newline="") as fh:
        return [(int(r["env_steps"]), float(r["eval_return"])) for r in csv.DictReader(fh) if r["eval_return"]]


def _tensorboard(run: Path) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("eval_return")]


def _mlflow(run: Path, run_id: str):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "eval_return"))
    return client, history


def _wandb(run: Path, run_id: str):
    files = sorted(run.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    rows, summary = [], {}
    for f in files:  # a resumed run writes a second file with the same id
        h, s = history_and_summary(f)
        rows += h
        summary.update(s)
    return files, sorted((r["_step"], r["eval_return"]) for r in rows if "eval_return" in r), summary


def _same(a, b):
    assert [s for s, _ in a] == [s for s, _ in b]
    assert [v for _, v in a] == pytest.approx([v for _, v in b], rel=1e-5, abs=1e-5)


def test_every_tracker_reads_back_the_runs_metrics_and_a_resumed_run_continues_them(tmp_path, monkeypatch):
    _installed()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    regs = load_plugins()
    run = tmp_path / "run"
    # Train 3 of 6 iterations, then stop (the generator closed as a signal would stop it).
    it = Trainer(_cfg(), regs, run, progress=False).iterate()
    for _ in range(4):  # iteration 0 (the first evaluation) and 1..3
        next(it)
    it.close()
    ids = json.loads((run / "trackers.json").read_text())
    client, _ = _mlflow(run, ids["mlflow"])
    assert client.get_run(ids["mlflow"]).info.status == "KILLED"
    # Resume to the end: the same MLflow run and W&B id continue.
    Trainer(_cfg(), regs, run, progress=False).run_training()
    assert json.loads((run / "trackers.json").read_text()) == ids
    expected = _evals(run)
    assert [s for s, _ in expected] == [0, 50, 100, 150, 200, 250, 300]
    _same(_tensorboard(run), expected)
    client, history = _mlflow(run, ids["mlflow"])
    _same(history, expected)
    info = client.get_run(ids["mlflow"])
    assert info.info.status == "FINISHED" and info.data.params["lr"] == "0.0005"
    absolute = json.loads((run / "absolute.json").read_text())
    assert info.data.metrics["absolute_return"] == pytest.approx(absolute["absolute_return"])
    # The run's own MLflow store keeps its artifacts in the run directory, nothing in the working one.
    assert list((tmp_path / "cwd").iterdir()) == []
    assert {p.name for p in (run / "mlflow-artifacts").rglob("*") if p.is_file()} >= {"config.json", "metrics.csv"}
    files, wandb_evals, summary = _wandb(run, ids["wandb"])
    assert len(files) == 2
    _same(wandb_evals, expected)
    assert summary["absolute_return"] == pytest.approx(absolute["absolute_return"])


def test_trackers_do_not_change_a_runs_config(tmp_path):
    pytest.importorskip("tensorboard", reason="the second run logs to TensorBoard: pip install -e \".[test]\"")
    assert _cfg().digest() == _cfg(loggers=[]).digest()
    run = tmp_path / "run"
    Trainer(_cfg(loggers=[], steps=100), load_plugins(), run, progress=False).run_training()
    # The same run asked again with trackers is the same (finished) run, not "another config".
    Trainer(_cfg(loggers=["tensorboard"], steps=100), load_plugins(), run, progress=False).run_training()


@pytest.mark.parametrize("value, message", [
    ("tensorbord", "unknown logger 'tensorbord'; known: mlflow, tensorboard, wandb"),
])
def test_an_unknown_logger_is_one_line_before_anything_runs(tmp_path, value, message):
    res = subprocess.run([sys.executable, "-m", "harness.cli", "train", "--steps", "100", "--out",
                          str(tmp_path / "run"), "--set", f"loggers={value}"], capture_output=True, text=True)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_logger_names_are_given_once_and_may_look_like_toml():
    from harness.errors import HarnessError
    assert build_config({"loggers": '["tensorboard", "wandb"]'}).loggers == ["tensorboard", "wandb"]
    with pytest.raises(HarnessError, match="names tensorboard twice"):
        build_config({"loggers": "tensorboard,mlflow,tensorboard"})
