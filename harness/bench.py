"""Benchmark suites: every (scheme x task x seed) of a TOML file, in parallel, resumable, then plotted.

A suite file::

    [suite]
    name = "quickstart"
    schemes = ["happo", "mappo"]
    tasks = ["mpe/simple_spread", "mpe/simple_speaker_listener"]
    seeds = [1, 2, 3]              # or a count: seeds = 3 means 1, 2, 3
    steps = 200_000                # budget per run, in environment steps
    eval_interval = 5              # iterations between evaluations
    eval_episodes = 20
    tuned = false                  # apply the task plugin's tuned hyperparameters (e.g. MaMuJoCo)
    plugins = []                   # extra plugin modules or .py files (paths relative to this file)

    [config]                       # overrides for every run (any `harness train --set` key)
    [tasks."mpe/simple_spread"]    # overrides for one task
    [schemes.mappo]                # overrides for one scheme

Overrides apply in this order: harness defaults, threads=1, the [suite] budget, tuned values (the
task's, then its scheme-specific ones), [config], [tasks.T], [schemes.S]. Runs go to ``<out>/<task>/<scheme>/seed_<k>/``. Re-running the
same command skips finished runs and resumes unfinished ones from their last checkpoint; a run
counts for the suite only if its config digest equals what the suite now asks. A run made with
another config stops the suite before anything runs (naming the run and the keys that differ);
``--rerun-changed`` moves such runs aside to ``<out>/.replaced/<time>/`` and trains them afresh.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from harness import stopping, tuning
from harness.arms import load_arms, own_settings
from harness.attribution import rungs_from_suite, write_rungs
from harness.config import (TrainConfig, absolute_specs, build_config, config_diff, load_overrides_file, need,
                            need_unique, plugin_list, read_spec_file, seed_list, check_name)
from harness.dispatch import dispatch
from harness.errors import HarnessError, mask_secrets
from harness.errors import describe as describe_error
from harness.executor import Executor, Job, make_executor
from harness.plugins import Registries, load_plugins
from harness.results import RunDir, check_writable
from harness.run_lock import RunLock
from harness.scheme_config import resolved
from harness.tasks import make_task, split_task
from harness.tracking import check_loggers

SUITE_KEYS = {"name", "description", "schemes", "tasks", "seeds", "steps", "eval_interval", "eval_episodes",
              "tuned", "plugins", "unequal_tuning"}
TOP_KEYS = {"suite", "config", "tasks", "schemes", "arms", "attribution", "executor", "tune"}


@dataclass
class RunSpec:
    """One run of a suite."""

    task: str
    scheme: str
    seed: int
    overrides: list[tuple[str, Any]]
    out: Path
    record: dict[str, Any] = field(default_factory=dict)  # added to the run's config.json (e.g. its tuning)
    arm: str = ""  # the arm the run belongs to (harness.arms); a plain scheme's arm is the scheme

    def __post_init__(self) -> None:
        self.arm = self.arm or self.scheme

    @property
    def label(self) -> str:
        return f"{self.arm} {self.task} seed {self.seed}"


@dataclass
class Suite:
    """A parsed, validated suite file."""

    path: Path
    name: str
    schemes: list[str]  # the arms' names (harness.arms), a plain scheme's being the scheme's
    tasks: list[str]
    seeds: list[int]
    plugins: list[str]
    runs: list[RunSpec] = field(default_factory=list)
    # [executor.<name>] tables: settings per executor, used when that executor runs the suite
    executor_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # schemes tuned before the comparison (harness.tuning)
    tunings: dict[str, Any] = field(default_factory=dict)
    # the plugins' registries (a run's config is resolved against its scheme's options)
    regs: Any = None
    # the attribution ladder's rungs (harness.attribution), recorded in the results tree
    rungs: list[Any] = field(default_factory=list)


def _list_of(value: Any, typ: type, path: Path, key: str) -> list:
    need(isinstance(value, list) and value and all(isinstance(v, typ) and not isinstance(v, bool) for v in value),
          path, f"[suite] {key} must be a non-empty list of {typ.__name__}s, got {value!r}")
    return value


def _no_run_keys(table: dict[str, Any], path: Path, where: str) -> None:
    """``task``, ``scheme`` and ``seed`` come from [suite]; in an override table they would be ignored.
    A ``scheme`` table (TOML's dotted ``scheme.kl_threshold = 0.02``) sets scheme options: allowed."""
    bad = sorted(k for k in {"task", "scheme", "seed"} & set(table) if not (k == "scheme" and isinstance(table[k], dict)))
    if bad:
        raise HarnessError(f"{path}: {where} sets {bad[0]!r}, which [suite] decides (its tasks, schemes and seeds): "
                           f"{bad[0]} = {table[bad[0]]!r}" + ("; a scheme option is set as scheme.NAME = value"
                                                              if bad[0] == "scheme" else ""))


def _with_include(table: Any, path: Path, where: str, scheme: str | None = None) -> dict[str, Any]:
    """An override table whose ``include = "file.toml"`` (relative to the suite file; a list is
    allowed) is replaced by that file's overrides, the table's own keys applied after them. A file's
    ``scheme`` (a sweep's ``best.toml`` names the scheme it tuned) must be the ``[schemes.X]`` table's
    own scheme, and is dropped."""
    need(isinstance(table, dict), path, f"{where} must be a table")
    table = dict(table)
    files = table.pop("include", [])
    files = [files] if isinstance(files, str) else files
    need(isinstance(files, list) and all(isinstance(f, str) for f in files), path,
          f"{where} include={files!r} must be a file name or a list of them")
    merged: dict[str, Any] = {}
    for f in files:
        try:
            included = dict(load_overrides_file(path.parent / f))
        except HarnessError as exc:
            raise HarnessError(f"{path}: {where} include: {exc}") from None
        made_for = included.pop("scheme") if isinstance(included.get("scheme"), str) else scheme
        need(made_for == scheme, path, f"{where} include {f!r} holds the settings of scheme {made_for!r}; "
                                       f"include it in [schemes.{made_for}]")
        merged.update(included)
    merged.update(table)
    return merged


def load_suite(path: str | Path, out: str | Path | None = None, regs: Registries | None = None,
               extra_plugins: list[str] = (), last: list[tuple[str, Any]] = ()) -> Suite:
    """Parse and validate a suite file; every run's config is built (and checked) here.
    ``extra_plugins`` are loaded besides the suite's own (``--plugin``); ``last`` overrides every
    run after the file's tables (``--loggers``)."""
    path = Path(path)
    data, suite = read_spec_file(path, "suite", TOP_KEYS, SUITE_KEYS, ("tasks", "seeds", "steps"))
    schemes = _list_of(suite["schemes"], str, path, "schemes") if "schemes" in suite else []
    tasks = _list_of(suite["tasks"], str, path, "tasks")
    seeds = seed_list(suite["seeds"], path, "[suite]")
    for key, values in (("schemes", schemes), ("tasks", tasks)):
        need_unique(values, path, f"[suite] {key}")
    for key in ("steps", "eval_interval", "eval_episodes"):
        if key in suite:
            v = suite[key]
            ok = isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if key == "eval_interval" else v > 0)
            need(ok, path, f"[suite] {key}={v!r} must be a {'non-negative' if key == 'eval_interval' else 'positive'} integer")
    for key in ("tuned", "unequal_tuning"):
        need(isinstance(suite.get(key, False), bool), path, f"[suite] {key}={suite.get(key)!r} must be true or false")
    plugins = list(dict.fromkeys(plugin_list(suite.get("plugins", []), path, "suite") + absolute_specs(extra_plugins)))
    regs = regs or load_plugins(plugins)
    for s in schemes:
        regs.schemes.get(s)
    for tables in ("config", "tasks", "schemes"):
        need(isinstance(data.get(tables, {}), dict), path, f"[{tables}] must be a table")
    for t in data.get("tasks", {}):
        need(t in tasks, path, f"[tasks.{t!r}] names a task that is not in [suite] tasks {tasks}")
    data["schemes"] = {s: _with_include(v, path, f"[schemes.{s}]", s) for s, v in data.get("schemes", {}).items()}
    arms = load_arms(data, schemes, path, regs.schemes.names(), tasks)
    used = sorted({a.scheme for a in arms})
    for s in data["schemes"]:
        need(s in used, path, f"[schemes.{s}] names a scheme that no arm uses (the suite's schemes: {used})")
    for arm in arms:
        if arm.declared:
            arm.table = _with_include(arm.table, path, arm.where, arm.scheme)
    data["config"] = _with_include(data.get("config", {}), path, "[config]")
    _no_run_keys(data["config"], path, "[config]")
    data["tasks"] = {t: _with_include(v, path, f"[tasks.{t!r}]") for t, v in data.get("tasks", {}).items()}
    tune_specs = tuning.take_specs(data, path, arms)
    for where, table in [(f"[tasks.{k!r}]", t) for k, t in data["tasks"].items()] + [(a.where, a.table) for a in arms]:
        _no_run_keys(table, path, where)
    schemes = [a.name for a in arms]
    rungs = rungs_from_suite(data["attribution"], schemes, path) if "attribution" in data else []
    name = check_name(suite.get("name", path.stem), path, "suite")
    out = Path(out) if out is not None else Path("results") / name
    result = Suite(path, name, schemes, tasks, seeds, plugins, regs=regs, rungs=rungs)
    executors = data.get("executor", {})
    need(isinstance(executors, dict) and all(isinstance(v, dict) for v in executors.values()), path,
         "[executor] must hold one table per executor, e.g. [executor.ray] address = \"auto\"")
    for name in executors:
        regs.executors.get(name)  # an unknown executor name is an error listing the known ones
    result.executor_options = {k: dict(v) for k, v in executors.items()}
    pair_overrides: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for task in tasks:
        family, scenario = split_task(task)
        entry = regs.tasks.get(family)
        tuned = entry.extra.get("tuned") if suite.get("tuned", False) else None
        base: list[tuple[str, Any]] = [("threads", 1)]
        base += [(k, suite[k]) for k in ("steps", "eval_interval", "eval_episodes") if k in suite]
        tuned_values = dict(tuned(task)) if tuned else {}
        tuned_by_scheme = tuned_values.pop("schemes", {})
        base += list(tuned_values.items())
        rest = list(data.get("config", {}).items()) + list(data.get("tasks", {}).get(task, {}).items())
        checked = False
        for arm in [a for a in arms if a.runs_on(task)]:
            settings = own_settings(arm.table)
            # [schemes.S] (a plain scheme's arm: its whole table), then a declared arm's own settings
            over = (base + list(tuned_by_scheme.get(arm.scheme, {}).items()) + rest
                    + list(data["schemes"].get(arm.scheme, {}).items())
                    + (list(settings.items()) if arm.declared else []) + list(last))
            record = {"arm": arm.record(settings)} if arm.declared else {}
            for seed in seeds:
                full = over + [("task", task), ("scheme", arm.scheme), ("seed", seed)]
                try:
                    cfg = resolved(build_config(full), regs)
                except HarnessError as exc:
                    raise HarnessError(f"{path}: {task} / {arm.name}: {exc}") from None
                check_loggers(regs, cfg.loggers, f"{path}: ")
                if not checked:  # build the task once: unknown scenarios and options fail here, not in a worker
                    make_task(regs, task, 1, 0, cfg.env).close()
                    checked = True
                result.runs.append(RunSpec(task, arm.scheme, seed, full, out / task / arm.name / f"seed_{seed}",
                                           dict(record), arm=arm.name))
            pair_overrides[(task, arm.name)] = over
    result.out = out  # type: ignore[attr-defined]
    result.tunings = tuning.build_tunings(tune_specs, path, name, tasks, seeds, suite.get("eval_episodes"), out, regs,
                                          pair_overrides, plugins, {a.name: a.scheme for a in arms},
                                          suite.get("unequal_tuning", False))
    return result


