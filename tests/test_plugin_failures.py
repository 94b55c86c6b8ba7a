"""A broken installed plugin stays with itself: the commands that do not use it work, using it names
the failure, and it can be disabled; an exception from a plugin's code during a run names it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def broken_dist(tmp_path):
    """An installed distribution (a dist-info on the path) whose entry point fails to import."""
    site = tmp_path / "site"
    info = site / "brokenplug-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[happo_harness]\nbrokenplug = brokenplug_mod\n")
    (site / "brokenplug_mod.py").write_text("import numpy_that_is_not_installed  # noqa\n")
    env = dict(os.environ, PYTHONPATH=str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("HARNESS_DISABLE_PLUGINS", None)
    return env


def _harness(env, *args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_a_broken_plugin_is_a_warning_for_commands_that_do_not_use_it(broken_dist):
    res = _harness(broken_dist, "plugins")
    assert res.returncode == 0 and "happo  [plugin: happo]" in res.stdout
    warning = [line for line in res.stderr.splitlines() if "brokenplug" in line]
    assert len(warning) == 1 and "skipped" in warning[0] and "ModuleNotFoundError" in warning[0]
    assert "--disable-plugin brokenplug" in warning[0]


def test_using_a_name_it_would_have_registered_quotes_the_failure(broken_dist, tmp_path):
    res = _harness(broken_dist, "train", "--scheme", "brokenscheme", "--steps", "100", "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    error = res.stderr.strip().splitlines()[-1]
    assert "unknown scheme 'brokenscheme'" in error and "plugin 'brokenplug' would be missing" in error
    assert "No module named 'numpy_that_is_not_installed'" in error
    assert "Traceback" not in res.stderr
    # --debug shows the traceback behind an error.
    res = _harness(broken_dist, "--debug", "train", "--scheme", "brokenscheme", "--steps", "100")
    assert res.returncode == 2 and "Traceback" in res.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_plugin_can_be_disabled(broken_dist, how):
    env = dict(broken_dist, HARNESS_DISABLE_PLUGINS="brokenplug") if how == "env" else broken_dist
    args = ["--disable-plugin", "brokenplug", "plugins"] if how == "flag" else ["plugins"]
    res = _harness(env, *args)
    assert res.returncode == 0 and "brokenplug" not in res.stderr
    # A built-in one too: without the mlflow plugin, its logger is unknown.
    res = _harness(env, *(["--disable-plugin", "brokenplug"] if how == "flag" else []), "--disable-plugin", "mlflow",
                   "plugins")
    assert res.returncode == 0 and "mlflow  [plugin" not in res.stdout and "tensorboard  [plugin" in res.stdout


def test_check_plugin_takes_a_distribution_name():
    from harness.conformance import components
    from harness.errors import HarnessError
    from harness.plugins import load_plugins
    regs = load_plugins()
    if not any(r.get("distribution") == "happo-harness" for r in regs.plugins):
        pytest.skip("the harness is not installed as a distribution here")
    found = set(components(regs, "happo-harness"))
    assert {("scheme", "happo"), ("scheme", "mappo"), ("task", "mpe"), ("task", "mamujoco"), ("network", "mlp")} <= found
    assert components(regs, "mappo") == [("scheme", "mappo")]
    with pytest.raises(HarnessError, match="distributions: .*happo-harness"):
        components(regs, "nosuch")


SPLIT = str(Path(__file__).parent / "plugins" / "split_lengths.py")


@pytest.mark.parametrize("debug", [False, True])
def test_an_exception_in_a_plugins_code_during_train_names_the_plugin(tmp_path, debug):
    """A task whose step() raises mid-run: one line naming the plugin, the function and the line;
    the traceback only with --debug."""
    args = ["--debug"] * debug + ["train", "--plugin", SPLIT, "--task", "split/raises", "--steps", "4000",
                                  "--out", str(tmp_path / "run"), "--quiet"]
    out = _harness(dict(os.environ), *args)
    assert out.returncode == 2
    line = ("harness: error: plugin 'split_lengths' raised in SplitLengths.step (split_lengths.py:")
    assert line in out.stderr and "RuntimeError: the simulator lost its connection" in out.stderr
    assert ("Traceback (most recent call last)" in out.stderr) == debug
    if not debug:
        assert out.stderr.count("\n") == 1, out.stderr


def test_a_core_error_is_not_blamed_on_a_plugin():
    from harness.blame import blame
    try:
        {}["missing"]
    except KeyError as exc:
        assert blame(exc) is None


def test_bench_warns_once_about_a_broken_plugin(broken_dist, tmp_path):
    from conftest import tiny_suite
    suite = tmp_path / "suite.toml"
    suite.write_text(tiny_suite(50, seeds="1", schemes=("happo",)))
    res = _harness(broken_dist, "bench", str(suite), "--out", str(tmp_path / "out"), "--quiet", "--no-plot")
    assert res.returncode == 0, res.stderr
    assert [line for line in res.stderr.splitlines() if "brokenplug" in line] == [
        "harness: warning: plugin 'brokenplug' skipped: entry point brokenplug_mod failed to import: "
        "ModuleNotFoundError: No module named 'numpy_that_is_not_installed' (disable it with --disable-plugin brokenplug)"]


@pytest.mark.parametrize("name", ["brokenplug", "brokendist"])
def test_check_plugin_on_a_broken_plugin_quotes_its_failure(broken_dist, tmp_path, name):
    info = next((tmp_path / "site").glob("*.dist-info")) / "METADATA"
    info.write_text(info.read_text().replace("Name: brokenplug", "Name: brokendist"))
    res = _harness(broken_dist, "check-plugin", name)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    error = res.stderr.strip().splitlines()[-1]
    assert error == ("harness: error: plugin 'brokenplug' cannot be checked: entry point brokenplug_mod failed to "
                     "import: ModuleNotFoundError: No module named 'numpy_that_is_not_installed'"), error
