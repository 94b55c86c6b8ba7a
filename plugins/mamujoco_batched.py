"""Batched stepping of MaMuJoCo copies (``env.fast=true``): the physics of every copy in one pass.

Each copy stays gymnasium-robotics' own environment object (its robot, MjModel and MjData, its
resets), but a step no longer goes copy by copy through the package's wrappers. It runs in three
phases over all copies:

1. the agents' actions go into one global action array by a precomputed index map (what
   ``map_local_actions_to_global_action`` does per copy), and each robot's "before" quantity is read;
2. physics: for each copy, exactly what gymnasium's ``MujocoEnv`` does (``data.ctrl[:] = action``,
   ``mj_step(nstep=frame_skip)``, ``mj_rnePostConstraint``). MuJoCo releases Python's lock while it
   simulates, so with ``env.threads=2`` two threads step the copies in parallel on two cores;
3. each robot's own reward (``_get_rew``) and health check and its state, copy by copy; then every
   agent's observations for all copies at once, one index gather per agent (``GatherObsEnv``), so
   the per-step cost of many agents is a few array operations each, not Python per agent and copy.

Phases 1 and 3 follow the robot's ``step`` line by line, so only robots whose ``step`` is known are
batched (gymnasium's v5 HalfCheetah, Hopper, Walker2d, Swimmer, Ant, Humanoid); every construction
also replays a few steps of a probe copy both ways and uses the batched path only if they agree
exactly. Otherwise the copies are stepped one by one with gathered observations. Results are the
package's to 1e-6 over whole episodes (``tests/test_mamujoco_fast.py``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from harness.task_api import ActionSpace, LocalCopiesTask, StepResult


def _x(robot: Any) -> Any:
    return robot.data.qpos[0]


def _xy(robot: Any) -> Any:
    return robot.data.qpos[0:2].copy()


def _body_xy(robot: Any) -> Any:
    return robot.data.body(robot._main_body).xpos[:2].copy()


def _mass_center(robot: Any) -> Any:
    from gymnasium.envs.mujoco.humanoid_v5 import mass_center
    return mass_center(robot.model, robot.data)


# gymnasium robot class -> (the position its step differentiates, whether it can terminate)
_ROBOTS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "gymnasium.envs.mujoco.half_cheetah_v5.HalfCheetahEnv": (_x, False),
    "gymnasium.envs.mujoco.hopper_v5.HopperEnv": (_x, True),
    "gymnasium.envs.mujoco.walker2d_v5.Walker2dEnv": (_x, True),
    "gymnasium.envs.mujoco.swimmer_v5.SwimmerEnv": (_xy, False),
    "gymnasium.envs.mujoco.ant_v5.AntEnv": (_body_xy, True),
    "gymnasium.envs.mujoco.humanoid_v5.HumanoidEnv": (_mass_center, True),
}


def robot_key(robot: Any) -> str:
    return f"{type(robot).__module__}.{type(robot).__name__}"


def supported(gather_env: Any) -> bool:
    """Whether the copies of this task (a ``GatherObsEnv``) can be stepped in a batch."""
    return robot_key(gather_env._unwrapped) in _ROBOTS


class BatchedMaMuJoCoTask(LocalCopiesTask):
    """``n_envs`` MaMuJoCo copies (``GatherObsEnv`` objects built by ``make_env``) stepped in phases."""

    def __init__(self, make_env: Callable[[], Any], n_envs: int, seed: int, episode_limit: int,
                 stream: int = 0, copy_offset: int = 0, threads: int = 1) -> None:
        self.envs = [make_env() for _ in range(n_envs)]
        first = self.envs[0]
        self.robots = [e._unwrapped for e in self.envs]
        self._position, self._can_terminate = _ROBOTS[robot_key(self.robots[0])]
        self.agents = list(first.possible_agents)
        self.n_envs, self.seed, self.stream, self.copy_offset = n_envs, seed, stream, copy_offset
        self.episode_limit = episode_limit
        self.obs_dims = [int(np.prod(first.observation_space(a).shape)) for a in self.agents]
        self.action_spaces = [ActionSpace.from_gymnasium(first.action_space(a)) for a in self.agents]
        self._low = [np.asarray(s.low, np.float32) for s in self.action_spaces]
        self._high = [np.asarray(s.high, np.float32) for s in self.action_spaces]
        # agent i's k-th action goes to the robot's actuator _act_index[i][k]
        self._act_index = [np.asarray([part.act_ids for part in partition], dtype=np.int64)
                           for partition in first.env.agent_action_partitions]
        self._nu = int(self.robots[0].model.nu)
        self._frame_skip = int(self.robots[0].frame_skip)
        threads = max(1, min(threads, n_envs))
        self._bounds = np.linspace(0, n_envs, threads + 1).astype(int)
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="mujoco") if threads > 1 else None
        self._sources = np.empty((n_envs, first.source_dim))  # each copy's GatherObsEnv.source()
        self._start()

    # -- phases -------------------------------------------------------------------------------
    def _global_actions(self, actions: Sequence[np.ndarray]) -> np.ndarray:
        glob = np.full((self.n_envs, self._nu), np.nan)
        for i, idx in enumerate(self._act_index):
            # clipped to the box and made float32 like every other task path, then float64 as the package
            glob[:, idx] = np.clip(actions[i], self._low[i], self._high[i]).astype(np.float32)
        return glob

    def _physics(self, glob: np.ndarray, lo: int, hi: int) -> None:
        import mujoco

        nstep = self._frame_skip
        for c in range(lo, hi):
            robot = self.robots[c]
            model, data = robot.model, robot.data
            data.ctrl[:] = glob[c]
            mujoco.mj_step(model, data, nstep=nstep)
            mujoco.mj_rnePostConstraint(model, data)

    def _simulate(self, glob: np.ndarray) -> None:
        b = self._bounds
        if self._pool is None:
            self._physics(glob, 0, self.n_envs)
            return
        futures = [self._pool.submit(self._physics, glob, lo, hi) for lo, hi in zip(b[1:-1], b[2:])]
        self._physics(glob, b[0], b[1])
        for f in futures:
            f.result()

    def step(self, actions: Sequence[np.ndarray]) -> StepResult:
        result = self._empty_result()
        glob = self._global_actions(actions)
        position = self._position
        before = [position(robot) for robot in self.robots]
        self._simulate(glob)
        sources = self._sources
        ended = []
        for c, (env, robot) in enumerate(zip(self.envs, self.robots)):
            velocity = (position(robot) - before[c]) / robot.dt
            if np.ndim(velocity):
                velocity = velocity[0]
            reward, _ = robot._get_rew(velocity, glob[c])
            terminated = self._can_terminate and (not robot.is_healthy) and robot._terminate_when_unhealthy
            sources[c] = env.source()
            result.final_state[c] = env._state
            truncated = not terminated and self._lengths[c] + 1 >= self.episode_limit
            if self._record(result, c, float(reward), bool(terminated), truncated):
                ended.append(c)
        result.state[:] = result.final_state
        if ended:  # the observations each ended episode reached, then the copy's next episode
            final = [np.empty((len(ended), d), np.float32) for d in self.obs_dims]
            self.envs[0].gather_into(sources[ended], final)
            for k, c in enumerate(ended):
                result.final_obs[c] = [o[k] for o in final]
                self.envs[c].reset(seed=self._episode_seed(c))
                sources[c] = self.envs[c].source()
                result.state[c] = self.envs[c]._state
        self.envs[0].gather_into(sources, result.obs)
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for env in self.envs:
            env.close()


def agrees(make_fast: Callable[[], Any], make_package: Callable[[], Any], episode_limit: int,
           steps: int = 25) -> bool:
    """Whether the batched step reproduces the package's on a probe copy: ``steps`` steps of random
    actions (beyond the box, so clipping shows) from the same seeded start."""
    from harness.task_api import PettingZooVecTask

    ref = PettingZooVecTask(make_package, 1, 0, team_reward="shared", episode_limit=episode_limit)
    try:
        batched = BatchedMaMuJoCoTask(make_fast, 1, seed=0, episode_limit=episode_limit)
    except Exception:  # e.g. a factorisation whose nodes the index map cannot express
        ref.close()
        return False
    rng = np.random.default_rng(0)
    try:
        for _ in range(steps):
            acts = [rng.uniform(-1.5, 1.5, (1, s.n)).astype(np.float32) for s in ref.action_spaces]
            a, b = batched.step(acts), ref.step(acts)
            same = all(np.allclose(x, y, rtol=0, atol=1e-9) for x, y in zip(a.obs, b.obs))
            same &= np.allclose(a.state, b.state, rtol=0, atol=1e-9) and np.allclose(a.reward, b.reward, rtol=0, atol=1e-9)
            same &= bool((a.terminated == b.terminated).all() and (a.truncated == b.truncated).all())
            if not same:
                return False
    except Exception:  # the package refusing what the batch accepted counts as disagreeing
        return False
    finally:
        batched.close()
        ref.close()
    return True
