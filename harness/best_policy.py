"""The best policy of a run: the scheme's policy state (:func:`harness.scheme.policy_state`) at its
best evaluation so far (``best.pt``), and the
absolute metric, that policy re-evaluated at the end on more episodes (the marl-eval protocol).

The absolute metric plays episodes that no evaluation played (the evaluations chose the best policy
on their episodes, so re-playing them would count the selection's luck again): the caller's
``evaluate`` plays them on a stream of start states of their own."""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

from harness.results import RunDir
from harness.scheme import load_policy_state, policy_state

#: ``absolute.json``'s ``start_states``: the absolute metric's episodes are its own (runs made before it
#: have no such key: their absolute metric re-played the evaluation episodes).
STREAM = "own stream"


class BestPolicy:
    """Keeps the scheme state of the best evaluation return so far; kept in checkpoints, so a resumed
    run knows it, and written to ``best.pt`` in a run directory."""

    def __init__(self, run: RunDir | None) -> None:
        self.run = run
        self.best: tuple[float, int, int] | None = None  # (eval_return, iteration, env_steps)
        self.state: dict[str, Any] | None = None         # {"best": ..., "scheme": the scheme's state then}

    def offer(self, eval_return: float, iteration: int, env_steps: int, scheme: Any) -> None:
        """An evaluation's return: keep ``scheme``'s state when it beats the best so far."""
        if self.best is not None and not eval_return > self.best[0]:
            return
        self.best = (float(eval_return), iteration, env_steps)
        self.state = {"best": self.best, "scheme": copy.deepcopy(policy_state(scheme))}
        if self.run is not None:
            self.run.save_best(self.state)

    def checkpoint(self) -> dict[str, Any]:
        return {"best": self.best, "best_state": self.state}

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.best = ckpt.get("best", self.best)
        self.state = ckpt.get("best_state", self.state)

    def absolute_metric(self, scheme: Any, evaluate: Callable[[int], list[float]], episodes: int,
                        weights_changed: Callable[[], None]) -> dict[str, Any] | None:
        """The best policy loaded into ``scheme`` and scored by ``evaluate(episodes)`` (on fresh start
        states), then the scheme's own state put back; None when no evaluation ran. Written to
        ``absolute.json`` in a run directory."""
        if self.state is None:
            return None
        current = copy.deepcopy(policy_state(scheme))  # a copy: a state dict holds live tensors
        load_policy_state(scheme, self.state["scheme"])
        weights_changed()
        returns = evaluate(episodes)
        load_policy_state(scheme, current)
        weights_changed()
        best = self.state["best"]
        absolute = {"absolute_return": float(np.mean(returns)), "absolute_return_std": float(np.std(returns)),
                    "episodes": episodes, "returns": [float(f"{r:.6g}") for r in returns], "start_states": STREAM,
                    "best_eval_return": best[0], "best_iteration": best[1], "best_env_steps": best[2]}
        if self.run is not None:
            self.run.write_absolute(absolute)
        return absolute
