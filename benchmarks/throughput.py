"""Training throughput against the raw throughput of the same vectorised environment, in one run.

For each task and scheme it prints: raw vectorised env steps/s with random actions, training
steps/s (collection + update), their ratio, the share of training time spent collecting vs
updating, collection steps/s against raw (the harness's own per-step cost: acting, buffers,
advantages) and the update's cost per env step in microseconds (the learning itself: a fixed
cost per batch, which bounds the training ratio from above however fast the acting is).
``pkg env/s`` is the environment package stepped through its own API (mpe2's PettingZoo parallel
API; gymnasium-robotics' MaMuJoCo with its own observation code), in the same vectorised task, and
``train/pkg`` training against it: the harness's MPE copies drive mpe2 directly and
``env.fast=true`` replaces the packages' Python, so training can outrun the package itself. Run: ``python benchmarks/throughput.py [--tasks mpe/simple_spread] [--schemes happo mappo]``.
Defaults are HARL's batch: 20 envs x 200 steps, 5 actor and 5 critic epochs, MLP [128, 128].

``--side-by-side N`` also trains N copies of each row at once, each in a process of its own (as
``harness bench --jobs N`` and sweep workers run), and prints each one's training steps/s and its
ratio to the same row trained alone in this run: on a machine with N free cores, runs that limit their
thread pools to ``threads`` keep close to 1.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from harness.config import build_config
from harness.plugins import load_plugins
from harness.tasks import make_task
from harness.trainer import Trainer

# The environment package stepped through its own API: the baseline of the ``pkg env/s`` column.
PACKAGE_OPTIONS = {"mpe": {"parallel_api": True, "fast": False}, "mamujoco": {"fast": False}}


def raw_steps_per_s(regs, task_name: str, n_envs: int, steps_per_env: int, seed: int, options: dict) -> float:
    """Steps/s of the vectorised task with uniformly random actions (sampled up front)."""
    task = make_task(regs, task_name, n_envs, seed, options)
    rng = np.random.default_rng(seed)
    actions = []
    for _ in range(steps_per_env):
        step = []
        for space in task.action_spaces:
            if space.kind == "discrete":
                step.append(rng.integers(0, space.n, size=n_envs))
            else:
                step.append(rng.uniform(space.low, space.high, size=(n_envs, space.n)).astype(np.float32))
        actions.append(step)
    t0 = time.perf_counter()
    for a in actions:
        task.step(a)
    elapsed = time.perf_counter() - t0
    task.close()
    return n_envs * steps_per_env / elapsed


def training_figures(regs, scheme: str, task_name: str, iterations: int, overrides: list) -> tuple[float, float, float]:
    """Training steps/s and the seconds spent collecting and updating, over ``iterations`` iterations
    (after one warm-up iteration)."""
    cfg = build_config([("scheme", scheme), ("task", task_name), *overrides])
    trainer = Trainer(cfg, regs, run_dir=None, progress=False)
    trainer.scheme.update(trainer.collect()[0])  # warm-up
    collect_s = update_s = 0.0
    for _ in range(iterations):
        t0 = time.perf_counter()
        batch, _ = trainer.collect()
        t1 = time.perf_counter()
        trainer.scheme.update(batch)
        t2 = time.perf_counter()
        collect_s += t1 - t0
        update_s += t2 - t1
    trainer.close()
    return iterations * cfg.batch_steps / (collect_s + update_s), collect_s, update_s


def _alone_in_a_process(args: tuple) -> float:
    """``training_figures``' steps/s in a fresh process (for ``--side-by-side``)."""
    scheme, task_name, iterations, overrides = args
    return training_figures(load_plugins(), scheme, task_name, iterations, overrides)[0]


