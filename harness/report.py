"""Tables from a results tree: load the runs, check they may be averaged, summarise, export.

A results tree holds one directory per run, ``<root>/<task>/<scheme>/seed_<k>/`` (at any depth), each
with ``config.json`` and ``metrics.csv`` as :class:`harness.results.RunDir` writes them. The numbers
come from :mod:`harness.stats`; :mod:`harness.plot` draws them. Definitions (repeated in ``summary.md``):

* The **final score** of a run is its ``eval_return`` at its last evaluation (the evaluation row
  with the most environment steps), not an average over the last part of training.
* Per-(task, scheme) confidence intervals are 95% percentile-bootstrap intervals over seeds
  (2000 resamples, a fixed-seed numpy Generator, so reruns give identical numbers).
* Aggregates over tasks follow rliable (Agarwal et al., 2021): final scores are min-max
  normalised per task over all runs of all schemes on that task, then summarised per scheme by the
  interquartile mean (IQM) with a stratified bootstrap CI (seeds resampled within each task), and
  per ordered pair of schemes by the probability of improvement P(X > Y).

Runs whose env packages (:data:`ENV_PACKAGES`), config or plugin code differ are not averaged together
unless the caller says so with ``allow_mixed=True``: a new simulator version can change returns.
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

from harness.config import comparable
from harness.errors import HarnessError
from harness.provenance import UNKNOWN
from harness.results import RunDir
from harness.stats import bootstrap_ci, improvement_with_ci, iqm_with_ci, min_max

#: Packages whose version must agree within a (task, scheme) before its runs are averaged.
ENV_PACKAGES = ("mpe2", "gymnasium-robotics", "mujoco", "pettingzoo")

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
    in the run's config digest: :func:`harness.config.comparable`), so older runs hash as they did."""
    rest = comparable(config, drop=("seed",))
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
    return _describe_split(configs, sorted({k for c in configs for k in c}), group["run_dir"])


def _describe_code_split(group: pd.DataFrame) -> str:
    """``harness_plugins.mappo=1a2b3c4d in [a] vs harness_plugins.mappo=5e6f7a8b in [b]``, naming only
    the modules whose source hashes differ (``-``: a run that recorded none)."""
    hashes = []
    for run_dir in group["run_dir"]:
        code = (RunDir(run_dir).read_config() or {}).get("code") or {}
        hashes.append({mod: (sha or "?")[:8] for part in code.values() for mod, sha in part.get("modules", {}).items()})
    return _describe_split(hashes, sorted({m for h in hashes for m in h}), group["run_dir"], missing=UNKNOWN)


def _describe_version_split(group: pd.DataFrame) -> str:
    """``mujoco=3.1.0 in [a, b] vs mujoco=3.2.0 in [c]``, naming only the packages that differ."""
    parsed = [dict(item.split("=", 1) for item in v.split("; ")) for v in group["env_versions"]]
    return _describe_split(parsed, list(ENV_PACKAGES), group["run_dir"])


def _describe_split(per_run: list[dict[str, Any]], keys: list[str], run_dirs: Any, missing: Any = None) -> str:
    """``k=v in [a, b] vs k=w in [c]``: the runs grouped by their values of those ``keys`` (in that
    order) on which they differ, ``missing`` standing for a key a run lacks."""
    differing = [k for k in keys if len({d.get(k, missing) for d in per_run}) > 1]
    sides: dict[str, list[str]] = {}
    for d, run_dir in zip(per_run, run_dirs):
        sides.setdefault(", ".join(f"{k}={d.get(k, missing)}" for k in differing), []).append(run_dir)
    return " vs ".join(f"{key} in [{', '.join(dirs)}]" for key, dirs in sides.items())


# -- summary and aggregate tables --------------------------------------------------------------

def final_scores(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its eval_return at its last evaluation (``final_return``) and that step."""
    keys = [c for c in _RUN_COLUMNS if c in df.columns]
    last = df.sort_values("env_steps", kind="stable").groupby(keys, sort=True).tail(1)
    out = last.rename(columns={"eval_return": "final_return"})
    extra = ["absolute_return"] if "absolute_return" in out.columns else []
    return out[keys + ["env_steps", "final_return"] + extra].sort_values(["task", "scheme", "seed"]).reset_index(drop=True)


def summarise(df: pd.DataFrame, allow_mixed: bool = False) -> pd.DataFrame:
    """Final performance per (task, scheme).

    The final score of a run is its eval_return at its last evaluation. Returns columns ``task``,
    ``scheme``, ``n_seeds`` (runs actually found), ``final_env_steps`` (the step of the last
    evaluation; the smallest one, with a warning, when the seeds stop at different steps),
    ``mean`` (over seeds) and ``ci_low``/``ci_high`` (95% percentile bootstrap over seeds, 2000
    resamples, a fresh Generator with seed :data:`harness.stats.BOOT_SEED` per row so a row does not
    depend on which other rows exist). With one seed the CI is [mean, mean].
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
    out["score"] = min_max(out["final_return"], grouped.transform("min"), grouped.transform("max"))
    return out


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
    rows = [(scheme, len(tasks), sum(map(len, tasks.values())), *iqm_with_ci(tasks))
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
                             *improvement_with_ci([x_tasks[t] for t in common], [y_tasks[t] for t in common])))
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


# -- markdown and files ------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def summary_markdown(summary: pd.DataFrame, iqm_table: pd.DataFrame, improvement: pd.DataFrame,
                     versions: list[str]) -> str:
    """The Markdown report: final returns per task, then the aggregate over tasks."""
    lines = ["# Results", "", "Final score of a run: its evaluation return at its last evaluation. "
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


def write_tables(df: pd.DataFrame, summary: pd.DataFrame, iqm_table: pd.DataFrame, improvement: pd.DataFrame,
                 out: Path) -> list[Path]:
    """Write ``summary.csv``, ``aggregate.csv``, ``summary.md``, ``marl_eval.json`` and
    ``provenance.json`` into the existing directory ``out``; returns their paths."""
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
        cfg = record.get("config", {})
        out.append({"run_dir": run_dir, "task": cfg.get("task"), "scheme": cfg.get("scheme"),
                    **{key: record.get(key) for key in ("seed", "config_digest", "versions", "git_commit", "task_spec",
                                                        "plugins", "code", "code_digest", "actors", "tuning")}})
    return out