def apply_tuning(suite: Suite, records: dict[str, dict[str, Any]]) -> None:
    """Give each tuned scheme's runs its best parameters (applied last) and the tuning record."""
    for r in suite.runs:
        if r.arm in records and "tuning" not in r.record:
            r.overrides = r.overrides + list(records[r.arm]["params"].items())
            r.record = {**r.record, "tuning": records[r.arm]}


def _run_one(spec: RunSpec, plugins: list[str]) -> tuple[str, float | None]:
    """Worker: train one run (resuming it if a checkpoint exists); return its last evaluation."""
    from harness.trainer import Trainer
    regs = load_plugins(plugins)
    cfg = build_config(spec.overrides)
    with stopping.working():
        Trainer(cfg, regs, spec.out, progress=False, record=spec.record).run_training()
    rows = [r for r in RunDir(spec.out).rows() if r["eval_return"]]
    return spec.label, float(rows[-1]["eval_return"]) if rows else None


def run_state(spec: RunSpec, regs: Registries) -> tuple[str, str]:
    """``(state, detail)``: ``new``, ``partial``, ``finished``, or ``changed`` (its directory holds a run
    made with another config than the suite asks, resolved as a run records it; ``detail`` names the
    differing keys)."""
    run = RunDir(spec.out)
    try:
        old = run.read_config()
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{run.config_file}: unreadable ({exc}); move the run directory aside") from None
    if old is not None:
        cfg = resolved(build_config(spec.overrides), regs)
        if not isinstance(old, dict) or old.get("config_digest") != cfg.digest():
            saved = old.get("config") if isinstance(old, dict) else None
            return "changed", config_diff(saved if isinstance(saved, dict) else {}, cfg.to_dict())
    if run.done:
        return "finished", ""
    return ("partial" if run.checkpoint_file.exists() else "new"), ""


