"""Tests for harness.plot on a small fabricated results tree (2 tasks x 2 schemes x 3 seeds), with
references passed in, so no environment is needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.plot import plot_results
from harness.report import aggregate, load_runs, normalise, summarise, to_marl_eval
from harness.results import RunDir
from harness.stats import iqm

VERSIONS = {"python": "3.11.0", "mpe2": "0.0.1", "gymnasium-robotics": "1.3.1", "mujoco": "3.2.0",
            "pettingzoo": "1.24.3", "torch": "2.5.0"}

# Final eval return of each seed; happo beats mappo on every seed of every task.
FINALS = {
    ("mpe/simple_spread", "happo"): [-10.0, -12.0, -14.0],
    ("mpe/simple_spread", "mappo"): [-20.0, -22.0, -24.0],
    ("mamujoco/Hopper-3x1", "happo"): [100.0, 110.0, 120.0],
    ("mamujoco/Hopper-3x1", "mappo"): [50.0, 60.0, 70.0],
}
SEEDS = [1, 2, 3]
# Per-task scales: a random policy's return (floor) and a published reference return (ceiling).
REFERENCES = {
    "mpe/simple_spread": {"floor": -60.0, "floor_note": "uniform-random policy, 20 episodes, seed 0",
                          "ceiling": 0.0, "ceiling_note": "made up for the tests"},
    "mamujoco/Hopper-3x1": {"floor": 0.0, "floor_note": "uniform-random policy, 20 episodes, seed 0",
                            "ceiling": 200.0, "ceiling_note": "made up for the tests"},
}
STEP = 500          # env steps per iteration
ITERATIONS = 7      # iterations 0..6; evaluation on even iterations -> 4 evaluations per run
START = -50.0       # eval return at iteration 0


def write_run(root: Path, task: str, scheme: str, seed: int, final: float, versions: dict | None = None) -> Path:
    """One run as the trainer writes it: config.json plus metrics.csv with the real columns."""
    run = RunDir(root / task.replace("/", "_") / scheme / f"seed_{seed}")
    run.prepare()
    run.write_config({"config": {"task": task, "scheme": scheme, "seed": seed, "steps": STEP * (ITERATIONS - 1)},
                      "config_digest": f"{task}{scheme}{seed}", "seed": seed, "versions": versions or VERSIONS})
    for i in range(ITERATIONS):
        evaluated = i % 2 == 0
        ret = START + (final - START) * i / (ITERATIONS - 1)
        run.append_row({"iteration": i, "env_steps": i * STEP, "train_return": ret - 1.0,
                        "eval_return": ret if evaluated else None, "eval_return_std": 1.0 if evaluated else None})
    return run.path


def write_tree(root: Path, finals: dict = FINALS) -> Path:
    for (task, scheme), values in finals.items():
        for seed, final in zip(SEEDS, values):
            write_run(root, task, scheme, seed, final)
    return root


def finals_frame(scores: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Hand-made long table with one evaluation per run (so it is also the final score)."""
    rows = [{"task": t, "scheme": s, "seed": k, "env_steps": 100, "eval_return": v}
            for (t, s), values in scores.items() for k, v in enumerate(values)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def plotted(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("plots")
    return out, plot_results(tree, out, references=REFERENCES)


def test_load_runs_reads_evaluations_only(tree: Path) -> None:
    df = load_runs(tree)
    assert set(df.columns) >= {"task", "scheme", "seed", "run_dir", "env_steps", "eval_return"}
    assert len(df) == 4 * 3 * 4  # (task, scheme) pairs x seeds x evaluations
    assert set(df["task"]) == {"mpe/simple_spread", "mamujoco/Hopper-3x1"}  # from config.json, not dir names
    assert sorted(df["env_steps"].unique()) == [0, 1000, 2000, 3000]
    assert (df[df["env_steps"] == 0]["eval_return"] == START).all()


def test_summarise_matches_hand_computed_values(tree: Path) -> None:
    summary = summarise(load_runs(tree)).set_index(["task", "scheme"])
    for key, values in FINALS.items():
        row = summary.loc[key]
        assert row["n_seeds"] == 3
        assert row["final_env_steps"] == 3000
        assert row["mean"] == pytest.approx(np.mean(values))
        # The 95% t-interval: mean -+ t(0.975, 2) s / sqrt(3), t(0.975, 2) = 4.3027.
        half = 4.302653 * np.std(values, ddof=1) / np.sqrt(3)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
        assert row["interval_note"] == "n = 3: interval assumes roughly normal returns"


def test_summarise_single_seed_has_no_interval() -> None:
    summary = summarise(finals_frame({("a/b", "x"): [3.5]}))
    row = summary.iloc[0]
    assert row[["n_seeds", "mean"]].tolist() == [1, 3.5] and np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
    assert row["interval_note"] == "n = 1: no interval"


def test_summarise_uses_last_evaluation_not_the_best() -> None:
    df = pd.DataFrame({"task": "a/b", "scheme": "x", "seed": 0, "env_steps": [0, 10, 20], "eval_return": [1.0, 9.0, 4.0]})
    assert summarise(df).iloc[0]["mean"] == 4.0


def test_iqm_of_hand_made_normalised_set() -> None:
    # t1's scale is 0..4 and t2's 0..8, so x normalises to [0, .25, .5, .75] and [0, .25, .5, 1].
    df = finals_frame({("a/t1", "x"): [0, 1, 2, 3], ("a/t1", "y"): [4, 4, 4, 4],
                       ("a/t2", "x"): [0, 2, 4, 8], ("a/t2", "y"): [8, 8, 8, 8]})
    refs = {"a/t1": {"floor": 0.0, "ceiling": 4.0}, "a/t2": {"floor": 0.0, "ceiling": 8.0}}
    scores = normalise(df.rename(columns={"eval_return": "final_return"}), refs)
    assert scores[scores.scheme == "x"]["score"].tolist() == [0, 0.25, 0.5, 0.75, 0, 0.25, 0.5, 1]
    # Pooled x sorted: 0 0 .25 .25 .5 .5 .75 1 -> middle four .25 .25 .5 .5 -> 0.375.
    assert iqm(np.array([0, 0.25, 0.5, 0.75, 0, 0.25, 0.5, 1])) == pytest.approx(0.375)
    iqm_table, improvement = aggregate(df, references=refs)
    row = iqm_table.set_index("scheme").loc["x"]
    assert row["iqm"] == pytest.approx(0.375)
    assert row["n_tasks"] == 2 and row["n_runs"] == 8
    assert row["ci_low"] <= 0.375 <= row["ci_high"]
    assert iqm_table.set_index("scheme").loc["y", "iqm"] == pytest.approx(1.0)
    # P(y > x): 1 on t1; on t2 three wins and one tie out of four -> 0.875; mean 0.9375.
    p = improvement.set_index(["scheme_x", "scheme_y"])["probability"]
    assert p["y", "x"] == pytest.approx(0.9375)
    assert p["x", "y"] == pytest.approx(0.0625)


def test_probability_of_improvement_dominance_and_ties(tree: Path) -> None:
    _, improvement = aggregate(load_runs(tree), references=REFERENCES)
    p = improvement.set_index(["scheme_x", "scheme_y"])
    assert p.loc[("happo", "mappo"), "probability"] == 1.0
    assert p.loc[("happo", "mappo"), ["ci_low", "ci_high"]].tolist() == [1.0, 1.0]
    assert p.loc[("mappo", "happo"), "probability"] == 0.0

    same = finals_frame({("a/t1", "x"): [1, 2, 3], ("a/t1", "y"): [1, 2, 3],
                         ("a/t2", "x"): [5, 5, 5], ("a/t2", "y"): [5, 5, 5]})  # t2 constant: ties
    _, improvement = aggregate(same, references={t: {"floor": 0.0, "ceiling": 10.0} for t in ("a/t1", "a/t2")})
    assert improvement["probability"].tolist() == [0.5, 0.5]


def test_plot_results_writes_files(plotted: tuple[Path, list[Path]]) -> None:
    out, written = plotted
    names = {p.name for p in written}
    assert names == {"curves.png", "curves.pdf", "final.png", "final.pdf", "aggregate.png", "aggregate.pdf",
                     "summary.csv", "aggregate.csv", "comparisons.csv", "summary.md", "marl_eval.json",
                     "provenance.json"}
    for path in written:
        assert path.parent == out and path.stat().st_size > 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "final.pdf").read_bytes()[:4] == b"%PDF"
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and (summary["n_seeds"] == 3).all()
    md = (out / "summary.md").read_text()
    assert "| task | scheme | seeds |" in md and "Aggregate over tasks" in md and "P(X > Y)" in md
    assert "-12 [" in md  # happo on simple_spread
    agg = pd.read_csv(out / "aggregate.csv")
    assert set(agg["statistic"]) == {"iqm_normalised_final_return", "probability_of_improvement"}


def test_plot_results_default_out_dir(tmp_path: Path) -> None:
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0, -12.0, -14.0]})
    written = plot_results(tmp_path)
    assert all(p.parent == tmp_path / "plots" for p in written)
    assert (tmp_path / "plots" / "aggregate.png").stat().st_size > 0  # one scheme: IQM panel only


