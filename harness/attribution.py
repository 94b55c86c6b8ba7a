"""Attribution ladders: what each change between two arms of a suite does to the final return.

A suite names the rungs of its ladder, each a pair of arms that differ in one ingredient::

    [attribution]
    rungs = [
      { before = "mappo_shared", after = "mappo_unshared", isolates = "parameter sharing" },
      { before = "mappo_unshared", after = "happo", isolates = "the sequential factor M" },
    ]

``harness bench`` checks the rungs against the suite's arms and adds them to ``<out>/attribution.json``;
``harness plot`` then adds, per task where both arms of a rung ran, the rung's effect: the difference
of the mean final returns ``after - before`` with its 95% Welch interval (as ``comparisons.csv``), the
same on the normalised scale where the task has references (the scale is linear, so the interval
scales with it), P(after > before) over seeds and the verdict (decided when the interval excludes 0,
else the seeds per arm a decided answer would need): ``attribution.csv``, ``attribution.png/pdf`` and
a section of ``summary.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.config import need
from harness.errors import HarnessError
from harness.safe_files import read_text
from harness.stats import probability_of_improvement, welch_interval
from harness.verdicts import needed_text, verdict

FILE = "attribution.json"
COLUMNS = ["task", "isolates", "before", "after", "n_before", "n_after", "difference", "ci_low", "ci_high",
           "normalised_difference", "normalised_ci_low", "normalised_ci_high", "probability", "verdict",
           "seeds_needed"]


@dataclass(frozen=True)
class Rung:
    """One step of a ladder: arm ``before`` -> arm ``after``, which differ in what ``isolates`` says."""

    before: str
    after: str
    isolates: str


def rungs_from_suite(table: Any, arms: list[str], path: Path) -> list[Rung]:
    """The rungs of a suite's ``[attribution]`` table, checked against its arms."""
    need(isinstance(table, dict) and set(table) <= {"rungs"}, path,
         "[attribution] holds one key, rungs = [{ before = ARM, after = ARM, isolates = TEXT }, ...]")
    rungs = table.get("rungs", [])
    need(isinstance(rungs, list) and rungs, path, "[attribution] rungs must be a non-empty list of tables")
    out = []
    for k, r in enumerate(rungs, 1):
        need(isinstance(r, dict) and set(r) == {"before", "after", "isolates"}, path,
             f"[attribution] rung {k} must be {{ before = ARM, after = ARM, isolates = TEXT }}, got {r!r}")
        for key in ("before", "after"):
            need(r[key] in arms, path, f"[attribution] rung {k}: {key} = {r[key]!r} is not an arm of the suite "
                                       f"({', '.join(arms)})")
        need(r["before"] != r["after"], path, f"[attribution] rung {k} compares {r['before']!r} with itself")
        need(isinstance(r["isolates"], str) and r["isolates"].strip(), path,
             f"[attribution] rung {k}: isolates must say what the rung changes, e.g. \"parameter sharing\"")
        out.append(Rung(r["before"], r["after"], r["isolates"]))
    return out


def write_rungs(rungs: list[Rung], out: Path) -> None:
    """Record a suite's rungs in its results tree, where ``harness plot`` finds them, after the rungs
    already recorded there (several suites may write into one tree, e.g. one per task)."""
    merged = list(dict.fromkeys(read_rungs(out) + list(rungs)))
    out.mkdir(parents=True, exist_ok=True)
    (out / FILE).write_text(json.dumps([r.__dict__ for r in merged], indent=2) + "\n")


def read_rungs(root: Path) -> list[Rung]:
    """The rungs recorded in a results tree (none when it has no ``attribution.json``)."""
    path = root / FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(read_text(path))
        return [Rung(str(r["before"]), str(r["after"]), str(r["isolates"])) for r in data]
    except (ValueError, TypeError, KeyError) as exc:
        raise HarnessError(f"{path}: not a list of rungs ({exc}); re-run the suite to rewrite it") from None


def rung_table(finals: pd.DataFrame, rungs: list[Rung], references: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per rung and task where both of its arms ran, from the runs' final scores (``task``,
    ``scheme`` = arm, ``final_return``): columns :data:`COLUMNS`, in rung order then task order."""
    rows = []
    for rung in rungs:
        for task, group in finals.groupby("task", sort=True):
            scores = {s: g["final_return"].to_numpy(dtype=float) for s, g in group.groupby("scheme")}
            if rung.before not in scores or rung.after not in scores:
                continue
            x, y = scores[rung.after], scores[rung.before]
            diff, low, high = welch_interval(x, y)
            ref = references.get(task) or {}
            span = (ref["ceiling"] - ref["floor"]) if ref.get("ceiling") is not None and ref.get("floor") is not None \
                else None
            norm = [v / span if span and np.isfinite(v) else np.nan for v in (diff, low, high)]
            decided = verdict(low, high)
            rows.append([task, rung.isolates, rung.before, rung.after, len(y), len(x), diff, low, high, *norm,
                         float(probability_of_improvement([x], [y])), decided,
                         "" if decided == "decided" else needed_text(x, y)])
    return pd.DataFrame(rows, columns=COLUMNS)
