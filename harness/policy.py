"""Acting: the actions a scheme's actors take for every agent's observations.

One :class:`Policy` serves a run's rollouts, its evaluations and ``harness eval``'s scores and
videos, so all of them act alike. It gives a shared actor each agent's identity (the scheme's
``actor_inputs``), acts through the network plugin's fast NumPy acting policy when it offers one
(``builder.acting_policy(actors)``, rebuilt after every update), else through the actors themselves
(CPU copies when updates run on another device, so acting never waits on a transfer), samples with
its own seeded generator (saved in checkpoints), and clips continuous actions to each agent's box
before they reach the task. While an off-policy scheme warms up (``uniform``), training rollouts act
uniformly at random instead.

Recurrent actors (:mod:`harness.sequences`) act through the actors, each agent from its hidden state
in a :class:`harness.sequences.Memory` the caller keeps per stream of episodes (the training copies, an
evaluation, a video) and is told where episodes start, so every stream resets alike.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from harness.errors import PluginError
from harness.sequences import Memory, hidden_size, is_recurrent
from harness.task_api import ActionSpace


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread while acting: a step's operations are too small to share, and on a busy
    machine waking a second thread for each costs tens of milliseconds (measured: 0.8 ms per GRU step
    on one thread, 52 ms on two beside another process)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class Policy:
    """The acting side of ``scheme`` (built with the network ``builder``) on a task's action spaces."""

    def __init__(self, scheme: Any, builder: Any, action_spaces: Sequence[ActionSpace], device: torch.device,
                 seed: int) -> None:
        self.scheme = scheme
        self.builder = builder
        self.device = device
        # Sampling uses its own generator (its state is saved in checkpoints as ``act_rng``).
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        self._spaces = list(action_spaces)
        self._bounds = [None if s.kind != "box" else (np.asarray(s.low, np.float32), np.asarray(s.high, np.float32))
                        for s in action_spaces]
        self._fast: Any = None
        self._cpu_copies: list[Any] | None = None
        # True while an off-policy scheme warms up its replay buffer: training rollouts act uniformly at
        # random over each agent's action space (evaluations always act with the policy).
        self.uniform = False

    @property
    def recurrent(self) -> bool:
        """Whether any actor carries a hidden state (acting then needs a :meth:`memory`)."""
        return is_recurrent(self.scheme.actors)

    def memory(self, rows: int) -> Memory | None:
        """Fresh hidden states for ``rows`` copies (None when every actor is feed-forward)."""
        return Memory(self.scheme.actors, rows) if self.recurrent else None

    @torch.no_grad()
    def act(self, obs: list[np.ndarray], deterministic: bool = False, memory: Memory | None = None,
            starts: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every agent's actions and their log-probabilities (the policy's own, unclipped samples), without
        gradients (a network plugin's acting policy may use torch). Recurrent actors act from ``memory``
        (updated in place), beginning anew in the copies where ``starts`` ``[rows]`` is True."""
        if self.uniform and not deterministic:
            return self._uniform(len(obs[0]))
        inputs = getattr(self.scheme, "actor_inputs", None)
        if inputs is not None:
            obs = inputs(obs)
        if memory is not None:
            with one_thread():
                return self._act_recurrent(obs, deterministic, memory, starts)
        if self._fast is None:
            make = getattr(self.builder, "acting_policy", None)
            self._fast = (make(self.scheme.actors) if make is not None else None) or False
        if self._fast:
            return self._fast(obs, self.rng, deterministic)
        with one_thread():
            out = [actor.act(torch.from_numpy(o), deterministic=deterministic) for actor, o in zip(self._actors(), obs)]
        return [a.numpy() for a, _ in out], [lp.numpy() for _, lp in out]

    def _act_recurrent(self, obs: list[np.ndarray], deterministic: bool, memory: Memory,
                       starts: np.ndarray | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        rows = len(obs[0])
        s = torch.ones(rows, dtype=torch.bool) if starts is None else torch.as_tensor(np.asarray(starts, bool))
        actions, logps = [], []
        for i, (actor, o) in enumerate(zip(self._actors(), obs)):
            x = torch.from_numpy(o)
            if hidden_size(actor):
                a, lp, h = actor.act(x, deterministic=deterministic, hidden=memory.hidden[i], starts=s)
                if tuple(h.shape) != tuple(memory.hidden[i].shape):
                    raise PluginError(f"actor {type(actor).__name__} (agent {i}): act() returned a state of shape "
                                      f"{tuple(h.shape)}; its hidden_size says {tuple(memory.hidden[i].shape)}")
                memory.hidden[i] = h
            else:
                a, lp = actor.act(x, deterministic=deterministic)
            actions.append(a.numpy())
            logps.append(lp.numpy())
        return actions, logps

    def _uniform(self, rows: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Uniform random actions for ``rows`` copies (log-probabilities 0: not the policy's)."""
        actions = [self.rng.integers(0, s.n, rows) if s.kind == "discrete"
                   else self.rng.uniform(b[0], b[1], (rows, s.n)).astype(np.float32)
                   for s, b in zip(self._spaces, self._bounds)]
        return actions, [np.zeros(rows, np.float32) for _ in actions]

    def to_task(self, actions: list[np.ndarray]) -> list[np.ndarray]:
        """The actions a task receives: continuous ones clipped to the agent's box ``[low, high]``. One
        rule for every task, so no task plugin needs to clip."""
        return [a if b is None else np.clip(a, b[0], b[1]) for a, b in zip(actions, self._bounds)]

    def greedy(self, obs: list[np.ndarray], memory: Memory | None = None,
               starts: np.ndarray | None = None) -> list[np.ndarray]:
        """The deterministic policy's actions as the task receives them (evaluations and videos)."""
        return self.to_task(self.act(obs, True, memory, starts)[0])

    def refresh(self) -> None:
        """The actors' weights changed (an update, a restore): rebuild what acting uses."""
        self._fast = None
        self._cpu_copies = None

    def _actors(self) -> list[Any]:
        """The actors, or CPU copies of them when updates run on another device."""
        if self.device.type == "cpu":
            return self.scheme.actors
        if self._cpu_copies is None:
            self._cpu_copies = [copy.deepcopy(a).cpu() for a in self.scheme.actors]
        return self._cpu_copies