def test_marl_eval_json_structure(plotted: tuple[Path, list[Path]]) -> None:
    out, _ = plotted
    data = json.loads((out / "marl_eval.json").read_text())
    assert set(data) == {"mpe", "mamujoco"}
    assert set(data["mpe"]) == {"simple_spread"} and set(data["mamujoco"]) == {"Hopper-3x1"}
    algorithms = data["mpe"]["simple_spread"]
    assert set(algorithms) == {"happo", "mappo"}
    runs = algorithms["happo"]
    assert set(runs) == {f"run_{s}" for s in SEEDS}
    run = runs["run_2"]
    assert set(run) == {"step_0", "step_1", "step_2", "step_3", "absolute_metrics"}
    assert run["step_0"] == {"step_count": 0, "return": [START]}
    assert run["step_3"]["step_count"] == 3000
    assert run["absolute_metrics"] == {"return": [-12.0]}


def test_marl_eval_task_without_family() -> None:
    data = to_marl_eval(finals_frame({("flat", "x"): [1.0]}))
    assert data == {"flat": {"flat": {"x": {"run_0": {"step_0": {"step_count": 100, "return": [1.0]},
                                                       "absolute_metrics": {"return": [1.0]}}}}}}


def test_mixed_versions_are_refused_unless_allowed(tmp_path: Path) -> None:
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0, -12.0]})
    odd = write_run(tmp_path, "mpe/simple_spread", "happo", 3, -14.0, {**VERSIONS, "mpe2": "0.0.2"})
    with pytest.raises(HarnessError, match="mpe2") as err:
        plot_results(tmp_path, tmp_path / "out")
    assert str(odd) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(HarnessError, match="seed_3"):
        summarise(load_runs(tmp_path))
    written = plot_results(tmp_path, tmp_path / "out", allow_mixed=True)
    assert len(written) == 12


