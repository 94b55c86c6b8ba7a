"""The command line as a user runs it: listing plugins, training, and one-line errors."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HARNESS = str(Path(sys.executable).with_name("harness"))
TINY = ["--steps", "100", "--set", "n_envs=2", "--set", "rollout_length=25", "--set", "eval_episodes=2",
        "--set", "eval_envs=2", "--set", "hidden_sizes=16", "--set", "threads=1"]


def run(*args, cwd=None):
    return subprocess.run([HARNESS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_plugins_lists_every_builtin_with_its_plugin():
    out = run("plugins")
    assert out.returncode == 0, out.stderr
    for text in ("mpe/simple_spread", "mpe/simple_speaker_listener", "mpe/simple_reference",
                 "[plugin: mpe]", "mlp  [plugin: mlp]", "happo  [plugin: happo]", "mappo  [plugin: mappo]"):
        assert text in out.stdout


def test_train_writes_config_and_metrics(tmp_path):
    out = run("train", "--scheme", "happo", "--task", "mpe/simple_speaker_listener", "--seed", "3", *TINY,
              "--set", "lr=3e-4", "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr
    import json
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["config"]["lr"] == 3e-4 and cfg["seed"] == 3
    assert cfg["versions"]["mpe2"] and cfg["versions"]["torch"]
    assert cfg["task_spec"]["obs_dims"] == [3, 11] and cfg["task_spec"]["episode_limit"] == 25
    assert len(cfg["config_digest"]) == 16
    if (Path(__file__).resolve().parents[1] / ".git").exists():  # a checkout: the commit is recorded
        assert len(cfg["git_commit"]) == 40
    for package in ("happo-harness", "torch", "mujoco", "gymnasium-robotics", "pettingzoo", "optuna"):
        assert cfg["versions"][package], package
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    assert rows[-1]["env_steps"] == "100"
    for col in ("train_return", "eval_return", "policy_loss", "value_loss", "entropy", "ratio", "steps_per_s"):
        assert rows[-1][col] != "", col
    assert rows[1]["eval_return"] == ""  # default eval_interval 5: no evaluation at iteration 1
    assert "steps/s" in out.stderr or "step/s" in out.stderr  # the progress bar
    again = run("train", "--scheme", "happo", "--task", "mpe/simple_speaker_listener", "--seed", "3", *TINY,
                "--set", "lr=3e-4", "--out", str(tmp_path / "run"))
    assert again.returncode == 0 and "already finished" in again.stderr
    assert len(list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))) == 3


BROKEN = "import no_such_module_xyz\n"


@pytest.mark.parametrize("args,needle", [
    (["train", "--task", "mpe/simple_tag"], "unknown task 'mpe/simple_tag'"),
    (["train", "--scheme", "hapo"], "unknown scheme 'hapo'; known: happo, hasac, hatrpo, mappo"),
    (["train", "--set", "learning_rate=1"], "unknown option 'learning_rate'"),
    (["train", "--set", "lr=fast"], "lr='fast' is not a number"),
    (["train", "--set", "n_envs=2.5"], "n_envs='2.5' is not an integer"),
    (["train", "--set", "n_envs=0"], "n_envs=0 must be >= 1"),
    (["train", "--set", "env.colour=red"], "unknown option env.colour"),
    (["train", "--set", "lr"], "--set 'lr' is not of the form key=value"),
    (["train", "--plugin", "no_such_plugin_mod"], "plugin 'no_such_plugin_mod' failed to import"),
    (["train", "--plugin", "BROKEN"], "broken_plugin.py' failed to import: No module named 'no_such_module_xyz'"),
    (["train", "--plugin", "missing_file.py"], "plugin file 'missing_file.py' does not exist"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, args, needle):
    if "BROKEN" in args:
        path = tmp_path / "broken_plugin.py"
        path.write_text(BROKEN)
        args = [str(path) if a == "BROKEN" else a for a in args]
    out = run(*args, "--out", str(tmp_path / "r"), *TINY[:2], cwd=tmp_path)
    assert out.returncode == 2
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_unwritable_out_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run("train", *TINY, "--out", str(blocker / "run"))
    assert out.returncode == 2 and "cannot write to output directory" in out.stderr


def test_inline_plugin_file_registers_a_scheme(tmp_path):
    plugin = tmp_path / "my_scheme.py"
    plugin.write_text(textwrap.dedent("""
        from harness import hookimpl
        from harness.scheme import OnPolicyScheme

        class Reverse(OnPolicyScheme):
            '''Updates the agents in reverse index order, sequentially.'''
            sequential = True
            def order(self):
                return list(reversed(range(self.n_agents)))

        @hookimpl
        def register_schemes(register):
            register("reverse", Reverse, description="reverse-order sequential updates")
    """))
    out = run("plugins", "--plugin", str(plugin))
    assert out.returncode == 0 and "reverse  [plugin: my_scheme]" in out.stdout
    out = run("train", "--plugin", str(plugin), "--scheme", "reverse", *TINY, "--out", str(tmp_path / "r"))
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    assert rows[-1]["order"] == "2 1 0"


@pytest.mark.parametrize("source,needle", [
    ("from harness import hookimpl\n@hookimpl\ndef register_schemz(register):\n    pass\n", "unknown hook"),
    ("from harness import hookimpl\nfrom harness_plugins.happo import HAPPO\n@hookimpl\n"
     "def register_schemes(register):\n    register('happo', HAPPO)\n", "already registered by plugin 'happo'"),
    ("from harness import hookimpl\n@hookimpl\ndef register_tasks(register):\n    raise RuntimeError('boom')\n",
     "raised in hook register_tasks: RuntimeError: boom"),
    ("from harness import hookimpl\n@hookimpl\ndef register_schemes(register):\n    return {'x': 1}\n",
     "hook register_schemes returned dict; it must call register(name, factory, ...)"),
    ("from harness import hookimpl\n@hookimpl\ndef register_networks(register):\n    register('net', 42)\n",
     "registered network 'net' with a non-callable factory 42"),
    ("import no_such_module_anywhere\n", "failed to import: No module named 'no_such_module_anywhere'"),
    ("x = 1 +\n", "failed to import: SyntaxError"),
])
def test_plugins_that_break_the_contract_are_named(tmp_path, source, needle):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(source)
    out = run("plugins", "--plugin", str(plugin))
    assert out.returncode == 2
    assert needle in out.stderr and "bad_plugin" in out.stderr
    assert "Traceback" not in out.stderr


BROKEN_AT_RUN_TIME = {
    "scheme_raises": ("from harness import hookimpl\nfrom harness_plugins.happo import HAPPO\n"
                      "class Bad(HAPPO):\n    def update(self, batch):\n        raise ValueError('shapes')\n"
                      "@hookimpl\ndef register_schemes(register):\n    register('bad', Bad)\n",
                      ["--scheme", "bad"], "plugin 'bad_plugin': scheme 'bad' raised in update(): ValueError: shapes"),
    "scheme_returns_list": ("from harness import hookimpl\nfrom harness_plugins.happo import HAPPO\n"
                            "class Bad(HAPPO):\n    def update(self, batch):\n        super().update(batch)\n"
                            "        return []\n@hookimpl\ndef register_schemes(register):\n"
                            "    register('bad', Bad)\n",
                            ["--scheme", "bad"], "update() returned list, expected a dict of metrics"),
    "task_factory_raises": ("from harness import hookimpl\n"
                            "def make(scenario, n_envs, seed, options, stream=0):\n    raise KeyError(scenario)\n"
                            "@hookimpl\ndef register_tasks(register):\n    register('oops', make, scenarios=('a',))\n",
                            ["--task", "oops/a"], "plugin 'bad_plugin': task factory for 'oops/a' raised KeyError"),
    "metrics_logger_raises": ("from harness import hookimpl\n@hookimpl\ndef on_metrics(record, run_dir):\n"
                              "    raise OSError('disk')\n", [], "plugin 'bad_plugin' raised in hook on_metrics: OSError: disk"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_AT_RUN_TIME))
def test_plugins_that_break_the_contract_while_training_are_named(tmp_path, case):
    source, args, needle = BROKEN_AT_RUN_TIME[case]
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(source)
    out = run("train", "--plugin", str(plugin), *args, *TINY, "--quiet", "--out", str(tmp_path / "r"))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_version_options_and_defaults_are_shown(capsys):
    import tomllib
    from pathlib import Path

    from harness import __version__
    from harness.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"harness {__version__}"
    assert main(["plugins", "--options", "mamujoco/Hopper-3x1"]) == 0
    out = capsys.readouterr().out
    assert "obs_mode" in out and "default 'local'" in out and "render" in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "[default: 0.0005]" in out and "[default: 128,128]" in out and "[default: cpu]" in out
    # The declared Python versions are the ones the code runs on (tomllib: 3.11+), and tox runs them.
    root = Path(__file__).resolve().parents[1]
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11"
    assert "py311" in (root / "tox.ini").read_text()
