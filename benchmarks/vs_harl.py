"""HAPPO steps/s of this harness against HARL (the official HAPPO code), in one run.

Needs the optional ``peer`` extra (``pip install -e .[peer]``: ``harl-aht``, HARL's code under the
import name ``harl``, with ``supersuit``, ``hydra-core``, ``tensorboardX``, ``setproctitle``).

Both sides run HAPPO with HARL's ``happo.yaml`` defaults (20 envs x 200 steps, 5 actor and 5 critic
epochs, one minibatch, MLP [128, 128], lr 5e-4, clip 0.2), the same number of environment steps,
the same torch thread count, evaluation off, on CPU. HARL steps its 20 environments in 20 worker
processes (its default ``n_rollout_threads: 20`` with ``ShareSubprocVecEnv``); the harness is measured
as shipped (copies stepped in its own process; MPE copies are mpe2's environments driven directly,
MaMuJoCo copies stepped in a batch with index-gather observations), and on MPE with ``env.workers=2``
(copies split over two worker processes) and ``env.fast=true`` (the batched NumPy implementation of
the same task); on MaMuJoCo with ``env.fast=false`` (gymnasium-robotics' own path, copy by copy),
``env.threads=2`` (the physics in two threads) and ``env.obs_mode=global`` (what HARL's wrapper gives
every agent: the full state and an agent id; the other rows use gymnasium-robotics' local
observations). The many-agent tasks (``--tasks mamujoco/HalfCheetah-6x1 mamujoco/Humanoid-17x1``)
are measured as shipped and with global observations. Printed
per row: steps/s of each, their ratio, and the mean training episode return of the last fifth of the
episodes of each (the same number of steps, different random streams: a sanity check that both learn,
not a significance test).

Adaptations, made at import time and printed, never by editing HARL's files:

* MPE: HARL imports ``pettingzoo.mpe.<scenario>``; PettingZoo moved MPE to the ``mpe2`` package, so
  ``pettingzoo.mpe`` is aliased to ``mpe2`` in ``sys.modules``, and HARL's accepted scenario names
  (``simple_spread_v2``, ...) to mpe2's current modules (``simple_spread_v3``, ...).
* MaMuJoCo: HARL's wrapper imports OpenAI ``gym`` and builds gym's ``HalfCheetah-v2``, which ran on
  ``mujoco_py`` and the MuJoCo 2.1 binaries; neither installs on a current machine. Unless a working
  ``gym`` + ``mujoco_py`` is importable, ``benchmarks/old_gym.py`` is put into ``sys.modules`` as ``gym``:
  its ``make("HalfCheetah-v2")`` builds gymnasium's ``HalfCheetah-v5`` (same robot and reward, on the
  ``mujoco`` bindings that gymnasium-robotics' MaMuJoCo also steps) behind gym's old API. HARL's own
  files and its observation code run unchanged. If HARL's path still fails, the row says why.

Run: ``python benchmarks/vs_harl.py [--steps 40000] [--threads 1] [--tasks mpe/simple_spread mamujoco/HalfCheetah-2x3]``
(also ``mamujoco/HalfCheetah-6x1``, ``mamujoco/Humanoid-17x1``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

ADAPTED: list[str] = []


def alias_mpe() -> None:
    """Let HARL's ``import pettingzoo.mpe.<scenario>`` find the scenarios in ``mpe2``."""
    import mpe2
    sys.modules["pettingzoo.mpe"] = mpe2
    import pettingzoo
    pettingzoo.mpe = mpe2
    # HARL accepts only the scenario names of its time (simple_spread_v2, ...); mpe2 ships the same
    # scenarios under their current versions.
    for old, new in (("simple_spread_v2", "simple_spread_v3"), ("simple_reference_v2", "simple_reference_v3"),
                     ("simple_speaker_listener_v3", "simple_speaker_listener_v4")):
        sys.modules[f"pettingzoo.mpe.{old}"] = importlib.import_module(f"mpe2.{new}")
    # HARL was written against PettingZoo's old reset() that returned the observations alone; today's
    # returns (observations, infos). Its env object gets a thin proxy that drops the infos.
    from harl.envs.pettingzoo_mpe import pettingzoo_mpe_env as harl_mpe

    class _ObsOnlyReset:
        def __init__(self, env):
            self._env = env

        def reset(self, *args, **kwargs):
            out = self._env.reset(*args, **kwargs)
            return out[0] if isinstance(out, tuple) else out

        def __getattr__(self, name):
            return getattr(self._env, name)

    original_init = harl_mpe.PettingZooMPEEnv.__init__

    def init(self, args):
        original_init(self, args)
        self.env = _ObsOnlyReset(self.env)

    harl_mpe.PettingZooMPEEnv.__init__ = init
    ADAPTED.append("PettingZooMPEEnv's env gets a proxy whose reset() returns observations only (the API "
                   "HARL was written for)")
    ADAPTED.append("pettingzoo.mpe -> mpe2, and HARL's scenario names simple_spread_v2 / simple_reference_v2 / "
                   "simple_speaker_listener_v3 -> mpe2's simple_spread_v3 / simple_reference_v3 / "
                   "simple_speaker_listener_v4 (module aliases in sys.modules)")