def test_runs_with_different_configs_are_refused_unless_allowed(tmp_path: Path) -> None:
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0, -12.0]})
    odd = RunDir(write_run(tmp_path, "mpe/simple_spread", "happo", 3, -14.0))
    record = odd.read_config()
    record["config"]["lr"] = 0.001
    odd.write_config(record)
    with pytest.raises(HarnessError, match="used different configs") as err:
        plot_results(tmp_path, tmp_path / "out")
    message = str(err.value)
    assert "lr=0.001 in [" + str(odd.path) + "]" in message and "lr=None in [" in message and "\n" not in message
    assert len(plot_results(tmp_path, tmp_path / "out", allow_mixed=True)) == 12


def test_absolute_metric_is_summarised_and_exported(tmp_path: Path) -> None:
    import json
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0, -12.0, -14.0]})
    for seed, value in ((1, -9.0), (2, -11.0)):  # seed 3 has no absolute.json
        RunDir(tmp_path / "mpe_simple_spread" / "happo" / f"seed_{seed}").write_absolute({"absolute_return": value})
    summary = summarise(load_runs(tmp_path))
    row = summary.iloc[0]
    assert row.n_absolute == 2 and row.absolute_mean == -10.0 and row["mean"] == -12.0
    plot_results(tmp_path, tmp_path / "out")
    exported = json.loads((tmp_path / "out" / "marl_eval.json").read_text())["mpe"]["simple_spread"]["happo"]
    assert [exported[f"run_{k}"]["absolute_metrics"]["return"] for k in (1, 2, 3)] == [[-9.0], [-11.0], [-14.0]]
    assert "absolute metric mean" in (tmp_path / "out" / "summary.md").read_text()
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert len(prov) == 3 and prov[0]["versions"] == VERSIONS
    summary_csv = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary_csv["env_versions"].iloc[0].startswith("mpe2=") and len(summary_csv["config_hash"].iloc[0]) == 12


