"""The estimators of harness.stats: the coverage of the per-(task, scheme) interval, measured by
simulation; Welch's interval of a difference; the seeds a decided answer needs; stable seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import (T_COVERAGE, seeds_needed, stable_seed, t_interval, welch_interval, welch_power)

REPLICATIONS = 200_000  # Monte Carlo error of a coverage near 90%: sqrt(.9 * .1 / 200000) = 0.07 point
SEEDS = (2, 3, 5, 10)


def draw(name: str, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Samples of one of the distributions of :data:`T_COVERAGE`, and its true mean."""
    if name == "normal":
        return rng.normal(0.0, 1.0, shape), 0.0
    if name == "gamma(2)":  # skewness 1.4
        return rng.gamma(2.0, 1.0, shape), 2.0
    if name == "lognormal(0, 1)":  # skewness 6.2
        return rng.lognormal(0.0, 1.0, shape), math.exp(0.5)
    if name == "70/30 mixture":  # 30% of the seeds learn (mean 5), the rest do not (mean 0)
        learned = rng.random(shape) < 0.3
        return np.where(learned, rng.normal(5.0, 1.0, shape), rng.normal(0.0, 1.0, shape)), 1.5
    raise KeyError(name)


def t_coverage(values: np.ndarray, mean: float) -> float:
    """Percent of rows whose 95% t-interval (the formula of stats.t_interval, vectorised) holds ``mean``."""
    from scipy.stats import t
    n = values.shape[1]
    centre, half = values.mean(axis=1), t.ppf(0.975, n - 1) * values.std(axis=1, ddof=1) / math.sqrt(n)
    return 100.0 * float(np.mean((centre - half <= mean) & (mean <= centre + half)))


def test_the_vectorised_formula_is_t_interval():
    values = np.random.default_rng(3).normal(size=(1, 4))
    low, high = t_interval(values[0])
    assert t_coverage(values, low + 1e-9) == 100.0 and t_coverage(values, low - 1e-9) == 0.0
    assert t_coverage(values, high - 1e-9) == 100.0 and t_coverage(values, high + 1e-9) == 0.0


@pytest.mark.parametrize("name", list(T_COVERAGE))
def test_t_interval_coverage_is_what_the_tables_say(name):
    """The t-interval covers the true mean 95% of the time on normal data at every n (it is exact
    there); on skewed data it covers less, as T_COVERAGE (quoted in summary.md) says, within 0.5 point."""
    rng = np.random.default_rng(20180706)
    for n in SEEDS:
        values, mean = draw(name, rng, (REPLICATIONS, n))
        measured = t_coverage(values, mean)
        assert measured == pytest.approx(T_COVERAGE[name][n], abs=0.5), (name, n, measured)
        if name == "normal":
            assert abs(measured - 95.0) < 0.5


def test_one_value_has_no_interval():
    assert all(math.isnan(x) for x in t_interval([3.5]))
    low, high = t_interval([1.0, 2.0, 3.0])  # mean 2, s 1, t(0.975, 2) = 4.3027
    assert (low, high) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)))


def test_welch_interval_hand_computed_and_its_coverage():
    # x: mean 2, var 1, n 3; y: mean 5, var 4, n 3 -> se = sqrt(1/3 + 4/3), df = (5/3)^2 / ((1/9 + 16/9) / 2) = 2.94
    diff, low, high = welch_interval([1.0, 2.0, 3.0], [3.0, 5.0, 7.0])
    se, df = math.sqrt(5 / 3), (5 / 3) ** 2 / ((1 / 9 + 16 / 9) / 2)
    from scipy.stats import t
    assert diff == -3.0 and (low, high) == pytest.approx((-3 - t.ppf(0.975, df) * se, -3 + t.ppf(0.975, df) * se))
    assert math.isnan(welch_interval([1.0], [2.0, 3.0])[1])
    # Coverage of the true difference with unequal spreads and sizes (normal data): at least nominal.
    rng = np.random.default_rng(7)
    for nx, ny in ((2, 2), (3, 5), (5, 10)):
        x, y = rng.normal(0, 1, (20_000, nx)), rng.normal(1, 3, (20_000, ny))
        vx, vy = x.var(axis=1, ddof=1) / nx, y.var(axis=1, ddof=1) / ny
        dfs = (vx + vy) ** 2 / (vx ** 2 / (nx - 1) + vy ** 2 / (ny - 1))
        half = t.ppf(0.975, dfs) * np.sqrt(vx + vy)
        d = x.mean(axis=1) - y.mean(axis=1)
        assert 100 * np.mean(np.abs(d + 1) <= half) >= 94.5


@pytest.mark.parametrize("effect, per_group", [(1.0, 17), (0.5, 64), (0.8, 26), (0.2, 394)])
def test_seeds_needed_matches_the_textbook_sample_sizes(effect, per_group):
    """Two-sided t-test at 0.05 with 80% power and equal spreads (Cohen's tables: d = 0.5 needs 64 per
    group, d = 0.8 26, d = 1 17, d = 0.2 394 -- where Welch's degrees of freedom equal the pooled test's)."""
    assert seeds_needed(effect, 1.0, 1.0) == per_group
    assert seeds_needed(-effect * 3, 3.0, 3.0) == per_group  # only the standardised effect counts
    assert welch_power(effect, 1.0, 1.0, per_group) >= 0.8 > welch_power(effect, 1.0, 1.0, per_group - 1)


def test_seeds_needed_with_unequal_spreads_and_its_cap():
    # sd 1 and 3: the difference varies as with sd sqrt(5) in both, but Welch's df are fewer, so at
    # least as many seeds; the normal approximation 2 * 5 (1.96 + 0.84)^2 / 2^2 = 19.6 is the floor.
    n = seeds_needed(2.0, 1.0, 3.0)
    assert seeds_needed(2.0, math.sqrt(5), math.sqrt(5)) <= n and n >= 20
    assert welch_power(2.0, 1.0, 3.0, n) >= 0.8 > welch_power(2.0, 1.0, 3.0, n - 1)
    assert seeds_needed(0.01, 1.0, 1.0) is None and seeds_needed(0.0, 1.0, 1.0) is None
    assert seeds_needed(0.01, 1.0, 1.0, cap=200_000) == pytest.approx(156_978, abs=2)  # 2 (1.96 + 0.8416)^2 / d^2


def test_stable_seeds_depend_on_the_names_only():
    assert stable_seed("happo") == stable_seed("happo") != stable_seed("mappo")
    assert stable_seed("happo", "mappo") != stable_seed("mappo", "happo")
    assert stable_seed("a", "bc") != stable_seed("ab", "c")
    assert 0 <= stable_seed("x") < 2 ** 64