def harl_config(name: str) -> dict:
    import harl
    root = Path(harl.__file__).parent / "configs"
    path = root / "algos_cfgs" / f"{name}.yaml" if name in ("happo", "mappo") else root / "envs_cfgs" / f"{name}.yaml"
    return yaml.safe_load(path.read_text())


class EpisodeReturns:
    """Collects HARL's training episode returns by wrapping its vectorised env's ``step``."""

    def __init__(self, envs, n_agents: int) -> None:
        self.returns: list[float] = []
        self._acc = None
        original = envs.step

        def step(actions):
            out = original(actions)
            rewards, dones = out[2], out[3]
            team = np.asarray(rewards)[:, 0, 0]
            self._acc = team if self._acc is None else self._acc + team
            ended = np.asarray(dones).reshape(len(team), -1).all(axis=1)
            for k in np.flatnonzero(ended):
                self.returns.append(float(self._acc[k]))
                self._acc[k] = 0.0
            return out

        envs.step = step


def alias_gym() -> None:
    """Let HARL's MaMuJoCo wrapper ``import gym`` when only gymnasium is installed (see ``old_gym.py``)."""
    try:
        importlib.import_module("gym")
        importlib.import_module("mujoco_py")
        return  # a real gym with mujoco-py: HARL runs on it as written
    except ImportError:
        pass
    sys.path.insert(0, str(Path(__file__).parent))
    old_gym = importlib.import_module("old_gym")
    old_gym.install()
    ADAPTED.append(old_gym.ADAPTATION)


def run_harl(env: str, env_args: dict, steps: int, threads: int, seed: int) -> tuple[float, list[float]]:
    from harl.runners import RUNNER_REGISTRY

    if env == "mamujoco":
        # Build one copy here first: HARL's worker processes would only die with a broken pipe.
        from harl.envs.mamujoco.multiagent_mujoco.mujoco_multi import MujocoMulti
        MujocoMulti(env_args=copy.deepcopy(env_args)).close()
    algo_args = copy.deepcopy(harl_config("happo"))
    algo_args["train"]["num_env_steps"] = steps
    algo_args["train"]["log_interval"] = 10**9
    algo_args["eval"]["use_eval"] = False
    algo_args["seed"]["seed"] = seed
    algo_args["device"]["cuda"] = False
    algo_args["device"]["torch_threads"] = threads
    with tempfile.TemporaryDirectory() as tmp:
        algo_args["logger"]["log_dir"] = tmp
        args = {"algo": "happo", "env": env, "exp_name": "vs_harl"}
        with contextlib.redirect_stdout(io.StringIO()):
            runner = RUNNER_REGISTRY["happo"](args, algo_args, copy.deepcopy(env_args))
        recorder = EpisodeReturns(runner.envs, runner.num_agents)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            runner.run()
        elapsed = time.perf_counter() - t0
        runner.close()
    return steps / elapsed, recorder.returns


