"""Comparison figures from a results tree, and ``harness plot``.

:func:`plot_results` loads the runs (:mod:`harness.report`), builds and writes the tables
(:mod:`harness.tables`), and draws from the same tables: ``curves`` (evaluation return during
training, mean over seeds with a 95% t-interval band), ``final`` (final scores per task, each seed and
the mean with its t-interval), ``aggregate`` (IQM and P(X > Y) over the tasks with a reference
return, on normalised scores), for a suite with an attribution ladder ``attribution`` (each rung's
effect per task, :mod:`harness.attribution`) and, for a tuned suite, ``tuning`` (best objective by
trial), each as PNG and PDF. matplotlib and seaborn are imported only when drawing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.attribution import read_rungs
from harness.comparability import check_comparable
from harness.report import References, final_scores, load_runs, scale
from harness.results import check_writable
from harness.stats import t_interval
from harness.tables import NORMALISED, T_NOTE, Tables, build_tables, write_tables


# -- figures -----------------------------------------------------------------------------------

def _steps_label(x: float, _pos: Any = None) -> str:
    """Tick labels such as 500k and 1.5M instead of an offset exponent."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


#: ``plot --x``: what the curves are drawn against, the column and the axis label.
X_AXES = {"steps": ("env_steps", "environment steps"),
          "wall": ("train_s", "training time, s (no evaluations)")}


def align_steps(df: pd.DataFrame, x: str = "env_steps") -> pd.DataFrame:
    """Put the seeds of a (task, scheme) on shared evaluation steps where they disagree.

    seaborn averages runs at equal x values only; seeds that evaluated at different steps would
    otherwise give a jagged line with no band. The shared steps are those of the run with the most
    evaluations; every other run is linearly interpolated onto them within its own logged range
    (never extrapolated, so an unfinished run stops where its log stops). Only the curves use this;
    final scores always come from the logged rows.
    """
    parts = []
    for _, group in df.groupby(["task", "scheme"], sort=False):
        runs = dict(tuple(group.sort_values(x).groupby("run_dir", sort=False)))
        if len({tuple(r[x]) for r in runs.values()}) > 1:
            grid = max(runs.values(), key=len)[x].to_numpy()
            group = pd.concat([_interpolate_run(r, grid, x) for r in runs.values()], ignore_index=True)
        parts.append(group)
    return pd.concat(parts, ignore_index=True)


def _interpolate_run(run: pd.DataFrame, grid: np.ndarray, x: str = "env_steps") -> pd.DataFrame:
    steps, returns = run[x].to_numpy(), run["eval_return"].to_numpy()
    keep = grid[(grid >= steps.min()) & (grid <= steps.max())]
    out = pd.DataFrame({x: keep, "eval_return": np.interp(keep, steps, returns)})
    for column in run.columns.drop([x, "eval_return"]):
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


def _plot_curves(df: pd.DataFrame, palette: dict[str, Any], out_dir: Path, x_axis: str = "steps") -> list[Path]:
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter
    tasks = sorted(df["task"].unique())
    x, label = X_AXES[x_axis]
    grid = sns.relplot(data=align_steps(df, x), x=x, y="eval_return", hue="scheme", col="task",
                       kind="line", errorbar=t_interval, palette=palette,
                       hue_order=list(palette), col_order=tasks, col_wrap=_col_wrap(len(tasks)),
                       height=3.6, aspect=1.3, facet_kws={"sharey": False, "sharex": False})
    grid.set_titles(col_template="{col_name}")
    grid.set_axis_labels(label, "evaluation return")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_formatter(FuncFormatter(_steps_label))
    grid.figure.suptitle(f"Evaluation return during training (mean over seeds, band: {T_NOTE}; none where one seed)",
                         y=1.04)
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
            yerr = None if np.isnan(r.ci_low) else [[r.mean - r.ci_low], [r.ci_high - r.mean]]
            ax.errorbar(x, r.mean, yerr=yerr, fmt="D", color=palette[r.scheme], markersize=8, capsize=6,
                        elinewidth=2, markeredgecolor="black")
    grid.set_titles(col_template="{col_name}")
    grid.set_axis_labels("scheme", "final evaluation return")
    grid.figure.suptitle("Final evaluation return (at each run's last evaluation)\n"
                         f"diamond: mean over seeds, bars: {T_NOTE} (none for one seed), dots: seeds", y=1.1)
    return _save(grid.figure, out_dir, "final")


def _plot_aggregate(tables: Tables, palette: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    iqm_table, improvement = tables.iqm, tables.improvement
    left = [f"{task} ({why})" for task, why in tables.left_out.items()]
    if len(left) > 4:
        left = left[:3] + [f"and {len(left) - 3} more (summary.md lists them)"]
    if iqm_table.empty:
        fig, ax = plt.subplots(figsize=(7.5, 2.4))
        ax.axis("off")
        ax.text(0.5, 0.5, "No aggregate over tasks: no task has both a random-policy return\nand a published "
                "reference return, so there is no common scale.", ha="center", va="center", wrap=True)
        return _save(fig, out_dir, "aggregate")
    panels = 1 if improvement.empty else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 0.6 * max(len(iqm_table), len(improvement)) + 2.4),
                             squeeze=False)
    ax = axes[0, 0]
    _interval_rows(ax, list(iqm_table["scheme"]), iqm_table["iqm"], iqm_table["ci_low"], iqm_table["ci_high"],
                   [palette[s] for s in iqm_table["scheme"]])
    # Normalised scores are not clipped: a scheme beyond the reference shows beyond 1.
    ax.set_xlim(min(0.0, float(iqm_table["ci_low"].min())) - 0.02, max(1.0, float(iqm_table["ci_high"].max())) + 0.02)
    ax.set_xlabel("IQM of normalised final return\n(return - random) / (reference - random)")
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
    fig.suptitle(f"Aggregate over {int(iqm_table['n_tasks'].max())} task(s), {NORMALISED}")
    fig.tight_layout()
    if left:
        fig.text(0.01, 0, "left out, no common scale: " + "; ".join(left), fontsize=9, ha="left", va="top", wrap=True)
    return _save(fig, out_dir, "aggregate")


