"""A stand-in for OpenAI ``gym`` (the pre-gymnasium API) backed by gymnasium's MuJoCo robots.

HARL's MaMuJoCo wrapper (``harl.envs.mamujoco.multiagent_mujoco``) imports ``gym`` and builds the
``<Robot>-v2`` environments, which in gym ran on ``mujoco_py`` and the MuJoCo 2.1 binaries. Neither
installs on a current machine, so ``install()`` puts a small ``gym`` package into ``sys.modules``
whose ``make("<Robot>-v2")`` returns gymnasium's ``<Robot>-v5`` (the same robot model and reward on the
maintained ``mujoco`` bindings, which is also what gymnasium-robotics' MaMuJoCo steps) behind the old
API HARL calls: ``reset()`` returns the observation alone, ``step()`` returns ``(obs, reward, done,
info)``, ``seed(n)`` seeds the next reset, ``TimeLimit`` ends episodes with ``done`` and
``info["TimeLimit.truncated"]``, and the robot exposes ``_get_obs()`` and ``sim.data`` (the MjData).

Only what HARL's MaMuJoCo wrapper touches exists. Its bundled custom robots (many-agent swimmer and
ant, coupled half-cheetah) subclass ``gym.envs.mujoco.mujoco_env.MujocoEnv``, which here refuses to
build with a message saying so.
"""

from __future__ import annotations

import re
import sys
import types

ADAPTATION = ("gym (absent) -> a stand-in package: gym.make('<Robot>-v2') builds gymnasium's '<Robot>-v5' on the "
              "mujoco bindings behind gym's old API (reset -> obs, step -> (obs, reward, done, info), seed(), "
              "TimeLimit, _get_obs(), sim.data)")


class Error(Exception):
    """gym.error.Error: what ``make`` raises for a name it cannot build."""


class Wrapper:
    """gym.Wrapper: forwards everything to ``env``."""

    def __init__(self, env) -> None:
        self.env = env

    @property
    def action_space(self):
        return self.env.action_space

    @property
    def observation_space(self):
        return self.env.observation_space

    @property
    def unwrapped(self):
        return self.env.unwrapped

    def step(self, action):
        return self.env.step(action)

    def reset(self, **kwargs):
        return self.env.reset(**kwargs)

    def seed(self, seed=None):
        return self.env.seed(seed)

    def render(self, *args, **kwargs):
        return self.env.render(*args, **kwargs)

    def close(self) -> None:
        self.env.close()


class ActionWrapper(Wrapper):
    """gym.ActionWrapper: ``step`` passes the action through ``self.action``."""

    def step(self, action):
        return self.env.step(self.action(action))

    def action(self, action):  # pragma: no cover - subclasses define it
        raise NotImplementedError


class TimeLimit(Wrapper):
    """gym.wrappers.TimeLimit of the old API: ``done`` at the limit, with ``TimeLimit.truncated``."""

    def __init__(self, env, max_episode_steps: int | None = None) -> None:
        super().__init__(env)
        self._max_episode_steps = max_episode_steps
        self._elapsed_steps = 0

    def step(self, action):
        obs, reward, done, info = self.env.step(action)
        self._elapsed_steps += 1
        if self._max_episode_steps is not None and self._elapsed_steps >= self._max_episode_steps:
            info["TimeLimit.truncated"] = not done
            done = True
        return obs, reward, done, info

    def reset(self, **kwargs):
        self._elapsed_steps = 0
        return self.env.reset(**kwargs)


class OldApiRobot:
    """A gymnasium MuJoCo robot (unwrapped) with gym's old API."""

    def __init__(self, env) -> None:
        self._env = env
        self._seed: int | None = None
        self.sim = types.SimpleNamespace(data=env.data, model=env.model)
        self.action_space = env.action_space
        self.observation_space = env.observation_space

    @property
    def unwrapped(self):
        return self

    def _get_obs(self):
        return self._env._get_obs()

    def seed(self, seed=None):
        self._seed = seed
        return [seed]

    def reset(self, **_):
        obs, _info = self._env.reset(seed=self._seed)
        self._seed = None
        return obs

    def step(self, action):
        obs, reward, terminated, _truncated, info = self._env.step(action)
        return obs, float(reward), bool(terminated), info

    def render(self, *args, **kwargs):
        return self._env.render()

    def close(self) -> None:
        self._env.close()


class MujocoEnv:
    """gym.envs.mujoco.mujoco_env.MujocoEnv: present so HARL's custom robots import; never builds."""

    def __init__(self, *args, **kwargs) -> None:
        raise Error(f"{type(self).__name__} is a mujoco-py robot of HARL's own; the gym stand-in builds only "
                    "gymnasium's '<Robot>-v2' robots (HalfCheetah-v2, Hopper-v2, Walker2d-v2, Ant-v2, ...)")


def make(name: str, **kwargs):
    """gym.make for ``<Robot>-v2``: gymnasium's ``<Robot>-v5``, under a 1000-step TimeLimit like gym's."""
    import gymnasium

    match = re.fullmatch(r"(\w+)-v2", name)
    target = f"{match[1]}-v5" if match else None
    if target is None or target not in gymnasium.registry:
        raise Error(f"the gym stand-in cannot build {name!r}: it builds '<Robot>-v2' names that gymnasium has as "
                    "'<Robot>-v5' (HalfCheetah-v2, Hopper-v2, Walker2d-v2, Ant-v2, Humanoid-v2, Swimmer-v2, ...)")
    import mujoco

    previous = mujoco.get_mju_user_warning()  # drop the robot files' deprecation notices, one per copy
    mujoco.set_mju_user_warning(lambda message: None if "is deprecated" in message else print(message, file=sys.stderr))
    try:
        robot = gymnasium.make(target, **kwargs).unwrapped
    finally:
        mujoco.set_mju_user_warning(previous)
    return TimeLimit(OldApiRobot(robot), max_episode_steps=1000)


def install() -> types.ModuleType:
    """Put the stand-in into ``sys.modules`` as ``gym`` (and its submodules); returns the package."""
    import gymnasium
    from gymnasium import spaces, utils

    gym = types.ModuleType("gym")
    gym.__path__ = []  # a package, so ``from gym.envs.mujoco import mujoco_env`` resolves
    error = types.ModuleType("gym.error")
    error.Error = Error
    wrappers = types.ModuleType("gym.wrappers")
    wrappers.TimeLimit = TimeLimit
    envs = types.ModuleType("gym.envs")
    envs.__path__ = []
    mujoco = types.ModuleType("gym.envs.mujoco")
    mujoco.__path__ = []
    mujoco_env = types.ModuleType("gym.envs.mujoco.mujoco_env")
    mujoco_env.MujocoEnv = MujocoEnv
    mujoco.mujoco_env = mujoco_env
    envs.mujoco = mujoco
    gym.__dict__.update(make=make, Wrapper=Wrapper, ActionWrapper=ActionWrapper, error=error, spaces=spaces,
                        wrappers=wrappers, utils=utils, envs=envs, __version__=f"stand-in on gymnasium "
                        f"{gymnasium.__version__}")
    sys.modules.update({"gym": gym, "gym.error": error, "gym.spaces": spaces, "gym.wrappers": wrappers,
                        "gym.utils": utils, "gym.envs": envs, "gym.envs.mujoco": mujoco,
                        "gym.envs.mujoco.mujoco_env": mujoco_env})
    return gym