def check_changed(suite: Suite, rerun_changed: bool = False) -> list[Path]:
    """Stop (one line) when a run directory of the suite holds a run made with another config; with
    ``rerun_changed``, move each such run to ``<out>/.replaced/<time>/...`` instead (never delete it)
    and return where they went."""
    changed = [(r, detail) for r in suite.runs for state, detail in [run_state(r, suite.regs)] if state == "changed"]
    if not changed:
        return []
    if not rerun_changed:
        spec, detail = changed[0]
        more = f" (and {len(changed) - 1} more run(s))" if len(changed) > 1 else ""
        raise HarnessError(f"{spec.out} was made with another config than the suite now asks ({detail}){more}; "
                           "pass --rerun-changed to move such runs aside and train them afresh, or use another --out")
    out: Path = suite.out  # type: ignore[attr-defined]
    aside = out / ".replaced" / time.strftime("%Y%m%dT%H%M%S")
    locks: list[RunLock] = []
    try:
        # Every run to move is locked first: one that another process is writing stops the moves
        # before any is made, and no writer can start on a run while it is being moved.
        for spec, _ in changed:
            lock = RunLock(spec.out)
            try:
                lock.acquire(wait_s=0)
            except HarnessError as exc:
                raise HarnessError(f"--rerun-changed moved nothing: {exc}") from None
            locks.append(lock)
        moved = []
        for spec, detail in changed:
            target = aside / spec.out.relative_to(out) if spec.out.is_relative_to(out) else aside / spec.out.name
            target.parent.mkdir(parents=True, exist_ok=True)
            spec.out.rename(target)
            print(f"moved {spec.out} ({detail}) to {target}", file=sys.stderr)
            moved.append(target)
    finally:
        for lock in locks:
            lock.release()
    return moved