def _plot_attribution(tables: Tables, out_dir: Path) -> list[Path]:
    """``attribution``: per task, each rung's effect (after - before, mean final return, 95% Welch
    interval), decided rungs in colour; the top axis is the normalised scale where the task has one."""
    import matplotlib.pyplot as plt
    rows = tables.attribution
    if rows.empty:
        return []
    tasks = list(dict.fromkeys(sorted(rows["task"])))
    rungs = list(dict.fromkeys(rows["isolates"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(7.0 * len(tasks), 0.8 * len(rungs) + 2.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = rows[rows["task"] == task].set_index("isolates").reindex(rungs)
        labels = [f"{r}\n{b} -> {a}" if isinstance(b, str) else f"{r}\n(not run)"
                  for r, b, a in zip(part.index, part["before"], part["after"])]
        colours = ["tab:blue" if v == "decided" else "grey" for v in part["verdict"]]
        values = part["difference"].fillna(0.0)
        _interval_rows(ax, labels, values, part["ci_low"].fillna(values), part["ci_high"].fillna(values), colours)
        ax.axvline(0.0, color="black", linewidth=1)
        ax.set_xlabel("after - before: mean final return (95% Welch interval)")
        ax.set_title(task)
        floor, ceiling, _ = scale(tables.references, task)
        if not (math.isnan(floor) or math.isnan(ceiling)) and ceiling != floor:
            span = ceiling - floor
            top = ax.secondary_xaxis("top", functions=(lambda x, s=span: x / s, lambda x, s=span: x * s))
            top.set_xlabel("normalised: / (reference - random)")
    fig.suptitle("Attribution: each rung's effect\n(blue: decided, the interval excludes 0; grey: undecided)")
    fig.tight_layout()
    return _save(fig, out_dir, "attribution")


def _interval_rows(ax: Any, labels: list[str], values: Any, lows: Any, highs: Any, colours: list[Any]) -> None:
    """One horizontal point-and-interval per label, top to bottom in the given order."""
    for i, (v, lo, hi, c) in enumerate(zip(values, lows, highs, colours)):
        ax.errorbar(v, i, xerr=[[v - lo], [hi - v]], fmt="o", color=c, markersize=8, capsize=6, elinewidth=2.5)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)


# -- entry point -------------------------------------------------------------------------------

def plot_results(root: str | Path, out_dir: str | Path | None = None, allow_mixed: bool = False,
                 references: References | None = None, regs: Any = None, x_axis: str = "steps") -> list[Path]:
    """Write comparison figures and tables for the results tree at ``root``.

    Writes to ``out_dir`` (default ``<root>/plots``): ``curves`` (against environment steps, or with
    ``x_axis="wall"`` against training time: off-policy and on-policy schemes spend compute per step
    very differently), ``final`` and ``aggregate`` figures
    as PNG and PDF (``tuning`` too for a tuned suite), and the tables of :func:`harness.tables.write_tables`.
    Scores are normalised by ``references`` (``{task: {"floor", "floor_note", "ceiling",
    "ceiling_note"}}``); when None, by :func:`harness.references.tree_references` of the tree, with the
    tasks of the registries ``regs`` (default: the installed plugins; a suite passes its own, so that
    a task from a ``--plugin`` file is measured too).
    Raises HarnessError when no runs are found, or when runs may not be averaged or compared
    (:func:`harness.comparability.check_comparable`) and ``allow_mixed`` is False. Returns the
    written paths.
    """
    import matplotlib
    # Set here rather than at import so importing harness never changes an interactive session's backend.
    matplotlib.use("Agg")
    import seaborn as sns

    root = Path(root)
    out = Path(out_dir) if out_dir is not None else root / "plots"
    df = load_runs(root)
    if not allow_mixed:
        check_comparable(df)  # before measuring references for a tree that would be refused
    if references is None:
        from harness.references import tree_references
        references = tree_references(root, df, regs)
    tables = build_tables(df, references, allow_mixed=allow_mixed, rungs=read_rungs(root))
    check_writable(out, "plot directory")

    written: list[Path] = []
    palette = _palette(sorted(df["scheme"].unique()))
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        written += _plot_curves(df, palette, out, x_axis)
        written += _plot_final(df, tables.summary, palette, out)
        written += _plot_aggregate(tables, palette, out)
        written += _plot_attribution(tables, out)
        written += _plot_tuning(root, palette, out)
    written += write_tables(df, tables, out)
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
    unequal = sorted(p.parent.name for p in (root / TUNING_DIR).glob("*/UNEQUAL"))
    fig.suptitle("tuning: best objective (mean evaluation return, late training; over several tasks, of the "
                 "normalised returns) by trial"
                 + ("\nUNEQUAL TUNING BUDGETS (the suite set unequal_tuning = true)" if unequal else ""), y=1.02)
    fig.tight_layout()
    return _save(fig, out, "tuning")
