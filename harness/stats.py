"""Estimators and confidence intervals over run scores, on plain numbers.

Everything here takes arrays, lists or dicts of per-task arrays and returns numbers; numpy is the
only import at load time (scipy's t and noncentral-t distributions are imported inside the functions
that need them), so ``harness eval`` can put an interval on its returns without loading pandas.
What the numbers mean (and the tables built from them) is in :mod:`harness.report`.

* :func:`t_interval`: the 95% Student t-interval of a mean (n - 1 degrees of freedom); none for one
  value. Exact for normally distributed values; :data:`T_COVERAGE` gives its measured coverage on
  skewed ones (``tests/test_stats.py`` measures it again).
* :func:`welch_interval`, :func:`seeds_needed`: the difference of two means with Welch's interval,
  and the seeds per group that a Welch t-test needs for 80% power at that difference and spread (the
  pilot-study calculation of Colas et al., "How Many Random Seeds?", 2018).
* :func:`iqm`: the interquartile mean, the mean of the middle 50% of the values.
* :func:`normalised`: scores on a task's own scale, (x - floor) / (ceiling - floor).
* :func:`iqm_with_ci` and :func:`improvement_with_ci`: rliable's aggregates over tasks (Agarwal
  et al., 2021), the IQM of the pooled scores and the probability of improvement P(X > Y), each with
  a stratified bootstrap interval (seeds resampled within each task). :func:`stable_seed` gives each
  scheme, and each ordered pair, a generator of its own.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

N_BOOT = 2000
BOOT_SEED = 0
CI_PERCENT = 95.0
#: Power and two-sided significance level of the test :func:`seeds_needed` plans for.
POWER, ALPHA = 0.8, 0.05
#: The largest seed count :func:`seeds_needed` reports; beyond it, "more than this".
MAX_SEEDS = 1000

#: Coverage (%) of the 95% t-interval of a mean, measured by simulation (``tests/test_stats.py``:
#: 200,000 samples per cell, Monte Carlo error under 0.1 point): distribution -> {seeds: coverage}.
#: Normal values: 95 at every n, as the theory says. Skewed values (gamma with shape 2, lognormal
#: with sigma 1, and a mixture where 30% of the seeds learn) cover less, at 10 seeds about as badly
#: as at 3: no seed count in this range makes the interval safe for them.
T_COVERAGE = {
    "normal": {2: 95.0, 3: 95.0, 5: 95.0, 10: 95.0},
    "gamma(2)": {2: 93.5, 3: 91.9, 5: 91.5, 10: 92.4},
    "lognormal(0, 1)": {2: 89.5, 3: 83.8, 5: 82.1, 10: 83.9},
    "70/30 mixture": {2: 90.8, 3: 86.9, 5: 87.0, 10: 93.4},
}

#: Scores per task: a list of arrays, or a dict ``{task: array}`` (its order is the order of use).
PerTask = Sequence[Any] | Mapping[str, Any]


def _t_quantile(df: Any, q: float = 0.5 + CI_PERCENT / 200) -> Any:
    from scipy.stats import t
    return t.ppf(q, df)


def t_interval(values: Any) -> tuple[float, float]:
    """The 95% Student t-interval of the mean of ``values``: mean -+ t(0.975, n - 1) * s / sqrt(n).
    One value has no interval: ``(nan, nan)``, never a zero-width one."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean, half = values.mean(), _t_quantile(n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(mean - half), float(mean + half)


def welch_interval(x: Any, y: Any) -> tuple[float, float, float]:
    """``(difference, low, high)``: mean(x) - mean(y) with its 95% Welch interval (unequal variances,
    Welch-Satterthwaite degrees of freedom). Either side with one value: the interval is NaN."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return diff, float("nan"), float("nan")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:  # every seed of both scored the same: the data show no spread to widen it by
        return diff, diff, diff
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = float(_t_quantile(df)) * se
    return diff, diff - half, diff + half


def welch_power(diff: float, sd_x: float, sd_y: float, n: Any, alpha: float = ALPHA) -> Any:
    """Power of a two-sided Welch t-test at level ``alpha`` with ``n`` seeds per group when the true
    difference of means is ``diff`` and the standard deviations are ``sd_x`` and ``sd_y`` (the
    noncentral t with Welch-Satterthwaite degrees of freedom); ``n`` may be an array."""
    from scipy.stats import nct
    n = np.asarray(n, dtype=float)
    var = sd_x ** 2 + sd_y ** 2
    df = var ** 2 * (n - 1) / (sd_x ** 4 + sd_y ** 4)
    delta = diff / np.sqrt(var / n)
    crit = _t_quantile(df, 1 - alpha / 2)
    return nct.sf(crit, df, delta) + nct.cdf(-crit, df, delta)


def seeds_needed(diff: float, sd_x: float, sd_y: float, power: float = POWER, alpha: float = ALPHA,
                 cap: int = MAX_SEEDS) -> int | None:
    """The fewest seeds per group (at least 2) at which a two-sided Welch t-test at level ``alpha``
    detects a true difference ``diff`` with probability ``power``, taking ``sd_x`` and ``sd_y`` as the
    groups' standard deviations (Colas et al., 2018: the observed effect and spread of a pilot study).
    None when more than ``cap`` seeds would be needed, or when ``diff`` is 0."""
    if diff == 0 or not math.isfinite(diff):
        return None
    if sd_x == 0 and sd_y == 0:
        return 2
    n = np.arange(2, cap + 1)
    enough = np.flatnonzero(welch_power(abs(diff), sd_x, sd_y, n, alpha) >= power)
    return int(n[enough[0]]) if len(enough) else None


def percentile_interval(samples: Any) -> tuple[float, float]:
    """The central :data:`CI_PERCENT` percentile interval of bootstrap ``samples``."""
    tail = (100.0 - CI_PERCENT) / 2
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def stable_seed(*names: str, base: int = BOOT_SEED) -> int:
    """A seed for the bootstrap of the statistic of ``names`` (a scheme, or an ordered pair), from
    ``base`` and a hash of the names: the same in every process and independent of which other
    schemes a table holds."""
    digest = hashlib.sha256("\0".join((str(base), *names)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


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


def normalised(values: Any, floor: Any, ceiling: Any) -> np.ndarray:
    """``(values - floor) / (ceiling - floor)``, element-wise: 0 at the floor (a random policy's
    return), 1 at the ceiling (a reference return); neither bound clips."""
    values, floor, ceiling = (np.asarray(x, dtype=float) for x in (values, floor, ceiling))
    return (values - floor) / (ceiling - floor)


def _tasks(per_task: PerTask) -> list[np.ndarray]:
    return [np.asarray(x, dtype=float) for x in (per_task.values() if isinstance(per_task, Mapping) else per_task)]


def stratified_resample(per_task: PerTask, rng: np.random.Generator, n_boot: int = N_BOOT) -> list[np.ndarray]:
    """For each task, ``n_boot`` resamples (rows) of its seeds, drawn with replacement within the task."""
    return [x[rng.integers(0, len(x), size=(n_boot, len(x)))] for x in _tasks(per_task)]


def probability_of_improvement(xs: PerTask, ys: PerTask) -> Any:
    """P(X > Y) averaged over tasks: per task, the fraction of (seed of X, seed of Y) pairs where X
    scored higher, ties counting one half (the Mann-Whitney probability). Each array is
    (..., n_seeds); the leading axes (e.g. bootstrap resamples) are kept."""
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
