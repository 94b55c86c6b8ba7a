"""Comparison figures and tables from a results tree.

A results tree holds one directory per run, ``<root>/<task>/<scheme>/seed_<k>/`` (at any depth),
each with ``config.json`` and ``metrics.csv`` as written by :class:`harness.results.RunDir`.

Definitions used throughout (they are repeated in ``summary.md``):

* The **final score** of a run is its ``eval_return`` at its last evaluation (the evaluation row
  with the most environment steps), not an average over the last part of training.
* Per-(task, scheme) confidence intervals are 95% percentile-bootstrap intervals over seeds
  (2000 resamples, a fixed-seed numpy Generator, so reruns give identical numbers).
* Aggregates over tasks follow rliable (Agarwal et al., 2021): final scores are min-max
  normalised per task over all runs of all schemes on that task, then summarised per scheme by the
  interquartile mean (IQM) with a stratified bootstrap CI (seeds resampled within each task), and
  per ordered pair of schemes by the probability of improvement P(X > Y).

Runs whose environment packages differ (see :data:`ENV_PACKAGES`) are not averaged together unless
the caller says so with ``allow_mixed=True``: a new simulator version can change returns.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.errors import HarnessError
from harness.provenance import UNKNOWN
from harness.results import RunDir, check_writable

#: Packages whose version must agree within a (task, scheme) before its runs are averaged.
ENV_PACKAGES = ("mpe2", "gymnasium-robotics", "mujoco", "pettingzoo")

N_BOOT = 2000
BOOT_SEED = 0
CI_PERCENT = 95.0

FINAL_SCORE_NOTE = ("final score = a run's eval_return at its last evaluation; "
                    "CI = 95% percentile bootstrap over seeds (2000 resamples)")

_RUN_COLUMNS = ["task", "scheme", "seed", "run_dir", "env_versions", "config_hash", "code_hash"]


# -- loading -----------------------------------------------------------------------------------

def load_runs(root: str | Path) -> pd.DataFrame:
    """Read every run under ``root`` into one long table of evaluations.

    Runs are found by globbing ``**/metrics.csv``; a directory without ``config.json`` is skipped
    with a warning, as is a run that has no evaluation yet. Task, scheme and seed come from
    ``config.json`` (falling back to the ``<task>/<scheme>/seed_<k>`` directory names).

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
    frames = [f for f in (_load_run(p.parent) for p in found) if f is not None]
    if not frames:
        raise HarnessError(f"no runs with evaluations found under {str(root)!r} "
                           "(looked for */metrics.csv next to a config.json)")
    df = pd.concat(frames, ignore_index=True)
    _refuse_duplicate_seeds(df)
    return df


def _load_run(path: Path) -> pd.DataFrame | None:
    """One run's evaluation rows, or None (with a warning) when the run cannot be used."""
    run = RunDir(path)
    try:
        record = run.read_config()
    except (OSError, json.JSONDecodeError) as exc:
        warnings.warn(f"skipping {path}: config.json is unreadable ({exc})", stacklevel=3)
        return None
    if record is None:
        warnings.warn(f"skipping {path}: it has metrics.csv but no config.json", stacklevel=3)
        return None
    meta = _run_identity(path, record)
    if meta is None:
        warnings.warn(f"skipping {path}: no seed in config.json or in the directory name", stacklevel=3)
        return None
    # RunDir.rows drops a partial last line, so a run that is still being written can be read.
    rows = pd.DataFrame(run.rows(), columns=["env_steps", "eval_return", "eval_returns"])
    rows["eval_returns"] = rows["eval_returns"].fillna("")
    rows["env_steps"] = pd.to_numeric(rows["env_steps"], errors="coerce")
    rows["eval_return"] = pd.to_numeric(rows["eval_return"], errors="coerce")
    rows = rows.dropna(subset=["env_steps", "eval_return"])
    if rows.empty:
        warnings.warn(f"skipping {path}: no evaluation rows in metrics.csv yet", stacklevel=3)
        return None
    rows["env_steps"] = rows["env_steps"].astype("int64")
    for key, value in meta.items():
        rows[key] = value
    rows["absolute_return"] = _absolute_return(run)
    return rows[_RUN_COLUMNS + ["env_steps", "eval_return", "eval_returns", "absolute_return"]]


