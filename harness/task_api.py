"""The task API: the contract of a vectorised multi-agent task, and PettingZoo-backed and multi-process
implementations of it.

A task steps ``n_envs`` copies at once. Per step it gives every agent its own observation
``[E, obs_dim_i]``, the critic a global state ``[E, state_dim]``, and one team reward, termination
and truncation flag per copy. Copies that end are reset automatically; the state they reached
before the reset is returned as ``final_state`` so a truncated episode can be bootstrapped.
"""

from __future__ import annotations

import multiprocessing as mp
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np

from harness.errors import HarnessError

TeamReward = Literal["sum", "shared"]


@dataclass(frozen=True)
class ActionSpace:
    """An agent's action space: ``discrete`` with ``n`` choices, or a ``box`` of ``n`` dimensions."""

    kind: Literal["discrete", "box"]
    n: int
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    @classmethod
    def from_gymnasium(cls, space: Any) -> "ActionSpace":
        """Convert a gymnasium ``Discrete`` or one-dimensional ``Box`` space."""
        name = type(space).__name__
        if name == "Discrete":
            return cls("discrete", int(space.n))
        if name == "Box" and len(space.shape) == 1:
            return cls("box", int(space.shape[0]), tuple(map(float, space.low)), tuple(map(float, space.high)))
        raise HarnessError(f"unsupported action space {space!r}; expected Discrete or a 1-D Box")


@dataclass
class StepResult:
    """What one vectorised step returns (arrays over the ``E`` copies)."""

    obs: list[np.ndarray]
    state: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_state: np.ndarray
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    # For each copy whose episode ended at this step: the agents' final observations (``obs``
    # already holds the first observation of the next episode). Schemes with per-agent critics
    # bootstrap truncated episodes from them.
    final_obs: dict[int, list[np.ndarray]] = field(default_factory=dict)


