"""Learning-curve parity: HARL's HAPPO (the official code) and this harness's, same task, observations,
hyperparameters, steps and seeds, both evaluated the harness's way; written as a results tree.

Needs the ``peer`` extra (``pip install -e .[peer]``), like ``vs_harl.py``, whose import-time
adaptations it reuses (mpe2 under HARL's ``pettingzoo.mpe`` names; gymnasium's v5 robots behind HARL's
old ``gym`` MaMuJoCo wrapper), without editing HARL's files.

For each task and seed:

* ``<out>/<task>/happo/seed_<k>/``: an ordinary harness run (``harness train`` with the config below).
* ``<out>/<task>/harl-happo/seed_<k>/``: HARL's ``HAPPO`` runner with the same hyperparameters
  (translated into its ``algo_args``), the same number of copies, steps per iteration and
  environment steps, HARL's seed ``k``. Every ``eval_interval`` iterations (and before the first)
  HARL's current actors are evaluated *the harness's way*: deterministic actions on the harness's
  evaluation task, the same fixed start states (episode ``j`` of copy ``c``) the harness run of
  that seed is evaluated on, ``eval_episodes`` episodes. HARL's observations are rebuilt from the
  harness task's: on MPE they are the same mpe2 vectors; on MaMuJoCo with ``obs_mode=global`` both
  are the full state plus a one-hot agent id, which HARL also standardises per vector (done here
  before its actor sees them), and HARL's agent ``i`` drives the actuators its position in the
  concatenated action vector gives it (mapped to the harness task's agents by actuator). ``metrics.csv`` has the harness's columns (``eval_return``,
  ``eval_returns``, ``train_return``: the mean return of HARL's training episodes that ended in the
  iteration), ``config.json`` the config, HARL's ``algo_args`` and ``env_args``, and the adaptations.

So ``harness plot <out>`` draws both with bootstrap CIs, scored on identical episodes. HAPPO's
hyperparameters: HARL's ``happo.yaml`` defaults on MPE (20 copies x 200 steps, 5 epochs, clip 0.2,
lr 5e-4, MLP [128, 128]), HARL's tuned HalfCheetah-2x3 values on MaMuJoCo. Runs are resumable per
side: a finished run (``DONE``) is skipped; an unfinished harness run resumes from its checkpoint,
an unfinished HARL run starts again (HARL's runner does not resume).

Run: ``python benchmarks/harl_parity.py [--out results/harl_parity] [--steps 300000] [--seeds 1 2 3]
[--tasks mpe/simple_spread mamujoco/HalfCheetah-2x3] [--side both|harness|harl]``, then
``harness plot results/harl_parity``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import vs_harl  # noqa: E402  (HARL's config files, the import-time adaptations, the episode recorder)

from harness.config import TrainConfig, build_config  # noqa: E402
from harness.evaluation import play_fixed_episodes  # noqa: E402
from harness.plugins import load_plugins  # noqa: E402
from harness.results import RunDir, git_commit, versions  # noqa: E402
from harness.task_check import TaskChecker  # noqa: E402
from harness.tasks import make_task, split_task  # noqa: E402
from harness.trainer import EVAL_STREAM, Trainer  # noqa: E402

# task -> (HARL env name, HARL env_args, harness task options, apply HARL's tuned values)
TASKS: dict[str, tuple[str, dict[str, Any], dict[str, Any], bool]] = {
    "mpe/simple_spread": ("pettingzoo_mpe", {"scenario": "simple_spread_v2", "continuous_actions": False}, {}, False),
    "mamujoco/HalfCheetah-2x3": ("mamujoco", {"scenario": "HalfCheetah-v2", "agent_conf": "2x3", "agent_obsk": 0,
                                              "episode_limit": 1000}, {"obs_mode": "global"}, True),
}


def run_config(task: str, seed: int, steps: int, eval_interval: int, eval_episodes: int) -> TrainConfig:
    """The config both sides train with."""
    _, _, options, tuned = TASKS[task]
    overrides: list[tuple[str, Any]] = [("task", task), ("scheme", "happo"), ("seed", seed), ("steps", steps),
                                        ("threads", 1), ("eval_interval", eval_interval),
                                        ("eval_episodes", eval_episodes), ("absolute_factor", 0)]
    if tuned:
        from harness_plugins.mamujoco import tuned_overrides
        overrides += list(tuned_overrides(task).items())
    cfg = build_config(overrides)
    cfg.env = {**cfg.env, **options}
    return cfg.validate()


def harl_algo_args(cfg: TrainConfig, seed: int, log_dir: str) -> dict[str, Any]:
    """HARL's happo.yaml with the harness config's values in HARL's names."""
    a = copy.deepcopy(vs_harl.harl_config("happo"))
    a["seed"].update(seed=seed, seed_specify=True)
    a["device"].update(cuda=False, torch_threads=cfg.threads)
    a["train"].update(n_rollout_threads=cfg.n_envs, episode_length=cfg.rollout_length, num_env_steps=cfg.steps,
                      eval_interval=cfg.eval_interval, log_interval=10**9, use_linear_lr_decay=cfg.lr_decay,
                      use_valuenorm=cfg.value_norm)
    a["eval"].update(use_eval=True, n_eval_rollout_threads=1, eval_episodes=1)  # replaced by the harness's evaluation
    a["model"].update(lr=cfg.lr, critic_lr=cfg.critic_lr, opti_eps=cfg.adam_eps, hidden_sizes=list(cfg.hidden_sizes),
                      activation_func=cfg.activation)
    a["algo"].update(ppo_epoch=cfg.ppo_epochs, critic_epoch=cfg.critic_epochs,
                     actor_num_mini_batch=cfg.actor_minibatches, critic_num_mini_batch=cfg.critic_minibatches,
                     clip_param=cfg.clip, entropy_coef=cfg.entropy_coef, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                     huber_delta=cfg.huber_delta, max_grad_norm=cfg.max_grad_norm,
                     use_clipped_value_loss=cfg.clipped_value_loss, fixed_order=cfg.fixed_order)
    a["logger"]["log_dir"] = log_dir
    return a


