"""A sweep's outputs, written when its study has its trials: ``best.toml`` (the best trial's
parameters over the sweep's fixed settings, usable as ``harness train --config`` or a suite's
``include``), ``trials.csv`` (every trial), ``study.json`` (a summary: counts, best trial, storage,
versions) and the figures (optimization history, intermediate values, slices, importances; PNG and PDF).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.config import RUN_ONLY, TABLES
from harness.study import make_storage, mask_url, trial_counts
from harness.sweep_file import Sweep


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_outputs(sweep: Sweep, storage: str | None) -> dict[str, Any]:
    """best.toml, trials.csv, study.json and the figures; returns a summary."""
    import optuna

    from harness.results import versions

    study = optuna.load_study(study_name=sweep.name, storage=make_storage(sweep, storage))
    out = sweep.out
    written: list[Path] = []
    trials_csv = out / "trials.csv"
    study.trials_dataframe().to_csv(trials_csv, index=False)
    written.append(trials_csv)
    summary: dict[str, Any] = {"study": sweep.name, "storage": mask_url(sweep.storage_url(storage)),
                               "counts": trial_counts(study), "sweep_digest": sweep.digest, "versions": versions()}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        summary.update(best_value=best.value, best_trial=best.number, best_params=best.params)
        lines = [f"# Best parameters of sweep {sweep.name!r} ({sweep.scheme} on {', '.join(sweep.tasks)}):",
                 f"# trial {best.number}, objective {best.value:.4f} (mean evaluation return"
                 + (", each task's normalised by its references," if len(sweep.tasks) > 1 else "")
                 + f" over the last {sweep.window:.0%} of training, over seeds {sweep.seeds}).",
                 f"# Use: harness train --config {out / 'best.toml'} ...   or   include = \"...\" in a suite table."]
        # The sweep's fixed settings too (budget, [config]), so the best trial's runs can be made again
        # from this file alone; its parameters override them.
        fixed = {k: v for k, v in sweep.fixed if k not in ("threads",) and k not in RUN_ONLY}
        tables: dict[str, dict[str, Any]] = {}
        for prefix, table in TABLES.items():  # options as [env] / [scheme_options] tables
            opts = dict(fixed.pop(table, {}) or {})
            for source in (fixed, best.params):
                opts.update({k[len(prefix) + 1:]: v for k, v in source.items() if k.startswith(prefix + ".")})
            fixed = {k: v for k, v in fixed.items() if not k.startswith(prefix + ".")}
            tables[table] = opts
        merged = {"scheme": sweep.scheme, **fixed,
                  **{k: v for k, v in best.params.items() if k.partition(".")[0] not in TABLES}}
        lines += [f"{k} = {_toml_value(v)}" for k, v in merged.items()]
        for table, opts in tables.items():
            if opts:
                lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in opts.items()]
        best_file = out / "best.toml"
        best_file.write_text("\n".join(lines) + "\n")
        written.append(best_file)
    summary["figures"] = [str(p) for p in _figures(study, out)]
    (out / "study.json").write_text(json.dumps(summary, indent=2, default=str))
    written.append(out / "study.json")
    summary["files"] = [str(p) for p in written] + summary["figures"]
    return summary


def _figures(study, out: Path) -> list[Path]:
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    files = []
    plots = [("history", ovm.plot_optimization_history, 1), ("intermediate", ovm.plot_intermediate_values, 1),
             ("slices", ovm.plot_slice, 1), ("importances", ovm.plot_param_importances, 2)]
    for name, fn, need in plots:
        if len(complete) < need:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = fn(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances of a constant objective
                print(f"sweep: skipped figure {name}: {exc}", file=sys.stderr)
                continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        if name != "slices":  # the slice plot places its own colour bar
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig.tight_layout()
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=120)
            files.append(path)
        plt.close(fig)
    return files
