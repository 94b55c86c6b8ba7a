"""Tables from a results tree: load the runs, summarise them, put them on each task's scale, export.

A results tree holds one directory per run, ``<root>/<task>/<scheme>/seed_<k>/`` (at any depth; a
suite's arm, :mod:`harness.arms`, stands where the scheme is, and is what "scheme" means below), each
with ``config.json`` and ``metrics.csv`` as :class:`harness.results.RunDir` writes them. The numbers
come from :mod:`harness.stats`, which runs may be compared is :mod:`harness.comparability`'s, the
per-task verdicts :mod:`harness.verdicts`'; :mod:`harness.tables` writes the files and
:mod:`harness.plot` draws them. Definitions (repeated in ``summary.md``):

* The **final score** of a run is its ``eval_return`` at its last evaluation (the evaluation row
  with the most environment steps), not an average over the last part of training.
* Per-(task, scheme) intervals are 95% Student t-intervals over seeds (none for one seed).
* Scores are put on a task's own scale by its **references** (``{task: {"floor", "floor_note",
  "ceiling", "ceiling_note"}}``): normalised score = (return - floor) / (ceiling - floor), the floor a
  uniform-random policy's return, the ceiling a published reference return. A task without a ceiling
  (or without references) has no normalised score and is left out of the aggregate.
* Aggregates over tasks follow rliable (Agarwal et al., 2021): per scheme the interquartile mean
  (IQM) of the pooled normalised scores, per ordered pair of schemes the probability of improvement
  P(X > Y), each with a stratified bootstrap CI (seeds resampled within each task) drawn from a
  generator of its own (:func:`harness.stats.stable_seed`), so adding a scheme changes no other
  scheme's numbers.

Runs whose env packages (:data:`ENV_PACKAGES`), config or plugin code differ are not averaged together
unless the caller says so with ``allow_mixed=True``: a new simulator version can change returns.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.comparability import ENV_PACKAGES, RUN_COLUMNS, check_comparable, check_versions, format_versions
from harness.config import MAX_SEED, comparable
from harness.errors import HarnessError
from harness.provenance import UNKNOWN
from harness.results import RunDir
from harness.safe_files import UnsafeFile, read_text
from harness.stats import improvement_with_ci, iqm_with_ci, normalised, stable_seed, t_interval
from harness.verdicts import interval_note

__all__ = ["ENV_PACKAGES", "aggregate", "check_comparable", "check_versions", "final_scores", "format_versions",
           "left_out", "load_runs", "normalise", "scale", "summarise", "to_marl_eval"]

FINAL_SCORE_NOTE = ("final score = a run's eval_return at its last evaluation; "
                    "CI = 95% t-interval over seeds (none for one seed)")

#: The references of a results tree: ``{task: {"floor", "floor_note", "ceiling", "ceiling_note"}}``.
References = dict[str, dict[str, Any]]

_RUN_COLUMNS = RUN_COLUMNS


# -- loading -----------------------------------------------------------------------------------

def load_runs(root: str | Path) -> pd.DataFrame:
    """Read every run under ``root`` into one long table of evaluations.

    Runs are found by globbing ``**/metrics.csv``; a directory without ``config.json`` is skipped
    with a warning, as is a run that has no evaluation yet, one whose ``config.json`` names no task
    or scheme (no ``config`` table, ``task: 5``) and one with an evaluation return that is not finite.
    Task and scheme come from ``config.json``, the seed from it or the ``seed_<k>`` directory name.

    Returns one row per evaluation with columns ``task``, ``scheme``, ``seed``, ``run_dir``,
    ``env_versions`` (the versions of :data:`ENV_PACKAGES`, as one string), ``env_steps`` and
    ``eval_return``; rows of iterations without an evaluation are left out.

    Raises HarnessError when ``root`` holds no usable run, or when two directories hold the same
    seed of the same scheme on the same task (that seed would be counted twice).
    """
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"results directory {str(root)!r} does not exist")
    # Directories whose name starts with '.' (e.g. runs that --rerun-changed moved aside) are not results.
    found = [p for p in sorted(root.rglob("metrics.csv"))
             if not any(part.startswith(".") for part in p.relative_to(root).parts[:-1])]
    frames = [f for f in (_load_scanned(p.parent) for p in found) if f is not None]
    if not frames:
        raise HarnessError(f"no runs with evaluations found under {str(root)!r} "
                           "(looked for */metrics.csv next to a config.json)")
    df = pd.concat(frames, ignore_index=True)
    _refuse_duplicate_seeds(df)
    return df


def _load_scanned(path: Path) -> pd.DataFrame | None:
    """:func:`_load_run`, skipping (with a warning naming it) a run with a file that is not a regular
    file of a bounded size (a FIFO, a link to a device: :mod:`harness.safe_files`)."""
    try:
        return _load_run(path)
    except UnsafeFile as exc:
        warnings.warn(f"skipping {path}: {exc}", stacklevel=3)
        return None


def _load_run(path: Path) -> pd.DataFrame | None:
    """One run's evaluation rows, or None (with a warning) when the run cannot be used."""
    run = RunDir(path)
    try:
        record = run.read_config()
    except (OSError, json.JSONDecodeError, HarnessError) as exc:  # damaged: the other runs are still plotted
        warnings.warn(f"skipping {path}: config.json is unreadable ({exc})", stacklevel=3)
        return None
    if record is None:
        warnings.warn(f"skipping {path}: it has metrics.csv but no config.json", stacklevel=3)
        return None
    problem = _config_problem(record)
    if problem:
        warnings.warn(f"skipping {path}: {problem}", stacklevel=3)
        return None
    meta = _run_identity(path, record)
    if meta is None:
        warnings.warn(f"skipping {path}: no seed in config.json or in the directory name", stacklevel=3)
        return None
    # RunDir.rows drops a partial last line, so a run that is still being written can be read.
    rows = pd.DataFrame(run.rows(), columns=["env_steps", "eval_return", "eval_returns", "collect_s", "update_s"])
    rows["eval_returns"] = rows["eval_returns"].fillna("")
    # training time so far: collection and updates of every iteration (evaluations and restarts not counted)
    spent = [pd.to_numeric(rows[c], errors="coerce").fillna(0.0) for c in ("collect_s", "update_s")]
    rows["train_s"] = (spent[0] + spent[1]).cumsum()
    rows["env_steps"] = pd.to_numeric(rows["env_steps"], errors="coerce")
    rows["eval_return"] = pd.to_numeric(rows["eval_return"], errors="coerce")
    rows = rows.dropna(subset=["env_steps", "eval_return"])
    if rows.empty:
        warnings.warn(f"skipping {path}: no evaluation rows in metrics.csv yet", stacklevel=3)
        return None
    infinite = rows[~np.isfinite(rows["eval_return"])]
    if not infinite.empty:  # one such row would make every mean and interval of its task inf
        first = infinite.iloc[0]
        warnings.warn(f"skipping {path}: metrics.csv has eval_return={first['eval_return']} at env_steps="
                      f"{int(first['env_steps'])}, which is not a finite number", stacklevel=3)
        return None
    rows["env_steps"] = rows["env_steps"].astype("int64")
    for key, value in meta.items():
        rows[key] = value
    rows["absolute_return"], rows["absolute_replayed"] = _absolute_return(run)
    return rows[_RUN_COLUMNS + ["env_steps", "train_s", "eval_return", "eval_returns", "absolute_return",
                                "absolute_replayed"]]


