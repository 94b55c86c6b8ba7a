"""The ``harness`` command: ``plugins``, ``train``, ``eval``, ``bench``, ``sweep``, ``check-plugin``, ``plot``.

User errors (bad names, options, files) print one line ``harness: error: ...`` and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from harness.errors import HarnessError, mask_secrets


def _add_plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="load a plugin that is not installed (a module name or a .py file); repeatable")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """--plugin and --loggers, for commands that run a file's runs (bench, sweep)."""
    _add_plugin_arg(p)
    p.add_argument("--loggers", metavar="NAMES", help="experiment trackers for every run besides metrics.csv, e.g. "
                   "tensorboard,mlflow,wandb (harness plugins lists them; a run's config digest is unchanged)")


def _loggers(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [("loggers", args.loggers)] if args.loggers is not None else []


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", default="local",
                   help="where the work runs: a registered executor (harness plugins lists them; default local)")
    p.add_argument("--address", help="the cluster to run on, for executors that take one (same as "
                   "--executor-option address=...), e.g. auto or HOST:PORT for ray")
    p.add_argument("--executor-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an executor setting (overrides a suite's [executor.<name>] table); repeatable")


def cmd_plugins(args: argparse.Namespace) -> int:
    from harness.plugins import load_plugins
    regs = load_plugins(args.plugin)
    if args.options is not None:
        return _print_options(regs, args.options)
    for title, reg in (("tasks", regs.tasks), ("networks", regs.networks), ("schemes", regs.schemes),
                       ("executors", regs.executors), ("loggers", regs.loggers)):
        print(f"{title}:")
        for e in reg:
            if reg is regs.tasks:
                scen = e.extra.get("scenarios") or ()
                names = ", ".join(f"{e.name}/{s}" for s in scen) or f"{e.name}/<scenario>"
                more = " (and any other scenario the package accepts)" if e.extra.get("open_scenarios") else ""
                print(f"  {names}{more}  [plugin: {e.plugin}] {e.description}")
            elif reg is regs.loggers:
                import importlib.util
                missing = [m for m in e.extra.get("requires", ()) if importlib.util.find_spec(m) is None]
                note = f' (not installed: pip install -e ".[{e.extra.get("extra", e.name)}]")' if missing else ""
                print(f"  {e.name}  [plugin: {e.plugin}] {e.description}{note}")
            else:
                print(f"  {e.name}  [plugin: {e.plugin}] {e.description}")
    return 0


def _print_options(regs, name: str) -> int:
    """The task options (``--set env.NAME=value``) of a task family (or family/scenario), a scheme's
    options (``--set scheme.NAME=value``) and the keys it fixes, a network's options (``--set
    network.NAME=value``), or an executor's options."""
    family, slash, _ = name.partition("/")
    kinds = ((regs.tasks, "task options of {} (--set env.NAME=value)"),
             (regs.schemes, "options of scheme {} (--set scheme.NAME=value)"),
             (regs.networks, "options of network {} (--set network.NAME=value)"),
             (regs.executors, "options of executor {} (--executor-option NAME=value)"))
    found = [(reg, what) for reg, what in kinds if family in reg]
    if not found:
        known = ", ".join(sorted({*regs.tasks.names(), *regs.schemes.names(), *regs.networks.names(),
                                  *regs.executors.names()}))
        raise HarnessError(f"--options {name!r}: not a task family, scheme, network or executor; known: {known}")
    reg, what = found[0]
    if slash and reg is not regs.tasks:
        raise HarnessError(f"--options {name!r}: only task names take a scenario; give {family!r}")
    if slash:
        from harness.tasks import make_task
        make_task(regs, name, 1, 0, {}).close()  # an unknown scenario is an error listing the known ones
    entry = reg.get(family)
    if reg is regs.schemes:
        from harness.scheme_config import declared
        for key, value in declared(entry)[1].items():
            print(f"{family} fixes {key} = {value!r}")
    if reg is regs.networks:
        from harness.scheme_config import declared_network
        declared_network(entry)  # a malformed declaration is the plugin's one-line error
    options = entry.extra.get("options") or {}
    print(f"{what.format(family)}:" if options else f"{family}: no options")
    for key, opt in options.items():
        typ = getattr(opt.type, "__name__", str(opt.type))
        accepted = f" ({opt.range_text()})" if getattr(opt, "range_text", None) and opt.range_text() else ""
        print(f"  {key:16s} {typ:6s} default {opt.default!r:10s} {opt.help}{accepted}")
    return 0


