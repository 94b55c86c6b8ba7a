"""Raw environment steps/s of the batched NumPy MPE tasks (``env.fast=true``) against mpe2, in one run.

For each MPE task: steps/s of ``n`` copies stepped with uniformly random actions (drawn up front) by the
mpe2-backed task and by the batched one, on one core, and their ratio.
Run: ``python benchmarks/env_speed.py [--copies 64] [--steps 200]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness.plugins import load_plugins
from harness.tasks import make_task

TASKS = ["mpe/simple_spread", "mpe/simple_speaker_listener", "mpe/simple_reference"]


def steps_per_s(regs, task_name: str, copies: int, steps: int, options: dict) -> float:
    task = make_task(regs, task_name, copies, 0, options)
    rng = np.random.default_rng(0)
    actions = [[rng.integers(0, s.n, size=copies) for s in task.action_spaces] for _ in range(steps)]
    t0 = time.perf_counter()
    for a in actions:
        task.step(a)
    elapsed = time.perf_counter() - t0
    task.close()
    return copies * steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    regs = load_plugins()
    print(f"{args.copies} copies x {args.steps} steps, random discrete actions, one process")
    print(f"{'task':30s} {'mpe2/s':>9s} {'fast/s':>10s} {'ratio':>7s}")
    for name in TASKS:
        ref = steps_per_s(regs, name, args.copies, args.steps, {})
        fast = steps_per_s(regs, name, args.copies, args.steps, {"fast": True})
        print(f"{name:30s} {ref:9.0f} {fast:10.0f} {fast / ref:7.1f}")


if __name__ == "__main__":
    main()