def _absolute_return(run: RunDir) -> float:
    """The run's absolute metric (best policy re-evaluated at the end), NaN when it has none."""
    try:
        return float(json.loads(run.absolute_file.read_text())["absolute_return"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("nan")


def config_hash(config: dict[str, Any]) -> str:
    """A hash of a run's config without its seed: runs that may be averaged share it. Keys that say
    only how a run is watched, and keys added later while they hold their defaults, are left out (as
    in the run's config digest), so older runs hash as they did."""
    from harness.config import OMIT_DEFAULT, RUN_ONLY
    rest = {k: v for k, v in config.items() if k != "seed" and k not in RUN_ONLY
            and not (k in OMIT_DEFAULT and v == OMIT_DEFAULT[k])}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]


def _run_identity(path: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """Task, scheme, seed, run_dir and env versions of one run."""
    cfg = record.get("config") or {}
    # The directory name is the task with '/' replaced, so it is only a fallback.
    task = cfg.get("task") or path.parent.parent.name
    scheme = cfg.get("scheme") or path.parent.name
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


def format_versions(versions: dict[str, str | None]) -> str:
    """The versions of :data:`ENV_PACKAGES` as one comparable string, e.g. ``mpe2=0.0.1; mujoco=3.2.0``."""
    return "; ".join(f"{name}={versions.get(name) or '-'}" for name in ENV_PACKAGES)


def _refuse_duplicate_seeds(df: pd.DataFrame) -> None:
    runs = df[_RUN_COLUMNS].drop_duplicates()
    dup = runs[runs.duplicated(["task", "scheme", "seed"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        dirs = dup[(dup.task == first.task) & (dup.scheme == first.scheme) & (dup.seed == first.seed)].run_dir
        raise HarnessError(f"seed {first.seed} of {first.scheme} on {first.task} appears in more than one "
                           f"directory ({', '.join(dirs)}); point at a root that holds each run once")


# -- provenance check --------------------------------------------------------------------------

def check_versions(df: pd.DataFrame) -> None:
    """Raise HarnessError when the runs of one (task, scheme) used different env package versions.

    The message names the differing packages and the runs on each side. Tables without an
    ``env_versions`` column (hand-made data) are not checked.
    """
    if "env_versions" not in df.columns:
        return
    runs = df[[c for c in _RUN_COLUMNS if c in df.columns]].drop_duplicates()
    for (task, scheme), group in runs.groupby(["task", "scheme"], sort=True):
        if group["env_versions"].nunique() > 1:
            raise HarnessError(f"runs of {scheme} on {task} used different env package versions: "
                               f"{_describe_version_split(group)}; rerun them with one set of versions "
                               "or pass --allow-mixed (allow_mixed=True) to compare them anyway")
        if "config_hash" in group and group["config_hash"].nunique() > 1:
            raise HarnessError(f"runs of {scheme} on {task} used different configs: {_describe_config_split(group)}; "
                               "pass --allow-mixed (allow_mixed=True) to average them anyway")
        if "code_hash" in group and group["code_hash"].nunique() > 1:
            raise HarnessError(f"runs of {scheme} on {task} were made by different plugin code: "
                               f"{_describe_code_split(group)}; rerun them with one version of the plugins "
                               "or pass --allow-mixed (allow_mixed=True) to average them anyway")


def _describe_config_split(group: pd.DataFrame) -> str:
    """``lr=0.0005 in [a, b] vs lr=0.001 in [c]``, naming only the config keys that differ."""
    configs = []
    for run_dir in group["run_dir"]:
        cfg = (RunDir(run_dir).read_config() or {}).get("config", {})
        configs.append({k: json.dumps(v, sort_keys=True) for k, v in cfg.items() if k != "seed"})
    keys = sorted({k for c in configs for k in c if len({d.get(k) for d in configs}) > 1})
    sides: dict[str, list[str]] = {}
    for c, run_dir in zip(configs, group["run_dir"]):
        sides.setdefault(", ".join(f"{k}={c.get(k)}" for k in keys), []).append(run_dir)
    return " vs ".join(f"{key} in [{', '.join(dirs)}]" for key, dirs in sides.items())


def _describe_code_split(group: pd.DataFrame) -> str:
    """``harness_plugins.mappo=1a2b3c4d in [a] vs harness_plugins.mappo=5e6f7a8b in [b]``, naming only
    the modules whose source hashes differ (``-``: a run that recorded none)."""
    hashes = []
    for run_dir in group["run_dir"]:
        code = (RunDir(run_dir).read_config() or {}).get("code") or {}
        hashes.append({mod: (sha or "?")[:8] for part in code.values() for mod, sha in part.get("modules", {}).items()})
    modules = sorted({m for h in hashes for m in h if len({d.get(m, UNKNOWN) for d in hashes}) > 1})
    sides: dict[str, list[str]] = {}
    for h, run_dir in zip(hashes, group["run_dir"]):
        sides.setdefault(", ".join(f"{m}={h.get(m, UNKNOWN)}" for m in modules), []).append(run_dir)
    return " vs ".join(f"{key} in [{', '.join(dirs)}]" for key, dirs in sides.items())


def _describe_version_split(group: pd.DataFrame) -> str:
    """``mujoco=3.1.0 in [a, b] vs mujoco=3.2.0 in [c]``, naming only the packages that differ."""
    parsed = [dict(item.split("=", 1) for item in v.split("; ")) for v in group["env_versions"]]
    differing = [p for p in ENV_PACKAGES if len({d.get(p) for d in parsed}) > 1]
    sides: dict[str, list[str]] = {}
    for d, run_dir in zip(parsed, group["run_dir"]):
        key = ", ".join(f"{p}={d.get(p)}" for p in differing)
        sides.setdefault(key, []).append(run_dir)
    return " vs ".join(f"{key} in [{', '.join(dirs)}]" for key, dirs in sides.items())


# -- statistics --------------------------------------------------------------------------------

def final_scores(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its eval_return at its last evaluation (``final_return``) and that step."""
    keys = [c for c in _RUN_COLUMNS if c in df.columns]
    last = df.sort_values("env_steps", kind="stable").groupby(keys, sort=True).tail(1)
    out = last.rename(columns={"eval_return": "final_return"})
    extra = ["absolute_return"] if "absolute_return" in out.columns else []
    return out[keys + ["env_steps", "final_return"] + extra].sort_values(["task", "scheme", "seed"]).reset_index(drop=True)


def bootstrap_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean of ``values`` (a single value gives [value, value])."""
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return _percentile_interval(means)


def _percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (100.0 - CI_PERCENT) / 2
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def summarise(df: pd.DataFrame, allow_mixed: bool = False) -> pd.DataFrame:
    """Final performance per (task, scheme).

    The final score of a run is its eval_return at its last evaluation. Returns columns ``task``,
    ``scheme``, ``n_seeds`` (runs actually found), ``final_env_steps`` (the step of the last
    evaluation; the smallest one, with a warning, when the seeds stop at different steps),
    ``mean`` (over seeds) and ``ci_low``/``ci_high`` (95% percentile bootstrap over seeds, 2000
    resamples, a fresh Generator with seed :data:`BOOT_SEED` per row so a row does not depend on
    which other rows exist). With one seed the CI is [mean, mean].
    """
    if not allow_mixed:
        check_versions(df)
    rows = []
    for (task, scheme), group in final_scores(df).groupby(["task", "scheme"], sort=True):
        steps = group["env_steps"]
        if steps.nunique() > 1:
            warnings.warn(f"seeds of {scheme} on {task} end at different env steps ({sorted(set(steps))}); "
                          "their final scores are taken at different points of training", stacklevel=2)
        low, high = bootstrap_ci(group["final_return"].to_numpy())
        row = {"task": task, "scheme": scheme, "n_seeds": len(group), "final_env_steps": int(steps.min()),
               "mean": float(group["final_return"].mean()), "ci_low": low, "ci_high": high,
               "n_absolute": 0, "absolute_mean": np.nan, "absolute_ci_low": np.nan, "absolute_ci_high": np.nan}
        if "absolute_return" in group:
            absolute = group["absolute_return"].dropna().to_numpy()
            if len(absolute):
                a_low, a_high = bootstrap_ci(absolute)
                row.update(n_absolute=len(absolute), absolute_mean=float(absolute.mean()),
                           absolute_ci_low=a_low, absolute_ci_high=a_high)
        for column in ("env_versions", "config_hash", "code_hash"):  # provenance of the row (" | "-joined if mixed)
            if column in group:
                row[column] = " | ".join(sorted(group[column].astype(str).unique()))
        rows.append(row)
    return pd.DataFrame(rows, columns=["task", "scheme", "n_seeds", "final_env_steps", "mean", "ci_low", "ci_high",
                                       "n_absolute", "absolute_mean", "absolute_ci_low", "absolute_ci_high",
                                       "env_versions", "config_hash", "code_hash"])


def normalise(finals: pd.DataFrame) -> pd.DataFrame:
    """Add ``score``: final_return min-max normalised per task over all runs of all schemes.

    When every run on a task has the same final return the task carries no information about
    which scheme is better, so every run gets 0.5 (the middle, which leaves P(X > Y) at 0.5 and
    does not pull any IQM towards 0 or 1).
    """
    out = finals.copy()
    grouped = out.groupby("task")["final_return"]
    low, high = grouped.transform("min"), grouped.transform("max")
    span = high - low
    out["score"] = np.where(span > 0, (out["final_return"] - low) / span.where(span > 0, 1.0), 0.5)
    return out


def iqm(values: np.ndarray, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the middle 50% of the values."""
    return stats.trim_mean(values, 0.25, axis=axis)


def _stratified_resample(per_task: list[np.ndarray], rng: np.random.Generator, n_boot: int) -> list[np.ndarray]:
    """For each task, ``n_boot`` resamples (rows) of its seeds, drawn with replacement within the task."""
    return [x[rng.integers(0, len(x), size=(n_boot, len(x)))] for x in per_task]


def _prob_improvement(xs: list[np.ndarray], ys: list[np.ndarray]) -> np.ndarray:
    """P(X > Y) averaged over tasks; each array is (..., n_seeds) and ties count one half."""
    per_task = []
    for x, y in zip(xs, ys):
        diff = x[..., :, None] - y[..., None, :]
        per_task.append(((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1)))
    return np.mean(per_task, axis=0)


def aggregate(df: pd.DataFrame, allow_mixed: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """rliable-style statistics over tasks from the runs' final scores.

    Final scores are min-max normalised per task (see :func:`normalise`); the normalisation is
    fixed from the observed runs and not recomputed inside the bootstrap.

    Returns ``(iqm_table, improvement_table)``:

    * ``iqm_table``: per scheme, ``n_tasks``, ``n_runs``, ``iqm`` (interquartile mean of the pooled
      normalised run scores over all its tasks) and ``ci_low``/``ci_high``, a 95% stratified
      bootstrap CI (seeds resampled with replacement within each task, 2000 resamples).
    * ``improvement_table``: per ordered pair of schemes, ``scheme_x``, ``scheme_y``, ``n_tasks``
      (tasks both ran), ``probability`` = P(X > Y), the average over those tasks of the fraction of
      (seed of X, seed of Y) pairs where X scored higher (ties count 0.5), and its 95% stratified
      bootstrap CI. Empty with one scheme.
    """
    if not allow_mixed:
        check_versions(df)
    scores = normalise(final_scores(df))
    by_scheme = {s: {t: g["score"].to_numpy() for t, g in sg.groupby("task", sort=True)}
                 for s, sg in scores.groupby("scheme", sort=True)}
    return _iqm_table(by_scheme), _improvement_table(by_scheme)


def _iqm_table(by_scheme: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    rows = []
    for scheme, tasks in by_scheme.items():
        per_task = list(tasks.values())
        boot = np.concatenate(_stratified_resample(per_task, np.random.default_rng(BOOT_SEED), N_BOOT), axis=1)
        low, high = _percentile_interval(iqm(boot, axis=1))
        rows.append({"scheme": scheme, "n_tasks": len(per_task), "n_runs": sum(map(len, per_task)),
                     "iqm": float(iqm(np.concatenate(per_task))), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["scheme", "n_tasks", "n_runs", "iqm", "ci_low", "ci_high"])


def _improvement_table(by_scheme: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    rows = []
    for x_name, x_tasks in by_scheme.items():
        for y_name, y_tasks in by_scheme.items():
            common = sorted(set(x_tasks) & set(y_tasks))
            if x_name == y_name or not common:
                continue
            xs, ys = [x_tasks[t] for t in common], [y_tasks[t] for t in common]
            rng = np.random.default_rng(BOOT_SEED)
            boot = _prob_improvement(_stratified_resample(xs, rng, N_BOOT), _stratified_resample(ys, rng, N_BOOT))
            low, high = _percentile_interval(boot)
            rows.append({"scheme_x": x_name, "scheme_y": y_name, "n_tasks": len(common),
                         "probability": float(_prob_improvement(xs, ys)), "ci_low": low, "ci_high": high})
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
        returns = json.loads(run.absolute_file.read_text())["returns"]
        return [float(r) for r in returns] if isinstance(returns, list) and returns else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- tables ------------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def summary_markdown(summary: pd.DataFrame, iqm_table: pd.DataFrame, improvement: pd.DataFrame,
                     versions: list[str]) -> str:
    """The Markdown report: final returns per task, then the aggregate over tasks."""
    lines = ["# Results", "", f"Final score of a run: its evaluation return at its last evaluation. "
             "Mean over seeds with a 95% percentile-bootstrap CI over seeds (2000 resamples).", ""]
    absolute = bool((summary["n_absolute"] > 0).any()) if "n_absolute" in summary else False
    lines += _markdown_table(
        ["task", "scheme", "seeds", "env steps", "final eval return mean [95% CI]"]
        + (["absolute metric mean [95% CI]"] if absolute else []),
        [[r.task, r.scheme, str(r.n_seeds), str(r.final_env_steps),
          f"{_fmt(r.mean)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"]
         + ([f"{_fmt(r.absolute_mean)} [{_fmt(r.absolute_ci_low)}, {_fmt(r.absolute_ci_high)}] ({r.n_absolute} runs)"
             if r.n_absolute else "-"] if absolute else [])
         for r in summary.itertuples()])
    if absolute:
        lines += ["", "Absolute metric (marl-eval protocol): each run's best policy by evaluation return, "
                  "re-evaluated at the end of training on absolute_factor (default 10) times the evaluation "
                  "episodes (each run's absolute.json gives its count)."]
    lines += ["", "## Aggregate over tasks", "",
              "Final scores min-max normalised per task over all runs of all schemes (0.5 where every run "
              "scored the same). IQM = mean of the middle 50% of the pooled normalised run scores; CIs are "
              "95% stratified bootstrap intervals (seeds resampled within each task, 2000 resamples).", ""]
    lines += _markdown_table(
        ["scheme", "tasks", "runs", "IQM of normalised final return [95% CI]"],
        [[r.scheme, str(r.n_tasks), str(r.n_runs), f"{r.iqm:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"]
         for r in iqm_table.itertuples()])
    if not improvement.empty:
        lines += ["", "P(X > Y): average over the tasks both ran of the chance that a seed of X beats a seed "
                  "of Y (ties count one half).", ""]
        lines += _markdown_table(
            ["X", "Y", "tasks", "P(X > Y) [95% CI]"],
            [[r.scheme_x, r.scheme_y, str(r.n_tasks), f"{r.probability:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"]
             for r in improvement.itertuples()])
    lines += ["", "## Environment packages", ""] + [f"- {v}" for v in versions]
    return "\n".join(lines) + "\n"


def aggregate_long(iqm_table: pd.DataFrame, improvement: pd.DataFrame) -> pd.DataFrame:
    """Both aggregate tables in one long table (``aggregate.csv``)."""
    a = iqm_table.rename(columns={"iqm": "value"}).assign(statistic="iqm_normalised_final_return", other_scheme="")
    b = improvement.rename(columns={"scheme_x": "scheme", "scheme_y": "other_scheme", "probability": "value"})
    b = b.assign(statistic="probability_of_improvement", n_runs=pd.NA)
    cols = ["statistic", "scheme", "other_scheme", "n_tasks", "n_runs", "value", "ci_low", "ci_high"]
    return pd.concat([a[cols], b[cols]], ignore_index=True)


# -- figures -----------------------------------------------------------------------------------

def _steps_label(x: float, _pos: Any = None) -> str:
    """Tick labels such as 500k and 1.5M instead of an offset exponent."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def _align_steps(df: pd.DataFrame) -> pd.DataFrame:
    """Put the seeds of a (task, scheme) on shared evaluation steps where they disagree.

    seaborn averages runs at equal x values only; seeds that evaluated at different steps would
    otherwise give a jagged line with no band. The shared steps are those of the run with the most
    evaluations; every other run is linearly interpolated onto them within its own logged range
    (never extrapolated, so an unfinished run stops where its log stops). Only the curves use this;
    final scores always come from the logged rows.
    """
    parts = []
    for _, group in df.groupby(["task", "scheme"], sort=False):
        runs = dict(tuple(group.sort_values("env_steps").groupby("run_dir", sort=False)))
        if len({tuple(r["env_steps"]) for r in runs.values()}) > 1:
            grid = max(runs.values(), key=len)["env_steps"].to_numpy()
            group = pd.concat([_interpolate_run(r, grid) for r in runs.values()], ignore_index=True)
        parts.append(group)
    return pd.concat(parts, ignore_index=True)


def _interpolate_run(run: pd.DataFrame, grid: np.ndarray) -> pd.DataFrame:
    steps, returns = run["env_steps"].to_numpy(), run["eval_return"].to_numpy()
    keep = grid[(grid >= steps.min()) & (grid <= steps.max())]
    out = pd.DataFrame({"env_steps": keep, "eval_return": np.interp(keep, steps, returns)})
    for column in run.columns.drop(["env_steps", "eval_return"]):
        out[column] = run[column].iloc[0]
    return out


def _palette(schemes: list[str]) -> dict[str, Any]:
    import seaborn as sns
    return dict(zip(schemes, sns.color_palette("colorblind", len(schemes))))


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def _col_wrap(n_tasks: int) -> int | None:
    return None if n_tasks <= 4 else 4


def _plot_curves(df: pd.DataFrame, palette: dict[str, Any], out_dir: Path) -> list[Path]:
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter
    tasks = sorted(df["task"].unique())
    grid = sns.relplot(data=_align_steps(df), x="env_steps", y="eval_return", hue="scheme", col="task",
                       kind="line", errorbar=("ci", 95), n_boot=N_BOOT, seed=BOOT_SEED, palette=palette,
                       hue_order=list(palette), col_order=tasks, col_wrap=_col_wrap(len(tasks)),
                       height=3.6, aspect=1.3, facet_kws={"sharey": False, "sharex": False})
    grid.set_titles(col_template="{col_name}")
    grid.set_axis_labels("environment steps", "evaluation return")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_formatter(FuncFormatter(_steps_label))
    grid.figure.suptitle("Evaluation return during training (mean over seeds, 95% bootstrap CI)", y=1.04)
    return _save(grid.figure, out_dir, "curves")


def _plot_final(df: pd.DataFrame, summary: pd.DataFrame, palette: dict[str, Any], out_dir: Path) -> list[Path]:
    import seaborn as sns
    finals = final_scores(df)
    tasks = sorted(finals["task"].unique())
    # Seeds as dots from seaborn, mean and CI drawn from the summary table so figure and table agree.
    grid = sns.catplot(data=finals, x="scheme", y="final_return", hue="scheme", col="task", kind="strip",
                       order=list(palette), hue_order=list(palette), palette=palette, col_order=tasks,
                       col_wrap=_col_wrap(len(tasks)), sharey=False, alpha=0.45, jitter=0.08, size=5,
                       height=3.6, aspect=1.0, legend=False)
    order = list(palette)
    for task, ax in zip(tasks, grid.axes.flat):
        rows = summary[summary["task"] == task]
        # Keep seaborn's categorical x limits; errorbar would otherwise rescale x to the jitter's span.
        ax.set_autoscalex_on(False)
        for r in rows.itertuples():
            x = order.index(r.scheme)
            ax.errorbar(x, r.mean, yerr=[[r.mean - r.ci_low], [r.ci_high - r.mean]], fmt="D",
                        color=palette[r.scheme], markersize=8, capsize=6, elinewidth=2, markeredgecolor="black")
    grid.set_titles(col_template="{col_name}")
    grid.set_axis_labels("scheme", "final evaluation return")
    grid.figure.suptitle("Final evaluation return (at each run's last evaluation)\n"
                         "diamond: mean over seeds, bars: 95% bootstrap CI, dots: seeds", y=1.1)
    return _save(grid.figure, out_dir, "final")


def _plot_aggregate(iqm_table: pd.DataFrame, improvement: pd.DataFrame, palette: dict[str, Any],
                    out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    panels = 1 if improvement.empty else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 0.6 * max(len(iqm_table), len(improvement)) + 2.2),
                             squeeze=False)
    ax = axes[0, 0]
    _interval_rows(ax, list(iqm_table["scheme"]), iqm_table["iqm"], iqm_table["ci_low"], iqm_table["ci_high"],
                   [palette[s] for s in iqm_table["scheme"]])
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("IQM of min-max normalised final return")
    ax.set_title("Interquartile mean (95% stratified bootstrap CI)")
    if panels == 2:
        ax = axes[0, 1]
        labels = [f"P({x} > {y})" for x, y in zip(improvement["scheme_x"], improvement["scheme_y"])]
        _interval_rows(ax, labels, improvement["probability"], improvement["ci_low"], improvement["ci_high"],
                       [palette[s] for s in improvement["scheme_x"]])
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("probability of improvement")
        ax.set_title("P(X > Y) over tasks (95% stratified bootstrap CI)")
    fig.suptitle(f"Aggregate over {int(iqm_table['n_tasks'].max())} task(s)")
    fig.tight_layout()
    return _save(fig, out_dir, "aggregate")


def _interval_rows(ax: Any, labels: list[str], values: Any, lows: Any, highs: Any, colours: list[Any]) -> None:
    """One horizontal point-and-interval per label, top to bottom in the given order."""
    for i, (v, lo, hi, c) in enumerate(zip(values, lows, highs, colours)):
        ax.errorbar(v, i, xerr=[[v - lo], [hi - v]], fmt="o", color=c, markersize=8, capsize=6, elinewidth=2.5)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)


# -- entry point -------------------------------------------------------------------------------

def plot_results(root: str | Path, out_dir: str | Path | None = None, allow_mixed: bool = False) -> list[Path]:
    """Write comparison figures and tables for the results tree at ``root``.

    Writes to ``out_dir`` (default ``<root>/plots``): ``curves``, ``final`` and ``aggregate`` figures
    as PNG and PDF, ``summary.csv``, ``aggregate.csv``, ``summary.md`` and ``marl_eval.json``.
    Raises HarnessError when no runs are found, or when runs of one (task, scheme) used different
    env package versions and ``allow_mixed`` is False. Returns the written paths.
    """
    import matplotlib
    # Set here rather than at import so importing harness never changes an interactive session's backend.
    matplotlib.use("Agg")
    import seaborn as sns

    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root / "plots"
    df = load_runs(root)
    if not allow_mixed:
        check_versions(df)
    summary = summarise(df, allow_mixed=True)
    iqm_table, improvement = aggregate(df, allow_mixed=True)
    check_writable(out, "plot directory")

    written: list[Path] = []
    palette = _palette(sorted(df["scheme"].unique()))
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        written += _plot_curves(df, palette, out)
        written += _plot_final(df, summary, palette, out)
        written += _plot_aggregate(iqm_table, improvement, palette, out)
        written += _plot_tuning(root, palette, out)
    written += _write_tables(df, summary, iqm_table, improvement, out)
    return written


def _plot_tuning(root: Path, palette: dict[str, Any], out: Path) -> list[Path]:
    """``tuning``: each tuned scheme's best-so-far objective against finished trials, side by side
    on one y scale (a suite's tuning studies, ``<root>/.tuning/<scheme>/trials.csv``)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from harness.tuning import TUNING_DIR, best_so_far
    curves = {p.parent.name: best_so_far(p) for p in sorted((root / TUNING_DIR).glob("*/trials.csv"))}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return []
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.6), sharey=True, squeeze=False)
    for ax, (scheme, points) in zip(axes[0], curves.items()):
        xs, ys = zip(*points)
        ax.step(xs, ys, where="post", color=palette.get(scheme), label=scheme, linewidth=2)
        ax.plot(xs, ys, "o", color=palette.get(scheme), markersize=4)
        ax.set_title(f"{scheme}: {len(points)} complete trials")
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("best objective so far")
    fig.suptitle("tuning: best objective (mean evaluation return, late training) by trial", y=1.02)
    fig.tight_layout()
    return _save(fig, out, "tuning")


def _write_tables(df: pd.DataFrame, summary: pd.DataFrame, iqm_table: pd.DataFrame, improvement: pd.DataFrame,
                  out: Path) -> list[Path]:
    paths = {name: out / name for name in ("summary.csv", "aggregate.csv", "summary.md", "marl_eval.json",
                                           "provenance.json")}
    summary.to_csv(paths["summary.csv"], index=False)
    aggregate_long(iqm_table, improvement).to_csv(paths["aggregate.csv"], index=False)
    versions = sorted(df["env_versions"].unique())
    paths["summary.md"].write_text(summary_markdown(summary, iqm_table, improvement, versions))
    paths["marl_eval.json"].write_text(json.dumps(to_marl_eval(df), indent=2))
    paths["provenance.json"].write_text(json.dumps(provenance(df), indent=2, sort_keys=True))
    return list(paths.values())


def provenance(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per run: where it is, its config hash, the package versions and harness commit that produced it,
    and the task's env spec, read from its config.json."""
    out = []
    for run_dir in sorted(df["run_dir"].unique()):
        record = RunDir(run_dir).read_config() or {}
        out.append({"run_dir": run_dir, "task": record.get("config", {}).get("task"),
                    "scheme": record.get("config", {}).get("scheme"), "seed": record.get("seed"),
                    "config_digest": record.get("config_digest"), "versions": record.get("versions"),
                    "git_commit": record.get("git_commit"), "task_spec": record.get("task_spec"),
                    "plugins": record.get("plugins"), "code": record.get("code"),
                    "code_digest": record.get("code_digest"), "actors": record.get("actors"),
                    "tuning": record.get("tuning")})
    return out