def _steps_done(spec: RunSpec) -> int:
    rows = RunDir(spec.out).rows()
    return int(rows[-1]["env_steps"]) if rows else 0


def in_seed_order(runs: list[RunSpec], seeds: list[int]) -> list[RunSpec]:
    """Seed by seed, each seed's tasks and arms in suite order: a suite stopped part way has the first
    seeds of every arm rather than every seed of the first arms."""
    return sorted(runs, key=lambda r: seeds.index(r.seed))


def run_suite(suite: Suite, jobs: int | None = None, plot: bool = True, progress: bool = True,
              rerun_changed: bool = False, executor: str = "local", executor_options: dict[str, Any] | None = None,
              regs: Registries | None = None) -> int:
    """Run every unfinished run of ``suite`` on ``executor`` (a registered executor's name); return
    the number of runs that failed. Runs made with another config stop it first, or are moved aside
    with ``rerun_changed`` (:func:`check_changed`)."""
    out: Path = suite.out  # type: ignore[attr-defined]
    check_writable(out)
    if suite.tunings:  # tune first (resuming the studies), then compare the tuned configurations
        apply_tuning(suite, tuning.run_tuning(suite.tunings, jobs, executor, executor_options or {}, progress))
    check_changed(suite, rerun_changed)
    if suite.rungs:
        write_rungs(suite.rungs, out)
    todo = in_seed_order([r for r in suite.runs if not RunDir(r.out).done], suite.seeds)
    done_before = len(suite.runs) - len(todo)
    runner = make_executor(regs or load_plugins(suite.plugins), executor,
                           min(jobs, len(todo) or 1) if jobs else None, executor_options or {}) if todo else None
    print(f"suite {suite.name}: {len(suite.runs)} runs ({done_before} already finished), results in {out}"
          + (f"; {runner.resources()}" if runner else ""), file=sys.stderr)
    for note in dict.fromkeys(n for r in todo if (n := build_config(r.overrides).budget_note())):
        print(f"harness: note: {note}", file=sys.stderr)
    failures: list[str] = []
    if runner is not None:
        failures = _run_on(runner, suite, todo, progress)
    for f in failures:
        print(f"harness: run failed: {f}", file=sys.stderr)
    if plot and len(failures) < len(suite.runs):
        from harness.plot import plot_results
        print(f"plotting {out} ...", file=sys.stderr, flush=True)
        try:
            files = plot_results(out, regs=regs or suite.regs)
        except HarnessError as exc:
            if not failures:
                raise
            # The failed runs are missing from the comparison, which plot then refuses: say why, once.
            print(f"harness: not plotted: {exc}; re-run the suite to finish the failed runs, or plot what there "
                  f"is with: harness plot {out} --allow-mixed", file=sys.stderr)
            return len(failures)
        print(f"plots and tables in {files[0].parent}", file=sys.stderr)
    return len(failures)


