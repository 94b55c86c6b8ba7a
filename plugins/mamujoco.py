"""Task plugin ``mamujoco``: multi-agent MuJoCo (MaMuJoCo) from gymnasium-robotics.

Tasks are named ``mamujoco/<Scenario>-<agent_conf>``, e.g. ``mamujoco/HalfCheetah-2x3``: the
robot of a Gymnasium MuJoCo v5 environment with its joints split between agents. Every agent gets
the same team reward (``team_reward="shared"``); the critic's global state is the single-agent
environment's observation (``state()``). A time-limit end comes out as truncation, a fallen
Hopper/Walker2d/Ant/Humanoid as termination (gymnasium's flags, passed through per agent).

Two observation modes:

* ``local`` (default): gymnasium-robotics' per-agent observations of the agent's own joints and
  those within ``agent_obsk`` hops in the body graph.
* ``global``: HARL's mode, every agent observes the full global state plus a one-hot agent id.
  (HARL also standardises each observation and state vector by its own mean and std; behind the
  networks' input LayerNorm, HARL's and the mlp plugin's, that is a no-op, so it is left out.)

Besides gymnasium-robotics' own factorisations, the one-joint-per-agent splits of the HAPPO paper
that gymnasium-robotics lacks (``Walker2d-6x1``, ``Ant-8x1``, ``Humanoid-17x1``) are built here from its graph,
with HARL's agent order. :func:`tuned_overrides` returns HARL's tuned hyperparameters for a task.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.errors import HarnessError
from harness.hookspecs import hookimpl
from harness.options import Option, resolve_options
from harness.task_api import PettingZooVecTask, VecTask, make_vec_task

# The tasks listed by ``harness plugins``; any other scenario/conf gymnasium-robotics accepts works too.
SCENARIOS = (
    "HalfCheetah-2x3",
    "HalfCheetah-6x1",
    "Hopper-3x1",
    "Walker2d-2x3",
    "Walker2d-6x1",
    "Ant-4x2",
    "Ant-8x1",
    "Humanoid-9|8",
    "Humanoid-17x1",
)

# Normalisation ceilings (harness.references): the best 10M-step return the HAPPO papers report for
# HAPPO or MAPPO, read off their learning-curve figures, for the papers' 1000-step episodes.
_ICLR, _JMLR = "Kuba et al., ICLR 2022", "Zhong et al., JMLR 2024"
REFERENCES = {
    "HalfCheetah-6x1": {"return": 4400.0, "source": f"HAPPO at 10M steps, {_ICLR} (read off its figure)"},
    "HalfCheetah-2x3": {"return": 7000.0, "source": f"HAPPO at 10M steps, {_JMLR} (read off its figure)"},
    "Hopper-3x1": {"return": 3550.0, "source": f"MAPPO at 10M steps, {_JMLR} (read off its figure)"},
    "Humanoid-17x1": {"return": 6700.0, "source": f"HAPPO at 10M steps, {_JMLR} (read off its figure)"},
}
for _ref in REFERENCES.values():
    _ref["options"] = {"episode_limit": 1000}

OBS_MODES = ("local", "global")

OPTIONS = {
    "agent_obsk": Option(int, 1, "local observations: observe joints up to this many hops away (0: own joints only)",
                         high=100),
    "episode_limit": Option(int, 1000, "episode length in steps (a time-limit end is a truncation)",
                            high=100_000),
    "obs_mode": Option(str, "local", "local: gymnasium-robotics' per-agent observations; "
                                     "global: full state + one-hot agent id (HARL)"),
    "workers": Option(int, 0, "worker processes for the copies (0: step them in this process)", high=1024),
    "fast": Option(bool, True, "batched stepping of the copies and observations by precomputed index gathers "
                               "(equal to gymnasium-robotics' own over whole episodes; false: the package's "
                               "own path, copy by copy)"),
    "threads": Option(int, 1, "with fast=true: threads simulating the copies (MuJoCo runs without Python's lock, "
                              "so 2 threads on 2 cores simulate up to twice as fast; same results)", high=1024),
    "render": Option(bool, False, "copies draw RGB frames with MuJoCo's offscreen renderer (harness eval --video; "
                                  "headless: MUJOCO_GL=egl); the same episodes"),
}

# Factorisations of the HAPPO paper that gymnasium-robotics 1.4 does not define: one joint per
# agent, in HARL's agent order (joint labels as in gymnasium-robotics' body graph).
_EXTRA_FACTORISATIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("Walker2d", "6x1"): ("foot_joint", "leg_joint", "thigh_joint",
                          "foot_left_joint", "leg_left_joint", "thigh_left_joint"),
    ("Ant", "8x1"): ("hip1", "ankle1", "hip2", "ankle2", "hip3", "ankle3", "hip4", "ankle4"),
    ("Humanoid", "17x1"): ("left_shoulder1", "left_shoulder2", "abdomen_x", "abdomen_y", "abdomen_z",
                           "right_shoulder1", "right_shoulder2", "right_elbow", "left_elbow",
                           "left_hip_x", "left_hip_y", "left_hip_z", "right_hip_x", "right_hip_y",
                           "right_hip_z", "right_knee", "left_knee"),
}

TUNED_FILE = Path(__file__).with_name("mamujoco_tuned.toml")


def split_scenario(scenario: str) -> tuple[str, str]:
    """``"HalfCheetah-2x3"`` -> ``("HalfCheetah", "2x3")``; split at the last '-'."""
    name, sep, conf = scenario.rpartition("-")
    if not sep or not name or not conf:
        raise HarnessError(f"unknown MaMuJoCo task {scenario!r}: expected <Scenario>-<agent_conf>, "
                           f"e.g. HalfCheetah-2x3; known: {_known()}")
    return name, conf


def _import_gymnasium_robotics() -> Any:
    """Import gymnasium_robotics without its package notice on stderr (it concerns the Adroit
    environments, not MaMuJoCo, and would otherwise appear in every worker process)."""
    import io

    if "gymnasium_robotics" not in sys.modules:
        with contextlib.redirect_stderr(io.StringIO()):
            import gymnasium_robotics  # noqa: F401
    from gymnasium_robotics import mamujoco_v1
    return mamujoco_v1


@contextlib.contextmanager
def _quiet_model_deprecations() -> Iterator[None]:
    """Drop MuJoCo's notices about deprecated attributes in gymnasium's robot files (one per copy,
    e.g. HalfCheetah's ``settotalmass``); every other MuJoCo warning still reaches stderr."""
    import mujoco

    previous = mujoco.get_mju_user_warning()

    def warn(message: str) -> None:
        if "is deprecated" not in message:
            print(f"WARNING: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(warn)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _known() -> str:
    return ", ".join(f"mamujoco/{s}" for s in SCENARIOS)


def _factorisation(name: str, conf: str) -> dict[str, Any] | None:
    """A custom ``agent_factorization`` for the extra splits, else None (gymnasium-robotics' own).

    Raises whatever gymnasium-robotics raises for an unknown scenario or conf.
    """
    _import_gymnasium_robotics()
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    labels = _EXTRA_FACTORISATIONS.get((name, conf))
    if labels is None:
        get_parts_and_edges(name, conf)  # only to raise for an unknown scenario or conf
        return None
    # conf None gives the single-agent graph: every joint in one part, plus edges and globals.
    (joints,), edges, globals_ = get_parts_and_edges(name, None)
    by_label = {j.label: j for j in joints}
    return {"partition": [(by_label[label],) for label in labels], "edges": edges, "globals": globals_}


class _ObsWrapper:
    """A MaMuJoCo parallel env with other observations: the agents, action spaces and closing are the
    wrapped env's; subclasses set ``observation_spaces`` and build the observations."""

    env: Any
    observation_spaces: dict[str, Any]

    @property
    def agents(self) -> list[str]:
        return self.env.agents

    def observation_space(self, agent: str) -> Any:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> Any:
        return self.env.action_space(agent)

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


class GlobalObsEnv(_ObsWrapper):
    """Wraps a MaMuJoCo parallel env so every agent observes ``[state, one-hot agent id]``.

    Only observations and observation spaces change; actions, rewards, flags and ``state()``
    are the wrapped env's.
    """

    def __init__(self, env: Any) -> None:
        import gymnasium

        self.env = env
        self.possible_agents = list(env.possible_agents)
        n = len(self.possible_agents)
        state_dim = int(np.prod(env.single_agent_env.observation_space.shape))
        self._ids = {a: np.eye(n, dtype=np.float32)[i] for i, a in enumerate(self.possible_agents)}
        space = gymnasium.spaces.Box(-np.inf, np.inf, (state_dim + n,), np.float32)
        self.observation_spaces = {a: space for a in self.possible_agents}

    def state(self) -> np.ndarray:
        return self.env.state()

    def _obs(self) -> dict[str, np.ndarray]:
        s = np.asarray(self.env.state(), dtype=np.float32)
        return {a: np.concatenate([s, self._ids[a]]) for a in self.possible_agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        _, info = self.env.reset(seed=seed, options=options)
        return self._obs(), info

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict, dict, dict, dict, dict]:
        # The wrapped env still builds its local observations; they are cheap next to the physics.
        _, rew, term, trunc, info = self.env.step(actions)
        return self._obs(), rew, term, trunc, info


class GatherObsEnv(_ObsWrapper):
    """The fast observation path (``env.fast=true``, the default).

    gymnasium-robotics builds each agent's local observation in Python, node by node
    (``obsk.build_obs``), and the global state once more. Here the global state is computed once per
    step and each agent's observation is a precomputed index gather from it: with local observations
    the package's own ``observation_factorization``; with ``global_obs`` (``obs_mode=global``) the
    whole state followed by the agent's one-hot id, what :class:`GlobalObsEnv` gives without building
    the local observations it discards. Some robots clip joint velocities in their state (Hopper,
    Walker2d: to +-10) and their local observations sometimes do (Hopper) and sometimes do not
    (Walker2d), so every gathered entry is taken either from the state or from the state with raw
    velocities, whichever reproduces the package on random states with large velocities; a task where
    neither does is refused. Rewards, flags, actions and ``state()`` are the wrapped env's.

    The gather is written for one copy (:meth:`reset`, :meth:`step`) and for a batch of copies at once
    (:meth:`gather_into`, what ``mamujoco_batched`` uses): :meth:`source` is the vector gathered from.
    """

    def __init__(self, env: Any, global_obs: bool = False) -> None:
        self.env = env
        self.possible_agents = list(env.possible_agents)
        self._single = env.single_agent_env
        self._unwrapped = env.single_agent_env.unwrapped
        structure = self._unwrapped.observation_structure
        self._qvel = slice(structure["qpos"], structure["qpos"] + structure["qvel"])
        self._state: np.ndarray | None = None
        n_agents = len(self.possible_agents)
        if global_obs:
            wrapped = GlobalObsEnv(env)
            self.observation_spaces = wrapped.observation_spaces
            n = int(np.prod(self._single.observation_space.shape))
            self._index = [np.arange(n, dtype=np.int64) for _ in self.possible_agents]
            self._ids = [np.eye(n_agents, dtype=np.float32)[i] for i in range(n_agents)]
            self._raw_needed = False
            return
        self.observation_spaces = {a: env.observation_space(a) for a in self.possible_agents}
        factorisation = env.observation_factorization
        if factorisation is None:
            raise HarnessError("env.fast=true: this MaMuJoCo task has no observation index map; "
                               "use env.fast=false")
        self._index = [np.asarray(factorisation[a], dtype=np.int64) for a in self.possible_agents]
        self._ids = None
        self._raw_needed = True
        self._check()

    def _check(self) -> None:
        import mujoco

        rng = np.random.default_rng(0)
        self.env.reset(seed=0)
        model, data = self._unwrapped.model, self._unwrapped.data
        qpos0, qvel0 = data.qpos.copy(), data.qvel.copy()
        n = self._unwrapped.observation_space.shape[0]
        base = list(self._index)
        self._raw_needed = True
        # Which source reproduces each entry: 0 = the state, 1 = the state with raw velocities.
        fits = [np.ones((2, len(idx)), dtype=bool) for idx in base]
        for trial in range(6):
            if trial:  # random states with large velocities, where clipping shows
                data.qpos[:] = qpos0 + rng.normal(0.0, 0.5, qpos0.shape)
                data.qvel[:] = rng.normal(0.0, 20.0, qvel0.shape)
                mujoco.mj_forward(model, data)
            reference = self.env._get_obs()
            source = self.source()
            for k, a in enumerate(self.possible_agents):
                if reference[a].shape != base[k].shape:
                    raise HarnessError(f"env.fast=true: agent {a!r}'s index map has the wrong size on this task; "
                                       "use env.fast=false")
                for choice in (0, 1):
                    fits[k][choice] &= np.isclose(source[base[k] + choice * n], reference[a], rtol=0, atol=1e-9)
        for k, a in enumerate(self.possible_agents):
            if not (fits[k][0] | fits[k][1]).all():
                raise HarnessError(f"env.fast=true does not reproduce agent {a!r}'s observations on this task; "
                                   "use env.fast=false")
            self._index[k] = base[k] + np.where(fits[k][0], 0, n)
        self._raw_needed = any(bool((idx >= n).any()) for idx in self._index)
        self._state = None

    def state(self) -> np.ndarray:
        return self._state if self._state is not None else self._unwrapped._get_obs()

    @property
    def source_dim(self) -> int:
        n = int(np.prod(self._single.observation_space.shape))
        return 2 * n if self._raw_needed else n

    def source(self) -> np.ndarray:
        """What the observations are gathered from: the state, then (where some entry needs it) the
        state with raw joint velocities. Also what :meth:`state` returns until the next step."""
        self._state = self._unwrapped._get_obs()
        if not self._raw_needed:
            return self._state
        raw = self._state.copy()
        raw[self._qvel] = self._unwrapped.data.qvel
        return np.concatenate([self._state, raw])

    def _gather(self) -> dict[str, np.ndarray]:
        source = self.source()
        if self._ids is None:
            return {a: source[idx] for a, idx in zip(self.possible_agents, self._index)}
        return {a: np.concatenate([source.astype(np.float32), i]) for a, i in zip(self.possible_agents, self._ids)}

    def gather_into(self, sources: np.ndarray, out: list[np.ndarray]) -> None:
        """Every agent's observations for a batch of copies: ``sources[c]`` is copy ``c``'s
        :meth:`source`; ``out[i]`` (``[E, obs_dim_i]``, float32) receives agent ``i``'s rows, one
        gather per agent for all copies."""
        for i, idx in enumerate(self._index):
            if self._ids is None:
                out[i][:] = sources[:, idx]
            else:
                out[i][:, :len(idx)] = sources
                out[i][:, len(idx):] = self._ids[i]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        _, info = self._single.reset(seed=seed, options=options)
        self.env.agents = self.possible_agents
        return self._gather(), {a: info for a in self.possible_agents}

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict, dict, dict, dict, dict]:
        _, reward, term, trunc, info = self._single.step(self.env.map_local_actions_to_global_action(actions))
        obs = self._gather()
        agents = self.possible_agents
        if term or trunc:
            self.env.agents = []
        return (obs, {a: reward for a in agents}, {a: term for a in agents}, {a: trunc for a in agents},
                {a: info for a in agents})


def _make_env(name: str, conf: str, agent_obsk: int, episode_limit: int, obs_mode: str, fast: bool = False,
              render: bool = False) -> Any:
    # Module-level (with primitive arguments) so a functools.partial of it pickles for spawned workers;
    # the factorisation's graph nodes hold lambdas, so they are built here, inside the worker.
    mamujoco_v1 = _import_gymnasium_robotics()
    with _quiet_model_deprecations():
        env = mamujoco_v1.parallel_env(name, conf, agent_obsk=agent_obsk,
                                       agent_factorization=_factorisation(name, conf), max_episode_steps=episode_limit,
                                       render_mode="rgb_array" if render else None)
    if render:
        _follow_robot(env.single_agent_env.unwrapped)
    if fast:
        return GatherObsEnv(env, global_obs=obs_mode == "global")
    return GlobalObsEnv(env) if obs_mode == "global" else env


def _follow_robot(base: Any) -> None:
    """Draw through the robot's ``track`` camera (it follows the torso), where its model has one:
    gymnasium's free camera stays put while HalfCheetah runs out of the picture."""
    import mujoco

    camera = mujoco.mj_name2id(base.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if camera >= 0:
        base.mujoco_renderer.camera_id = camera


def _build(name: str, conf: str, opts: dict[str, Any], seed: int, stream: int, n_envs: int,
           copy_offset: int) -> VecTask:
    make = functools.partial(_make_env, name, conf, opts["agent_obsk"], opts["episode_limit"], opts["obs_mode"],
                             opts["fast"], opts["render"])
    if opts["fast"] and not opts["render"]:
        from harness_plugins import mamujoco_batched as batched

        probe = make()
        ok = batched.supported(probe)
        probe.close()
        package = functools.partial(_make_env, name, conf, opts["agent_obsk"], opts["episode_limit"],
                                    opts["obs_mode"])
        if ok and batched.agrees(make, package, opts["episode_limit"]):
            return batched.BatchedMaMuJoCoTask(make, n_envs, seed, opts["episode_limit"], stream=stream,
                                               copy_offset=copy_offset, threads=opts["threads"])
    # MaMuJoCo gives every agent the same team reward: take it once, not the sum over agents.
    return PettingZooVecTask(make, n_envs, seed, team_reward="shared", episode_limit=opts["episode_limit"],
                             stream=stream, copy_offset=copy_offset)


def make_task(scenario: str, n_envs: int, seed: int, options: dict[str, Any], stream: int = 0) -> VecTask:
    """Build ``n_envs`` copies of MaMuJoCo task ``scenario`` (``<Scenario>-<agent_conf>``)."""
    opts = resolve_options("mamujoco", options, OPTIONS)
    if opts["episode_limit"] < 1:
        raise HarnessError(f"env.episode_limit must be >= 1, got {opts['episode_limit']}")
    if opts["agent_obsk"] < 0:
        raise HarnessError(f"env.agent_obsk must be >= 0, got {opts['agent_obsk']}")
    if opts["obs_mode"] not in OBS_MODES:
        raise HarnessError(f"env.obs_mode={opts['obs_mode']!r} is not one of: {', '.join(OBS_MODES)}")
    if opts["workers"] < 0:
        raise HarnessError(f"env.workers must be >= 0, got {opts['workers']}")
    if opts["render"] and opts["workers"]:
        raise HarnessError("env.render=true draws the copies in this process; it cannot be combined with env.workers")
    if opts["threads"] < 1 or (opts["threads"] > 1 and not opts["fast"]):
        raise HarnessError(f"env.threads={opts['threads']} is not accepted: expected 1, or more with env.fast=true")
    name, conf = split_scenario(scenario)
    # Check the name here, in this process: gymnasium-robotics raises a bare Exception, and with
    # workers it would do so inside a worker process.
    try:
        _factorisation(name, conf)
    except Exception as exc:
        raise HarnessError(f"unknown MaMuJoCo task {scenario!r}: {exc}; known: {_known()}") from None
    build = functools.partial(_build, name, conf, opts, seed, stream)
    task = make_vec_task(build, n_envs, opts["workers"])
    task.obs_has_agent_id = opts["obs_mode"] == "global"
    return task


def tuned_overrides(task: str) -> dict[str, Any]:
    """HARL's tuned config overrides for ``task`` (``mamujoco/HalfCheetah-2x3`` or ``HalfCheetah-2x3``).

    Returns a fresh dict of :class:`harness.config.TrainConfig` keys (``env`` as a table of task
    options), or ``{}`` for a task without tuned values.
    """
    if "/" not in task:
        task = f"mamujoco/{task}"
    with TUNED_FILE.open("rb") as f:
        return tomllib.load(f).get(task, {})


@hookimpl
def register_tasks(register):
    register("mamujoco", make_task, scenarios=SCENARIOS, open_scenarios=True, options=OPTIONS, tuned=tuned_overrides,
             references=REFERENCES,
             smoke=("HalfCheetah-2x3", {"episode_limit": 30}),
             description="multi-agent MuJoCo from gymnasium-robotics (shared team reward)")
