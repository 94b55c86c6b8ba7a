"""Logger plugin ``tensorboard``: a run's metrics as TensorBoard scalars in ``<run_dir>/tensorboard/``.

Every numeric metrics column is a scalar against environment steps; the config and the provenance
record are text summaries; the absolute metric is written at the end. A resumed run appends to the
same directory and purges the events after its checkpoint (the iterations it trains again).
View: ``tensorboard --logdir results/`` (every run under it).
"""

from __future__ import annotations

import json
from typing import Any

from harness.hookspecs import hookimpl
from harness.tracking import Tracker, numeric


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def open(self, config: dict[str, Any], record: dict[str, Any], start_iteration: int,
             saved_id: str | None) -> str | None:
        from torch.utils.tensorboard import SummaryWriter

        batch = config["n_envs"] * config["rollout_length"]
        purge = (start_iteration + 1) * batch if start_iteration else None
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)
        if not start_iteration:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)
            self.writer.add_text("provenance", "```\n" + json.dumps(record, indent=2, default=str) + "\n```", 0)
        return None

    def log(self, row: dict[str, Any]) -> None:
        for key, value in numeric(row).items():
            self.writer.add_scalar(key, value, row["env_steps"])
        if "eval_return" in row:
            self.writer.flush()

    def close(self, summary: dict[str, Any], finished: bool) -> None:
        if finished and summary.get("absolute_return") is not None:
            self.writer.add_scalar("absolute_return", summary["absolute_return"], summary["env_steps"])
        self.writer.close()


@hookimpl
def register_loggers(register):
    register("tensorboard", TensorBoardTracker, requires=("tensorboard",), extra="tensorboard",
             description="TensorBoard event files in <run_dir>/tensorboard/")