def action_order(harl_env: Any, task: str) -> list[list[int]]:
    """Per agent, the column of HARL's action that drives each of the harness task's joints, in the
    harness's order. HARL's MaMuJoCo env concatenates the agents' actions in agent order and hands
    them to the robot as its actuator vector (its partitions' joint labels play no part in acting),
    so HARL's agent ``i`` drives actuators ``offset_i .. offset_i + n_i``; the harness task's agent
    ``i`` drives the actuators its partition names (gymnasium-robotics' ``act_ids``)."""
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    name, conf = split_task(task)[1].rsplit("-", 1)
    ours = [[int(node.act_ids) for node in part] for part in get_parts_and_edges(name, conf)[0]]
    sizes = [len(part) for part in harl_env.agent_partitions]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    order = []
    for i, actuators in enumerate(ours):
        columns = [a - offsets[i] for a in actuators]
        if len(actuators) != sizes[i] or not all(0 <= c < sizes[i] for c in columns):
            raise RuntimeError(f"{task}: the harness's agent {i} drives actuators {actuators}, HARL's agent {i} "
                               f"actuators {offsets[i]}..{offsets[i] + sizes[i] - 1}")
        order.append(columns)
    return order


def harl_env_returns(runner: Any, env_args: dict[str, Any], rnn_shape: tuple[int, int], episodes: int,
                     seed: int) -> dict[str, Any]:
    """Deterministic episodes of HARL's actors on one HARL MaMuJoCo env, observed and acting exactly
    as HARL does (other start states than the harness's: compare means, not episodes)."""
    from harl.envs.mamujoco.multiagent_mujoco.mujoco_multi import MujocoMulti

    env = MujocoMulti(env_args=copy.deepcopy(env_args))
    env.seed(seed)
    returns = []
    for _ in range(episodes):
        obs, _, _ = env.reset()
        total, done = 0.0, False
        while not done:
            acts = []
            for i, o in enumerate(obs):
                with torch.no_grad():
                    a, _ = runner.actor[i].act(np.asarray(o, np.float32)[None], np.zeros((1, *rnn_shape), np.float32),
                                               np.ones((1, 1), np.float32), None, deterministic=True)
                acts.append((a.cpu().numpy() if torch.is_tensor(a) else np.asarray(a))[0])
            obs, _, rewards, dones, _, _ = env.step(acts)
            total += float(np.asarray(rewards).ravel()[0])
            done = bool(np.all(dones))
        returns.append(total)
    env.close()
    return {"episodes": episodes, "returns": returns, "mean": float(np.mean(returns))}


def run_harness(cfg: TrainConfig, run_dir: Path) -> None:
    regs = load_plugins()
    Trainer(cfg, regs, run_dir, progress=False).run_training()