def test_versions_of_other_packages_may_differ(tmp_path: Path) -> None:
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0, -12.0]})
    write_run(tmp_path, "mpe/simple_spread", "happo", 3, -14.0, {**VERSIONS, "torch": "9.9"})
    assert summarise(load_runs(tmp_path)).iloc[0]["n_seeds"] == 3


def test_empty_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=str(tmp_path)):
        load_runs(tmp_path)
    with pytest.raises(HarnessError, match="does not exist"):
        plot_results(tmp_path / "missing")


def test_run_without_config_is_skipped_with_warning(tmp_path: Path) -> None:
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0]})
    stray = tmp_path / "nested" / "deeper" / "stray"
    stray.mkdir(parents=True)
    (stray / "metrics.csv").write_text("iteration,env_steps,eval_return\n0,0,1.0\n")
    with pytest.warns(UserWarning, match="no config.json"):
        df = load_runs(tmp_path)
    assert df["run_dir"].nunique() == 1


def test_same_seed_twice_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path / "a", {("mpe/simple_spread", "happo"): [-10.0]})
    write_tree(tmp_path / "b", {("mpe/simple_spread", "happo"): [-10.0]})
    with pytest.raises(HarnessError, match="more than one directory"):
        load_runs(tmp_path)


def test_curves_align_seeds_that_evaluated_at_different_steps() -> None:
    from harness.plot import align_steps as _align_steps
    df = pd.DataFrame({"task": "a/b", "scheme": "x", "run_dir": ["r1"] * 4 + ["r2"] * 3,
                       "env_steps": [0, 100, 200, 300, 0, 150, 250], "eval_return": [0, 1, 2, 3, 0, 3, 5.0]})
    aligned = _align_steps(df)
    r2 = aligned[aligned.run_dir == "r2"]
    assert r2["env_steps"].tolist() == [0, 100, 200]  # r1's steps, within r2's logged range
    assert r2["eval_return"].tolist() == pytest.approx([0, 2, 4])
    assert aligned[aligned.run_dir == "r1"]["eval_return"].tolist() == [0, 1, 2, 3]


def test_config_hash_ignores_keys_added_later_at_their_defaults() -> None:
    """A run made before a config key existed averages with one made after, while the key holds its
    default (as their config digests agree); a value other than the default counts."""
    from harness.config import TrainConfig
    from harness.report import config_hash
    new = TrainConfig().to_dict()
    old = {k: v for k, v in new.items() if k not in ("scheme_options", "init_from")}
    assert config_hash(old) == config_hash(new)
    assert config_hash({**new, "scheme_options": {"kl_threshold": 0.02}}) != config_hash(new)
    assert config_hash({**new, "seed": 7, "loggers": ["tensorboard"]}) == config_hash(new)