def _absolute_return(run: RunDir) -> tuple[float, bool]:
    """The run's absolute metric (best policy re-evaluated at the end), NaN when it has none, and whether
    it was made before the metric had start states of its own (it re-played the evaluation episodes
    that chose the policy)."""
    try:
        record = json.loads(read_text(run.absolute_file))
        value = float(record["absolute_return"])
        return (value if math.isfinite(value) else float("nan")), "start_states" not in record
    except (OSError, ValueError, KeyError, TypeError):
        return float("nan"), False


def config_hash(config: dict[str, Any]) -> str:
    """A hash of a run's config without its seed: runs that may be averaged share it. Keys that say
    only how a run is watched, and keys added later while they hold their defaults, are left out (as
    in the run's config digest: :func:`harness.config.comparable`), so older runs hash as they did."""
    rest = comparable(config, drop=("seed",))
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]


def _config_problem(record: Any) -> str:
    """Why a run's config.json cannot say which task and scheme the run is of ('' when it can): the
    directory names are no substitute (they would name a made-up task)."""
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        got = record.get("config") if isinstance(record, dict) else record
        return f"config.json has no config table (config={got!r}); a run records {{\"config\": {{\"task\": ...}}}}"
    cfg = record["config"]
    task = cfg.get("task")
    if not isinstance(task, str) or not task.strip():
        return f"config.json task={task!r} is not a task name (a string such as mpe/simple_spread)"
    arm = record.get("arm")
    scheme = cfg.get("scheme")
    if not (isinstance(arm, dict) and isinstance(arm.get("name"), str)) and not (isinstance(scheme, str) and scheme):
        return f"config.json scheme={scheme!r} is not a scheme name (e.g. happo)"
    seed = cfg.get("seed", record.get("seed"))  # absent in old runs: the directory name tells it
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED):
        return f"config.json seed={seed!r} is not a seed (an integer from 0 to {MAX_SEED})"
    return ""


