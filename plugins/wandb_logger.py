"""Logger plugin ``wandb``: a run as a Weights & Biases run (config, metrics by env steps, summary).

The run is created in ``<run_dir>/wandb/``, in ``WANDB_MODE`` (default ``offline``: nothing leaves the
machine; upload later with ``wandb sync <run_dir>/wandb/offline-run-*``; set ``WANDB_MODE=online``
after ``wandb login`` to stream), in project ``WANDB_PROJECT`` or ``happo-harness``. The W&B run id is
kept in ``trackers.json``: a resumed run continues the same W&B run (``resume="allow"``). The config
and the provenance record go to the run's config, the absolute metric to its summary.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from harness.hookspecs import hookimpl
from harness.tracking import Tracker, numeric


class WandbTracker(Tracker):
    name = "wandb"

    def open(self, config: dict[str, Any], record: dict[str, Any], start_iteration: int,
             saved_id: str | None) -> str | None:
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "happo-harness"),
                              name=f"{config['scheme']} {config['task']} seed {config['seed']}",
                              id=saved_id or uuid.uuid4().hex[:12], resume="allow", dir=str(self.run_dir),
                              config={**config, "provenance": {k: record.get(k) for k in
                                                               ("code_digest", "versions", "git_commit")}},
                              mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"))
        return self.run.id

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(numeric(row), step=row["env_steps"])

    def close(self, summary: dict[str, Any], finished: bool) -> None:
        if finished:
            for key in ("absolute_return", "absolute_return_std", "best_eval_return"):
                if summary.get(key) is not None:
                    self.run.summary[key] = summary[key]
        self.run.finish(exit_code=0 if finished else 1)


@hookimpl
def register_loggers(register):
    register("wandb", WandbTracker, requires=("wandb",), extra="wandb",
             description="Weights & Biases runs in <run_dir>/wandb/ (WANDB_MODE, default offline)")