def test_training_time_is_the_sum_of_collection_and_updates(tmp_path: Path) -> None:
    """train_s at an evaluation: every iteration's collect_s + update_s up to it (the rows without an
    evaluation counted too); the summary's train_s is the runs' mean at their last evaluation; the
    curves can be drawn against it."""
    for seed, unit in ((1, 1.0), (2, 3.0)):
        run = RunDir(tmp_path / "t" / "happo" / f"seed_{seed}")
        run.prepare()
        run.write_config({"config": {"task": "t", "scheme": "happo", "seed": seed, "steps": 30},
                          "config_digest": "d", "seed": seed, "versions": VERSIONS})
        for i in range(4):  # evaluations at iterations 0 and 3; 0.25 + 0.75 = 1 unit per iteration
            run.append_row({"iteration": i, "env_steps": 10 * i, "collect_s": None if i == 0 else 0.25 * unit,
                            "update_s": None if i == 0 else 0.75 * unit, "eval_return": -1.0 if i in (0, 3) else None})
    df = load_runs(tmp_path)
    assert sorted(df[df["env_steps"] == 30]["train_s"]) == [3.0, 9.0] and set(df[df["env_steps"] == 0]["train_s"]) == {0.0}
    assert summarise(df)["train_s"].tolist() == [6.0]
    files = plot_results(tmp_path, tmp_path / "plots", x_axis="wall", references={})
    assert tmp_path / "plots" / "curves.png" in files
    assert "training time" in (tmp_path / "plots" / "summary.md").read_text()


def test_non_finite_returns_and_configs_without_a_task_are_skipped_by_name(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "results")
    bad = write_run(root / "bad", "mpe/simple_spread", "happo", 4, -10.0)
    (bad / "metrics.csv").write_text((bad / "metrics.csv").read_text().replace("3000,-11,-10,", "3000,-11,inf,"))
    no_config = write_run(root / "noconfig", "mpe/simple_spread", "happo", 5, -10.0)
    record = json.loads((no_config / "config.json").read_text())
    (no_config / "config.json").write_text(json.dumps({k: v for k, v in record.items() if k != "config"}))
    numeric = write_run(root / "numeric", "mpe/simple_spread", "happo", 6, -10.0)
    record = json.loads((numeric / "config.json").read_text())
    record["config"]["task"] = 5
    (numeric / "config.json").write_text(json.dumps(record))
    # A finite run whose absolute metric has an infinite episode: kept, the episode written as null.
    absolute = root / "mpe_simple_spread" / "happo" / "seed_1" / "absolute.json"
    absolute.write_text('{"absolute_return": Infinity, "returns": [1.0, Infinity], "start_states": "x"}')
    with pytest.warns(UserWarning) as caught:
        plot_results(root, tmp_path / "plots", references=REFERENCES)
    skipped = sorted(str(w.message) for w in caught if "skipping" in str(w.message))
    assert skipped == sorted([
        f"skipping {bad}: metrics.csv has eval_return=inf at env_steps=3000, which is not a finite number",
        f"skipping {no_config}: config.json has no config table (config=None); a run records "
        '{"config": {"task": ...}}',
        f"skipping {numeric}: config.json task=5 is not a task name (a string such as mpe/simple_spread)"])
    assert all("\n" not in m for m in skipped)
    summary = pd.read_csv(tmp_path / "plots" / "summary.csv")
    assert np.isfinite(summary["mean"]).all() and set(summary["n_seeds"]) == {3}

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")
    exported = json.loads((tmp_path / "plots" / "marl_eval.json").read_text(), parse_constant=refuse)
    assert set(exported) == {"mpe", "mamujoco"} and sorted(exported["mpe"]["simple_spread"]["happo"]) == [
        "run_1", "run_2", "run_3"]
    assert exported["mpe"]["simple_spread"]["happo"]["run_1"]["absolute_metrics"] == {"return": [1.0, None]}
