"""Logger plugin ``mlflow``: a run as an MLflow run (parameters, metrics by env steps, artifacts).

The tracking store is ``MLFLOW_TRACKING_URI`` when set (a server, or one SQLite file shared by a
suite's runs), else an SQLite store in the run directory (``sqlite:///<run_dir>/mlflow.db``, with the
artifacts in ``<run_dir>/mlflow-artifacts/``); the
experiment is ``MLFLOW_EXPERIMENT_NAME`` or ``happo-harness``. Parameters are the flattened config;
tags the task, scheme, seed, run directory and code digest; ``config.json`` is an artifact at the
start, ``metrics.csv`` and ``absolute.json`` at the end with the absolute metric. The MLflow run id is
kept in ``trackers.json``: a resumed run continues it; a stopped run is marked KILLED, a finished
one FINISHED.
"""

from __future__ import annotations

import os
import time
from typing import Any

from harness.hookspecs import hookimpl
from harness.tracking import Tracker, flat_config, numeric


class MLflowTracker(Tracker):
    name = "mlflow"

    def open(self, config: dict[str, Any], record: dict[str, Any], start_iteration: int,
             saved_id: str | None) -> str | None:
        import logging

        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        for name in ("alembic", "mlflow"):  # the SQLite store's schema migrations, MLflow's INFO lines
            logging.getLogger(name).setLevel(logging.WARNING)
        shared = os.environ.get("MLFLOW_TRACKING_URI")
        uri = shared or f"sqlite:///{(self.run_dir / 'mlflow.db').resolve()}"
        self.client = client = MlflowClient(tracking_uri=uri)
        self.run_id = None
        if saved_id:
            try:
                self.run_id = client.get_run(saved_id).info.run_id
                client.update_run(self.run_id, status="RUNNING")
            except Exception:  # another store now, or the run was deleted: start a new one
                self.run_id = None
        if self.run_id is None:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "happo-harness"
            experiment = client.get_experiment_by_name(name)
            # With the run's own store, its artifacts stay in the run directory too (MLflow's default
            # for an SQLite store is ./mlruns in whatever directory the command ran from).
            where = None if shared else (self.run_dir / "mlflow-artifacts").resolve().as_uri()
            exp_id = experiment.experiment_id if experiment is not None else client.create_experiment(
                name, artifact_location=where)
            run = client.create_run(exp_id, run_name=f"{config['scheme']} {config['task']} seed {config['seed']}",
                                    tags={"task": config["task"], "scheme": config["scheme"],
                                          "seed": str(config["seed"]), "run_dir": str(self.run_dir),
                                          "code_digest": str(record.get("code_digest"))})
            self.run_id = run.info.run_id
            client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in flat_config(config).items()])
            if (self.run_dir / "config.json").exists():
                client.log_artifact(self.run_id, str(self.run_dir / "config.json"))
        return self.run_id

    def log(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, row["env_steps"])
                                                    for k, v in numeric(row).items()])

    def close(self, summary: dict[str, Any], finished: bool) -> None:
        if finished:
            if summary.get("absolute_return") is not None:
                self.client.log_metric(self.run_id, "absolute_return", summary["absolute_return"],
                                       step=summary["env_steps"])
            for name in ("metrics.csv", "absolute.json"):
                if (self.run_dir / name).exists():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.client.set_terminated(self.run_id, "FINISHED" if finished else "KILLED")


@hookimpl
def register_loggers(register):
    register("mlflow", MLflowTracker, requires=("mlflow",), extra="mlflow",
             description="MLflow runs (MLFLOW_TRACKING_URI, default an SQLite store in the run directory)")

