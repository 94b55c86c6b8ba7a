"""``harness eval RUN``: score a trained run's policy on fixed start states, and watch it as a GIF or MP4.

The policy is the run's best (``best.pt``, the policy of its best evaluation) or its last
(``checkpoint.pt``), loaded without executing code. The plugins are the installed ones and those
given with ``--plugin``, never those the run records (a one-line warning names each recorded plugin
that is not loaded or differs by its SHA-256; the run's scheme, task or network missing is an error). Scoring is the training runs' evaluation protocol
(:mod:`harness.evaluation`): ``episodes`` episodes of the deterministic policy on the start states of
the evaluation stream of seed ``seed`` (default: the run's own seed, i.e. the start states it was
evaluated on), summarised as the mean with a 95% t-interval over episodes (none for one episode). A video replays the
first episode(s) of copy 0 of those start states on one copy built to draw (the task option
``render=true``), streaming every frame the task draws to the file (:mod:`harness.video`); it is
prepared, and the disk space it needs checked, before the scoring starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness import stopping
from harness.checkpoint import load_policy, reason
from harness.config import build_config
from harness.errors import HarnessError
from harness.plugins import load_plugins
from harness.provenance import missing_parts, plugin_gaps
from harness.results import RunDir
from harness.scheme import load_policy_state
from harness.stats import t_interval
from harness.task_api import EVAL_STREAM
from harness.tasks import make_task, split_task
from harness.trainer import Trainer
from harness.video import VideoWriter, check_video_space

POLICIES = ("best", "last")
VIDEO_FORMATS = (".gif", ".mp4")


def load_trainer(run_dir: str | Path, policy: str = "best", seed: int | None = None, episodes: int | None = None,
                 eval_envs: int | None = None, plugins: list[str] | None = None) -> Trainer:
    """A :class:`harness.trainer.Trainer` (not writing anywhere) holding the run's ``policy``, set to
    evaluate on seed ``seed``'s start states."""
    run = RunDir(run_dir)
    if policy not in POLICIES:
        raise HarnessError(f"--policy {policy!r} is not one of: {', '.join(POLICIES)}")
    if not run.path.exists():
        raise HarnessError(f"run directory {str(run.path)!r} does not exist")
    if not run.path.is_dir():
        raise HarnessError(f"{str(run.path)!r} is not a run directory (give the directory holding config.json)")
    record = run.require_config()
    path = run.best_file if policy == "best" else run.checkpoint_file
    if not path.exists():
        other = "last" if policy == "best" else "best"
        raise HarnessError(f"{str(run.path)!r} has no {path.name} (policy {policy!r}); try --policy {other}")
    overrides = dict(record["config"])
    # How the run was trained and watched does not matter here: its start (init_from, which may be
    # gone), its trackers (which may not be installed) and its device (acting is on the CPU).
    overrides.update(n_envs=1, threads=1, eval_interval=0, init_from="", loggers=[], device="cpu")
    if seed is not None:
        overrides["seed"] = seed
    if episodes is not None:
        overrides["eval_episodes"] = episodes
    if eval_envs is not None:
        overrides["eval_envs"] = eval_envs
    cfg = build_config(list(overrides.items()))
    # Only the plugins the user names or has installed: a run's recorded plugins are provenance (a
    # downloaded run directory must not be able to run code by naming a file).
    regs = load_plugins(list(dict.fromkeys(plugins or [])))
    gaps = plugin_gaps(record, regs)
    missing = missing_parts(record, regs, cfg)
    if missing is not None:
        raise HarnessError(f"{str(run.path)!r}: {missing}")
    if gaps:
        print(f"harness: warning: {str(run.path)!r} was trained with other plugin code: {'; '.join(gaps)} "
              "(recorded plugins are never imported; pass --plugin FILE for one you trust)", file=sys.stderr)
    trainer = Trainer(cfg, regs, None, progress=False)
    try:
        state = load_policy(path)
        load_policy_state(trainer.scheme, state["scheme"])
    except HarnessError:
        trainer.close()
        raise
    except Exception as exc:
        trainer.close()
        raise HarnessError(f"{path}: its policy does not fit the run's networks ({reason(exc)})") from None
    trainer.weights_changed()
    trainer.policy_name = policy
    return trainer


def score(trainer: Trainer) -> dict[str, Any]:
    """The evaluation: per-episode returns, their mean and the 95% t-interval of the mean over episodes
    (``ci95``; None for one episode, which has no interval)."""
    returns = [float(r) for r in trainer.evaluate(stoppable=True)]
    low, high = t_interval(returns)
    return {"task": trainer.cfg.task, "scheme": trainer.cfg.scheme, "seed": trainer.cfg.seed,
            "policy": getattr(trainer, "policy_name", None), "episodes": len(returns), "mean": float(np.mean(returns)),
            "ci95": None if np.isnan(low) else [low, high], "returns": returns}