def _scheme_epilog() -> str:
    """The installed schemes' own options (``--set scheme.NAME=value``) and fixed keys, and the networks'
    options (``--set network.NAME=value``), for train --help."""
    from harness.plugins import load_plugins
    from harness.scheme_config import network_option_help, option_help
    regs = load_plugins()
    lines = [f"  {scheme}: {line}" for scheme, items in option_help(regs).items() for line in items]
    nets = [f"  {net}: {line}" for net, items in network_option_help(regs).items() for line in items]
    text = "\n\nscheme options (--set scheme.NAME=value) and keys a scheme fixes:\n" + "\n".join(lines) if lines else ""
    return text + ("\n\nnetwork options (--set network.NAME=value):\n" + "\n".join(nets) if nets else "")


def cmd_train(args: argparse.Namespace) -> int:
    from harness.config import TrainConfig, build_config, load_overrides_file, parse_set
    from harness.plugins import load_plugins
    from harness.trainer import Trainer

    overrides: list[tuple[str, object]] = []
    for file in args.config:
        overrides += load_overrides_file(file)
    for key in ("scheme", "task", "network", "steps", "seed"):
        value = getattr(args, key)
        if value is not None:
            overrides.append((key, value))
    overrides += parse_set(args.set)
    cfg = build_config(overrides)
    if args.out is not None and not args.out.strip():
        raise HarnessError("--out '' is empty; give a directory (or leave --out out for the default)")
    regs = load_plugins(args.plugin)
    import copy
    from harness.scheme_config import resolve_scheme_config
    run_cfg = copy.deepcopy(cfg)  # as the run records it: the scheme's options filled in, its fixed keys set
    defaults = TrainConfig()
    for key, change in resolve_scheme_config(run_cfg, regs).items():  # said even with --quiet
        if change["asked"] == getattr(defaults, key):
            continue  # not asked for by the user: config.json's scheme_fixed records it
        print(f"harness: note: {cfg.scheme} fixes {key}={change['ran']} (you asked {change['asked']})",
              file=sys.stderr)
    out = Path(args.out) if args.out else Path("results") / "train" / cfg.task / cfg.scheme / f"seed_{cfg.seed}"
    if args.accept_new_schedule and not args.extend:
        raise HarnessError("--accept-new-schedule goes with --extend")
    if args.extend and not out.is_dir():
        raise HarnessError(f"--extend: there is no run in {str(out)!r} (the directory does not exist)")
    # With --extend, the run directory changes only once every check has passed (harness.run_setup).
    trainer = Trainer(cfg, regs, out, progress=not args.quiet, extend=args.extend,
                      accept_new_schedule=args.accept_new_schedule)
    note = run_cfg.budget_note()  # said even with --quiet, once the run is built: it trains more than asked
    if note:
        print(f"harness: note: {note}", file=sys.stderr)
    trainer.run_training()
    from harness.results import RunDir
    # The whole run's evaluations, whether this call started it or resumed it.
    evals = [float(r["eval_return"]) for r in RunDir(out).rows() if r.get("eval_return")]
    if evals:
        print(f"{cfg.scheme} on {cfg.task} seed {cfg.seed}: eval return {evals[0]:.2f} -> {evals[-1]:.2f}; wrote {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from harness import eval_run
    eval_run.headless_gl()  # before MuJoCo is imported
    if args.episodes is not None and args.episodes < 1:
        raise HarnessError(f"--episodes {args.episodes} must be >= 1")
    if args.video_episodes < 1:
        raise HarnessError(f"--video-episodes {args.video_episodes} must be >= 1")
    from harness.config import MAX_EPISODES, check_count
    check_count(args.video_episodes, f"--video-episodes {args.video_episodes}")
    if args.episodes is not None:
        check_count(args.episodes, f"--episodes {args.episodes}", MAX_EPISODES)
    if args.video is None and (args.video_episodes != 1 or args.fps is not None or args.frame_step != 1):
        raise HarnessError("--video-episodes, --fps and --frame-step go with --video FILE")
    if args.frame_step < 1:
        raise HarnessError(f"--frame-step {args.frame_step} must be >= 1")
    if args.fps is not None and not args.fps > 0:
        raise HarnessError(f"--fps {args.fps} must be > 0")
    if args.video is not None and Path(args.video).is_dir():
        raise HarnessError(f"--video {args.video!r} is a directory; give a file name ending in .gif or .mp4")
    if args.video is not None and Path(args.video).suffix.lower() not in eval_run.VIDEO_FORMATS:
        raise HarnessError(f"--video {args.video!r}: expected a file name ending in {' or '.join(eval_run.VIDEO_FORMATS)}")
    trainer = eval_run.load_trainer(args.run, args.policy, args.seed, args.episodes, plugins=args.plugin)
    recording = None
    try:
        if args.video is not None:  # every check of the video before the scoring
            recording = eval_run.open_video(trainer, args.video, args.video_episodes, args.fps, args.frame_step)
        result = eval_run.score(trainer)
        if not args.json:
            _print_score(result, args.policy)  # before the video: a video that fails loses no score
        if recording is not None:
            try:
                result["video"] = recording.play()
            except BaseException:
                if args.json:
                    print(json.dumps(result, indent=2), flush=True)
                raise
    finally:
        if recording is not None:
            recording.close()
        trainer.close()
    if args.json:
        print(json.dumps(result, indent=2))
    elif "video" in result:
        v = result["video"]
        print(f"wrote {v['video']}: {v['frames']} frames drawn at {v['fps']:g} fps, episode return(s) "
              + ", ".join(f"{r:.2f}" for r in v["returns"]))
    return 0


def _print_score(result: dict, policy: str) -> None:
    """The line of ``harness eval``'s score: mean return and its interval over the episodes."""
    ci = "no interval" if result["ci95"] is None else "95% t-interval [{:.2f}, {:.2f}]".format(*result["ci95"])
    print(f"{result['scheme']} on {result['task']} ({policy} policy, seed {result['seed']}): mean return "
          f"{result['mean']:.2f}, {ci} over {result['episodes']} episodes", flush=True)


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench import describe, load_suite, run_suite
    from harness.config import parse_set
    from harness.config import check_count
    if args.jobs is not None and args.jobs < 1:
        raise HarnessError(f"--jobs {args.jobs} must be >= 1")
    if args.jobs is not None:
        check_count(args.jobs, f"--jobs {args.jobs}")
    suite = load_suite(args.suite, args.out, extra_plugins=args.plugin, last=_loggers(args))
    if args.dry_run:
        print("\n".join(describe(suite)))
        return 0
    options = {**suite.executor_options.get(args.executor, {}),
               **dict(parse_set(args.executor_option, "--executor-option"))}
    if args.address is not None:
        options["address"] = args.address
    failed = run_suite(suite, jobs=args.jobs, plot=not args.no_plot, progress=not args.quiet,
                       rerun_changed=args.rerun_changed, executor=args.executor, executor_options=options)
    if failed:
        print(f"harness: error: {failed} run(s) failed; re-run the same command to retry them", file=sys.stderr)
        return 1
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.sweep import load_sweep, run_sweep
    from harness.config import parse_set
    sweep = load_sweep(args.sweep, args.out, extra_plugins=args.plugin, last=_loggers(args))
    options = dict(parse_set(args.executor_option, "--executor-option"))
    if args.address is not None:
        options["address"] = args.address
    summary = run_sweep(sweep, storage=args.storage, trials=args.trials, jobs=args.jobs, resume=args.resume,
                        progress=not args.quiet, executor=args.executor, executor_options=options)
    c = summary["counts"]
    print(f"study {summary['study']}: {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed")
    if "best_value" in summary:
        print(f"best trial {summary['best_trial']}: {summary['best_value']:.4f} {summary['best_params']}")
    for f in summary["files"]:
        print(f)
    if c["complete"] + c["pruned"] < (args.trials or sweep.trials):
        print(f"harness: error: the sweep stopped after {c['fail']} failed trials (see fail_reason in trials.csv)",
              file=sys.stderr)
        return 1
    return 0


def cmd_check_plugin(args: argparse.Namespace) -> int:
    from harness.config import parse_set
    from harness.conformance import check_plugin
    from harness.plugins import load_plugins
    checks = check_plugin(load_plugins(args.plugin), args.name, parse_set(args.set))
    for c in checks:
        print(c.line())
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_plot(args: argparse.Namespace) -> int:
    from harness.plot import plot_results
    from harness.plugins import load_plugins
    regs = load_plugins(args.plugin) if args.plugin else None
    files = plot_results(args.results, args.out, allow_mixed=args.allow_mixed, regs=regs, x_axis=args.x)
    for f in files:
        print(f)
    return 0


def build_parser(help_wanted: bool = False) -> argparse.ArgumentParser:
    """The command line; ``help_wanted`` (train --help) loads the plugins to list the schemes' options."""
    from harness.config import field_help
    from harness import __version__
    parser = argparse.ArgumentParser(prog="harness", description="Benchmark HAPPO, MAPPO and plugin schemes on MPE and MaMuJoCo.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                        help="do not load this installed plugin (also HARNESS_DISABLE_PLUGINS=a,b); repeatable")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback behind an error (also HARNESS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list registered tasks, networks, update schemes, executors and loggers")
    p.add_argument("--options", metavar="NAME", help="list a task family's options (e.g. mamujoco or "
                   "mamujoco/Hopper-3x1), a scheme's or an executor's")
    _add_plugin_arg(p)
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("train", help="train one scheme on one task with one seed",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="options for --set KEY=VALUE:\n" + "\n".join(f"  {k:20s} {v}" for k, v in field_help().items())
                       + (_scheme_epilog() if help_wanted else ""))
    p.add_argument("--scheme", help="update scheme, e.g. happo or mappo")
    p.add_argument("--task", help="task, e.g. mpe/simple_spread")
    p.add_argument("--network", help="network builder (default mlp)")
    p.add_argument("--steps", help="environment steps")
    p.add_argument("--seed", help="seed")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="TOML file of config overrides, e.g. a sweep's best.toml (applied before --set)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (see below)")
    p.add_argument("--out", help="run directory (default results/train/<task>/<scheme>/seed_<k>)")
    p.add_argument("--extend", action="store_true",
                   help="continue the run in --out (finished or not) to a larger --steps; nothing else may change")
    p.add_argument("--accept-new-schedule", action="store_true",
                   help="with --extend and lr_decay=true: continue on the new budget's learning-rate schedule")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_plugin_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="score a trained run's policy (mean and 95%% CI) and optionally record a video")
    p.add_argument("run", help="run directory (holding config.json and best.pt / checkpoint.pt)")
    p.add_argument("--policy", choices=["best", "last"], default="best",
                   help="best: the policy of the run's best evaluation (best.pt); last: its last checkpoint")
    p.add_argument("--episodes", type=int, help="episodes to score (default: the run's eval_episodes)")
    p.add_argument("--seed", type=int, help="seed of the start states (default: the run's seed, the start states "
                                            "it was evaluated on)")
    p.add_argument("--video", metavar="FILE", help="write the first episode(s), drawn, to FILE.gif or FILE.mp4")
    p.add_argument("--video-episodes", type=int, default=1, help="episodes in the video (default 1)")
    p.add_argument("--fps", type=float, help="video frames per second (default: 10 for MPE, 30 for MaMuJoCo)")
    p.add_argument("--frame-step", type=int, default=1, help="keep every K-th step's frame (default 1: all)")
    p.add_argument("--json", action="store_true", help="print the result, with per-episode returns, as JSON")
    _add_plugin_arg(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="run a benchmark suite (schemes x tasks x seeds) and plot it")
    p.add_argument("suite", help="suite file, e.g. benchmarks/quickstart.toml")
    p.add_argument("--jobs", type=int, default=None, help="parallel runs (default: number of cores)")
    p.add_argument("--out", help="results directory (default results/<suite name>)")
    p.add_argument("--no-plot", action="store_true", help="do not plot at the end")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state, train nothing")
    _add_executor_args(p)
    p.add_argument("--rerun-changed", action="store_true",
                   help="move runs made with another config than the suite asks to <out>/.replaced/<time>/ "
                        "and train them afresh (default: stop and name them)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_run_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("sweep", help="tune a scheme's hyperparameters with an Optuna study")
    p.add_argument("sweep", help="sweep file, e.g. benchmarks/sweeps/happo_spread.toml")
    p.add_argument("--storage", help="SQLAlchemy URL of the study's database, e.g. postgresql://user@host/db, or "
                   "journal:///path/study.log for a journal file (default: SQLite file <out>/study.db)")
    p.add_argument("--trials", type=int, help="finished trials the study should reach (default: the file's)")
    p.add_argument("--jobs", "--workers", type=int, default=1, dest="jobs",
                   help="workers joining the study (default 1; more run as the executor's jobs)")
    _add_executor_args(p)
    p.add_argument("--resume", action="store_true", help="continue an existing study (an error if there is none)")
    p.add_argument("--out", help="directory for trial runs and outputs (default results/sweeps/<name>)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    _add_run_args(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("check-plugin", help="run the conformance checks on a plugin's tasks, networks and schemes")
    p.add_argument("name", help="a plugin name (as `harness plugins` shows it) or one task family, network or scheme")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for the schemes' training checks, e.g. scheme.warmup_steps=50; "
                        "network.NAME=value also builds the networks checked with that option")
    _add_plugin_arg(p)
    p.set_defaults(func=cmd_check_plugin)

    p = sub.add_parser("plot", help="draw comparison figures and tables from a results directory")
    p.add_argument("results", help="results directory (searched recursively for runs)")
    p.add_argument("--out", help="where to write figures and tables (default <results>/plots)")
    p.add_argument("--x", choices=("steps", "wall"), default="steps",
                   help="draw the curves against environment steps (default) or training time")
    p.add_argument("--allow-mixed", action="store_true",
                   help="average runs even when their environment package versions or configs differ, and compare "
                        "schemes evaluated under different protocols or budgets")
    p.add_argument("--plugin", action="append", default=[],
                   help="also load this plugin module or .py file, for the references of its tasks (repeatable)")
    p.set_defaults(func=cmd_plot)
    return parser


def _stopped_line(command: str, exc: "stopping.Interrupted") -> str:
    """What a stopped command kept, truthfully: ``eval`` writes nothing to resume; work stopped where
    it was (a second signal, a task call that hung) was not checkpointed at the stop."""
    if command == "eval":
        return (f"eval stopped by {exc}: the evaluation was not finished and nothing was written "
                "(there is nothing to resume; re-run it to score the policy)")
    if exc.at_once:
        return (f"stopped by {exc} ({exc.at_once}): that work stopped where it was, without a checkpoint at the "
                "stop, and keeps the checkpoints and rows it wrote before; any other running work was checkpointed "
                "and queued work not started; re-run the same command to resume")
    return ("stopped by {}: running work was checkpointed and queued work not started; re-run the same "
            "command to resume").format(exc)


def main(argv: Sequence[str] | None = None) -> int:
    from harness import stopping

    import os

    from harness.plugins import DISABLE_ENV, MAIN_PID_ENV, disabled_plugins

    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(help_wanted="train" in words and ("-h" in words or "--help" in words))
    args = parser.parse_args(argv)
    if args.disable_plugin:  # through the environment, so worker processes skip them too
        os.environ[DISABLE_ENV] = ",".join(sorted(disabled_plugins() | set(args.disable_plugin)))
    os.environ[MAIN_PID_ENV] = str(os.getpid())  # its worker processes inherit it and stay quiet
    debug = args.debug or os.environ.get("HARNESS_DEBUG", "") not in ("", "0")
    stopping.install()
    try:
        return args.func(args)
    except HarnessError as exc:
        if debug:
            import traceback
            traceback.print_exception(exc)
        print(f"harness: error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    except stopping.Interrupted as exc:
        print(f"harness: {_stopped_line(args.command, exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted; finished checkpoints and metrics are kept, re-run the command to resume",
              file=sys.stderr)
        return 130
    except Exception as exc:  # raised in a plugin's code that the core does not wrap: name the plugin
        from harness.blame import blame
        culprit = blame(exc)
        if culprit is None:
            raise  # the core's own failure: its traceback is the report
        if debug:
            import traceback
            traceback.print_exception(exc)
        print(f"harness: error: {culprit.message(exc)} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
