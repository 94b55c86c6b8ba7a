"""Checks of what a task plugin returns, so a broken task is blamed on the task, not on training.

The first ``reset`` and the first ``step`` of every task a run builds are checked in full against
the task's declared ``obs_dims``, ``state_dim`` and the ``StepResult`` format (shapes, dtypes,
finite values, one ``episode_returns`` entry per copy that ended). After that, each step costs one
comparison (the ``episode_returns`` count, which evaluation relies on), and each rollout one pass
over its observations, states and rewards for non-finite values.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.task_api import StepResult, VecTask
from harness.errors import PluginError


class TaskChecker:
    """Checks the outputs of tasks built by plugin ``plugin`` for task ``task_name``."""

    def __init__(self, plugin: str, task_name: str) -> None:
        self.plugin = plugin
        self.task_name = task_name
        self._stepped: set[int] = set()

    def fail(self, message: str) -> None:
        raise PluginError(f"task plugin {self.plugin!r} ({self.task_name}): {message}")

    def _array(self, what: str, x: Any, shape: tuple[int, ...], dtypes: tuple[type, ...]) -> None:
        if not isinstance(x, np.ndarray):
            self.fail(f"{what} is a {type(x).__name__}, expected a numpy array of shape {shape}")
        if x.shape != shape:
            self.fail(f"{what} has shape {x.shape}, expected {shape} (from the task's declared sizes)")
        if not any(np.issubdtype(x.dtype, d) for d in dtypes):
            self.fail(f"{what} has dtype {x.dtype}, expected {' or '.join(np.dtype(d).name for d in dtypes)}")

    def _finite(self, what: str, x: np.ndarray) -> None:
        if not np.isfinite(x).all():
            self.fail(f"non-finite values (NaN or inf) in its {what}")

    def _observations(self, task: VecTask, obs: Sequence[Any], state: Any, when: str) -> None:
        E = task.n_envs
        if not isinstance(obs, (list, tuple)) or len(obs) != len(task.agents):
            self.fail(f"{when} returned {len(obs) if isinstance(obs, (list, tuple)) else type(obs).__name__} "
                      f"observation arrays, expected a list of {len(task.agents)} (one per agent)")
        for i, (o, d) in enumerate(zip(obs, task.obs_dims)):
            self._array(f"{when}: agent {i}'s observation", o, (E, d), (np.float32,))
            self._finite(f"{when}: agent {i}'s observation", o)
        self._array(f"{when}: global state", state, (E, task.state_dim), (np.float32,))
        self._finite(f"{when}: global state", state)

    def check_reset(self, task: VecTask, obs: Sequence[Any], state: Any) -> None:
        """Check what ``reset`` returned against the task's declared sizes (cheap: once per reset)."""
        self._observations(task, obs, state, "reset")

    def check_step(self, task: VecTask, res: StepResult) -> np.ndarray:
        """The copies whose episode ended at this step, after checking ``res`` (in full the first time)."""
        if id(task) not in self._stepped:
            self._stepped.add(id(task))
            self._full_step_check(task, res)
        ended = np.flatnonzero(res.terminated | res.truncated)
        if len(res.episode_returns) != len(ended):
            self.fail(f"step returned {len(res.episode_returns)} episode_returns while {len(ended)} copies ended; "
                      "episode_returns holds one entry per episode that ended at this step, in copy order")
        return ended

    def _full_step_check(self, task: VecTask, res: StepResult) -> None:
        if not isinstance(res, StepResult):
            self.fail(f"step returned {type(res).__name__}, expected a harness.task_api.StepResult")
        E = task.n_envs
        self._observations(task, res.obs, res.state, "step")
        self._array("step: final_state", res.final_state, (E, task.state_dim), (np.float32,))
        self._array("step: reward", res.reward, (E,), (np.floating,))
        self._finite("step: reward", res.reward)
        for flag in ("terminated", "truncated"):
            self._array(f"step: {flag}", getattr(res, flag), (E,), (np.bool_,))
        if not isinstance(res.episode_returns, list):
            self.fail(f"step: episode_returns is a {type(res.episode_returns).__name__}, expected a list "
                      "with one number per episode that ended at this step")

    def check_rollout(self, obs: Sequence[np.ndarray], states: Sequence[np.ndarray], rewards: np.ndarray) -> None:
        """Non-finite observations, states or rewards anywhere in a rollout are the task's fault."""
        for o in obs:
            self._finite("observations", o)
        for st in states:
            self._finite("global states", st)
        self._finite("rewards", rewards)

    def check_returns(self, returns: Sequence[float]) -> None:
        if not np.isfinite(np.asarray(returns, dtype=np.float64)).all():
            self.fail("non-finite episode returns")
