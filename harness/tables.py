"""The tables of ``harness plot``, built once and written as files: ``summary.csv``, ``summary.md``,
``aggregate.csv``, ``comparisons.csv``, ``marl_eval.json`` and ``provenance.json``.

:func:`build_tables` runs the checks of :mod:`harness.comparability` and gathers the per-(task,
scheme) summary, the aggregate over tasks (:mod:`harness.report`), the per-task verdicts
(:mod:`harness.verdicts`) and what differs between schemes; :func:`write_tables` writes them, and
:func:`summary_markdown` is ``summary.md``, which says what every interval and scale is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.attribution import Rung, rung_table
from harness.comparability import (PROTOCOL_KEYS, check_comparable, describe, protocol_differences,
                                   scheme_differences)
from harness.report import (References, aggregate, aggregate_long, final_scores, left_out, provenance, scale,
                            summarise, to_marl_eval)
from harness.stats import N_BOOT, T_COVERAGE
from harness.verdicts import FEW_SEEDS, compare_pairs, decided_text

#: How scores are put on a task's scale, as the tables and figures say it.
FORMULA = "(return - random) / (reference - random)"
NORMALISED = f"normalised: {FORMULA}"
T_NOTE = "95% t-interval over seeds"


@dataclass
class Tables:
    """Everything ``harness plot`` writes and draws, from one results tree."""

    summary: pd.DataFrame
    iqm: pd.DataFrame
    improvement: pd.DataFrame
    comparisons: pd.DataFrame
    references: References
    left_out: dict[str, str]
    differs: dict[str, list[tuple[str, str]]]
    mixed: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    versions: list[str] = field(default_factory=list)
    attribution: pd.DataFrame = field(default_factory=pd.DataFrame)  # harness.attribution, when the tree has rungs


def build_tables(df: pd.DataFrame, references: References, allow_mixed: bool = False,
                 rungs: list[Rung] = ()) -> Tables:
    """The tables of the runs ``df`` (:func:`harness.report.load_runs`) on the scales of ``references``,
    with the effect of each of ``rungs`` (:mod:`harness.attribution`) where there are any.
    Unless ``allow_mixed``, refuses runs that may not be averaged or compared
    (:func:`harness.comparability.check_comparable`); with it, the protocol differences it let
    through are listed (``mixed``)."""
    if not allow_mixed:
        check_comparable(df)
    iqm_table, improvement = aggregate(df, allow_mixed=True, references=references)
    finals = final_scores(df)
    return Tables(summary=summarise(df, allow_mixed=True, references=references), iqm=iqm_table,
                  improvement=improvement, comparisons=compare_pairs(finals), references=references,
                  left_out=left_out(df["task"], references), differs=scheme_differences(df),
                  mixed=protocol_differences(df) if allow_mixed else {},
                  versions=sorted(df["env_versions"].unique()) if "env_versions" in df else [],
                  attribution=rung_table(finals, list(rungs), references) if rungs else pd.DataFrame())


def write_tables(df: pd.DataFrame, tables: Tables, out: Path) -> list[Path]:
    """Write ``summary.csv``, ``aggregate.csv``, ``comparisons.csv``, ``summary.md``, ``marl_eval.json``
    and ``provenance.json`` into the existing directory ``out``; returns their paths."""
    paths = {name: out / name for name in ("summary.csv", "aggregate.csv", "comparisons.csv", "summary.md",
                                           "marl_eval.json", "provenance.json")}
    tables.summary.to_csv(paths["summary.csv"], index=False)
    aggregate_long(tables.iqm, tables.improvement).to_csv(paths["aggregate.csv"], index=False)
    tables.comparisons.to_csv(paths["comparisons.csv"], index=False)
    paths["summary.md"].write_text(summary_markdown(tables))
    paths["marl_eval.json"].write_text(json.dumps(finite_or_null(to_marl_eval(df)), indent=2, allow_nan=False))
    paths["provenance.json"].write_text(json.dumps(provenance(df), indent=2, sort_keys=True))
    if not tables.attribution.empty:
        paths["attribution.csv"] = out / "attribution.csv"
        tables.attribution.to_csv(paths["attribution.csv"], index=False)
    return list(paths.values())


# -- summary.md ------------------------------------------------------------------------------------

def finite_or_null(value: Any) -> Any:
    """``value`` (nested dicts and lists) with every float that is not finite made None, so that it
    can be written as strict JSON (``Infinity`` and ``NaN`` are not JSON)."""
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"


def _interval(mean: float, low: float, high: float, fmt: Any = _fmt) -> str:
    """``mean [low, high]``, or the mean alone where there is no interval."""
    if math.isnan(mean):
        return "-"
    return fmt(mean) if math.isnan(low) else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def _duration(seconds: float) -> str:
    """A run's mean training time (collection and updates), as ``42 s``, ``12.5 min`` or ``3.1 h``."""
    if not isinstance(seconds, (int, float)) or math.isnan(seconds):
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def coverage_sentence() -> str:
    """The measured coverage of the t-interval on skewed returns (:data:`harness.stats.T_COVERAGE`)."""
    skewed = [(name, cells) for name, cells in T_COVERAGE.items() if name != "normal"]
    seeds = list(next(iter(T_COVERAGE.values())))
    parts = [f"{'/'.join(f'{cells[n]:.1f}' for n in seeds)}% for {name} returns" for name, cells in skewed]
    return (f"it is exact when a scheme's final returns are normally distributed across seeds; on skewed returns it "
            f"covers less (simulated coverage at {', '.join(map(str, seeds))} seeds: {'; '.join(parts)}, the "
            "mixture being 30% of seeds that learn and 70% that do not)")


