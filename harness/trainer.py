"""The training loop: collect a rollout, compute advantages, let the scheme update, evaluate, log,
checkpoint.

:meth:`Trainer.iterate` is the whole loop, read top to bottom. What it calls lives in modules of
its own: :mod:`harness.assembly` builds and checks the task and the scheme, :mod:`harness.rollout`
collects, :mod:`harness.policy` acts, :mod:`harness.advantage` computes advantages,
:mod:`harness.evaluation` is the evaluation protocol, :mod:`harness.best_policy` keeps the best
policy, :mod:`harness.run_setup` opens the run directory and :mod:`harness.tracking` feeds the
trackers. A stopped run resumes from its last checkpoint.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness import stopping
from harness.advantage import critic_advantages
from harness.assembly import assemble
from harness.best_policy import BestPolicy
from harness.checkpoint import capture_rng, restore_rng
from harness.config import TrainConfig
from harness.devices import move_batch
from harness.errors import HarnessError, PluginError, describe, plugin_call
from harness.evaluation import play_fixed_episodes
from harness.plugins import Registries
from harness.policy import Policy
from harness.replay import ReplayFeed, is_off_policy
from harness.results import RunDir
from harness.rollout import Collector
from harness.run_lock import RunLock
from harness.run_setup import open_run
from harness.scheme import core_advantages
from harness.task_api import ABSOLUTE_STREAM, EVAL_STREAM, VecTask
from harness.tasks import make_task
from harness.tracking import RunWatchers

__all__ = ["EVAL_STREAM", "Trainer"]


class Trainer:
    """Trains one scheme on one task with one seed, writing to ``run_dir`` when given."""

    def __init__(self, cfg: TrainConfig, regs: Registries, run_dir: str | Path | None = None,
                 progress: bool = True, record: dict[str, Any] | None = None, extend: bool = False,
                 accept_new_schedule: bool = False) -> None:
        self.cfg, self.regs, self.progress = cfg, regs, progress
        # --extend: continue the finished run in run_dir to cfg.steps (harness.continuation.extension).
        self.extend, self.accept_new_schedule = extend, accept_new_schedule
        self.record = dict(record or {})  # extra provenance for config.json, e.g. a suite's tuning
        self.run = RunDir(run_dir) if run_dir is not None else None
        parts = assemble(cfg, regs, self.run)
        self.task: VecTask = parts.task
        self.checker, self.builder, self.scheme = parts.checker, parts.builder, parts.scheme
        self.scheme_plugin, self.device, self.scheme_fixed = parts.scheme_plugin, parts.device, parts.scheme_fixed
        self.thread_pools = parts.thread_pools
        self.policy = Policy(self.scheme, self.builder, self.task.action_spaces, self.device, cfg.seed)
        self.rollout = Collector(self.task, self.policy, self.checker, cfg.rollout_length)
        # An off-policy scheme learns from a replay buffer that every rollout fills (harness.replay).
        self.replay = ReplayFeed(self.scheme, self.task) if is_off_policy(self.scheme) else None
        self._eval_tasks: dict[int, VecTask] = {}  # evaluation copies per episode stream, built when first used
        self.iteration = self.env_steps = 0
        self.best_policy = BestPolicy(self.run)
        self.absolute: dict[str, Any] | None = None
        self._prepared: bool | None = None  # None: the run directory is not opened yet
        self.lock: RunLock | None = None
        self._watchers: RunWatchers | None = None
        self._saved_at, self._closed = -1, False

    # -- the loop ----------------------------------------------------------------------------
    def run_training(self) -> list[dict[str, Any]]:
        """Train to the step budget; return the metrics rows written by this call."""
        return list(self.iterate())

    def iterate(self) -> Iterator[dict[str, Any]]:
        """Train to the step budget, yielding each metrics row as it is written (so several runs
        can advance in lockstep, as a sweep trial's seeds do). Closes the tasks when it ends."""
        cfg, bar = self.cfg, None
        try:
            if not self.prepare_run():
                self.log(f"{self.run.path} is already finished; nothing to do")
                return
            stopping.check()  # a stop requested before this run started: leave it for the re-run
            self._watch()
            bar = self._progress_bar()
            if self.iteration == 0:
                yield self._emit({"iteration": 0, "env_steps": 0, **self._evaluation()})
            recent, t_start = float("nan"), time.perf_counter()
            while self.iteration < cfg.iterations:
                if stopping.requested() is not None:
                    self._stop_at_checkpoint()
                frac = 1.0 - self.iteration / cfg.iterations if cfg.lr_decay else 1.0
                self.scheme.set_lr_fraction(frac)
                t0 = time.perf_counter()
                batch, returns = self.collect()          # rollout, with advantages
                t1 = time.perf_counter()
                metrics = self._update(batch)            # the scheme's update
                t2 = time.perf_counter()
                self.iteration += 1
                self.env_steps += cfg.batch_steps
                recent = float(np.mean(returns)) if returns else recent
                row = {"iteration": self.iteration, "env_steps": self.env_steps,
                       "train_return": recent if returns else None, "lr_fraction": frac,
                       "steps_per_s": cfg.batch_steps / (t2 - t0), "collect_s": t1 - t0, "update_s": t2 - t1,
                       "wall_s": time.perf_counter() - t_start, **metrics}
                last = self.iteration == cfg.iterations
                if last or (cfg.eval_interval and self.iteration % cfg.eval_interval == 0):
                    row.update(self._evaluation())
                self._emit(row)
                if self.run is not None and (last or self.iteration % cfg.checkpoint_interval == 0):
                    self._checkpoint()
                if bar is not None:
                    bar.update(cfg.batch_steps)
                    bar.set_postfix(ret=f"{recent:.1f}", sps=f"{row['steps_per_s']:.0f}", refresh=False)
                yield row
            if cfg.absolute_factor > 0:
                self._absolute_metric()
            if self.run is not None:
                self.run.mark_done()
            self._unwatch(finished=True)
        finally:
            if bar is not None:
                bar.close()
            self.close()

    # -- the steps of an iteration -------------------------------------------------------------
    def collect(self) -> tuple[Any, list[float]]:
        """Run the policy for ``rollout_length`` steps in every copy: the batch (with advantages from the
        scheme's V(state) critic, unless the scheme computes its own; for an off-policy scheme, its
        replay buffer with the rollout added) and the returns of the episodes that ended."""
        if self.replay is not None:
            self.policy.uniform = not self.replay.warm()  # warm-up: random actions
            rollout = self.rollout.collect()
            return self.replay.add(rollout), rollout.episode_returns
        rollout = self.rollout.collect()
        if not core_advantages(self.scheme):
            return rollout.batch(), rollout.episode_returns
        adv, ret, old_values = critic_advantages(self.scheme.values, rollout.states, rollout.final_states,
                                                 rollout.rewards, rollout.terminated, rollout.truncated,
                                                 self.cfg.gamma, self.cfg.gae_lambda, self.device)
        return rollout.batch(adv, ret, old_values), rollout.episode_returns

    def _update(self, batch: Any) -> dict[str, Any]:
        """The scheme's update on the batch (on the run's device; an off-policy scheme's replay buffer,
        once it is warm); a plugin that raises or returns something else than a dict is named, a
        non-finite metric stops the run."""
        if self.replay is not None:
            if not self.replay.warm():
                return {"replay_size": len(self.replay.buffer)}
        elif self.device.type != "cpu":
            batch = move_batch(batch, self.device)
        with plugin_call(f"plugin {self.scheme_plugin!r}: scheme {self.cfg.scheme!r} raised in update():"):
            metrics = self.scheme.update(batch)
        if not isinstance(metrics, dict):
            raise PluginError(f"plugin {self.scheme_plugin!r}: scheme {self.cfg.scheme!r} update() returned "
                              f"{type(metrics).__name__}, expected a dict of metrics")
        self.weights_changed()
        bad = [k for k, v in metrics.items() if isinstance(v, float) and not np.isfinite(v)]
        if bad:
            raise HarnessError(f"training diverged at iteration {self.iteration + 1}: non-finite {', '.join(bad)}; "
                               "the last checkpoint is kept")
        return metrics

    def act(self, obs: list[np.ndarray], deterministic: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every agent's actions and log-probabilities (see :class:`harness.policy.Policy`)."""
        return self.policy.act(obs, deterministic)

    def to_task(self, actions: list[np.ndarray]) -> list[np.ndarray]:
        """The actions a task receives (continuous ones clipped to the agent's box)."""
        return self.policy.to_task(actions)

    def weights_changed(self) -> None:
        """The actors' weights changed (an update, a restore): rebuild what acting uses."""
        self.policy.refresh()

    @property
    def obs(self) -> list[np.ndarray]:
        """The training copies' current observations."""
        return self.rollout.obs

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, episodes: int | None = None, stoppable: bool = False, stream: int = EVAL_STREAM) -> list[float]:
        """Team returns of ``episodes`` (default ``eval_episodes``) episodes of the deterministic policy.

        Every evaluation plays the same start states of ``stream``, one episode each (episode k of copy
        c; see :mod:`harness.evaluation`), so curves compare policies and short episodes are not
        over-counted.
        """
        cfg = self.cfg
        if stream not in self._eval_tasks:
            self._eval_tasks[stream] = make_task(self.regs, cfg.task, cfg.eval_envs, cfg.seed, cfg.env, stream=stream)

        memory = self.policy.memory(self._eval_tasks[stream].n_envs)  # recurrent actors start afresh

        def act(obs: list[np.ndarray], starts: np.ndarray) -> list[np.ndarray]:
            if stoppable:  # a standalone evaluation (harness eval) stops at once when asked
                stopping.check()
            return self.policy.greedy(obs, memory, starts)
        return play_fixed_episodes(self._eval_tasks[stream], act, episodes or cfg.eval_episodes, self.checker)

    @property
    def eval_task(self) -> VecTask | None:
        """The evaluation copies (None before the first evaluation)."""
        return self._eval_tasks.get(EVAL_STREAM)

    def _evaluation(self) -> dict[str, Any]:
        """One evaluation as metrics columns (mean, std, the per-episode returns); the best policy kept."""
        returns = self.evaluate()
        mean = float(np.mean(returns))
        self.best_policy.offer(mean, self.iteration, self.env_steps, self.scheme)
        return {"eval_return": mean, "eval_return_std": float(np.std(returns)),
                "eval_returns": " ".join(f"{r:.6g}" for r in returns)}

    @property
    def best(self) -> tuple[float, int, int] | None:
        """The best evaluation so far: ``(eval_return, iteration, env_steps)``."""
        return self.best_policy.best

    def _absolute_metric(self) -> None:
        """The marl-eval protocol's absolute metric, on start states no evaluation played (see
        :class:`harness.best_policy.BestPolicy`)."""
        episodes = self.cfg.eval_episodes * self.cfg.absolute_factor
        self.absolute = self.best_policy.absolute_metric(
            self.scheme, lambda n: self.evaluate(n, stream=ABSOLUTE_STREAM), episodes, self.weights_changed)
        if self.absolute is not None:
            self.log(f"absolute metric: best policy (iteration {self.absolute['best_iteration']}) scores "
                     f"{self.absolute['absolute_return']:.2f} over {episodes} episodes")

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {"config_digest": self.cfg.digest(), "iteration": self.iteration, "env_steps": self.env_steps,
                "task_spec": self.task.spec(), "scheme": self.scheme.state_dict(), "rng": capture_rng(),
                "act_rng": self.policy.rng.bit_generator.state, "episodes": self.task.episode_counters(),
                **self.best_policy.checkpoint(), **(self.replay.checkpoint() if self.replay is not None else {})}

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.iteration = ckpt["iteration"]
        self.env_steps = ckpt["env_steps"]
        self.scheme.load_state_dict(ckpt["scheme"])
        restore_rng(ckpt["rng"])
        self.policy.rng.bit_generator.state = ckpt["act_rng"]
        self.best_policy.restore(ckpt)
        if self.replay is not None and (note := self.replay.restore(ckpt)):
            self.log(note)
        self.weights_changed()
        # Episodes restart at the saved episode numbers; a run checkpointed at an episode boundary
        # (MPE with rollout_length a multiple of the episode length) continues exactly.
        self.rollout.restart(ckpt["episodes"])

    def _checkpoint(self) -> None:
        self.run.save_checkpoint(self.checkpoint_state())
        self._saved_at = self.iteration

    def _stop_at_checkpoint(self) -> None:
        """A stop was requested (a signal): checkpoint the iteration reached, then raise Interrupted."""
        if self.run is not None and 0 < self.iteration != self._saved_at:
            self._checkpoint()
        kept = "checkpoint kept" if self.run is not None and self.iteration > 0 else "nothing to checkpoint yet"
        self.log(f"stopped at iteration {self.iteration} ({self.env_steps} steps); {kept}")
        stopping.check()

    # -- the run directory, logging and trackers ----------------------------------------------
    def prepare_run(self) -> bool:
        """Write config.json, or resume from the last checkpoint (dropping the metrics rows after it);
        return False if the run is already finished. Done once; ``iterate`` calls it if nobody has."""
        if self._prepared is None:
            self._prepared = open_run(self)
        return self._prepared

    def log(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr)

    def _progress_bar(self) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm
        cfg = self.cfg
        return tqdm(total=cfg.iterations * cfg.batch_steps, initial=self.env_steps, unit="step",
                    desc=f"{cfg.scheme} {cfg.task} s{cfg.seed}", dynamic_ncols=True, file=sys.stderr)

    def _emit(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.run is not None:
            self.run.append_row(row)
        if self._watchers is not None:
            self._watchers.row(row)
        return row

    def _watch(self) -> None:
        """The run starts or resumes: the ``on_run_start`` event, then the trackers its ``loggers`` name."""
        record = (self.run.read_config() if self.run is not None else None) or {}
        self._watchers = RunWatchers(self.regs, self.cfg, self.run.path if self.run is not None else None, record)
        self._watchers.start(self.iteration)

    def _unwatch(self, finished: bool) -> None:
        """The run ends (finished, or stopped early): its trackers closed and ``on_run_end`` sent, once."""
        if self._watchers is not None:
            self._watchers.end({"iteration": self.iteration, "env_steps": self.env_steps,
                                "best_eval_return": self.best[0] if self.best else None, **(self.absolute or {})},
                               finished)

    def close(self) -> None:
        """Release the environments (once; closing again does nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._unwatch(finished=False)  # stopped before its end: trackers mark it so
        except Exception as exc:  # never hide why the run stopped
            print(f"harness: warning: closing the trackers failed: {describe(exc)}", file=sys.stderr)
        if self.lock is not None:
            self.lock.release()
        self.task.close()
        for task in self._eval_tasks.values():
            task.close()
