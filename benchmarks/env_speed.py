"""The fast environment paths (``env.fast=true``) against the reference packages, in one run.

MPE: steps/s of ``n`` copies stepped with uniformly random actions (drawn up front), on one core,
by mpe2 through its PettingZoo parallel API (``env.parallel_api=true``), by mpe2's environments
driven directly (the default) and by the batched NumPy implementation (``env.fast=true``), and the
last two as ratios to the first.
MaMuJoCo: per step, the time gymnasium-robotics takes to build every agent's observation plus the
global state (``obsk.build_obs`` per agent, ``state()``), against the index-gather path, on the same
physics states; and whole-step steps/s of the package stepped copy by copy, of the batched fast
path (``env.fast=true``) and of the batched path with the physics in two threads (``env.threads=2``).
Run: ``python benchmarks/env_speed.py [--copies 64] [--steps 200]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness.plugins import load_plugins
from throughput import raw_steps_per_s  # benchmarks/ is on sys.path when run as a script

TASKS = ["mpe/simple_spread", "mpe/simple_speaker_listener", "mpe/simple_reference"]
MAMUJOCO = ["mamujoco/HalfCheetah-2x3", "mamujoco/Ant-4x2"]


def observation_seconds(scenario: str, steps: int) -> tuple[float, float]:
    """Seconds per step building observations and state: the package's way, then the gathers."""
    from harness_plugins.mamujoco import GatherObsEnv, _make_env, split_scenario

    name, conf = split_scenario(scenario)
    env = _make_env(name, conf, 1, 1000, "local")
    fast = GatherObsEnv(_make_env(name, conf, 1, 1000, "local"))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    ref_s = fast_s = 0.0
    for _ in range(steps):
        env.step({a: rng.uniform(-1, 1, env.action_space(a).shape) for a in env.possible_agents})
        fast._unwrapped.data.qpos[:] = env.single_agent_env.unwrapped.data.qpos  # same physics state
        fast._unwrapped.data.qvel[:] = env.single_agent_env.unwrapped.data.qvel
        import mujoco
        mujoco.mj_forward(fast._unwrapped.model, fast._unwrapped.data)
        t0 = time.perf_counter()
        env._get_obs()
        env.state()
        t1 = time.perf_counter()
        fast._gather()
        fast.state()
        t2 = time.perf_counter()
        ref_s += t1 - t0
        fast_s += t2 - t1
    return ref_s / steps, fast_s / steps


def steps_per_s(regs, task_name: str, copies: int, steps: int, options: dict) -> float:
    return raw_steps_per_s(regs, task_name, copies, steps, 0, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    regs = load_plugins()
    print(f"{args.copies} copies x {args.steps} steps, random discrete actions, one process")
    print(f"{'task':30s} {'mpe2/s':>9s} {'direct/s':>9s} {'fast/s':>10s} {'direct x':>8s} {'fast x':>7s}")
    for name in TASKS:
        ref = steps_per_s(regs, name, args.copies, args.steps, {"parallel_api": True})
        direct = steps_per_s(regs, name, args.copies, args.steps, {})
        fast = steps_per_s(regs, name, args.copies, args.steps, {"fast": True})
        print(f"{name:30s} {ref:9.0f} {direct:9.0f} {fast:10.0f} {direct / ref:8.2f} {fast / ref:7.1f}")
    print(f"\nMaMuJoCo observations + global state per step ({args.steps} states), one copy")
    print(f"{'task':30s} {'package us':>10s} {'gather us':>10s} {'ratio':>7s}")
    for name in MAMUJOCO:
        ref, fast = observation_seconds(name.split("/", 1)[1], args.steps)
        print(f"{name:30s} {ref * 1e6:10.1f} {fast * 1e6:10.1f} {ref / fast:7.1f}")
    copies = min(args.copies, 20)
    print(f"\nMaMuJoCo whole steps, {copies} copies x {args.steps} steps, random actions")
    print(f"{'task':30s} {'package/s':>10s} {'fast/s':>10s} {'2 threads/s':>11s} {'fast x':>7s} {'threads x':>9s}")
    for name in MAMUJOCO:
        ref = steps_per_s(regs, name, copies, args.steps, {})
        fast = steps_per_s(regs, name, copies, args.steps, {"fast": True})
        threads = steps_per_s(regs, name, copies, args.steps, {"fast": True, "threads": 2})
        print(f"{name:30s} {ref:10.0f} {fast:10.0f} {threads:11.0f} {fast / ref:7.2f} {threads / ref:9.2f}")


if __name__ == "__main__":
    main()
