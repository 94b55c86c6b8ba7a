"""Per-task reference returns for normalising scores: a floor (a uniform-random policy's return) and
a ceiling (a published reference return, declared by the task plugin).

:func:`tree_references` gives, for the tasks of a results tree, ``{task: {"floor": float,
"floor_note": str, "ceiling": float | None, "ceiling_note": str | None}}``; a task it cannot give a
reference for is absent. This version measures nothing and declares nothing: it returns ``{}``, so
``harness plot`` shows returns without a common scale and leaves every task out of the aggregate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tree_references(root: str | Path, runs: Any) -> dict[str, dict[str, Any]]:
    """References for the tasks of the runs under ``root`` (``runs``: the table of
    :func:`harness.report.load_runs`); none in this version."""
    return {}
