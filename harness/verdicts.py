"""Per task, which comparisons of two schemes the seeds decide, and how many seeds the others need.

For each task and each pair of schemes X, Y (in name order) :func:`compare_pairs` gives the
difference of the mean final returns X - Y with its 95% Welch interval, P(X > Y) over seeds (the
Mann-Whitney probability: the fraction of (seed of X, seed of Y) pairs where X scored higher, ties
one half) and a verdict: **decided** when the interval excludes 0, else **undecided**. For an
undecided pair, the seeds per scheme at which a Welch t-test would detect the observed difference
with 80% power at a two-sided 0.05 level, taking the observed difference and standard deviations as
the truth (the pilot-study calculation of Colas et al., "How Many Random Seeds? Statistical Power
Analysis in Deep Reinforcement Learning Experiments", 2018).

:func:`interval_note` says, per row of the per-(task, scheme) table, what its interval rests on.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from harness.stats import MAX_SEEDS, probability_of_improvement, seeds_needed, welch_interval

#: Below this many seeds a row's note says its interval assumes roughly normal returns: too few
#: seeds to see whether the returns are skewed, where the t-interval covers less (stats.T_COVERAGE).
FEW_SEEDS = 10

COLUMNS = ["task", "scheme_x", "scheme_y", "n_x", "n_y", "mean_x", "mean_y", "difference", "ci_low", "ci_high",
           "probability", "verdict", "seeds_needed"]


def interval_note(n: int) -> str:
    """What the 95% t-interval of a mean over ``n`` seeds rests on, for the table ('' when nothing)."""
    if n < 2:
        return f"n = {n}: no interval"
    return f"n = {n}: interval assumes roughly normal returns" if n < FEW_SEEDS else ""


def verdict(low: float, high: float) -> str:
    """``decided`` when the interval [low, high] of a difference excludes 0, else ``undecided``
    (also when there is no interval)."""
    return "decided" if (low > 0 or high < 0) else "undecided"


def needed_text(x: np.ndarray, y: np.ndarray) -> str:
    """The seeds per scheme a decided answer needs (:func:`harness.stats.seeds_needed` from the
    observed difference and spreads), ``> 1000`` beyond the cap, ``-`` when a side has one seed."""
    if len(x) < 2 or len(y) < 2:
        return "-"
    n = seeds_needed(float(x.mean() - y.mean()), float(x.std(ddof=1)), float(y.std(ddof=1)))
    return f"> {MAX_SEEDS}" if n is None else str(n)


def compare_pairs(finals: pd.DataFrame) -> pd.DataFrame:
    """One row per task and pair of schemes (X before Y by name) from the runs' final scores
    (``task``, ``scheme``, ``final_return``): columns :data:`COLUMNS`; ``seeds_needed`` is text,
    empty for a decided pair."""
    rows = []
    for task, group in finals.groupby("task", sort=True):
        scores = {s: g["final_return"].to_numpy(dtype=float) for s, g in group.groupby("scheme", sort=True)}
        for x_name, y_name in itertools.combinations(scores, 2):
            x, y = scores[x_name], scores[y_name]
            diff, low, high = welch_interval(x, y)
            decided = verdict(low, high)
            rows.append([task, x_name, y_name, len(x), len(y), float(x.mean()), float(y.mean()), diff, low, high,
                         float(probability_of_improvement([x], [y])), decided,
                         "" if decided == "decided" else needed_text(x, y)])
    return pd.DataFrame(rows, columns=COLUMNS)


def decided_text(row: object) -> str:
    """``decided: happo higher`` or ``undecided``, for the Markdown table."""
    if getattr(row, "verdict") != "decided":
        return "undecided"
    higher = getattr(row, "scheme_x") if getattr(row, "difference") > 0 else getattr(row, "scheme_y")
    return f"decided: {higher} higher"
