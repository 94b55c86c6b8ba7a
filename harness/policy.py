"""Acting: the actions a scheme's actors take for every agent's observations.

One :class:`Policy` serves a run's rollouts, its evaluations and ``harness eval``'s scores and
videos, so all of them act alike. It gives a shared actor each agent's identity (the scheme's
``actor_inputs``), acts through the network plugin's fast NumPy acting policy when it offers one
(``builder.acting_policy(actors)``, rebuilt after every update), else through the actors themselves
(CPU copies when updates run on another device, so acting never waits on a transfer), samples with
its own seeded generator (saved in checkpoints), and clips continuous actions to each agent's box
before they reach the task. While an off-policy scheme warms up (``uniform``), training rollouts act
uniformly at random instead.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch

from harness.task_api import ActionSpace


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

    @torch.no_grad()
    def act(self, obs: list[np.ndarray], deterministic: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every agent's actions and their log-probabilities (the policy's own, unclipped samples), without
        gradients (a network plugin's acting policy may use torch)."""
        if self.uniform and not deterministic:
            return self._uniform(len(obs[0]))
        inputs = getattr(self.scheme, "actor_inputs", None)
        if inputs is not None:
            obs = inputs(obs)
        if self._fast is None:
            make = getattr(self.builder, "acting_policy", None)
            self._fast = (make(self.scheme.actors) if make is not None else None) or False
        if self._fast:
            return self._fast(obs, self.rng, deterministic)
        out = [actor.act(torch.from_numpy(o), deterministic=deterministic) for actor, o in zip(self._actors(), obs)]
        return [a.numpy() for a, _ in out], [lp.numpy() for _, lp in out]

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

    def greedy(self, obs: list[np.ndarray]) -> list[np.ndarray]:
        """The deterministic policy's actions as the task receives them (evaluations and videos)."""
        return self.to_task(self.act(obs, deterministic=True)[0])

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