def run_harl(cfg: TrainConfig, run_dir: Path) -> None:
    """HARL's HAPPO on ``cfg``'s task, its actors evaluated the harness's way every eval_interval iterations."""
    from harl.runners import RUNNER_REGISTRY

    env, env_args, _, _ = TASKS[cfg.task]
    regs = load_plugins()
    eval_task = make_task(regs, cfg.task, cfg.eval_envs, cfg.seed, cfg.env, stream=EVAL_STREAM)
    checker = TaskChecker(regs.tasks.get(split_task(cfg.task)[0]).plugin, cfg.task)
    kinds = [s["kind"] for s in eval_task.spec()["action_spaces"]]
    standardise = cfg.task.startswith("mamujoco/")
    if run_dir.exists():  # an unfinished HARL run starts again
        shutil.rmtree(run_dir)
    run = RunDir(run_dir)
    run.prepare()
    torch.set_num_threads(cfg.threads)
    with tempfile.TemporaryDirectory() as tmp:
        algo_args = harl_algo_args(cfg, cfg.seed, tmp)
        order: list[list[int]] | None = None
        if env == "mamujoco":  # build one copy here first: HARL's worker processes would only die of a broken pipe
            from harl.envs.mamujoco.multiagent_mujoco.mujoco_multi import MujocoMulti
            probe = MujocoMulti(env_args=copy.deepcopy(env_args))
            order = action_order(probe, cfg.task)
            probe.close()
        with contextlib.redirect_stdout(io.StringIO()):
            runner = RUNNER_REGISTRY["happo"]({"algo": "happo", "env": env, "exp_name": "parity"}, algo_args,
                                              copy.deepcopy(env_args))
        recorder = vs_harl.EpisodeReturns(runner.envs, runner.num_agents)
        seen = {"returns": 0}
        rnn_shape = (algo_args["model"]["recurrent_n"], algo_args["model"]["hidden_sizes"][-1])

        def act(obs: list[np.ndarray], starts: np.ndarray | None = None) -> list[np.ndarray]:  # feed-forward: starts unused
            out = []
            for i, o in enumerate(obs):
                o = np.asarray(o, dtype=np.float32)
                if standardise:  # HARL's MaMuJoCo observation: (state + id - mean) / std, per vector
                    o = (o - o.mean(axis=1, keepdims=True)) / o.std(axis=1, keepdims=True)
                n = o.shape[0]
                with torch.no_grad():
                    a, _ = runner.actor[i].act(o, np.zeros((n, *rnn_shape), np.float32), np.ones((n, 1), np.float32),
                                               None, deterministic=True)
                a = a.cpu().numpy() if torch.is_tensor(a) else np.asarray(a)
                if order is not None:  # HARL's actuator columns -> the harness task's agent's joints
                    a = a[:, order[i]]
                out.append(a.reshape(n).astype(np.int64) if kinds[i] == "discrete" else a.astype(np.float32))
            return out

        steps_taken = {"n": 0}
        step = runner.envs.step

        def counting_step(actions):
            steps_taken["n"] += cfg.n_envs
            return step(actions)

        def evaluate() -> None:
            iteration = steps_taken["n"] // cfg.batch_steps
            returns = play_fixed_episodes(eval_task, act, cfg.eval_episodes, checker)
            new = recorder.returns[seen["returns"]:]
            seen["returns"] = len(recorder.returns)
            run.append_row({"iteration": iteration, "env_steps": iteration * cfg.batch_steps,
                            "train_return": float(np.mean(new)) if new else None,
                            "eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns)),
                            "eval_returns": " ".join(f"{r:.6g}" for r in returns),
                            "wall_s": time.perf_counter() - t0})

        runner.envs.step = counting_step
        runner.eval = evaluate
        t0 = time.perf_counter()
        run.write_config({
            "config": {**cfg.to_dict(), "scheme": "harl-happo"}, "seed": cfg.seed, "versions": versions(),
            "harl_version": importlib.metadata.version("harl-aht"), "git_commit": git_commit(),
            "harl": {"algo_args": algo_args, "env_args": env_args, "adapted": vs_harl.ADAPTED},
            "evaluation": "HARL's actors, deterministic, on the harness's evaluation task and start states",
            "code_digest": f"harl-aht {importlib.metadata.version('harl-aht')}",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
        runner.prep_rollout()
        evaluate()  # before training, as the harness evaluates at iteration 0
        with contextlib.redirect_stdout(io.StringIO()):
            runner.run()
        if steps_taken["n"] // cfg.batch_steps % cfg.eval_interval:  # the last iteration, as the harness does
            runner.prep_rollout()
            evaluate()
        if env == "mamujoco":  # a check of the translation: the final actors on HARL's own env, as HARL acts
            record = run.read_config()
            record["harl_env_check"] = harl_env_returns(runner, env_args, rnn_shape, episodes=2, seed=cfg.seed)
            run.write_config(record)
        runner.close()
    eval_task.close()
    run.mark_done()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/harl_parity")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--eval-interval", type=int, default=5, help="iterations between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--side", choices=["both", "harness", "harl"], default="both")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # PettingZoo's deprecation notices to HARL's old API, in every worker
    try:
        importlib.import_module("harl")
    except ImportError:
        sys.exit("harl_parity: HARL is not installed; pip install -e .[peer]")
    vs_harl.alias_mpe()
    if any(t.startswith("mamujoco/") for t in args.tasks):
        vs_harl.alias_gym()
    out = Path(args.out)
    for task in args.tasks:
        for seed in args.seeds:
            cfg = run_config(task, seed, args.steps, args.eval_interval, args.eval_episodes)
            sides = ["harness", "harl"] if args.side == "both" else [args.side]
            for side in sides:
                run_dir = out / task / ("happo" if side == "harness" else "harl-happo") / f"seed_{seed}"
                if RunDir(run_dir).done:
                    print(f"{task} seed {seed} {side}: finished, skipped", flush=True)
                    continue
                t0 = time.perf_counter()
                (run_harness if side == "harness" else run_harl)(cfg, run_dir)
                rows = [r for r in RunDir(run_dir).rows() if r.get("eval_return")]
                print(f"{task} seed {seed} {side}: {time.perf_counter() - t0:.0f} s, final eval return "
                      f"{float(rows[-1]['eval_return']):.2f}", flush=True)
    print(f"adapted at import time: {'; '.join(vs_harl.ADAPTED) or 'nothing'}\nplot: harness plot {out}")


if __name__ == "__main__":
    main()