class Recording:
    """A video being recorded: the drawing copy built, its first frame drawn and written, the space
    the whole video needs checked (:func:`open_video`); :meth:`play` plays the episodes, streaming
    every frame to the file, and puts the file in place."""

    def __init__(self, trainer: Trainer, task: Any, writer: VideoWriter, obs: Any, episodes: int,
                 frame_step: int) -> None:
        self.trainer, self.task, self.writer, self.obs = trainer, task, writer, obs
        self.episodes, self.frame_step = episodes, frame_step

    def play(self) -> dict[str, Any]:
        returns: list[float] = []
        obs, steps = self.obs, 0
        policy = self.trainer.policy
        memory, starts = policy.memory(1), np.ones(1, bool)  # a recurrent policy starts afresh, and at every episode
        try:
            while len(returns) < self.episodes:
                stopping.check()
                res = self.task.step(policy.greedy(obs, memory, starts))
                returns.extend(res.episode_returns)
                obs, starts = res.obs, res.terminated | res.truncated
                steps += 1
                if (len(returns) < self.episodes or not res.episode_returns) and steps % self.frame_step == 0:
                    self.writer.add(self.task.render(0))
            out = self.writer.close()
        finally:
            self.close()
        return {"video": str(out), "frames": self.writer.frames, "fps": self.writer.fps, "returns": returns}

    def close(self) -> None:
        """Release the drawing copy (once); a video not completed leaves no file."""
        self.writer.abort()
        if self.task is not None:
            task, self.task = self.task, None
            task.close()


def open_video(trainer: Trainer, out: str | Path, episodes: int = 1, fps: float | None = None,
               frame_step: int = 1) -> Recording:
    """Get ready to play the first ``episodes`` episodes of copy 0 of the evaluation start states on a
    copy that draws, writing every ``frame_step``-th frame to ``out`` (``.gif`` with Pillow, ``.mp4``
    with imageio-ffmpeg). Every check (the file name, the packages, drawing, the disk space the frames
    need) is done here, before any episode is played."""
    out = Path(out)
    if out.is_dir():
        raise HarnessError(f"--video {str(out)!r} is a directory; give a file name ending in .gif or .mp4")
    if out.suffix.lower() not in VIDEO_FORMATS:
        raise HarnessError(f"--video {str(out)!r}: expected a file name ending in {' or '.join(VIDEO_FORMATS)}")
    if fps is not None and not fps > 0:
        raise HarnessError(f"--fps {fps} must be > 0")
    if frame_step < 1:
        raise HarnessError(f"--frame-step {frame_step} must be >= 1")
    if out.suffix.lower() == ".mp4":
        try:
            import imageio.v2  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise HarnessError("writing an .mp4 needs imageio and imageio-ffmpeg (pip install -e \".[video]\"); "
                               "or write a .gif") from None
    if not out.parent.is_dir():
        raise HarnessError(f"--video {str(out)!r}: directory {str(out.parent)!r} does not exist")
    cfg = trainer.cfg
    task = make_task(trainer.regs, cfg.task, 1, cfg.seed, {**cfg.env, **_draw_options(trainer)}, stream=EVAL_STREAM)
    writer = None
    try:
        obs, _ = task.reset()
        try:
            frame = task.render(0)
        except Exception as exc:  # no GL backend on this machine, most often
            raise HarnessError(f"task {cfg.task!r} could not draw a frame ({type(exc).__name__}: "
                               f"{(str(exc).strip().splitlines() or [''])[0][:200]}); headless MuJoCo needs EGL "
                               "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri) or MUJOCO_GL=osmesa") from None
        if frame is None:
            raise HarnessError(f"task {cfg.task!r} draws no frames (its plugin has no render(); see docs/plugins.md)")
        writer = VideoWriter(out, fps or _default_fps(cfg.task))
        writer.add(frame)
        steps = max(1, task.episode_limit) * episodes
        check_video_space(out, 1 + steps // frame_step, writer.first_frame_bytes,
                          f"{episodes} episode(s) of up to {max(1, task.episode_limit)} steps, every "
                          f"{frame_step} kept")
    except BaseException:
        if writer is not None:
            writer.abort()
        task.close()
        raise
    return Recording(trainer, task, writer, obs, episodes, frame_step)


def record_video(trainer: Trainer, out: str | Path, episodes: int = 1, fps: float | None = None,
                 frame_step: int = 1) -> dict[str, Any]:
    """:func:`open_video` then play: the video's path, frame count, fps and episode returns."""
    return open_video(trainer, out, episodes, fps, frame_step).play()


def _draw_options(trainer: Trainer) -> dict[str, Any]:
    """Task options for a drawing copy: ``render`` on, and the options that step copies elsewhere
    (a batched fast path, worker processes) off where the task has them; episodes are the same."""
    declared = trainer.regs.tasks.get(split_task(trainer.cfg.task)[0]).extra.get("options") or {}
    if "render" not in declared:
        raise HarnessError(f"task {trainer.cfg.task!r} has no render option: its plugin draws no frames")
    return {"render": True, **{k: False if k == "fast" else 0 for k in ("fast", "workers") if k in declared}}


def _default_fps(task: str) -> float:
    """MPE steps are 0.1 s of simulated time; gymnasium's MuJoCo robots step 0.008-0.05 s: 20-30 fps shows them about right."""
    return 10.0 if task.startswith("mpe/") else 30.0


def headless_gl() -> None:
    """Let MuJoCo draw without a display: EGL unless the user chose a backend (before mujoco is imported)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
