"""The training loop: collect a rollout, compute advantages, let the scheme update, log, checkpoint.

``Trainer.run()`` is the template: ``collect()`` then ``scheme.update()`` per iteration, with
periodic evaluation of the deterministic policy and atomic checkpoints so a stopped run resumes.
"""

from __future__ import annotations

import copy
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from harness import stopping
from harness.advantage import gae
from harness.checkpoint import capture_rng, restore_rng
from harness.config import TrainConfig
from harness.envs import VecTask
from harness.errors import HarnessError, PluginError, describe
from harness.evaluation import play_fixed_episodes
from harness.continuation import init_file, load_init
from harness.devices import move_batch, move_scheme, resolve_device
from harness.tracking import RunTrackers, check_loggers
from harness.memory import check_memory
from harness.plugins import Registries
from harness.ppo import Batch
from harness.results import RunDir
from harness.run_lock import RunLock
from harness.run_setup import open_run_dir
from harness.scheme_config import resolve_scheme_config
from harness.task_check import TaskChecker
from harness.tasks import make_task, split_task

TRAIN_STREAM, EVAL_STREAM = 0, 1


def _flat(x: np.ndarray) -> torch.Tensor:
    """``[T, E, ...]`` -> ``[T * E, ...]`` (time-major), sharing memory."""
    return torch.from_numpy(x).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains one scheme on one task with one seed, writing to ``run_dir`` when given."""

    def __init__(self, cfg: TrainConfig, regs: Registries, run_dir: str | Path | None = None,
                 progress: bool = True, record: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.record = dict(record or {})  # extra provenance for config.json, e.g. a suite's tuning
        self.regs = regs
        self.progress = progress
        self.run = RunDir(run_dir) if run_dir is not None else None
        scheme_entry = regs.schemes.get(cfg.scheme)
        # The scheme's options filled in and the keys it fixes set: the config says what runs.
        self.scheme_fixed = resolve_scheme_config(cfg, regs)
        network_entry = regs.networks.get(cfg.network)
        check_loggers(regs, cfg.loggers)
        self.device = resolve_device(cfg.device)
        if cfg.init_from:
            init_file(cfg.init_from)  # a missing file is an error before the run directory is made
        if self.run is not None:
            self.run.prepare()
        torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        # The memory a config needs depends on the task's sizes: learn them from one copy before
        # building many (a huge n_envs is refused before its copies exhaust the machine).
        many = cfg.n_envs > 64
        sizes = make_task(regs, cfg.task, 1, cfg.seed, cfg.env, stream=TRAIN_STREAM) if many else None
        if sizes is not None:
            try:
                check_memory(cfg, sizes)
            finally:
                sizes.close()
        self.task: VecTask = make_task(regs, cfg.task, cfg.n_envs, cfg.seed, cfg.env, stream=TRAIN_STREAM)
        self.checker = TaskChecker(regs.tasks.get(split_task(cfg.task)[0]).plugin, cfg.task)
        if not many:
            try:
                check_memory(cfg, self.task)
            except HarnessError:
                self.task.close()
                raise
        self.eval_task: VecTask | None = None
        try:
            builder = network_entry.factory()
        except Exception as exc:
            self.task.close()
            raise PluginError(f"plugin {network_entry.plugin!r}: network builder {cfg.network!r} raised "
                              f"{describe(exc)}") from exc
        self.builder = builder
        self.scheme_plugin = scheme_entry.plugin
        self._policy: Any = None
        self._cpu_copies: list[Any] | None = None
        # Sampling during rollouts uses its own generator (saved in checkpoints).
        self.act_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7]))
        try:
            self.scheme = scheme_entry.factory(self.task, builder, cfg)
        except HarnessError:
            self.task.close()
            raise
        except Exception as exc:  # the scheme or the network it built broke: name the plugins
            self.task.close()
            raise PluginError(f"plugin {scheme_entry.plugin!r}: scheme {cfg.scheme!r} (with network "
                              f"{cfg.network!r} of plugin {network_entry.plugin!r}) raised while building: "
                              f"{describe(exc)}") from exc
        if self.device.type != "cpu":
            move_scheme(self.scheme, self.device)
        needed = ("actors", "update", "state_dict", "load_state_dict", "set_lr_fraction")
        if getattr(self.scheme, "state_critic", True):
            needed += ("values",)
        for attr in needed:
            if not hasattr(self.scheme, attr):
                self.task.close()
                raise PluginError(f"plugin {scheme_entry.plugin!r}: scheme {cfg.scheme!r} lacks {attr!r}")
        self.iteration = 0
        self.env_steps = 0
        # The best evaluation so far: (eval_return, iteration, env_steps), and the scheme's state then
        # (kept in checkpoints so a resumed run has it; exported as best.pt).
        self.best: tuple[float, int, int] | None = None
        self._best_state: dict[str, Any] | None = None
        self.absolute: dict[str, Any] | None = None
        self._prepared: bool | None = None
        self._trackers: RunTrackers | None = None
        if self.run is not None:
            n_params = sum(p.numel() for m in [*self.scheme.actors, getattr(self.scheme, "critic", None)]
                           if m is not None for p in m.parameters())
            # checkpoint + previous + best, each params and two Adam moments; metrics rows; headroom
            self.run.check_space(9 * 4 * n_params + 600 * cfg.iterations + (1 << 20))
        self._bounds = [None if s.kind != "box" else (np.asarray(s.low, np.float32), np.asarray(s.high, np.float32))
                        for s in self.task.action_spaces]
        self.obs, self.state = self.task.reset()
        self.checker.check_reset(self.task, self.obs, self.state)

    # -- data collection ---------------------------------------------------------------------
    def collect(self) -> tuple[Batch, list[float]]:
        """Run the current policies for ``rollout_length`` steps in every copy."""
        cfg, task = self.cfg, self.task
        T, E, N = cfg.rollout_length, cfg.n_envs, len(task.agents)
        obs_buf = [np.empty((T, E, d), np.float32) for d in task.obs_dims]
        next_obs_buf = [np.empty((T, E, d), np.float32) for d in task.obs_dims]
        act_buf = [np.empty((T, E) if s.kind == "discrete" else (T, E, s.n),
                            np.int64 if s.kind == "discrete" else np.float32) for s in task.action_spaces]
        logp_buf = [np.empty((T, E), np.float32) for _ in range(N)]
        states = np.empty((T + 1, E, task.state_dim), np.float32)
        final_states = np.empty((T, E, task.state_dim), np.float32)
        rewards = np.empty((T, E), np.float32)
        terminated = np.empty((T, E), bool)
        truncated = np.empty((T, E), bool)
        returns: list[float] = []
        obs, state = self.obs, self.state
        check = self.checker.check_step
        with torch.no_grad():
            for t in range(T):
                actions, logps = self.act(obs)
                for i in range(N):
                    obs_buf[i][t] = obs[i]
                    act_buf[i][t] = actions[i]
                    logp_buf[i][t] = logps[i]
                states[t] = state
                res = task.step(self.to_task(actions))
                check(task, res)
                rewards[t] = res.reward
                terminated[t] = res.terminated
                truncated[t] = res.truncated
                final_states[t] = res.final_state
                returns.extend(res.episode_returns)
                obs, state = res.obs, res.state
                for i in range(N):
                    next_obs_buf[i][t] = obs[i]
                for c, final in res.final_obs.items():
                    for i in range(N):
                        next_obs_buf[i][t, c] = final[i]
        states[T] = state
        self.checker.check_rollout(obs_buf + next_obs_buf, [states, final_states], rewards)
        self.obs, self.state = obs, state
        batch = self._batch(obs_buf, act_buf, logp_buf, states, final_states, rewards, terminated, truncated)
        flat = _flat
        batch = batch._replace(next_obs=[flat(o) for o in next_obs_buf], rewards=flat(rewards),
                               terminated=flat(terminated), truncated=flat(truncated), shape=(T, E))
        return batch, returns

    def act(self, obs: list[np.ndarray], deterministic: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Actions and log-probabilities of every agent, through the network plugin's fast acting
        policy when it offers one (rebuilt after every update), else through the actors. A shared
        actor gets each agent's identity appended to its observations (the scheme's ``actor_inputs``)."""
        inputs = getattr(self.scheme, "actor_inputs", None)
        if inputs is not None:
            obs = inputs(obs)
        if self._policy is None:
            make = getattr(self.builder, "acting_policy", None)
            self._policy = (make(self.scheme.actors) if make is not None else None) or False
        if self._policy:
            return self._policy(obs, self.act_rng, deterministic)
        out = [actor.act(torch.from_numpy(o), deterministic=deterministic)
               for actor, o in zip(self._cpu_actors(), obs)]
        return [a.numpy() for a, _ in out], [lp.numpy() for _, lp in out]

    def to_task(self, actions: list[np.ndarray]) -> list[np.ndarray]:
        """The actions a task receives: continuous ones clipped to the agent's box ``[low, high]``
        (the policy's own, unclipped sample is what the batch and its log-probabilities keep). One
        rule for every task, so no task plugin needs to clip."""
        bounds = self._bounds
        return [a if b is None else np.clip(a, b[0], b[1]) for a, b in zip(actions, bounds)]

    def _cpu_actors(self) -> list[Any]:
        """The actors, or CPU copies of them when updates run on another device (refreshed after
        every update, when the acting policy is rebuilt)."""
        if self.device.type == "cpu":
            return self.scheme.actors
        if self._cpu_copies is None:
            self._cpu_copies = [copy.deepcopy(a).cpu() for a in self.scheme.actors]
        return self._cpu_copies

    def weights_changed(self) -> None:
        """The actors' weights changed (an update, a restore): rebuild what acting uses."""
        self._policy = None
        self._cpu_copies = None

    def _batch(self, obs_buf, act_buf, logp_buf, states, final_states, rewards, terminated, truncated) -> Batch:
        cfg = self.cfg
        T, E = rewards.shape
        flat = _flat
        if not getattr(self.scheme, "state_critic", True):
            return Batch(obs=[flat(o) for o in obs_buf], actions=[flat(a) for a in act_buf],
                         old_logp=[flat(lp) for lp in logp_buf],
                         states=torch.from_numpy(states[:T]).reshape(T * E, -1),
                         advantages=None, returns=None, old_values=None)
        term, trunc = torch.from_numpy(terminated), torch.from_numpy(truncated)
        # One critic pass over every state of the rollout, plus the final states of truncated episodes.
        st = torch.from_numpy(states).reshape((T + 1) * E, -1)
        cut = trunc.reshape(-1).nonzero().squeeze(-1)
        extra = torch.from_numpy(final_states).reshape(T * E, -1)[cut]
        raw, vals = self.scheme.values(torch.cat([st, extra]).to(self.device))
        raw, vals = raw.cpu(), vals.cpu()
        values = vals[: (T + 1) * E].reshape(T + 1, E)
        next_values = values[1:].clone().reshape(-1)
        next_values[cut] = vals[(T + 1) * E:]
        adv, ret = gae(torch.from_numpy(rewards), values[:T], next_values.reshape(T, E), term, trunc,
                       cfg.gamma, cfg.gae_lambda)
        adv = adv.reshape(-1)
        adv = (adv - adv.mean()) / (adv.std() + 1e-5) if adv.numel() > 1 else adv - adv.mean()
        return Batch(
            obs=[flat(o) for o in obs_buf],
            actions=[flat(a) for a in act_buf],
            old_logp=[flat(lp) for lp in logp_buf],
            states=st[: T * E],
            advantages=adv,
            returns=ret.reshape(-1),
            old_values=raw[: T * E],
        )

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, episodes: int | None = None, stoppable: bool = False) -> list[float]:
        """Team returns of ``episodes`` (default ``eval_episodes``) episodes of the deterministic policy.

        Every evaluation plays the same start states, one episode each (episode k of copy c; see
        :mod:`harness.evaluation`), so curves compare policies and short episodes are not over-counted.
        """
        cfg = self.cfg
        if self.eval_task is None:
            self.eval_task = make_task(self.regs, cfg.task, cfg.eval_envs, cfg.seed, cfg.env, stream=EVAL_STREAM)
        with torch.no_grad():
            def act(obs: list[np.ndarray]) -> list[np.ndarray]:
                if stoppable:  # a standalone evaluation (harness eval) stops at once when asked
                    stopping.check()
                return self.to_task(self.act(obs, deterministic=True)[0])
            return play_fixed_episodes(self.eval_task, act, episodes or cfg.eval_episodes, self.checker)

    def _evaluation(self) -> dict[str, Any]:
        """One evaluation as metrics columns: mean, std and the per-episode returns."""
        returns = self.evaluate()
        self._track_best(float(np.mean(returns)))
        return {"eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns)),
                "eval_returns": " ".join(f"{r:.6g}" for r in returns)}

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "config_digest": self.cfg.digest(),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "task_spec": self.task.spec(),
            "scheme": self.scheme.state_dict(),
            "rng": capture_rng(),
            "act_rng": self.act_rng.bit_generator.state,
            "episodes": self.task.episode_counters(),
            "best": self.best,
            "best_state": self._best_state,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.iteration = ckpt["iteration"]
        self.env_steps = ckpt["env_steps"]
        self.scheme.load_state_dict(ckpt["scheme"])
        restore_rng(ckpt["rng"])
        self.act_rng.bit_generator.state = ckpt["act_rng"]
        self.best = ckpt.get("best", self.best)
        self._best_state = ckpt.get("best_state", self._best_state)
        self.weights_changed()
        # Episodes restart at the saved episode numbers; a run checkpointed at an episode boundary
        # (MPE with rollout_length a multiple of the episode length) continues exactly.
        self.obs, self.state = self.task.reset(ckpt["episodes"])

    def prepare_run(self) -> bool:
        """Write config.json, or resume from the last checkpoint (dropping the metrics rows after it);
        return False if the run is already finished. Done once; ``iterate`` calls it if nobody has."""
        if self._prepared is None:
            if self.run is None and self.cfg.init_from:
                load_init(self.cfg.init_from, self.scheme)
                self.weights_changed()
            if self.run is not None:
                self._lock = RunLock(self.run.path)
                self._lock.acquire()  # before anything is read or written; released by close()
            self._prepared = open_run_dir(self) if self.run is not None else True
        return self._prepared

    def log(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr)

    # -- the loop ----------------------------------------------------------------------------
    def run_training(self) -> list[dict[str, Any]]:
        """Train to the step budget; return the metrics rows written by this call."""
        return list(self.iterate())

    def iterate(self) -> Iterator[dict[str, Any]]:
        """Train to the step budget, yielding each metrics row as it is written (so several runs
        can advance in lockstep, as a sweep trial's seeds do). Closes the tasks when it ends."""
        cfg = self.cfg
        bar = None
        try:
            if not self.prepare_run():
                self.log(f"{self.run.path} is already finished; nothing to do")
                return
            stopping.check()  # a stop requested before this run started: leave it for the re-run
            self._start_trackers()
            if self.progress:
                from tqdm import tqdm
                bar = tqdm(total=cfg.iterations * cfg.batch_steps, initial=self.env_steps, unit="step",
                           desc=f"{cfg.scheme} {cfg.task} s{cfg.seed}", dynamic_ncols=True, file=sys.stderr)
            if self.iteration == 0:
                yield self._emit({"iteration": 0, "env_steps": 0, **self._evaluation()})
            recent = float("nan")
            t_start = time.perf_counter()
            while self.iteration < cfg.iterations:
                if stopping.requested() is not None:
                    self._stop_at_checkpoint()
                frac = 1.0 - self.iteration / cfg.iterations if cfg.lr_decay else 1.0
                self.scheme.set_lr_fraction(frac)
                t0 = time.perf_counter()
                batch, returns = self.collect()
                t1 = time.perf_counter()
                metrics = self._update(batch)
                self.weights_changed()
                t2 = time.perf_counter()
                self._check_finite(metrics)
                self.iteration += 1
                self.env_steps += cfg.batch_steps
                if returns:
                    recent = float(np.mean(returns))
                row = {"iteration": self.iteration, "env_steps": self.env_steps,
                       "train_return": recent if returns else None, "lr_fraction": frac,
                       "steps_per_s": cfg.batch_steps / (t2 - t0), "collect_s": t1 - t0, "update_s": t2 - t1,
                       "wall_s": time.perf_counter() - t_start, **metrics}
                last = self.iteration == cfg.iterations
                if last or (cfg.eval_interval and self.iteration % cfg.eval_interval == 0):
                    row.update(self._evaluation())
                self._emit(row)
                if self.run is not None and (last or self.iteration % cfg.checkpoint_interval == 0):
                    self.run.save_checkpoint(self.checkpoint_state())
                    self._saved_at = self.iteration
                if bar is not None:
                    bar.update(cfg.batch_steps)
                    bar.set_postfix(ret=f"{recent:.1f}", sps=f"{row['steps_per_s']:.0f}", refresh=False)
                yield row
            if cfg.absolute_factor > 0:
                self._absolute_metric()
            if self.run is not None:
                self.run.mark_done()
            self._end_trackers(finished=True)
        finally:
            if bar is not None:
                bar.close()
            self.close()

    def _stop_at_checkpoint(self) -> None:
        """A stop was requested (a signal): checkpoint the iteration reached, then raise Interrupted."""
        if self.run is not None and self.iteration > 0 and getattr(self, "_saved_at", None) != self.iteration:
            self.run.save_checkpoint(self.checkpoint_state())
            self._saved_at = self.iteration
        self.log(f"stopped at iteration {self.iteration} ({self.env_steps} steps); checkpoint kept")
        stopping.check()

    def _track_best(self, eval_return: float) -> None:
        """Keep the policy with the best evaluation return so far (best.pt in a run directory)."""
        if self.best is not None and not eval_return > self.best[0]:
            return
        self.best = (float(eval_return), self.iteration, self.env_steps)
        self._best_state = {"best": self.best, "scheme": copy.deepcopy(self.scheme.state_dict())}
        if self.run is not None:
            self.run.save_best(self._best_state)

    def _absolute_metric(self) -> None:
        """The marl-eval protocol's absolute metric: the best policy (by evaluation return) re-evaluated
        on ``absolute_factor`` times ``eval_episodes`` episodes; written to absolute.json."""
        cfg = self.cfg
        best = self._best_state
        if best is None:
            return
        current = self.scheme.state_dict()
        self.scheme.load_state_dict(best["scheme"])
        self.weights_changed()
        episodes = cfg.eval_episodes * cfg.absolute_factor
        returns = self.evaluate(episodes)
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.scheme.load_state_dict(current)
        self.weights_changed()
        self.absolute = {"absolute_return": mean, "absolute_return_std": std, "episodes": episodes,
                         "returns": [float(f"{r:.6g}") for r in returns],
                         "best_eval_return": best["best"][0], "best_iteration": best["best"][1],
                         "best_env_steps": best["best"][2]}
        if self.run is not None:
            self.run.write_absolute(self.absolute)
        self.log(f"absolute metric: best policy (iteration {best['best'][1]}) scores {mean:.2f} "
                  f"over {episodes} episodes")

    def _update(self, batch: Batch) -> dict[str, Any]:
        """The scheme's update; a plugin that raises or returns something else than a dict is named."""
        try:
            metrics = self.scheme.update(batch if self.device.type == "cpu" else move_batch(batch, self.device))
        except HarnessError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {self.scheme_plugin!r}: scheme {self.cfg.scheme!r} raised in update(): "
                              f"{describe(exc)}") from exc
        if not isinstance(metrics, dict):
            raise PluginError(f"plugin {self.scheme_plugin!r}: scheme {self.cfg.scheme!r} update() returned "
                              f"{type(metrics).__name__}, expected a dict of metrics")
        return metrics

    def _check_finite(self, metrics: dict[str, Any]) -> None:
        bad = [k for k, v in metrics.items() if isinstance(v, float) and not np.isfinite(v)]
        if bad:
            raise HarnessError(f"training diverged at iteration {self.iteration + 1}: non-finite {', '.join(bad)}; "
                               "the last checkpoint is kept")

    def _emit(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.run is not None:
            self.run.append_row(row)
        self.regs.emit_metrics(row, self.run.path if self.run is not None else None)
        if self._trackers is not None:
            self._trackers.log(row)
        return row

    def _start_trackers(self) -> None:
        """The run starts or resumes: the ``on_run_start`` event, then the trackers its ``loggers`` name."""
        run_dir = self.run.path if self.run is not None else None
        record = (self.run.read_config() if self.run is not None else None) or {}
        self.regs.emit("on_run_start", config=self.cfg.to_dict(), record=record, run_dir=run_dir,
                       start_iteration=self.iteration)
        self._trackers = RunTrackers(self.regs, self.cfg.loggers, run_dir, self.cfg.to_dict(), record, self.iteration)

    def _end_trackers(self, finished: bool) -> None:
        """The run ends (finished, or stopped early): close its trackers and send ``on_run_end`` once."""
        if self._trackers is None:
            return
        trackers, self._trackers = self._trackers, None
        summary: dict[str, Any] = {"iteration": self.iteration, "env_steps": self.env_steps,
                                   "best_eval_return": self.best[0] if self.best else None, **(self.absolute or {})}
        try:
            trackers.close(summary, finished)
        finally:
            self.regs.emit("on_run_end", config=self.cfg.to_dict(),
                           run_dir=self.run.path if self.run is not None else None, summary=summary,
                           finished=finished)

    def close(self) -> None:
        """Release the environments (once; closing again does nothing)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        if getattr(self, "_trackers", None) is not None:  # stopped before its end: trackers mark it so
            try:
                self._end_trackers(finished=False)
            except Exception as exc:  # never hide why the run stopped
                print(f"harness: warning: closing the trackers failed: {describe(exc)}", file=sys.stderr)
        if getattr(self, "_lock", None) is not None:
            self._lock.release()
        self.task.close()
        if self.eval_task is not None:
            self.eval_task.close()