class VecTask(ABC):
    """A vectorised cooperative multi-agent task; see the module docstring for the contract."""

    agents: list[str]
    obs_dims: list[int]
    action_spaces: list[ActionSpace]
    state_dim: int
    n_envs: int
    episode_limit: int
    # True when every agent's observation already identifies the agent (e.g. a one-hot id in it),
    # so an actor shared between agents needs no id appended.
    obs_has_agent_id: bool = False

    @abstractmethod
    def reset(self, episodes: Sequence[int] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """Start copy ``c`` at its episode number ``episodes[c]`` (default 0); return per-agent
        observations and the global state. Episode ``k`` of a copy is the same whenever it is played."""

    @abstractmethod
    def episode_counters(self) -> list[int]:
        """The episode number each copy is playing (saved in checkpoints)."""

    @abstractmethod
    def step(self, actions: Sequence[np.ndarray]) -> StepResult:
        """Step every copy with one action array per agent (``[E]`` or ``[E, dim]``)."""

    def spec(self) -> dict[str, Any]:
        """A description of the task for provenance records."""
        return {
            "agents": list(self.agents),
            "obs_dims": list(self.obs_dims),
            "action_spaces": [vars(a) for a in self.action_spaces],
            "state_dim": self.state_dim,
            "episode_limit": self.episode_limit,
            "obs_has_agent_id": bool(self.obs_has_agent_id),
        }

    def render(self, copy: int = 0) -> np.ndarray | None:
        """Optional: an RGB frame (``H x W x 3`` uint8) of copy ``copy`` as it is now, for a task built
        to draw (the task option ``render=true`` of the built-in task plugins); None when the task
        draws no frames. Used by ``harness eval --video``."""
        return None

    def close(self) -> None:
        """Release resources (worker processes, simulators)."""


#: The episode streams of a run: training copies, evaluation copies (the curves and the choice of the
#: best policy) and the absolute metric's copies each play episodes of their own.
TRAIN_STREAM, EVAL_STREAM, ABSOLUTE_STREAM = 0, 1, 2


def episode_seed(seed: int, copy: int, episode: int, stream: int) -> int:
    """The seed of episode ``episode`` of copy ``copy``: a pure function, so runs can be resumed."""
    return int(np.random.SeedSequence([seed, stream, copy, episode]).generate_state(1)[0])


class LocalCopiesTask(VecTask):
    """What tasks whose copies are environment objects in this process share: per-copy episode
    numbers and seeded resets, running returns and lengths, and ending an episode inside a step.

    A subclass sets ``envs``, ``agents``, ``n_envs``, ``seed``, ``stream``, ``copy_offset`` and
    ``obs_dims``, calls :meth:`_start` at the end of its constructor, and in ``step`` fills
    ``final_state[c]`` and hands each copy's reward, flags and observations to :meth:`_end_step`.
    """

    envs: list[Any]
    seed: int
    stream: int
    copy_offset: int
    state_from_obs: bool = False

    def _start(self) -> None:
        self.episodes = np.zeros(self.n_envs, dtype=np.int64)
        self._returns = np.zeros(self.n_envs)
        self._lengths = np.zeros(self.n_envs, dtype=np.int64)
        self.state_dim = 0
        _, state = self.reset()
        self.state_dim = state.shape[1]

    def _reset_copy(self, c: int) -> tuple[dict, np.ndarray]:
        obs, _ = self.envs[c].reset(seed=self._episode_seed(c))
        return obs, self._state(self.envs[c], obs)

    def _state(self, env: Any, obs: dict) -> np.ndarray:
        if self.state_from_obs:
            return np.concatenate([np.asarray(obs[a], dtype=np.float32).ravel() for a in self.agents])
        return np.asarray(env.state(), dtype=np.float32).ravel()

    def _write_obs(self, out: list[np.ndarray], c: int, obs: dict) -> None:
        for i, a in enumerate(self.agents):
            out[i][c] = np.asarray(obs[a], dtype=np.float32).ravel()

    def _empty_result(self) -> StepResult:
        E = self.n_envs
        return StepResult([np.empty((E, d), np.float32) for d in self.obs_dims],
                          np.empty((E, self.state_dim), np.float32), np.empty(E, np.float32),
                          np.zeros(E, bool), np.zeros(E, bool), np.empty((E, self.state_dim), np.float32))

    def _record(self, result: StepResult, c: int, reward: float, terminated: bool, truncated: bool) -> bool:
        """Record copy ``c``'s reward and flags, and its episode's return and length if it ended (then
        the copy's next episode is counted); whether it ended. The caller resets an ended copy."""
        result.reward[c] = reward
        self._returns[c] += reward
        self._lengths[c] += 1
        if not (terminated or truncated):
            return False
        result.terminated[c] = terminated
        result.truncated[c] = truncated
        result.episode_returns.append(float(self._returns[c]))
        result.episode_lengths.append(int(self._lengths[c]))
        self._returns[c] = 0.0
        self._lengths[c] = 0
        self.episodes[c] += 1
        return True

    def _episode_seed(self, c: int) -> int:
        """The seed of copy ``c``'s current episode."""
        return episode_seed(self.seed, self.copy_offset + c, int(self.episodes[c]), self.stream)

    def _end_step(self, result: StepResult, c: int, reward: float, terminated: bool, truncated: bool,
                  obs: dict) -> None:
        """Record copy ``c``'s step (``result.final_state[c]`` already set); reset it if it ended."""
        if self._record(result, c, reward, terminated, truncated):
            result.final_obs[c] = [np.asarray(obs[a], dtype=np.float32).ravel() for a in self.agents]
            obs, result.state[c] = self._reset_copy(c)
        else:
            result.state[c] = result.final_state[c]
        self._write_obs(result.obs, c, obs)

    def reset(self, episodes: Sequence[int] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        self.episodes[:] = 0 if episodes is None else np.asarray(episodes, dtype=np.int64)
        obs_out = [np.zeros((self.n_envs, d), np.float32) for d in self.obs_dims]
        states = []
        for c in range(self.n_envs):
            obs, state = self._reset_copy(c)
            self._write_obs(obs_out, c, obs)
            states.append(state)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs_out, np.stack(states)

    def episode_counters(self) -> list[int]:
        return [int(x) for x in self.episodes]


class PettingZooVecTask(LocalCopiesTask):
    """Steps ``n_envs`` PettingZoo parallel environments in this process.

    Every episode of every copy is reset with a seed derived from ``(seed, stream, copy, episode)``,
    so the sequence of episodes does not depend on how the copies are split between processes.
    ``state_from_obs`` builds the global state by concatenating the agents' observations instead of
    calling ``env.state()``: only for environments whose state is defined that way (MPE), where it
    saves computing every observation twice.
    """

    def __init__(
        self,
        make_env: Callable[[], Any],
        n_envs: int,
        seed: int,
        team_reward: TeamReward = "sum",
        episode_limit: int = 0,
        stream: int = 0,
        copy_offset: int = 0,
        state_from_obs: bool = False,
    ) -> None:
        if n_envs < 1:
            raise HarnessError(f"n_envs must be >= 1, got {n_envs}")
        self.envs = [make_env() for _ in range(n_envs)]
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        self.n_envs = n_envs
        self.seed = seed
        self.stream = stream
        self.copy_offset = copy_offset
        self.team_reward = team_reward
        self.state_from_obs = state_from_obs
        self.episode_limit = episode_limit
        self.obs_dims = [int(np.prod(first.observation_space(a).shape)) for a in self.agents]
        self.action_spaces = [ActionSpace.from_gymnasium(first.action_space(a)) for a in self.agents]
        self._low = [np.asarray(s.low, np.float32) if s.kind == "box" else None for s in self.action_spaces]
        self._high = [np.asarray(s.high, np.float32) if s.kind == "box" else None for s in self.action_spaces]
        self._start()

    def _env_action(self, i: int, a: np.ndarray) -> Any:
        if self._low[i] is None:
            return int(a)
        return np.clip(a, self._low[i], self._high[i]).astype(np.float32)

    def step(self, actions: Sequence[np.ndarray]) -> StepResult:
        agents = self.agents
        result = self._empty_result()
        for c, env in enumerate(self.envs):
            act = {a: self._env_action(i, actions[i][c]) for i, a in enumerate(agents)}
            obs, rew, term, trunc, _ = env.step(act)
            if self.team_reward == "sum":
                r = float(sum(rew[a] for a in agents))
            else:
                r = float(rew[agents[0]])
            result.final_state[c] = self._state(env, obs)
            is_term = any(term[a] for a in agents)
            is_trunc = not is_term and (any(trunc[a] for a in agents) or not env.agents)
            self._end_step(result, c, r, is_term, is_trunc, obs)
        return result

    def render(self, copy: int = 0) -> np.ndarray | None:
        draw = getattr(self.envs[copy], "render", None)
        frame = draw() if draw is not None else None
        return None if frame is None else np.asarray(frame, dtype=np.uint8)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker(remote: Any, factory: Callable[..., VecTask], kwargs: dict[str, Any]) -> None:
    task = factory(**kwargs)
    try:
        while True:
            cmd, data = remote.recv()
            if cmd == "step":
                remote.send(task.step(data))
            elif cmd == "reset":
                remote.send(task.reset(data))
            elif cmd == "counters":
                remote.send(task.episode_counters())
            elif cmd == "meta":
                remote.send((task.agents, task.obs_dims, task.action_spaces, task.state_dim, task.episode_limit))
            elif cmd == "close":
                break
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        task.close()
        remote.close()


class SubprocVecTask(VecTask):
    """Splits the copies of a task over worker processes (for environments that are costly to step).

    ``factory(n_envs=..., copy_offset=...)`` builds the in-process task for one slice of copies;
    episode seeds depend on the global copy index, so results equal the in-process task's.
    """

    def __init__(self, factory: Callable[..., VecTask], n_envs: int, workers: int) -> None:
        if not 1 <= workers <= n_envs:
            raise HarnessError(f"workers must be between 1 and n_envs={n_envs}, got {workers}")
        ctx = mp.get_context("spawn")
        sizes = [n_envs // workers + (1 if w < n_envs % workers else 0) for w in range(workers)]
        self.remotes, self.procs, offset = [], [], 0
        for size in sizes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, factory, {"n_envs": size, "copy_offset": offset}), daemon=True)
            proc.start()
            child.close()
            self.remotes.append(parent)
            self.procs.append(proc)
            offset += size
        self.sizes = sizes
        self.n_envs = n_envs
        self.remotes[0].send(("meta", None))
        self.agents, self.obs_dims, self.action_spaces, self.state_dim, self.episode_limit = self.remotes[0].recv()

    def reset(self, episodes: Sequence[int] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        start = 0
        for r, size in zip(self.remotes, self.sizes):
            r.send(("reset", None if episodes is None else list(episodes[start:start + size])))
            start += size
        parts = [r.recv() for r in self.remotes]
        obs = [np.concatenate([p[0][i] for p in parts]) for i in range(len(self.agents))]
        return obs, np.concatenate([p[1] for p in parts])

    def episode_counters(self) -> list[int]:
        for r in self.remotes:
            r.send(("counters", None))
        return [x for r in self.remotes for x in r.recv()]

    def step(self, actions: Sequence[np.ndarray]) -> StepResult:
        start = 0
        for r, size in zip(self.remotes, self.sizes):
            r.send(("step", [a[start:start + size] for a in actions]))
            start += size
        parts: list[StepResult] = [r.recv() for r in self.remotes]
        cat = np.concatenate
        final_obs: dict[int, list[np.ndarray]] = {}
        offset = 0
        for p, size in zip(parts, self.sizes):
            final_obs.update({offset + c: o for c, o in p.final_obs.items()})
            offset += size
        return StepResult(
            obs=[cat([p.obs[i] for p in parts]) for i in range(len(self.agents))],
            state=cat([p.state for p in parts]),
            reward=cat([p.reward for p in parts]),
            terminated=cat([p.terminated for p in parts]),
            truncated=cat([p.truncated for p in parts]),
            final_state=cat([p.final_state for p in parts]),
            episode_returns=[x for p in parts for x in p.episode_returns],
            episode_lengths=[x for p in parts for x in p.episode_lengths],
            final_obs=final_obs,
        )

    def close(self) -> None:
        for r in self.remotes:
            try:
                r.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def make_vec_task(
    build: Callable[..., VecTask], n_envs: int, workers: int
) -> VecTask:
    """Build ``n_envs`` copies in this process (``workers`` 0) or split over worker processes."""
    if workers <= 0:
        return build(n_envs=n_envs, copy_offset=0)
    return SubprocVecTask(build, n_envs, workers)