def run_ours(task: str, options: dict, steps: int, threads: int, seed: int) -> tuple[float, list[float]]:
    from harness.config import build_config
    from harness.plugins import load_plugins
    from harness.trainer import Trainer

    cfg = build_config({"task": task, "scheme": "happo", "steps": steps, "seed": seed, "threads": threads,
                        "eval_interval": 0, "absolute_factor": 0, "env": options})
    trainer = Trainer(cfg, load_plugins(), None, progress=False)
    returns: list[float] = []
    original = trainer.task.step

    def step(actions):
        res = original(actions)
        returns.extend(res.episode_returns)
        return res

    trainer.task.step = step
    rows = trainer.run_training()
    elapsed = sum(r["collect_s"] + r["update_s"] for r in rows if r.get("collect_s") is not None)
    return steps / elapsed, returns


def _mamujoco(scenario: str, conf: str) -> tuple[str, dict, dict]:
    return ("mamujoco", {"scenario": f"{scenario}-v2", "agent_conf": conf, "agent_obsk": 0, "episode_limit": 1000}, {})


TASKS = {
    "mpe/simple_spread": ("pettingzoo_mpe", {"scenario": "simple_spread_v2", "continuous_actions": False}, {}),
    "mamujoco/HalfCheetah-2x3": _mamujoco("HalfCheetah", "2x3"),
    "mamujoco/HalfCheetah-6x1": _mamujoco("HalfCheetah", "6x1"),
    "mamujoco/Humanoid-17x1": _mamujoco("Humanoid", "17x1"),
}
#: The tasks measured unless --tasks says otherwise (the many-agent ones take minutes per row).
DEFAULT_TASKS = ("mpe/simple_spread", "mamujoco/HalfCheetah-2x3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=40_000, help="env steps per side (HARL's batch is 4,000)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # PettingZoo's deprecation notices to HARL's old API, in every worker
    torch.set_num_threads(args.threads)
    try:
        importlib.import_module("harl")
    except ImportError:
        sys.exit("vs_harl: HARL is not installed; pip install -e .[peer]")
    alias_mpe()
    if any(t.startswith("mamujoco/") for t in args.tasks):
        alias_gym()
    print(f"HAPPO, HARL's defaults (20 envs x 200 steps, 5/5 epochs, [128, 128]), {args.steps} env steps per side, "
          f"{args.threads} torch thread(s), CPU")
    print(f"{'task':40s} {'harness/s':>10s} {'HARL/s':>8s} {'ratio':>6s}  {'last returns: harness':>22s} {'HARL':>8s}")
    for task in args.tasks:
        env, env_args, options = TASKS[task]
        try:
            harl_sps, harl_returns = run_harl(env, env_args, args.steps, args.threads, args.seed)
        except Exception as exc:  # HARL's path for this task cannot run here: say why
            ours_sps, _ = run_ours(task, options, args.steps, args.threads, args.seed)
            print(f"{task:40s} {ours_sps:10.0f} {'-':>8s} {'-':>6s}  HARL cannot run: {type(exc).__name__}: "
                  f"{(str(exc).splitlines() or [''])[0][:300]}")
            continue
        # The harness as shipped (copies stepped in its own process; MaMuJoCo's batched stepping), on
        # MPE with the copies split over two worker processes as HARL splits them over 20 and with its
        # batched NumPy MPE, on MaMuJoCo with the package's own path, the physics in two threads, and
        # HARL's observations.
        if task.startswith("mpe/"):
            variants = [("", options), (" workers=2", {**options, "workers": 2}), (" fast", {**options, "fast": True})]
        elif task in DEFAULT_TASKS:  # the package's own path, physics in two threads, HARL's observations
            variants = [("", options), (" fast=false", {**options, "fast": False}),
                        (" threads=2", {**options, "threads": 2}), (" obs_mode=global", {**options, "obs_mode": "global"})]
        else:  # the many-agent tasks: as shipped and with HARL's observations
            variants = [("", options), (" obs_mode=global", {**options, "obs_mode": "global"})]
        for label, opts in variants:
            ours_sps, ours_returns = run_ours(task, opts, args.steps, args.threads, args.seed)
            n = max(1, min(len(ours_returns), len(harl_returns)) // 5)
            print(f"{task + label:40s} {ours_sps:10.0f} {harl_sps:8.0f} {ours_sps / harl_sps:6.2f}  "
                  f"{np.mean(ours_returns[-n:]):22.1f} {np.mean(harl_returns[-n:]):8.1f}")
    print("adapted at import time: " + ("; ".join(ADAPTED) or "nothing"))


if __name__ == "__main__":
    main()