def side_by_side(scheme: str, task_name: str, iterations: int, overrides: list, n: int) -> list[float]:
    """Training steps/s of ``n`` copies of one row trained at the same time, one process each."""
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(n) as pool:
        return pool.map(_alone_in_a_process, [(scheme, task_name, iterations, overrides)] * n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["mpe/simple_spread", "mamujoco/HalfCheetah-2x3"])
    parser.add_argument("--schemes", nargs="+", default=["happo", "mappo"])
    parser.add_argument("--profile", action="store_true",
                        help="also print the top functions (by own time) of raw env stepping per task")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--side-by-side", type=int, default=0, metavar="N",
                        help="also train N copies of each row at once, one process each, against the row alone")
    args = parser.parse_args()
    regs = load_plugins()
    overrides = [tuple(s.split("=", 1)) for s in args.set]
    cfg = build_config([("task", args.tasks[0]), *overrides])
    print(f"batch: {cfg.n_envs} envs x {cfg.rollout_length} steps, {cfg.ppo_epochs}/{cfg.critic_epochs} epochs, "
          f"hidden {cfg.hidden_sizes}, torch threads {cfg.threads}")
    print(f"{'task':28s} {'scheme':8s} {'raw env/s':>10s} {'pkg env/s':>10s} {'train/s':>9s} {'ratio':>6s} "
          f"{'train/pkg':>9s} {'collect':>8s} {'update':>7s} {'collect/raw':>11s} {'update us/step':>14s}")
    for task_name in args.tasks:
        tcfg = build_config([("task", task_name), *overrides])
        raw = raw_steps_per_s(regs, task_name, tcfg.n_envs, tcfg.rollout_length * args.iterations, 0, tcfg.env)
        package = PACKAGE_OPTIONS.get(task_name.split("/")[0])
        pkg = raw if package is None else raw_steps_per_s(regs, task_name, tcfg.n_envs,
                                                          tcfg.rollout_length * args.iterations, 0, {**tcfg.env, **package})
        for scheme in args.schemes:
            train, c, u = training_figures(regs, scheme, task_name, args.iterations, overrides)
            share = c / (c + u)
            steps = args.iterations * tcfg.batch_steps
            print(f"{task_name:28s} {scheme:8s} {raw:10.0f} {pkg:10.0f} {train:9.0f} {train / raw:6.2f} {train / pkg:9.2f} "
                  f"{share:8.0%} {1 - share:7.0%} {steps / c / raw:11.2f} {u / steps * 1e6:14.1f}")
            if args.side_by_side > 0:
                each = side_by_side(scheme, task_name, args.iterations, overrides, args.side_by_side)
                print(f"  {args.side_by_side} side by side: train/s each " + ", ".join(f"{x:.0f}" for x in each)
                      + "; vs alone " + ", ".join(f"{x / train:.2f}" for x in each))
    if args.profile:
        import cProfile
        import io
        import pstats
        for task_name in args.tasks:
            tcfg = build_config([("task", task_name), *overrides])
            prof = cProfile.Profile()
            prof.enable()
            raw_steps_per_s(regs, task_name, tcfg.n_envs, tcfg.rollout_length, 0, tcfg.env)
            prof.disable()
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(8)
            lines = [ln for ln in text.getvalue().splitlines() if ln.strip()]
            start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
            print(f"\nprofile of raw stepping, {task_name} ({tcfg.n_envs} copies x {tcfg.rollout_length} steps), "
                  "top 8 by own time:")
            print("\n".join(lines[start:start + 9]))
            profile_update(regs, args.schemes[0], task_name, overrides)


def profile_update(regs, scheme: str, task_name: str, overrides: list) -> None:
    """Print the torch operators that take one update's time (a collected batch, after a warm-up update)."""
    from torch.profiler import ProfilerActivity, profile

    cfg = build_config([("scheme", scheme), ("task", task_name), *overrides])
    trainer = Trainer(cfg, regs, run_dir=None, progress=False)
    batch, _ = trainer.collect()
    trainer.scheme.update(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.scheme.update(batch)
    trainer.close()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\nprofile of one {scheme} update, {task_name} ({cfg.batch_steps} samples): "
          f"{total / 1e3:.1f} ms, top 8 operators by own time:")
    for e in events[:8]:
        print(f"  {e.key:45s} {e.count:6d} calls {e.self_cpu_time_total / 1e3:8.1f} ms {e.self_cpu_time_total / total:6.1%}")


if __name__ == "__main__":
    main()
