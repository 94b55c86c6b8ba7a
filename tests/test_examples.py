"""The example third-party distribution (plugins/examples): installed on its own, found through its
entry points, checked by the conformance kit, and benchmarked beside HAPPO and MAPPO."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = str(Path(sys.executable).with_name("harness"))


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """plugins/examples installed with pip into a directory of its own (not into this environment)."""
    site = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("src")
    subprocess.run(["cp", "-r", str(ROOT / "plugins" / "examples"), str(build)], check=True)
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(build / "examples")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    env = dict(os.environ, PYTHONPATH=str(site))
    return env


def harness(env, *args, cwd=None):
    return subprocess.run([HARNESS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_installed_example_registers_through_its_entry_points(example_site):
    out = harness(example_site, "plugins")
    assert out.returncode == 0, out.stderr
    assert "ippo  [plugin: ippo]" in out.stdout and "haa2c  [plugin: haa2c]" in out.stdout
    assert "matd3  [plugin: matd3]" in out.stdout and "coppo  [plugin: coppo]" in out.stdout
    assert "pettingzoo/sisl.pursuit_v5 (and any other scenario the package accepts)  [plugin: pettingzoo]" in out.stdout
    without = harness({k: v for k, v in example_site.items() if k != "PYTHONPATH"}, "plugins")
    assert "ippo" not in without.stdout  # nothing leaked into the harness's own environment


@pytest.mark.parametrize("plugin", ["ippo", "haa2c", "matd3", "coppo", "pettingzoo"])
def test_examples_pass_the_conformance_kit(example_site, plugin):
    out = harness(example_site, "check-plugin", plugin)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failed" in out.stdout


def test_generic_pettingzoo_task_errors(example_site, tmp_path):
    out = harness(example_site, "train", "--task", "pettingzoo/no.such_env_v1", "--quiet", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "cannot import 'no.such_env_v1' or 'pettingzoo.no.such_env_v1'" in out.stderr
    out = harness(example_site, "train", "--task", "pettingzoo/sisl.pursuit_v5", "--set", "env.kwargs=[1]",
                  "--quiet", "--out", str(tmp_path / "y"))
    assert out.returncode == 2 and "env.kwargs='[1]' is not a JSON object" in out.stderr


SUITE = """
[suite]
name = "three"
schemes = ["happo", "mappo", "ippo"]
tasks = ["pettingzoo/sisl.pursuit_v5", "mpe/simple_spread"]
seeds = 2
steps = 1000
eval_interval = 2
eval_episodes = 2
[config]
n_envs = 4
rollout_length = 50
eval_envs = 2
hidden_sizes = [32, 32]
[tasks."pettingzoo/sisl.pursuit_v5"]
env = { max_cycles = 50, kwargs = '{"n_evaders": 4, "n_pursuers": 2}' }
"""


@pytest.mark.slow
def test_bench_runs_the_example_beside_happo_and_mappo_and_plots_all_three(example_site, tmp_path):
    suite = tmp_path / "three.toml"
    suite.write_text(SUITE)
    out = harness(example_site, "bench", str(suite), "--out", str(tmp_path / "res"), "--jobs", "2", "--quiet")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(open(tmp_path / "res" / "plots" / "summary.csv")))
    assert {(r["task"], r["scheme"]) for r in rows} == {
        (t, s) for t in ("pettingzoo/sisl.pursuit_v5", "mpe/simple_spread") for s in ("happo", "mappo", "ippo")}
    for name in ("curves.png", "final.png", "aggregate.png"):
        assert (tmp_path / "res" / "plots" / name).stat().st_size > 10_000
