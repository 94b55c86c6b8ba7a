"""A network's own options (``network.NAME=value``): declared at registration, checked before work
starts, handed to the builder, recorded in config.json and the digest, and usable from suites,
arms, sweeps, ``plugins --options`` and ``check-plugin``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.bench import load_suite, run_suite
from harness.cli import main
from harness.config import build_config, config_digest
from harness.conformance import check_network
from harness.errors import HarnessError, PluginError
from harness.plugins import load_plugins
from harness.scheme_config import declared_network, resolved
from harness.trainer import Trainer

HARNESS = str(Path(sys.executable).with_name("harness"))
TINY = ["--steps", "100", "--set", "n_envs=2", "--set", "rollout_length=25", "--set", "eval_episodes=2",
        "--set", "eval_envs=2", "--set", "hidden_sizes=16", "--set", "threads=1"]
SMALL = {"n_envs": 2, "rollout_length": 25, "eval_episodes": 2, "eval_envs": 2, "hidden_sizes": [16],
         "threads": 1, "steps": 100, "task": "mpe/simple_speaker_listener"}

#: A network plugin with an integer option (one hidden layer of ``network.width`` units, 2 to 64) and a
#: network that declares none.
SIZED = textwrap.dedent('''
    from harness import hookimpl
    from harness.options import Option
    from harness_plugins.mlp import MLPActor, MLPCritic


    class SizedBuilder:
        def actor(self, obs_dim, action_space, config):
            return MLPActor(obs_dim, action_space, [config.network_options["width"]], config.activation)

        def critic(self, state_dim, config):
            return MLPCritic(state_dim, [config.network_options["width"]], config.activation)


    class PlainBuilder:
        def actor(self, obs_dim, action_space, config):
            return MLPActor(obs_dim, action_space, list(config.hidden_sizes), config.activation)

        def critic(self, state_dim, config):
            return MLPCritic(state_dim, list(config.hidden_sizes), config.activation)


    @hookimpl
    def register_networks(register):
        register("sized", SizedBuilder, description="one hidden layer of network.width units",
                 options={"width": Option(int, 8, "the hidden layer's width", low=2, high=64)})
        register("plain", PlainBuilder, description="declares no options")
''')


@pytest.fixture
def sized(tmp_path):
    path = tmp_path / "sized_net.py"
    path.write_text(SIZED)
    return path


def run(*args, cwd=None):
    return subprocess.run([HARNESS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _modules(trainer):
    return [m for net in [*trainer.scheme.actors, trainer.scheme.critic] for m in net.modules()]


def test_an_option_reaches_the_builder_and_changes_the_network(sized):
    regs = load_plugins([str(sized)])
    nets = {}
    for name, over in (("default", []), ("no_ln", [("network.layer_norm", "false")]),
                       ("sized", [("network", "sized"), ("network.width", "5")])):
        trainer = Trainer(build_config(list(SMALL.items()) + over), regs, None, progress=False)
        try:
            nets[name] = _modules(trainer)
            if name == "no_ln":  # the NumPy acting copy is built without LayerNorms too and acts
                trainer.collect()
        finally:
            trainer.close()
    count = lambda mods, kind: sum(isinstance(m, kind) for m in mods)  # noqa: E731
    assert count(nets["default"], torch.nn.LayerNorm) > 0
    assert count(nets["no_ln"], torch.nn.LayerNorm) == 0
    assert count(nets["no_ln"], torch.nn.Linear) == count(nets["default"], torch.nn.Linear)
    widths = {m.out_features for m in nets["sized"] if isinstance(m, torch.nn.Linear)}
    assert 5 in widths and 16 not in widths  # network.width, not hidden_sizes


def test_defaults_are_filled_in_and_the_legacy_value_keeps_older_digests(regs):
    cfg = resolved(build_config(SMALL), regs)
    assert cfg.network_options == {"layer_norm": True} and cfg.network_legacy == {"layer_norm": True}
    # A run made before mlp declared options recorded neither key: its digest is the same run's.
    older = {k: v for k, v in cfg.to_dict().items() if k not in ("network_options", "network_legacy")}
    assert config_digest(older) == cfg.digest()
    # Set explicitly to the default, as a string or a boolean: the same run.
    for value in ("true", True, "1"):
        assert resolved(build_config({**SMALL, "network.layer_norm": value}), regs).digest() == cfg.digest()
    off = resolved(build_config({**SMALL, "network.layer_norm": "false"}), regs)
    assert off.network_options == {"layer_norm": False} and off.digest() != cfg.digest()
    # resolving twice changes nothing
    assert resolved(off, regs).to_dict() == off.to_dict()


def test_a_network_option_is_recorded_in_config_json_and_changes_the_digest(tmp_path, regs):
    assert main(["train", "--task", "mpe/simple_speaker_listener", *TINY, "--set", "network.layer_norm=false",
                 "--out", str(tmp_path / "off"), "--quiet"]) == 0
    record = json.loads((tmp_path / "off" / "config.json").read_text())
    assert record["config"]["network_options"] == {"layer_norm": False}
    assert record["config_digest"] == config_digest(record["config"])
    default = resolved(build_config(SMALL), regs)
    assert record["config_digest"] != default.digest()
    record["config"]["network_options"] = {"layer_norm": True}
    assert config_digest(record["config"]) == default.digest()


@pytest.mark.parametrize("args, needle", [
    (["--set", "network.hidden=64"],
     "network.hidden=64: unknown option of network 'mlp'; its options: network.layer_norm"),
    (["--set", "network.layer_norm=maybe"], "network.layer_norm='maybe' is not a boolean (use true or false)"),
    (["--network", "sized", "--set", "network.width=wide"], "network.width='wide' is not an integer"),
    (["--network", "sized", "--set", "network.width=1000"], "network.width=1000 must be from 2 to 64"),
    (["--network", "sized", "--set", "network.width=1"], "network.width=1 must be from 2 to 64"),
    (["--network", "plain", "--set", "network.width=8"], "network.width=8: network 'plain' declares no options"),
    (["--set", "network.=3"], "empty network option name"),
])
def test_bad_network_options_are_one_line_errors_before_work(tmp_path, sized, args, needle):
    out = tmp_path / "run"
    res = run("train", "--plugin", str(sized), *TINY, *args, "--out", str(out))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert not out.exists()  # refused before the run directory was made


def test_plugins_options_lists_each_networks_options(sized):
    res = run("plugins", "--plugin", str(sized), "--options", "sized")
    assert res.returncode == 0, res.stderr
    assert "options of network sized (--set network.NAME=value):" in res.stdout
    assert "width" in res.stdout and "default 8" in res.stdout and "(from 2 to 64)" in res.stdout
    res = run("plugins", "--options", "mlp")
    assert res.returncode == 0 and "layer_norm" in res.stdout and "bool" in res.stdout, res.stderr
    res = run("plugins", "--plugin", str(sized), "--options", "plain")
    assert res.returncode == 0 and "plain: no options" in res.stdout
    res = run("train", "--help")
    assert "network options (--set network.NAME=value):" in res.stdout and "mlp: network.layer_norm" in res.stdout


@pytest.mark.parametrize("options, legacy, needle", [
    ('{"width": 8}', None, "registered options={'width': 8}; expected a dict of harness.options.Option"),
    ("[1, 2]", None, "registered options=[1, 2]; expected a dict of harness.options.Option"),
    ('{**OPTS, "depth": 3}', None, "'depth': 3}; expected a dict of harness.options.Option"),
    ('{"a.b": OPTS["width"]}', None, "expected a dict of harness.options.Option by option name"),
    ("OPTS", {"depth": 2}, "registered legacy={'depth': 2}; expected a dict of values of its declared options"),
    ("OPTS", {"width": 1000}, "registered legacy={'width': 1000}: network.width=1000 must be from 2 to 64"),
])
def test_a_bad_network_registration_is_a_plugin_error_naming_the_plugin(tmp_path, options, legacy, needle):
    opts = options
    (tmp_path / "bad_net.py").write_text(textwrap.dedent(f'''
        from harness import hookimpl
        from harness.options import Option
        from harness_plugins.mlp import MLPBuilder
        OPTS = {{"width": Option(int, 8, "a width", low=2, high=64)}}

        @hookimpl
        def register_networks(register):
            register("broken", MLPBuilder, options={opts}, legacy={legacy!r})
    '''))
    regs = load_plugins([str(tmp_path / "bad_net.py")])
    with pytest.raises(PluginError, match="plugin 'bad_net': network 'broken'") as err:
        declared_network(regs.networks.get("broken"))
    assert needle in str(err.value)
    # through the command line: one line, before any work
    res = run("train", "--plugin", str(tmp_path / "bad_net.py"), "--network", "broken", *TINY,
              "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "plugin 'bad_net': network 'broken'" in res.stderr
    assert not (tmp_path / "run").exists()
    res = run("plugins", "--plugin", str(tmp_path / "bad_net.py"), "--options", "broken")
    assert res.returncode == 2 and needle in res.stderr
    # the conformance kit reports it as a failed check of the network
    checks = check_network(regs, "broken")
    assert len(checks) == 1 and not checks[0].ok and needle in checks[0].detail


def test_check_plugin_builds_the_network_with_the_options_given(regs):
    checks = check_network(regs, "mlp", [("network.layer_norm", "false"), ("scheme.warmup_steps", "5")])
    assert checks and all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    with pytest.raises(HarnessError, match=r"network.layer_norm='nope' is not a boolean"):
        check_network(regs, "mlp", [("network.layer_norm", "nope")])
    res = run("check-plugin", "mlp", "--set", "network.bogus=1")
    assert res.returncode == 2 and "network.bogus=1: unknown option of network 'mlp'" in res.stderr


def _suite(plugin: Path, arms: str, config: str = "") -> str:
    return (f'[suite]\nname = "netopt"\nschemes = ["happo"]\ntasks = ["mpe/simple_spread"]\nseeds = 1\n'
            f'steps = 100\neval_interval = 1\neval_episodes = 2\nplugins = ["{plugin}"]\n'
            f"[config]\nn_envs = 2\nrollout_length = 25\neval_envs = 2\nhidden_sizes = [16]\n{config}{arms}")


ARMS = ('[arms.no_ln]\nscheme = "happo"\n"network.layer_norm" = false\n'
        '[arms.sized]\nscheme = "happo"\nnetwork = "sized"\n"network.width" = 6\n'
        '[arms.sized_table]\nscheme = "happo"\nnetwork = "sized"\nnetwork_options = { width = 3 }\n')


def test_arms_with_network_options_train_in_a_suite(tmp_path, sized):
    path = tmp_path / "suite.toml"
    path.write_text(_suite(sized, ARMS))
    out = tmp_path / "out"
    suite = load_suite(path, out)
    assert run_suite(suite, jobs=1, plot=False, progress=False) == 0
    records = {arm: json.loads((out / "mpe/simple_spread" / arm / "seed_1/config.json").read_text())
               for arm in ("happo", "no_ln", "sized", "sized_table")}
    options = {arm: r["config"]["network_options"] for arm, r in records.items()}
    assert options == {"happo": {"layer_norm": True}, "no_ln": {"layer_norm": False}, "sized": {"width": 6},
                       "sized_table": {"width": 3}}
    assert records["sized"]["config"]["network"] == "sized"
    assert records["no_ln"]["arm"]["settings"] == {"network.layer_norm": False}
    assert len({r["config_digest"] for r in records.values()}) == 4
    # the trained actors have the width asked for
    state = torch.load(out / "mpe/simple_spread/sized/seed_1/checkpoint.pt", weights_only=False)
    shapes = {tuple(v.shape) for v in _tensors(state)}
    assert any(6 in s for s in shapes) and not any(16 in s for s in shapes)
    # re-running the suite finds every run finished (the digests it recomputes match what the runs recorded)
    assert run_suite(load_suite(path, out), jobs=1, plot=False, progress=False) == 0


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


@pytest.mark.parametrize("arms, config, needle", [
    ('[arms.wide]\nscheme = "happo"\nnetwork = "sized"\n"network.width" = 1000\n', "",
     "network.width=1000 must be from 2 to 64"),
    ("", "network.depth = 3\n", "network.depth=3: unknown option of network 'mlp'; its options: network.layer_norm"),
])
def test_bad_network_options_in_a_suite_are_refused_when_it_loads(tmp_path, sized, arms, config, needle):
    path = tmp_path / "suite.toml"
    path.write_text(_suite(sized, arms, config))
    with pytest.raises(HarnessError, match=needle.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        load_suite(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_suites_config_table_sets_network_options_with_dotted_keys(tmp_path, sized):
    path = tmp_path / "suite.toml"
    path.write_text(_suite(sized, "", "network.layer_norm = false\n"))
    suite = load_suite(path, tmp_path / "out")
    assert [resolved(build_config(r.overrides), suite.regs).network_options for r in suite.runs] == [
        {"layer_norm": False}]


def test_a_sweep_searches_a_network_option(tmp_path, sized):
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(f"""
        [sweep]
        name = "netopt"
        scheme = "happo"
        tasks = ["mpe/simple_speaker_listener"]
        steps = 100
        seeds = 1
        trials = 2
        evaluations = 2
        eval_episodes = 2
        default_space = false
        sampler = "random"
        pruner = "none"
        plugins = ["{sized}"]
        [config]
        network = "sized"
        n_envs = 2
        rollout_length = 25
        eval_envs = 2
        [space]
        network.width = {{ low = 4, high = 12 }}
        """))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 2
    for row in rows:
        width = row["params_network.width"]
        assert width.isdigit() and 4 <= int(width) <= 12  # an integer option is searched as an integer
        record = json.loads((out / "trials" / row["number"] / "mpe/simple_speaker_listener/seed_1/config.json")
                            .read_text())
        assert record["config"]["network_options"] == {"width": int(width)}
    best = (out / "best.toml").read_text()
    assert "[network_options]" in best and "width = " in best
    # a value outside the option's range is refused before any trial
    path.write_text(path.read_text().replace("high = 12", "high = 100"))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out2"), "--quiet"]) == 2


def test_the_runs_in_results_keep_the_digests_they_recorded(regs):
    """The committed runs were made before mlp declared ``layer_norm``: resolved now (the option filled
    in at its default), each still hashes to the digest it recorded, so suites find them finished."""
    from harness.config import config_from_dict
    root = Path(__file__).resolve().parents[1] / "results"
    checked = 0
    for path in sorted(root.glob("**/config.json")):
        record = json.loads(path.read_text())
        cfg = record["config"]
        if cfg.get("scheme") not in regs.schemes or cfg.get("network") != "mlp" or "network_options" in cfg:
            continue
        now = resolved(config_from_dict(cfg), regs)
        assert now.network_options == {"layer_norm": True}
        assert now.digest() == record["config_digest"], path
        checked += 1
    if checked == 0:
        pytest.skip("no committed runs made before network options")