def _per_task(tables: Tables) -> list[str]:
    summary = tables.summary
    absolute = bool((summary["n_absolute"] > 0).any())
    lines = ["# Results", "",
             "Final score of a run: its evaluation return at its last evaluation; training time: the runs' mean "
             "time collecting and updating up to it (evaluations left out; `harness plot --x wall` draws the curves "
             "against it). Per task and scheme: the mean "
             f"over seeds with a {T_NOTE} (Student t, n - 1 degrees of freedom; none for one seed). "
             f"The t-interval is what it claims under one assumption: {coverage_sentence()}. Rows with fewer "
             f"than {FEW_SEEDS} seeds, too few to see whether the returns are skewed, say so.", "",
             f"Normalised score = {FORMULA}, where random is a uniform-random policy's mean return on the task's evaluation "
             "start states and reference a published reference return (both in the table of references below); "
             "a task without a reference return shows its return above random only.", ""]
    lines += _table(
        ["task", "scheme", "seeds", "env steps", "training time", f"final eval return mean [{T_NOTE}]", "mean - random",
         "normalised mean [95% t-interval]", "interval"] + (["absolute metric mean [95% t-interval]"] if absolute else []),
        [[r.task, r.scheme, str(r.n_seeds), str(r.final_env_steps), _duration(r.train_s),
          _interval(r.mean, r.ci_low, r.ci_high),
          "-" if math.isnan(r.above_floor) else f"{r.above_floor:+.4g}",
          _interval(r.normalised_mean, r.normalised_ci_low, r.normalised_ci_high, lambda x: f"{x:.3f}"),
          r.interval_note or "t, n - 1 df"]
         + ([f"{_interval(r.absolute_mean, r.absolute_ci_low, r.absolute_ci_high)} ({r.n_absolute} runs"
             + (f", {r.n_absolute_replayed} on the evaluation episodes*" if r.n_absolute_replayed else "") + ")"
             if r.n_absolute else "-"] if absolute else [])
         for r in summary.itertuples()])
    if absolute:
        lines += ["", "Absolute metric (marl-eval protocol): each run's best policy by evaluation return, "
                  "re-evaluated at the end of training on absolute_factor (default 10) times the evaluation "
                  "episodes (each run's absolute.json gives its count), on start states no evaluation played."]
        if (summary["n_absolute_replayed"] > 0).any():
            lines += ["", "\\* Made under the earlier protocol: those runs' absolute metric re-played the evaluation "
                      "episodes that chose the policy (their luck counted again), so it reads high; runs made since "
                      "play start states of their own."]
    lines += ["", "### References", ""]
    rows = []
    for task in sorted(summary["task"].unique()):
        ref = tables.references.get(task)
        if ref is None:
            rows.append([task, "-", "no reference for this task", "-", ""])
            continue
        floor, ceiling, _ = scale(tables.references, task)
        rows.append([task, "-" if math.isnan(floor) else _fmt(floor), ref.get("floor_note") or "",
                     "none published" if math.isnan(ceiling) else _fmt(ceiling), ref.get("ceiling_note") or ""])
    return lines + _table(["task", "random policy (floor)", "how measured", "reference (ceiling)", "source"], rows)


