"""Estimators and confidence intervals over run scores, on plain numbers.

Everything here takes arrays, lists or dicts of per-task arrays and returns numbers; it needs only
numpy, so ``harness eval`` can put a confidence interval on its returns without loading pandas.
What the numbers mean (and the tables built from them) is in :mod:`harness.report`.

* :func:`bootstrap_ci`: a 95% percentile-bootstrap interval of a mean (2000 resamples, a
  fixed-seed numpy Generator, so reruns give identical numbers).
* :func:`iqm`: the interquartile mean, the mean of the middle 50% of the values.
* :func:`min_max`: scores scaled between a task's lowest and highest run.
* :func:`iqm_with_ci` and :func:`improvement_with_ci`: rliable's aggregates over tasks (Agarwal
  et al., 2021), the IQM of the pooled scores and the probability of improvement P(X > Y), each with
  a stratified bootstrap interval (seeds resampled within each task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

N_BOOT = 2000
BOOT_SEED = 0
CI_PERCENT = 95.0

#: Scores per task: a list of arrays, or a dict ``{task: array}`` (its order is the order of use).
PerTask = Sequence[Any] | Mapping[str, Any]


def bootstrap_ci(values: Any, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean of ``values`` (a single value gives [value, value])."""
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return percentile_interval(means)


def percentile_interval(samples: Any) -> tuple[float, float]:
    """The central :data:`CI_PERCENT` percentile interval of bootstrap ``samples``."""
    tail = (100.0 - CI_PERCENT) / 2
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def iqm(values: Any, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the middle 50% of the values (over all of them, or along
    ``axis``). A quarter of the values, rounded down, is cut from each end; a slice holding NaN, or
    holding no values, gives NaN."""
    a = np.asarray(values)
    if axis is None:
        a, axis = a.ravel(), 0
    if not np.issubdtype(a.dtype, np.inexact):
        a = a.astype(float)
    n = a.shape[axis]
    if n == 0:
        return np.full(np.delete(a.shape, axis), np.nan)[()]
    cut = int(0.25 * n)
    middle = [slice(None)] * a.ndim
    middle[axis] = slice(cut, n - cut)
    out = np.mean(np.partition(a, (cut, n - cut - 1), axis)[tuple(middle)], axis=axis)
    has_nan = np.isnan(a).any(axis=axis)
    return np.where(has_nan, np.nan, out)[()] if has_nan.any() else out


def min_max(values: Any, low: Any, high: Any) -> np.ndarray:
    """``values`` scaled so ``low`` maps to 0 and ``high`` to 1 (element-wise; ``low`` and ``high``
    broadcast). Where ``low == high`` every value gets 0.5: a task on which every run scored the same
    says nothing about which scheme is better, and 0.5 leaves P(X > Y) at 0.5 and pulls no IQM
    towards 0 or 1."""
    values, low, high = (np.asarray(x, dtype=float) for x in (values, low, high))
    span = high - low
    return np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 0.5)


def _tasks(per_task: PerTask) -> list[np.ndarray]:
    return [np.asarray(x, dtype=float) for x in (per_task.values() if isinstance(per_task, Mapping) else per_task)]


def stratified_resample(per_task: PerTask, rng: np.random.Generator, n_boot: int = N_BOOT) -> list[np.ndarray]:
    """For each task, ``n_boot`` resamples (rows) of its seeds, drawn with replacement within the task."""
    return [x[rng.integers(0, len(x), size=(n_boot, len(x)))] for x in _tasks(per_task)]


def probability_of_improvement(xs: PerTask, ys: PerTask) -> Any:
    """P(X > Y) averaged over tasks: per task, the fraction of (seed of X, seed of Y) pairs where X
    scored higher, ties counting one half. Each array is (..., n_seeds); the leading axes (e.g.
    bootstrap resamples) are kept."""
    per_task = []
    for x, y in zip(_tasks(xs), _tasks(ys)):
        diff = x[..., :, None] - y[..., None, :]
        per_task.append(((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1)))
    return np.mean(per_task, axis=0)


def iqm_with_ci(per_task: PerTask, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> tuple[float, float, float]:
    """``(iqm, ci_low, ci_high)`` of the scores of all tasks pooled, with a 95% stratified bootstrap
    CI (seeds resampled with replacement within each task, ``n_boot`` resamples)."""
    tasks = _tasks(per_task)
    boot = np.concatenate(stratified_resample(tasks, np.random.default_rng(seed), n_boot), axis=1)
    low, high = percentile_interval(iqm(boot, axis=1))
    return float(iqm(np.concatenate(tasks))), low, high


def improvement_with_ci(xs: PerTask, ys: PerTask, n_boot: int = N_BOOT,
                        seed: int = BOOT_SEED) -> tuple[float, float, float]:
    """``(probability, ci_low, ci_high)``: :func:`probability_of_improvement` of X over Y on the
    tasks both lists hold (in the same order), with a 95% stratified bootstrap CI (X's resamples
    drawn first, then Y's, from one Generator)."""
    xs, ys = _tasks(xs), _tasks(ys)
    rng = np.random.default_rng(seed)
    boot = probability_of_improvement(stratified_resample(xs, rng, n_boot), stratified_resample(ys, rng, n_boot))
    low, high = percentile_interval(boot)
    return float(probability_of_improvement(xs, ys)), low, high
