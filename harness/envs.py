"""The task API under its earlier module name, kept for plugins that import from here: the task
contract lives in :mod:`harness.task_api`, declared options in :mod:`harness.options`."""

from harness.options import Option, coerce, resolve_options
from harness.task_api import (ActionSpace, LocalCopiesTask, PettingZooVecTask, StepResult, SubprocVecTask,
                              TeamReward, VecTask, episode_seed, make_vec_task)  # noqa: F401

__all__ = ["ActionSpace", "LocalCopiesTask", "Option", "PettingZooVecTask", "StepResult", "SubprocVecTask",
           "TeamReward", "VecTask", "coerce", "episode_seed", "make_vec_task", "resolve_options"]