def _run_identity(path: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """Task, scheme, seed, run_dir and env versions of one run."""
    cfg = record.get("config") or {}
    # The directory name is the task with '/' replaced, so it is only a fallback.
    task = cfg.get("task") or path.parent.parent.name
    # An arm of a suite (harness.arms) is named by its arm; a plain scheme's arm is the scheme.
    arm = record.get("arm")
    scheme = (arm.get("name") if isinstance(arm, dict) else None) or cfg.get("scheme") or path.parent.name
    seed = cfg.get("seed", record.get("seed"))
    if seed is None:
        match = re.fullmatch(r"seed_(-?\d+)", path.name)
        if match is None:
            return None
        seed = match.group(1)
    versions = record.get("versions") or {}
    return {"task": str(task), "scheme": str(scheme), "seed": int(seed), "run_dir": str(path),
            "env_versions": format_versions(versions), "config_hash": config_hash(cfg),
            "code_hash": str(record.get("code_digest") or UNKNOWN)}


def _refuse_duplicate_seeds(df: pd.DataFrame) -> None:
    runs = df[_RUN_COLUMNS].drop_duplicates()
    dup = runs[runs.duplicated(["task", "scheme", "seed"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        dirs = dup[(dup.task == first.task) & (dup.scheme == first.scheme) & (dup.seed == first.seed)].run_dir
        raise HarnessError(f"seed {first.seed} of {first.scheme} on {first.task} appears in more than one "
                           f"directory ({', '.join(dirs)}); point at a root that holds each run once")


# -- summary and aggregate tables --------------------------------------------------------------

def final_scores(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its eval_return at its last evaluation (``final_return``) and that step."""
    keys = [c for c in _RUN_COLUMNS if c in df.columns]
    last = df.sort_values("env_steps", kind="stable").groupby(keys, sort=True).tail(1)
    out = last.rename(columns={"eval_return": "final_return"})
    extra = [c for c in ("absolute_return", "absolute_replayed", "train_s") if c in out.columns]
    return out[keys + ["env_steps", "final_return"] + extra].sort_values(["task", "scheme", "seed"]).reset_index(drop=True)


def scale(references: References | None, task: str) -> tuple[float, float, str | None]:
    """``(floor, ceiling, why_not)`` of ``task``: its references' floor and ceiling (NaN where
    missing) and, where its scores cannot be normalised, why (else None)."""
    ref = (references or {}).get(task)
    if ref is None:
        return math.nan, math.nan, "no reference for this task"
    floor, ceiling = _number(ref.get("floor")), _number(ref.get("ceiling"))
    if math.isnan(floor):
        return floor, ceiling, "no measured random-policy return (floor)"
    if math.isnan(ceiling):
        return floor, ceiling, "no published reference return (ceiling)"
    if not ceiling > floor:
        return floor, ceiling, f"its reference return {ceiling:g} is not above the random policy's {floor:g}"
    return floor, ceiling, None


def _number(x: Any) -> float:
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def summarise(df: pd.DataFrame, allow_mixed: bool = False, references: References | None = None) -> pd.DataFrame:
    """Final performance per (task, scheme).

    The final score of a run is its eval_return at its last evaluation. Returns columns ``task``,
    ``scheme``, ``n_seeds`` (runs actually found), ``final_env_steps`` (the step of the last
    evaluation; the smallest one, with a warning, when the seeds stop at different steps),
    ``train_s`` (the runs' mean training time to it, collection and updates, in seconds),
    ``mean`` (over seeds) and ``ci_low``/``ci_high`` (the 95% t-interval over seeds; NaN with one
    seed), ``interval_note`` (what that interval rests on, :func:`harness.verdicts.interval_note`),
    the absolute metric likewise, and from ``references``: ``floor``, ``above_floor`` (mean - floor),
    ``ceiling``, ``normalised_mean`` with ``normalised_ci_low``/``normalised_ci_high`` (the mean and
    interval on the task's scale; NaN where it has none), ``floor_note`` and ``ceiling_note``.
    """
    if not allow_mixed:
        check_versions(df)
    rows = []
    for (task, scheme), group in final_scores(df).groupby(["task", "scheme"], sort=True):
        steps = group["env_steps"]
        if steps.nunique() > 1:
            warnings.warn(f"seeds of {scheme} on {task} end at different env steps ({sorted(set(steps))}); "
                          "their final scores are taken at different points of training", stacklevel=2)
        finals = group["final_return"].to_numpy(dtype=float)
        low, high = t_interval(finals)
        row = {"task": task, "scheme": scheme, "n_seeds": len(group), "final_env_steps": int(steps.min()),
               "mean": float(finals.mean()), "ci_low": low, "ci_high": high, "interval_note": interval_note(len(finals)),
               "n_absolute": 0, "absolute_mean": np.nan, "absolute_ci_low": np.nan, "absolute_ci_high": np.nan,
               "n_absolute_replayed": 0,
               "train_s": float(group["train_s"].mean()) if "train_s" in group else np.nan}
        if "absolute_return" in group:
            absolute = group["absolute_return"].dropna().to_numpy()
            if len(absolute):
                a_low, a_high = t_interval(absolute)
                row.update(n_absolute=len(absolute), absolute_mean=float(absolute.mean()),
                           absolute_ci_low=a_low, absolute_ci_high=a_high,
                           n_absolute_replayed=int(group.loc[group["absolute_return"].notna(), "absolute_replayed"].sum())
                           if "absolute_replayed" in group else 0)
        floor, ceiling, why_not = scale(references, task)
        ref = (references or {}).get(task) or {}
        on_scale = (lambda x: float(normalised(x, floor, ceiling))) if why_not is None else (lambda x: np.nan)
        row.update(floor=floor, above_floor=row["mean"] - floor, ceiling=ceiling, normalised_mean=on_scale(row["mean"]),
                   normalised_ci_low=on_scale(low), normalised_ci_high=on_scale(high),
                   floor_note=ref.get("floor_note") or "", ceiling_note=ref.get("ceiling_note") or "")
        for column in ("env_versions", "config_hash", "code_hash"):  # provenance of the row (" | "-joined if mixed)
            if column in group:
                row[column] = " | ".join(sorted(group[column].astype(str).unique()))
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


SUMMARY_COLUMNS = ["task", "scheme", "n_seeds", "final_env_steps", "train_s", "mean", "ci_low", "ci_high", "interval_note",
                   "n_absolute", "absolute_mean", "absolute_ci_low", "absolute_ci_high", "n_absolute_replayed",
                   "floor", "above_floor",
                   "ceiling", "normalised_mean", "normalised_ci_low", "normalised_ci_high", "floor_note",
                   "ceiling_note", "env_versions", "config_hash", "code_hash"]


def normalise(finals: pd.DataFrame, references: References | None = None) -> pd.DataFrame:
    """Add ``score``: final_return on its task's scale, (x - floor) / (ceiling - floor) from
    ``references``; NaN on a task without a usable ceiling (:func:`scale`). The scale depends on
    the task only, never on which runs or schemes the table holds."""
    out = finals.copy()
    bounds = {task: scale(references, task) for task in out["task"].unique()}
    floor = out["task"].map(lambda t: bounds[t][0] if bounds[t][2] is None else np.nan)
    ceiling = out["task"].map(lambda t: bounds[t][1] if bounds[t][2] is None else np.nan)
    out["score"] = normalised(out["final_return"], floor, ceiling)
    return out


def left_out(tasks: Any, references: References | None) -> dict[str, str]:
    """The tasks (of ``tasks``) the aggregate leaves out, with why: no common scale for them."""
    return {t: why for t in sorted(set(tasks)) if (why := scale(references, t)[2]) is not None}


def aggregate(df: pd.DataFrame, allow_mixed: bool = False,
              references: References | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """rliable-style statistics over tasks from the runs' final scores.

    Final scores are normalised per task by ``references`` (see :func:`normalise`); tasks without a
    normalised score are left out (:func:`left_out` says which and why), so with no references the
    tables are empty. Unless ``allow_mixed``, runs must pass :func:`harness.comparability.check_comparable`.

    Returns ``(iqm_table, improvement_table)``:

    * ``iqm_table``: per scheme, ``n_tasks``, ``n_runs``, ``iqm`` (interquartile mean of the pooled
      normalised run scores over all its tasks) and ``ci_low``/``ci_high``, a 95% stratified
      bootstrap CI (seeds resampled with replacement within each task, 2000 resamples, from a
      generator seeded by the scheme's name).
    * ``improvement_table``: per ordered pair of schemes, ``scheme_x``, ``scheme_y``, ``n_tasks``
      (tasks both ran), ``probability`` = P(X > Y), the average over those tasks of the fraction of
      (seed of X, seed of Y) pairs where X scored higher (ties count 0.5), and its 95% stratified
      bootstrap CI (a generator seeded by the ordered pair). Empty with one scheme.
    """
    if not allow_mixed:
        check_comparable(df)
    scores = normalise(final_scores(df), references).dropna(subset=["score"])
    by_scheme = {s: {t: g["score"].to_numpy() for t, g in sg.groupby("task", sort=True)}
                 for s, sg in scores.groupby("scheme", sort=True)}
    return _iqm_table(by_scheme), _improvement_table(by_scheme)


def _iqm_table(by_scheme: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    rows = [(scheme, len(tasks), sum(map(len, tasks.values())), *iqm_with_ci(tasks, seed=stable_seed(scheme)))
            for scheme, tasks in by_scheme.items()]
    return pd.DataFrame(rows, columns=["scheme", "n_tasks", "n_runs", "iqm", "ci_low", "ci_high"])


def _improvement_table(by_scheme: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """P(X > Y) for every ordered pair of schemes over the tasks both ran."""
    rows = []
    for x_name, x_tasks in by_scheme.items():
        for y_name, y_tasks in by_scheme.items():
            common = sorted(set(x_tasks) & set(y_tasks))
            if x_name != y_name and common:
                rows.append((x_name, y_name, len(common),
                             *improvement_with_ci([x_tasks[t] for t in common], [y_tasks[t] for t in common],
                                                  seed=stable_seed(x_name, y_name))))
    return pd.DataFrame(rows, columns=["scheme_x", "scheme_y", "n_tasks", "probability", "ci_low", "ci_high"])


# -- marl-eval export --------------------------------------------------------------------------

def to_marl_eval(df: pd.DataFrame) -> dict[str, Any]:
    """The runs in marl-eval's raw-data JSON layout.

    ``{env_name: {task_name: {algorithm: {"run_<seed>": {"step_<i>": {"step_count": int,
    "return": [float]}, ..., "absolute_metrics": {"return": [float]}}}}}}`` where env_name is the
    task family (before '/'), task_name the scenario (a task without '/' is used for both),
    ``step_<i>`` the i-th evaluation (from 0) with ``return`` the returns of that evaluation's
    episodes, and ``absolute_metrics`` the returns of the absolute metric's episodes (the best
    policy re-evaluated). Runs written before per-episode returns were recorded give the
    evaluation's mean (and the final score) as a one-element list instead.
    """
    out: dict[str, Any] = {}
    for (task, scheme, seed), run in df.groupby(["task", "scheme", "seed"], sort=True):
        family, _, scenario = task.partition("/")
        run = run.sort_values("env_steps", kind="stable")
        per_episode = run["eval_returns"] if "eval_returns" in run else [""] * len(run)
        record: dict[str, Any] = {
            f"step_{i}": {"step_count": int(steps), "return": _episode_returns(text, ret)}
            for i, (steps, ret, text) in enumerate(zip(run["env_steps"], run["eval_return"], per_episode))
        }
        absolute = _absolute_returns(RunDir(run["run_dir"].iloc[0])) if "run_dir" in run else None
        if absolute is None:
            last = run["absolute_return"].iloc[-1] if "absolute_return" in run else float("nan")
            absolute = [float(last) if np.isfinite(last) else float(run["eval_return"].iloc[-1])]
        record["absolute_metrics"] = {"return": absolute}
        out.setdefault(family, {}).setdefault(scenario or family, {}).setdefault(scheme, {})[f"run_{seed}"] = record
    return out


def _episode_returns(text: Any, mean: float) -> list[float]:
    """An ``eval_returns`` cell (space-separated returns) as floats; ``[mean]`` for an empty cell."""
    return [float(x) for x in str(text).split()] if isinstance(text, str) and text.strip() else [float(mean)]


def _absolute_returns(run: RunDir) -> list[float] | None:
    """The per-episode returns in a run's absolute.json, or None when it has none."""
    try:
        returns = json.loads(read_text(run.absolute_file))["returns"]
        return [float(r) for r in returns] if isinstance(returns, list) and returns else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- files -------------------------------------------------------------------------------------

def aggregate_long(iqm_table: pd.DataFrame, improvement: pd.DataFrame) -> pd.DataFrame:
    """Both aggregate tables in one long table (``aggregate.csv``)."""
    a = iqm_table.rename(columns={"iqm": "value"}).assign(statistic="iqm_normalised_final_return", other_scheme="")
    b = improvement.rename(columns={"scheme_x": "scheme", "scheme_y": "other_scheme", "probability": "value"})
    b = b.assign(statistic="probability_of_improvement", n_runs=pd.NA)
    cols = ["statistic", "scheme", "other_scheme", "n_tasks", "n_runs", "value", "ci_low", "ci_high"]
    return pd.concat([a[cols], b[cols]], ignore_index=True)


def provenance(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per run: where it is, its config hash, the package versions and harness commit that produced it,
    and the task's env spec, read from its config.json."""
    out = []
    for run_dir in sorted(df["run_dir"].unique()):
        record = RunDir(run_dir).read_config() or {}
        cfg = record.get("config", {})
        out.append({"run_dir": run_dir, "task": cfg.get("task"), "scheme": cfg.get("scheme"),
                    **{key: record.get(key) for key in ("seed", "config_digest", "versions", "git_commit", "task_spec",
                                                        "plugins", "code", "code_digest", "actors", "tuning")}})
    return out
