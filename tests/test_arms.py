"""Arms of a suite (several variants of one scheme side by side) and the attribution ladder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.attribution import Rung, read_rungs, rung_table, write_rungs
from harness.bench import in_seed_order, load_suite, run_suite
from harness.errors import HarnessError
from harness.report import load_runs

from conftest import tiny_suite

HARNESS = str(Path(sys.executable).with_name("harness"))

ARMS = ('[schemes.mappo]\nlr = 0.001\n'
        '[arms.mappo_shared]\nscheme = "mappo"\nshare_params = "true"\n'
        '[arms.mappo_unshared]\nscheme = "mappo"\nshare_params = "false"\nhidden_sizes = [8]\n'
        '[attribution]\nrungs = [{ before = "mappo_shared", after = "mappo_unshared", isolates = "sharing" },\n'
        '  { before = "mappo_unshared", after = "happo", isolates = "the factor" }]\n')


def write(tmp_path, text, name="suite.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_arms_are_runs_of_their_scheme_with_their_own_settings(tmp_path, regs):
    suite = load_suite(write(tmp_path, tiny_suite(100, schemes=("happo",), extra=ARMS)), tmp_path / "out", regs)
    assert suite.schemes == ["happo", "mappo_shared", "mappo_unshared"]
    by_arm = {(r.arm, r.seed): r for r in suite.runs}
    assert len(by_arm) == 6
    shared, unshared = by_arm[("mappo_shared", 1)], by_arm[("mappo_unshared", 1)]
    assert shared.scheme == unshared.scheme == "mappo" and by_arm[("happo", 1)].scheme == "happo"
    assert unshared.out == tmp_path / "out" / "mpe" / "simple_spread" / "mappo_unshared" / "seed_1"
    # [schemes.mappo] applies to every arm of mappo, the arm's own settings after it
    assert dict(shared.overrides)["lr"] == 0.001 and dict(unshared.overrides)["hidden_sizes"] == [8]
    assert dict(shared.overrides)["hidden_sizes"] == [16]
    assert dict(shared.overrides)["share_params"] == "true" and dict(unshared.overrides)["share_params"] == "false"
    assert "lr" not in dict(by_arm[("happo", 1)].overrides)
    assert unshared.record == {"arm": {"name": "mappo_unshared", "scheme": "mappo",
                                       "settings": {"share_params": "false", "hidden_sizes": [8]}}}
    assert by_arm[("happo", 1)].record == {}  # a plain scheme is its own arm
    assert [r.isolates for r in suite.rungs] == ["sharing", "the factor"]


def test_runs_are_dispatched_seed_by_seed(tmp_path, regs):
    suite = load_suite(write(tmp_path, tiny_suite(100, schemes=("happo",), extra=ARMS)), tmp_path / "out", regs)
    assert [(r.arm, r.seed) for r in in_seed_order(suite.runs, suite.seeds)] == [
        ("happo", 1), ("mappo_shared", 1), ("mappo_unshared", 1), ("happo", 2), ("mappo_shared", 2),
        ("mappo_unshared", 2)]


def test_an_arm_may_run_on_some_tasks_only(tmp_path, regs):
    text = tiny_suite(100, schemes=("happo",), extra='[arms.happo_fixed]\nscheme = "happo"\nfixed_order = true\n'
                                                      'tasks = ["mpe/simple_reference"]\n')
    text = text.replace('tasks = ["mpe/simple_spread"]', 'tasks = ["mpe/simple_spread", "mpe/simple_reference"]')
    suite = load_suite(write(tmp_path, text), tmp_path / "out", regs)
    pairs = sorted({(r.task, r.arm) for r in suite.runs})
    assert pairs == [("mpe/simple_reference", "happo"), ("mpe/simple_reference", "happo_fixed"),
                     ("mpe/simple_spread", "happo")]


@pytest.mark.parametrize("extra,needle", [
    ('[arms.x]\nshare_params = "false"\n', "[arms.x] scheme=None must name a scheme: one of"),
    ('[arms.x]\nscheme = "mapo"\n', "[arms.x] scheme='mapo' must name a scheme"),
    ('[arms.happo]\nscheme = "happo"\n', "'happo' is already an arm"),
    ('[arms.x]\nscheme = "happo"\nlr = "fast"\n', "lr='fast' is not a number"),
    ('[arms.x]\nscheme = "happo"\ntasks = ["mpe/simple_tag"]\n', "[arms.x] tasks=['mpe/simple_tag'] must be a non-empty list"),
    ('[arms.x]\nscheme = "happo"\nseed = 3\n', "[arms.x] sets 'seed'"),
    ('[schemes.mappo]\nlr = 0.001\n', "[schemes.mappo] names a scheme that no arm uses"),
    ('[arms.x]\nscheme = "happo"\n[attribution]\nrungs = [{ before = "x", after = "y", isolates = "z" }]\n',
     "rung 1: after = 'y' is not an arm of the suite (happo, x)"),
    ('[arms.x]\nscheme = "happo"\n[attribution]\nrungs = [{ before = "x", after = "happo" }]\n',
     "rung 1 must be { before = ARM, after = ARM, isolates = TEXT }"),
])
def test_bad_arms_give_one_line_errors(tmp_path, extra, needle):
    path = write(tmp_path, tiny_suite(100, schemes=("happo",), extra=extra))
    out = subprocess.run([HARNESS, "bench", str(path), "--out", str(tmp_path / "o"), "--dry-run"],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_suite_of_arms_alone_needs_no_schemes_list(tmp_path, regs):
    text = tiny_suite(100, schemes=("happo",), extra='[arms.a]\nscheme = "happo"\n[arms.b]\nscheme = "mappo"\n')
    text = text.replace('schemes = ["happo"]\n', "")
    suite = load_suite(write(tmp_path, text), tmp_path / "out", regs)
    assert suite.schemes == ["a", "b"] and [r.scheme for r in suite.runs if r.seed == 1] == ["happo", "mappo"]


def test_each_arm_of_a_tuned_suite_gets_its_own_study(tmp_path, regs):
    text = tiny_suite(100, schemes=("happo",), extra='[arms.mappo_unshared]\nscheme = "mappo"\nshare_params = "false"\n'
                                                      '[tune]\ntrials = 2\nsteps = 100\nseeds = 1\n')
    suite = load_suite(write(tmp_path, text), tmp_path / "out", regs)
    assert sorted(suite.tunings) == ["happo", "mappo_unshared"]
    t = suite.tunings["mappo_unshared"]
    assert t.sweep.scheme == "mappo" and t.sweep.out == tmp_path / "out" / ".tuning" / "mappo_unshared"
    # the arm's settings reach its tuning runs
    assert ("share_params", "false") in t.sweep.per_task["mpe/simple_spread"]


def test_a_suite_of_arms_trains_plots_and_attributes(tmp_path, regs):
    """End to end: runs per arm, config.json naming the arm, the tables and figures per arm, and each
    rung's effect equal to the difference of the arms' mean final returns."""
    path = write(tmp_path, tiny_suite(100, schemes=("happo",), extra=ARMS))
    out = tmp_path / "out"
    suite = load_suite(path, out, regs)
    assert run_suite(suite, jobs=2, progress=False, regs=regs) == 0
    record = json.loads((out / "mpe/simple_spread/mappo_unshared/seed_2/config.json").read_text())
    assert record["arm"]["name"] == "mappo_unshared" and record["config"]["scheme"] == "mappo"
    assert len(record["actors"]) == 3 and len(json.loads(
        (out / "mpe/simple_spread/mappo_shared/seed_2/config.json").read_text())["actors"]) == 1
    summary = pd.read_csv(out / "plots" / "summary.csv")
    assert sorted(summary["scheme"]) == ["happo", "mappo_shared", "mappo_unshared"]
    assert read_rungs(out) == suite.rungs
    table = pd.read_csv(out / "plots" / "attribution.csv")
    assert list(table["isolates"]) == ["sharing", "the factor"]
    means = summary.set_index("scheme")["mean"]
    np.testing.assert_allclose(table["difference"], [means["mappo_unshared"] - means["mappo_shared"],
                                                     means["happo"] - means["mappo_unshared"]], rtol=1e-9)
    assert (out / "plots" / "attribution.png").stat().st_size > 10_000
    assert "## Attribution" in (out / "plots" / "summary.md").read_text()
    runs = load_runs(out)
    assert set(runs["scheme"]) == {"happo", "mappo_shared", "mappo_unshared"}


def test_a_rung_against_hand_computed_welch_figures():
    """Two arms with seeds (1, 2, 3) and (4, 6, 8): difference 6 - 2 = 4; Welch standard error
    sqrt(1/3 + 4/3) = 1.2910, Welch-Satterthwaite df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 2.9412,
    t(0.975, 2.9412) = 3.2188 (scipy), so the interval is 4 -+ 4.1554: [-0.1554, 8.1554], undecided;
    normalised by a floor of -10 and a ceiling of 10, everything / 20."""
    finals = pd.DataFrame({"task": ["t"] * 6, "scheme": ["a"] * 3 + ["b"] * 3,
                           "final_return": [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]})
    refs = {"t": {"floor": -10.0, "ceiling": 10.0}}
    row = rung_table(finals, [Rung("a", "b", "x"), Rung("a", "missing", "y")], refs).iloc[0]
    assert row.difference == pytest.approx(4.0)
    assert row.ci_low == pytest.approx(-0.1554, abs=1e-3) and row.ci_high == pytest.approx(8.1554, abs=1e-3)
    assert row.verdict == "undecided" and row.seeds_needed != ""
    assert row.normalised_difference == pytest.approx(4.0 / 20) and row.normalised_ci_low == pytest.approx(row.ci_low / 20)
    assert row.probability == 1.0  # every seed of b beats every seed of a
    assert len(rung_table(finals, [Rung("a", "missing", "y")], refs)) == 0  # a rung whose arm did not run


def test_suites_writing_into_one_tree_keep_each_others_rungs(tmp_path):
    write_rungs([Rung("a", "b", "x")], tmp_path)
    write_rungs([Rung("b", "c", "y"), Rung("a", "b", "x")], tmp_path)
    assert read_rungs(tmp_path) == [Rung("a", "b", "x"), Rung("b", "c", "y")]
    (tmp_path / "attribution.json").write_text("{not json")
    with pytest.raises(HarnessError, match="attribution.json: not a list of rungs"):
        read_rungs(tmp_path)


def test_dotted_scheme_options_in_scheme_and_arm_tables_are_scheme_options(tmp_path, regs):
    (tmp_path / "best.toml").write_text("lr = 0.0007\nscheme.kl_threshold = 0.04\n")
    extra = ('[schemes.hatrpo]\nscheme.kl_threshold = 0.02\n'
             '[arms.quoted]\nscheme = "hatrpo"\n"scheme.kl_threshold" = 0.03\n'
             '[arms.included]\nscheme = "hatrpo"\ninclude = "best.toml"\n')
    suite = load_suite(write(tmp_path, tiny_suite(100, schemes=("hatrpo",), seeds="1", extra=extra)),
                       tmp_path / "out", regs)
    from harness.config import build_config
    got = {r.arm: build_config(r.overrides).scheme_options for r in suite.runs}
    assert got == {"hatrpo": {"kl_threshold": 0.02}, "quoted": {"kl_threshold": 0.03},
                   "included": {"kl_threshold": 0.04}}
    bad = write(tmp_path, tiny_suite(100, schemes=("hatrpo",), extra='[schemes.hatrpo]\nseed = 3\n'), "bad.toml")
    with pytest.raises(HarnessError, match=r"\[schemes.hatrpo\] sets 'seed', which \[suite\] decides .*: seed = 3$"):
        load_suite(bad, tmp_path / "out", regs)