def _comparisons(tables: Tables) -> list[str]:
    comparisons = tables.comparisons
    if comparisons.empty:
        return []
    lines = ["", "## Comparisons per task", "",
             "X - Y: the difference of the mean final returns with a 95% Welch interval (unequal variances, "
             "Welch-Satterthwaite degrees of freedom). P(X > Y) over seeds: the fraction of (seed of X, seed of Y) "
             "pairs where X scored higher, ties one half. Decided: the interval excludes 0 (a two-sided Welch "
             "t-test at 0.05 rejects equal means); undecided otherwise. For an undecided pair, the seeds per scheme "
             "a Welch t-test would need to detect the observed difference with 80% power at 0.05 if the observed "
             "difference and standard deviations were the true ones (Colas et al., \"How Many Random Seeds?\", "
             "2018); '-' where a scheme has one seed, so no spread to plan from.", ""]
    return lines + _table(
        ["task", "X", "Y", "seeds", "X - Y [95% Welch interval]", "P(X > Y) over seeds", "verdict",
         "seeds per scheme for a decided answer"],
        [[r.task, r.scheme_x, r.scheme_y, f"{r.n_x}, {r.n_y}", _interval(r.difference, r.ci_low, r.ci_high),
          f"{r.probability:.3f}", decided_text(r), r.seeds_needed] for r in comparisons.itertuples()])


def _attribution(tables: Tables) -> list[str]:
    rows = tables.attribution
    if rows.empty:
        return []
    lines = ["", "## Attribution: what each rung of the ladder changes", "",
             "Each rung compares two arms that differ in one ingredient: after - before is the difference of the "
             "mean final returns with a 95% Welch interval, and the same on the normalised scale where the task has "
             "references; decided when the interval excludes 0 (seeds per arm a decided answer would need "
             "otherwise, as above).", ""]
    return lines + _table(
        ["task", "isolates", "before -> after", "seeds", "after - before [95% Welch interval]",
         "normalised [95% Welch interval]", "P(after > before)", "verdict", "seeds per arm for a decided answer"],
        [[r.task, r.isolates, f"{r.before} -> {r.after}", f"{r.n_before}, {r.n_after}",
          _interval(r.difference, r.ci_low, r.ci_high),
          _interval(r.normalised_difference, r.normalised_ci_low, r.normalised_ci_high, lambda x: f"{x:.3f}"),
          f"{r.probability:.3f}",
          ("undecided" if r.verdict != "decided" else f"decided: {r.after if r.difference > 0 else r.before} higher"),
          r.seeds_needed] for r in rows.itertuples()])


def _differences(tables: Tables) -> list[str]:
    if not tables.differs:
        return []
    lines = ["", "## What differs between schemes", "",
             f"The schemes of a task share the evaluation protocol and budget ({', '.join(PROTOCOL_KEYS)}, every env "
             "option, the set of seeds), the env package versions and the task plugin's code; `plot` refuses "
             "them otherwise. What differs, their own settings:", ""]
    for task, found in tables.differs.items():
        lines.append(f"- {task}: differs by scheme: {describe(found) if found else 'nothing but the scheme'}")
        if task in tables.mixed:
            lines.append(f"  - **compared anyway (--allow-mixed), protocol differs**: {describe(tables.mixed[task])}")
    return lines


def _aggregate(tables: Tables) -> list[str]:
    lines = ["", "## Aggregate over tasks", ""]
    left = [f"{task} ({why})" for task, why in tables.left_out.items()]
    if tables.iqm.empty:
        return lines + ["No task has both a random-policy return and a published reference return, so there is "
                        "no common scale and no aggregate over tasks." + (f" Tasks: {'; '.join(left)}." if left else "")]
    lines += [f"Final scores normalised per task: {FORMULA}. IQM = mean of the middle 50% of the pooled normalised run scores; "
              f"CIs are 95% stratified bootstrap intervals (seeds resampled within each task, {N_BOOT} resamples, "
              "each scheme's and each pair's from a generator of its own, so adding a scheme changes no other "
              "scheme's numbers)."]
    if left:
        lines += ["", f"Left out (no common scale): {'; '.join(left)}."]
    lines += [""] + _table(
        ["scheme", "tasks", "runs", "IQM of normalised final return [95% CI]"],
        [[r.scheme, str(r.n_tasks), str(r.n_runs), f"{r.iqm:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"]
         for r in tables.iqm.itertuples()])
    if not tables.improvement.empty:
        lines += ["", "P(X > Y): average over the tasks both ran of the chance that a seed of X beats a seed "
                  "of Y (ties count one half).", ""]
        lines += _table(
            ["X", "Y", "tasks", "P(X > Y) [95% CI]"],
            [[r.scheme_x, r.scheme_y, str(r.n_tasks), f"{r.probability:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"]
             for r in tables.improvement.itertuples()])
    return lines


def summary_markdown(tables: Tables) -> str:
    """The Markdown report: per task (returns, references, verdicts, what differs), then the aggregate."""
    lines = _per_task(tables) + _comparisons(tables) + _attribution(tables) + _differences(tables) + _aggregate(tables)
    lines += ["", "## Environment packages", ""] + [f"- {v}" for v in tables.versions]
    return "\n".join(lines) + "\n"