def _run_on(runner: Executor, suite: Suite, todo: list[RunSpec], progress: bool) -> list[str]:
    """Run ``todo`` on ``runner`` to the end (or to a stop request) and close it; return failures."""
    out: Path = suite.out  # type: ignore[attr-defined]
    failures: list[str] = []
    bar = None

    @contextlib.contextmanager
    def follow() -> Iterator[Callable[[], None] | None]:
        nonlocal bar
        if not progress:
            yield None
            return
        from tqdm import tqdm
        total = sum(build_config(r.overrides).iterations * build_config(r.overrides).batch_steps for r in todo)
        bar = tqdm(total=total, unit="step", desc=f"bench {suite.name}", dynamic_ncols=True, file=sys.stderr)
        start_steps = {id(r): _steps_done(r) for r in todo}

        def tick() -> None:
            bar.n = sum(_steps_done(r) - start_steps[id(r)] for r in todo)
            # Before the first iteration ends (runs building their tasks) the bar would stand still.
            started = sum(RunDir(r.out).config_file.exists() for r in todo)
            bar.set_postfix_str(f"{started}/{len(todo)} runs started", refresh=False)
            bar.refresh()
        try:
            yield tick
        finally:
            bar.close()

    def on_end(job: Job, result: Any, exc: BaseException | None) -> None:
        spec: RunSpec = job.key
        if exc is None:
            label, final = result
            msg = f"done: {label}: final eval return {final:.2f}" if final is not None else f"done: {label}"
        elif isinstance(exc, cf.CancelledError):
            msg = ""
        elif isinstance(exc, KeyboardInterrupt):
            msg = f"stopped: {spec.label}"
        else:  # one failed run must not stop the others
            failures.append(f"{spec.label}: {describe_error(exc)}")
            msg = f"FAILED: {spec.label}: {mask_secrets(str(exc))}"
        if msg:
            (bar.write(msg, file=sys.stderr) if bar else print(msg, file=sys.stderr))

    # Absolute run directories: an executor's processes may run in another working directory.
    jobs = [Job(r, _run_one, (dataclasses.replace(r, out=r.out.resolve()), suite.plugins),
                build_config(r.overrides).threads) for r in todo]
    dispatch(runner, jobs, out, on_end, follow)
    return failures


def describe(suite: Suite) -> list[str]:
    """One line per run: what would be trained where (for ``--dry-run``)."""
    lines = []
    waiting = {}
    for scheme, t in suite.tunings.items():
        record = t.study_record()
        if record is None:
            waiting[scheme] = t.progress()
            lines.append(f"tuning {scheme}: {t.sweep.trials} trials x {len(t.sweep.tasks)} task(s) x seeds "
                         f"{t.sweep.seeds} x {t.sweep.steps} steps -> {t.sweep.out} [{waiting[scheme]}]")
        else:
            apply_tuning(suite, {scheme: record})
            lines.append(f"tuning {scheme}: done, best trial {record['trial']} ({record['objective']:.3f}): "
                         f"{record['params']}; {record['env_steps']:,} env steps trained, pruned trials included"
                         + (" (unequal tuning: allowed by the suite)" if record.get("unequal_tuning") else ""))
    for r in suite.runs:
        if r.arm in waiting:
            lines.append(f"{r.label}: {build_config(r.overrides).steps} steps with {r.arm}'s tuned parameters "
                         f"-> {r.out} [awaits tuning: {waiting[r.arm]}]")
            continue
        cfg: TrainConfig = build_config(r.overrides)
        state, detail = run_state(r, suite.regs)
        note = f": {detail}" if detail else ""
        loggers = f", loggers {','.join(cfg.loggers)}" if cfg.loggers else ""
        lines.append(f"{r.label}: {cfg.steps} steps, {cfg.iterations} iterations{loggers} -> {r.out} [{state}{note}]")
    return lines
