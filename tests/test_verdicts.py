"""Verdicts that hold: scores on each task's own scale (references, not the runs present), numbers
of one scheme that no other scheme can move, per-task decided/undecided comparisons with the seeds
an undecided one needs, and schemes compared only under one evaluation protocol."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.plot import plot_results
from harness.report import aggregate, final_scores, load_runs, normalise, summarise
from harness.results import RunDir
from harness.stats import iqm
from harness.verdicts import compare_pairs

from test_plot import FINALS, REFERENCES, SEEDS, VERSIONS, finals_frame, write_run, write_tree

TABLES = ("summary.csv", "summary.md", "aggregate.csv", "comparisons.csv")


def set_config(root: Path, task: str, scheme: str, **keys) -> None:
    """Set config keys in every run of (task, scheme) of a tree written by write_tree."""
    for seed in SEEDS:
        run = RunDir(root / task.replace("/", "_") / scheme / f"seed_{seed}")
        record = run.read_config()
        record["config"].update(keys)
        run.write_config(record)


# -- 1. a scale that depends on the task only ------------------------------------------------------

def test_adding_a_scheme_changes_no_other_schemes_numbers(tmp_path: Path) -> None:
    write_tree(tmp_path, FINALS)

    def tables():
        df = load_runs(tmp_path)
        iqm_table, improvement = aggregate(df, references=REFERENCES)
        scores = normalise(final_scores(df), REFERENCES)
        return (iqm_table.set_index("scheme"), improvement.set_index(["scheme_x", "scheme_y"]),
                scores.set_index(["task", "scheme", "seed"])["score"], summarise(df, references=REFERENCES),
                compare_pairs(final_scores(df)))

    before = tables()
    # A third scheme with an outlier run far beyond the others on one task, and a poor run on the other.
    write_tree(tmp_path, {("mpe/simple_spread", "ippo"): [-59.0, -58.0, -57.0],
                          ("mamujoco/Hopper-3x1", "ippo"): [1000.0, 5.0, 6.0]})
    after = tables()
    assert set(after[0].index) == {"happo", "mappo", "ippo"}
    pd.testing.assert_frame_equal(after[0].loc[["happo", "mappo"]], before[0], check_exact=True)
    pd.testing.assert_frame_equal(after[1].loc[[("happo", "mappo"), ("mappo", "happo")]], before[1], check_exact=True)
    pd.testing.assert_series_equal(after[2].loc[before[2].index], before[2], check_exact=True)
    summary_after = after[3][after[3]["scheme"] != "ippo"].reset_index(drop=True)
    pd.testing.assert_frame_equal(summary_after, before[3], check_exact=True)
    pairs_after = after[4][(after[4]["scheme_x"] != "ippo") & (after[4]["scheme_y"] != "ippo")].reset_index(drop=True)
    pd.testing.assert_frame_equal(pairs_after, before[4], check_exact=True)


def _min_max_iqm(scores: dict[tuple[str, str], list[float]], scheme: str) -> float:
    """The IQM of ``scheme`` as the earlier min-max normalisation (over all runs present) gave it."""
    pooled = []
    for task in sorted({t for t, _ in scores}):
        everything = [v for (t, _), values in scores.items() if t == task for v in values]
        low, high = min(everything), max(everything)
        pooled += [(v - low) / (high - low) for v in scores[(task, scheme)]]
    return float(iqm(np.array(pooled)))


def test_an_outlier_scheme_no_longer_flips_the_ranking() -> None:
    # On t1 A leads by a lot, on t2 B leads by a little.
    two = {("a/t1", "A"): [1.0, 2.0, 3.0], ("a/t1", "B"): [0.0, 0.5, 1.0],
           ("a/t2", "A"): [0.0, 0.1, 0.2], ("a/t2", "B"): [0.3, 0.4, 0.5]}
    three = {**two, ("a/t1", "C"): [0.5, 1.0, 1.5], ("a/t2", "C"): [100.0, 0.2, 0.3]}  # one outlier run of C
    # Min-max over the runs present: B ahead with two schemes, A ahead once C's outlier squeezes t2.
    assert _min_max_iqm(two, "B") > _min_max_iqm(two, "A")
    assert _min_max_iqm(three, "A") > _min_max_iqm(three, "B")
    refs = {"a/t1": {"floor": 0.0, "ceiling": 4.0}, "a/t2": {"floor": 0.0, "ceiling": 1.0}}
    with_two = aggregate(finals_frame(two), references=refs)[0].set_index("scheme")
    with_three = aggregate(finals_frame(three), references=refs)[0].set_index("scheme")
    assert with_two.loc["B", "iqm"] > with_two.loc["A", "iqm"]
    pd.testing.assert_frame_equal(with_three.loc[["A", "B"]], with_two, check_exact=True)


def test_tasks_without_a_ceiling_or_a_reference_are_left_out_and_said_so(tmp_path: Path) -> None:
    write_tree(tmp_path, {**FINALS, ("mpe/simple_tag", "happo"): [5.0, 9.0, 7.0],
                          ("mpe/simple_tag", "mappo"): [6.0, 8.0, 7.5]})
    refs = {"mpe/simple_spread": REFERENCES["mpe/simple_spread"],
            "mamujoco/Hopper-3x1": {"floor": 2.0, "floor_note": "uniform-random policy, 20 episodes, seed 0",
                                    "ceiling": None, "ceiling_note": None}}
    plot_results(tmp_path, tmp_path / "a", references=refs)
    plot_results(tmp_path, tmp_path / "b", references=refs)
    for name in TABLES:  # same tree, byte-identical tables
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    md = (tmp_path / "a" / "summary.md").read_text()
    assert ("Left out (no common scale): mamujoco/Hopper-3x1 (no published reference return (ceiling)); "
            "mpe/simple_tag (no reference for this task).") in md
    assert "| mamujoco/Hopper-3x1 | 2 | uniform-random policy, 20 episodes, seed 0 | none published |  |" in md
    assert "| mpe/simple_spread | -60 | uniform-random policy, 20 episodes, seed 0 | 0 | made up for the tests |" in md
    assert "(return - random) / (reference - random)" in md and "95% t-interval over seeds" in md
    summary = pd.read_csv(tmp_path / "a" / "summary.csv").set_index(["task", "scheme"])
    hopper = summary.loc[("mamujoco/Hopper-3x1", "happo")]
    assert hopper["floor"] == 2.0 and hopper["above_floor"] == 108.0 and np.isnan(hopper["normalised_mean"])
    assert np.isnan(hopper["ceiling"]) and hopper["floor_note"].startswith("uniform-random")
    spread = summary.loc[("mpe/simple_spread", "happo")]
    assert spread["normalised_mean"] == pytest.approx((-12 + 60) / 60) and spread["ceiling_note"] == "made up for the tests"
    assert np.isnan(summary.loc[("mpe/simple_tag", "happo"), "floor"])
    agg = pd.read_csv(tmp_path / "a" / "aggregate.csv")
    assert (agg["n_tasks"] == 1).all()
    # Comparisons per task need no scale: every task has its pair.
    assert len(pd.read_csv(tmp_path / "a" / "comparisons.csv")) == 3


def test_without_references_there_is_no_aggregate(tmp_path: Path) -> None:
    write_tree(tmp_path, FINALS)
    written = plot_results(tmp_path, references={})
    assert (tmp_path / "plots" / "aggregate.png") in written
    assert len(pd.read_csv(tmp_path / "plots" / "aggregate.csv")) == 0
    md = (tmp_path / "plots" / "summary.md").read_text()
    assert "no common scale and no aggregate over tasks" in md and "no reference for this task" in md
    # By default the tree's own references are measured (harness.references) and shown.
    plot_results(tmp_path, tmp_path / "measured")
    md = (tmp_path / "measured" / "summary.md").read_text()
    assert "uniform-random policy" in md and len(pd.read_csv(tmp_path / "measured" / "aggregate.csv")) > 0


# -- 2. and 3. intervals and verdicts ---------------------------------------------------------------

def test_one_seed_has_no_interval_in_the_tables(tmp_path: Path) -> None:
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0], ("mpe/simple_spread", "mappo"): [-20.0]})
    plot_results(tmp_path, tmp_path / "out", references=REFERENCES)
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| mpe/simple_spread | happo | 1 | 3000 | 0 s | -10 | +50 | 0.833 | n = 1: no interval |" in md
    assert "| mpe/simple_spread | happo | mappo | 1, 1 | 10 | 1.000 | undecided | - |" in md
    pairs = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert pairs["verdict"].tolist() == ["undecided"] and pairs["seeds_needed"].tolist() == ["-"]


def test_decided_and_undecided_pairs_with_the_seeds_an_answer_needs() -> None:
    pairs = compare_pairs(finals_frame({("a/t1", "x"): [10.0, 11.0, 12.0], ("a/t1", "y"): [1.0, 2.0, 3.0],
                                        ("a/t2", "x"): [1.0, 2.0, 3.0], ("a/t2", "y"): [0.5, 1.5, 2.5]})
                          .rename(columns={"eval_return": "final_return"})).set_index("task")
    decided = pairs.loc["a/t1"]
    assert decided["verdict"] == "decided" and decided["difference"] == 9.0 and decided["seeds_needed"] == ""
    assert decided["ci_low"] > 0 and decided["probability"] == 1.0
    # Difference 0.5 with both standard deviations 1: Cohen's d = 0.5, 64 seeds per scheme for 80% power.
    undecided = pairs.loc["a/t2"]
    assert undecided["verdict"] == "undecided" and undecided["seeds_needed"] == "64"
    assert undecided["ci_low"] < 0 < undecided["ci_high"]
    assert undecided["probability"] == pytest.approx(6 / 9)  # x beats y in 6 of the 9 seed pairs


# -- 4. comparability across schemes -----------------------------------------------------------------

def test_schemes_evaluated_differently_are_refused_naming_the_key(tmp_path: Path) -> None:
    write_tree(tmp_path, FINALS)
    set_config(tmp_path, "mpe/simple_spread", "happo", eval_episodes=20)
    set_config(tmp_path, "mpe/simple_spread", "mappo", eval_episodes=40)
    with pytest.raises(HarnessError) as err:
        plot_results(tmp_path, tmp_path / "out", references=REFERENCES)
    message = str(err.value)
    assert "mpe/simple_spread (happo, mappo)" in message and "eval_episodes (happo 20, mappo 40)" in message
    assert "--allow-mixed" in message and "\n" not in message and "Hopper" not in message
    plot_results(tmp_path, tmp_path / "out", allow_mixed=True, references=REFERENCES)
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "compared anyway (--allow-mixed), protocol differs**: eval_episodes (happo 20, mappo 40)" in md


@pytest.mark.parametrize("change, needle", [
    ({"env": {"episode_limit": 50}}, "env.episode_limit (happo -, mappo 50)"),
    ({"steps": 9000}, "steps (happo 3000, mappo 9000)"),
    ({"absolute_factor": 2}, "absolute_factor (happo -, mappo 2)"),
])
def test_other_protocol_and_budget_keys_are_refused(tmp_path: Path, change: dict, needle: str) -> None:
    write_tree(tmp_path, FINALS)
    set_config(tmp_path, "mamujoco/Hopper-3x1", "mappo", **change)
    with pytest.raises(HarnessError, match="mamujoco/Hopper-3x1") as err:
        aggregate(load_runs(tmp_path), references=REFERENCES)
    assert needle in str(err.value)


def test_different_seeds_or_env_versions_across_schemes_are_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0, -12.0, -14.0],
                          ("mpe/simple_spread", "mappo"): [-20.0, -22.0]})
    with pytest.raises(HarnessError, match=r"seeds \(happo 1,2,3, mappo 1,2\)"):
        plot_results(tmp_path, tmp_path / "out")
    other = tmp_path / "versions"
    write_tree(other, {("mpe/simple_spread", "happo"): [-10.0, -12.0]})
    for seed in (1, 2):
        write_run(other, "mpe/simple_spread", "mappo", seed, -20.0, {**VERSIONS, "mpe2": "0.0.2"})
    with pytest.raises(HarnessError, match=r"mpe2 \(happo 0\.0\.1, mappo 0\.0\.2\)"):
        plot_results(other, other / "out")


def test_the_schemes_own_settings_are_listed_not_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, FINALS)
    set_config(tmp_path, "mpe/simple_spread", "happo", lr=5e-4)
    set_config(tmp_path, "mpe/simple_spread", "mappo", lr=1e-3, scheme_options={"kl_threshold": 0.01})
    plot_results(tmp_path, tmp_path / "out", references=REFERENCES)
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "- mpe/simple_spread: differs by scheme: lr (happo 0.0005, mappo 0.001); scheme.kl_threshold (happo -, mappo 0.01)" in md
    assert "- mamujoco/Hopper-3x1: differs by scheme: nothing but the scheme" in md
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert len(prov) == 12
