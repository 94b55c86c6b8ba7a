"""HATRPO's numerics (the trust-region step against a brute-force TRPO, the KL bound, the surrogate)
and the scheme contract it is built on: declared options, fixed keys, the record in config.json."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from harness.cli import main
from harness.config import build_config
from harness.envs import ActionSpace
from harness.scheme_config import resolve_scheme_config
from harness_plugins.hatrpo import HATRPO, trust_region_step
from harness_plugins.mlp import MLPBuilder
from test_happo import HETERO, make_batch, spec

DEFAULTS = {"kl_threshold": 0.01, "ls_step": 10, "accept_ratio": 0.5, "backtrack_coeff": 0.8}
SPACES = [ActionSpace("discrete", 4), ActionSpace("box", 3, (-1.0,) * 3, (1.0,) * 3)]


def hatrpo(regs, task, **over):
    cfg = build_config({"scheme": "hatrpo", "hidden_sizes": [16], **over})
    resolve_scheme_config(cfg, regs)
    return HATRPO(task, MLPBuilder(), cfg)


def kl(old_actor, new_actor, obs):
    with torch.no_grad():
        return torch.distributions.kl_divergence(old_actor.distribution(obs), new_actor.distribution(obs)).mean().item()


def surrogate(actor, obs, actions, old_logp, adv):
    with torch.no_grad():
        return (torch.exp(actor.evaluate(obs, actions)[0] - old_logp) * adv).mean().item()


@pytest.mark.parametrize("space", SPACES, ids=["discrete", "box"])
def test_accepted_step_keeps_the_kl_bound_and_raises_the_surrogate(regs, space):
    task = spec([5], [space])
    accepted = 0
    for seed in range(6):
        torch.manual_seed(seed)
        scheme = hatrpo(regs, task)
        batch = make_batch(scheme, task, B=256, seed=seed)
        actor = scheme.actors[0]
        old = copy.deepcopy(actor)
        args = (batch.obs[0], batch.actions[0], batch.old_logp[0], batch.advantages)
        stats = trust_region_step(actor, *args, **DEFAULTS)
        moved = any((p - q).abs().max() > 0 for p, q in zip(actor.parameters(), old.parameters()))
        if stats["step_accepted"]:
            accepted += 1
            assert moved
            assert kl(old, actor, batch.obs[0]) <= DEFAULTS["kl_threshold"]
            assert surrogate(actor, *args) > surrogate(old, *args)
            assert stats["kl"] == pytest.approx(kl(old, actor, batch.obs[0]), rel=1e-4, abs=1e-7)
        else:
            assert not moved  # a step the line search refused is not taken
    assert accepted >= 4  # the test is not vacuous: most steps qualify


def test_every_agent_of_a_scheme_update_stays_within_the_bound(regs):
    torch.manual_seed(3)
    scheme = hatrpo(regs, HETERO)
    batch = make_batch(scheme, HETERO, B=256)
    old = [copy.deepcopy(a) for a in scheme.actors]
    metrics = scheme.update(batch)
    assert sorted(int(i) for i in metrics["order"].split()) == [0, 1, 2]
    kls = [kl(o, a, batch.obs[i]) for i, (o, a) in enumerate(zip(old, scheme.actors))]
    assert all(0 < k <= 0.01 for k in kls), kls
    assert metrics["kl"] == pytest.approx(sum(kls) / 3, rel=1e-3)
    assert math.isfinite(metrics["value_loss"]) and metrics["factor_mean"] != 1.0


def _dist(actor, params, obs):
    """The MLP actor's distribution at ``obs`` with the parameters ``params`` (name -> tensor)."""
    from torch.func import functional_call

    part = lambda prefix: {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}  # noqa: E731
    out = functional_call(actor.head, part("head."), (functional_call(actor.body, part("body."), (obs,)),))
    if actor.discrete:
        return torch.distributions.Categorical(logits=out)
    std = torch.sigmoid(params["log_std"]) * 0.5
    return torch.distributions.Independent(torch.distributions.Normal(out, std.expand_as(out)), 1)


def brute_force_trpo(actor, obs, actions, old_logp, adv, kl_threshold, ls_step, accept_ratio, backtrack_coeff,
                     damping=0.1):
    """TRPO written independently: the damped Fisher (the mean KL's Hessian) as a dense matrix, solved
    exactly; returns the parameters after the line search, as one flat vector."""
    named = list(actor.named_parameters())
    theta0 = torch.cat([p.detach().reshape(-1) for _, p in named])

    def params(theta):
        out, i = {}, 0
        for name, p in named:
            out[name] = theta[i:i + p.numel()].view(p.shape)
            i += p.numel()
        return out

    def surr(theta):
        logp = _dist(actor, params(theta), obs).log_prob(actions)
        return (torch.exp(logp - old_logp) * adv).mean()

    old = _dist(actor, params(theta0), obs)

    def kl_of(theta):
        return torch.distributions.kl_divergence(old, _dist(actor, params(theta), obs)).mean()

    H = torch.autograd.functional.hessian(kl_of, theta0) + damping * torch.eye(theta0.numel(), dtype=theta0.dtype)
    g = torch.autograd.functional.jacobian(surr, theta0)
    x = torch.linalg.solve(H, g)
    step = x * math.sqrt(kl_threshold / (0.5 * x @ H @ x))
    base, expected, frac = surr(theta0).item(), (g @ step).item(), 1.0
    for _ in range(ls_step):
        theta = theta0 + frac * step
        gain = surr(theta).item() - base
        if kl_of(theta).item() < kl_threshold and gain > 0 and gain / expected > accept_ratio:
            return theta.detach()
        expected *= backtrack_coeff
        frac *= backtrack_coeff
    return theta0


@pytest.mark.parametrize("space", SPACES, ids=["discrete", "box"])
def test_one_agent_hatrpo_is_trpo(regs, space):
    """With one agent the factor is 1 and the order trivial: the scheme's actor step is exactly the
    trust-region step on the raw advantage, and that step equals a dense-matrix TRPO (in float64, with
    enough conjugate-gradient iterations to solve the small system exactly)."""
    task = spec([3], [space])
    torch.manual_seed(0)
    scheme = hatrpo(regs, task, hidden_sizes=[4])
    batch = make_batch(scheme, task, B=128)
    twin = copy.deepcopy(scheme.actors[0])
    scheme.update(batch)
    stats = trust_region_step(twin, batch.obs[0], batch.actions[0], batch.old_logp[0], batch.advantages, **DEFAULTS)
    assert stats["step_accepted"] == 1.0
    for a, b in zip(scheme.actors[0].parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    torch.manual_seed(0)
    actor = hatrpo(regs, task, hidden_sizes=[4]).actors[0].double()
    d = [t.double() if t.is_floating_point() else t for t in (batch.obs[0], batch.actions[0], batch.old_logp[0],
                                                                batch.advantages)]
    with torch.no_grad():
        d[2] = actor.evaluate(d[0], d[1])[0]  # behaviour log-probs of this float64 policy
    n = sum(p.numel() for p in actor.parameters())
    start = torch.cat([p.detach().reshape(-1) for p in actor.parameters()])
    expected = brute_force_trpo(actor, *d, **DEFAULTS)
    stats = trust_region_step(actor, *d, **DEFAULTS, cg_iters=4 * n, cg_tol=1e-30)
    got = torch.cat([p.detach().reshape(-1) for p in actor.parameters()])
    assert stats["step_accepted"] == 1.0
    assert (expected - start).norm() > 0.05  # a real step
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)


def test_options_fixed_keys_and_the_record(regs, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--scheme", "hatrpo", "--steps", "400", "--out", str(out), "--quiet",
                 "--set", "n_envs=4", "--set", "rollout_length=50", "--set", "hidden_sizes=16",
                 "--set", "eval_episodes=2", "--set", "eval_envs=2", "--set", "ppo_epochs=7",
                 "--set", "scheme.kl_threshold=0.02"])
    assert code == 0
    assert "harness: note: hatrpo fixes ppo_epochs=1 (you asked 7)" in capsys.readouterr().err
    record = json.loads((out / "config.json").read_text())
    cfg = record["config"]
    assert cfg["scheme_options"] == {"kl_threshold": 0.02, "ls_step": 10, "accept_ratio": 0.5, "backtrack_coeff": 0.8}
    assert cfg["ppo_epochs"] == 1 and cfg["entropy_coef"] == 0.0 and cfg["actor_minibatches"] == 1
    assert record["scheme_fixed"]["ppo_epochs"] == {"asked": 7, "ran": 1}
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"kl", "step_accepted", "step_fraction", "surrogate_gain"} <= set(header)
    # the same command again finds the finished run: resolution is the same every time
    assert main(["train", "--scheme", "hatrpo", "--steps", "400", "--out", str(out), "--quiet",
                 "--set", "n_envs=4", "--set", "rollout_length=50", "--set", "hidden_sizes=16",
                 "--set", "eval_episodes=2", "--set", "eval_envs=2", "--set", "ppo_epochs=7",
                 "--set", "scheme.kl_threshold=0.02"]) == 0
    capsys.readouterr()
    for bad, message in (("scheme.kl=1", "unknown option scheme.kl for scheme 'hatrpo'; its options: "
                                         "scheme.accept_ratio, scheme.backtrack_coeff, scheme.kl_threshold, "
                                         "scheme.ls_step"),
                         ("scheme.ls_step=2.5", "scheme.ls_step='2.5' is not an integer"),
                         ("scheme.kl_threshold=0", "scheme.kl_threshold=0.0: kl_threshold must be > 0"),
                         ("scheme.kl_threshold=inf", "scheme.kl_threshold=inf must be a finite number"),
                         ("scheme.=1", "empty scheme option name")):
        assert main(["train", "--scheme", "hatrpo", "--steps", "100", "--out", str(tmp_path / "bad"),
                     "--set", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    assert main(["train", "--scheme", "happo", "--steps", "100", "--out", str(tmp_path / "bad"),
                 "--set", "scheme.kl_threshold=0.1"]) == 2
    assert "its options: none" in capsys.readouterr().err


def test_train_help_and_plugins_list_scheme_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "hatrpo: scheme.kl_threshold: largest mean KL(old || new) of one agent's step [float, default: 0.01]" in text
    assert "hatrpo: ppo_epochs is fixed at 1" in text
    assert main(["plugins", "--options", "hatrpo"]) == 0
    text = capsys.readouterr().out
    assert "hatrpo fixes entropy_coef = 0.0" in text and "ls_step" in text
    for name, message in (("hatrpo/x", "only task names take a scenario; give 'hatrpo'"),
                          ("HATRPO", "not a task family, scheme, network or executor; known: gru, happo, hasac, hatrpo,"),
                          ("mpe/nosuch", "unknown task 'mpe/nosuch'")):
        assert main(["plugins", "--options", name]) == 2
        assert message in capsys.readouterr().err, name


def test_a_network_without_distributions_is_refused_by_name(regs):
    class NoDist(MLPBuilder):
        def actor(self, obs_dim, space, config):
            return _Plain(super().actor(obs_dim, space, config))

    class _Plain(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def act(self, obs, deterministic=False):
            return self.inner.act(obs, deterministic)

        def evaluate(self, obs, actions):
            return self.inner.evaluate(obs, actions)

    from harness.errors import HarnessError
    cfg = build_config({"scheme": "hatrpo", "hidden_sizes": [8]})
    resolve_scheme_config(cfg, regs)
    with pytest.raises(HarnessError, match="needs actors with distribution"):
        HATRPO(HETERO, NoDist(), cfg)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mpe/simple_speaker_listener", "mamujoco/HalfCheetah-2x3"])
def test_hatrpo_trains_on_both_task_families(regs, task):
    from harness.trainer import Trainer
    cfg = build_config({"scheme": "hatrpo", "task": task, "steps": 2000, "n_envs": 4, "rollout_length": 100,
                        "hidden_sizes": [32], "eval_episodes": 2, "eval_envs": 2, "eval_interval": 0,
                        "absolute_factor": 0})
    rows = Trainer(cfg, regs, None, progress=False).run_training()
    updates = [r for r in rows if r["iteration"] > 0]
    assert len(updates) == 5
    assert sum(r["step_accepted"] for r in updates) >= 3
    assert all(0 <= r["kl"] <= 0.01 for r in updates)


def test_a_sweep_searches_scheme_options_and_best_toml_carries_them(tmp_path):
    from test_sweep import TINY_CONFIG
    sweep = tmp_path / "kl.toml"
    sweep.write_text(f"""
[sweep]
name = "kl"
scheme = "hatrpo"
tasks = ["mpe/simple_speaker_listener"]
steps = 400
seeds = 1
trials = 2
evaluations = 2
eval_episodes = 2
default_space = false
{TINY_CONFIG}
[space]
"scheme.kl_threshold" = {{ low = 0.001, high = 0.05, log = true }}
"scheme.ls_step" = {{ low = 2, high = 12 }}
""")
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out), "--quiet"]) == 0
    import optuna
    study = optuna.load_study(study_name="kl", storage=f"sqlite:///{out / 'study.db'}")
    params = [t.params for t in study.trials]
    assert len(params) == 2 and all(isinstance(p["scheme.ls_step"], int) for p in params)
    best = study.best_trial
    trial_cfg = json.loads((out / "trials" / str(best.number) / "mpe/simple_speaker_listener/seed_1/config.json")
                           .read_text())["config"]
    assert trial_cfg["scheme_options"]["kl_threshold"] == pytest.approx(best.params["scheme.kl_threshold"])
    assert "[scheme_options]" in (out / "best.toml").read_text()
    run = tmp_path / "again"
    assert main(["train", "--config", str(out / "best.toml"), "--task", "mpe/simple_speaker_listener", "--seed", "1",
                 "--out", str(run), "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["config"]["scheme_options"] == trial_cfg["scheme_options"]


def test_a_sweep_space_corner_outside_an_options_range_is_refused_before_trials(tmp_path, capsys):
    sweep = tmp_path / "bad.toml"
    sweep.write_text("""
[sweep]
scheme = "hatrpo"
tasks = ["mpe/simple_speaker_listener"]
steps = 400
trials = 2
[space]
"scheme.backtrack_coeff" = { low = 0.5, high = 1.5 }
""")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "scheme.backtrack_coeff=1.5 must be from 0 to 1" in capsys.readouterr().err
    assert not (tmp_path / "o" / "study.db").exists()


def test_scheme_options_written_the_ways_toml_allows(regs, tmp_path, capsys):
    """A dotted key (scheme.kl_threshold = ...), a [scheme] table, a quoted "scheme.x" key and a
    scheme_options table all set the option, in --config files and sweep spaces alike."""
    from harness.config import load_overrides_file
    for text in ('scheme.kl_threshold = 0.02\n', '[scheme]\nkl_threshold = 0.02\n', '"scheme.kl_threshold" = 0.02\n',
                 'scheme_options = { kl_threshold = 0.02 }\n'):
        f = tmp_path / "c.toml"
        f.write_text(text)
        cfg = build_config(load_overrides_file(f) + [("scheme", "hatrpo")])
        resolve_scheme_config(cfg, regs)
        assert cfg.scheme_options["kl_threshold"] == 0.02, text
    from harness.sweep import sweep_from_data
    import tomllib
    data = tomllib.loads('[sweep]\nscheme = "hatrpo"\ntasks = ["mpe/simple_spread"]\nsteps = 400\ntrials = 2\n'
                         'default_space = false\n[space]\nscheme.kl_threshold = { low = 0.001, high = 0.02 }\n')
    sweep = sweep_from_data(data, tmp_path / "s.toml", tmp_path / "o", regs=regs)
    assert [(d.name, d.kind, d.low, d.high) for d in sweep.space] == [("scheme.kl_threshold", "float", 0.001, 0.02)]


def test_a_sweep_cannot_search_a_key_the_scheme_fixes(tmp_path, capsys):
    sweep = tmp_path / "fixed.toml"
    sweep.write_text('[sweep]\nscheme = "hatrpo"\ntasks = ["mpe/simple_spread"]\nsteps = 400\ntrials = 2\n'
                     '[space]\nppo_epochs = { low = 3, high = 10 }\n')
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "scheme 'hatrpo' fixes ppo_epochs=1, so it cannot be searched" in err and err.count("\n") == 1


def test_a_sweeps_best_toml_is_included_in_its_schemes_table_only(tmp_path, capsys):
    from harness.bench import load_suite
    best = tmp_path / "best.toml"
    best.write_text('scheme = "hatrpo"\ncritic_lr = 0.001\n\n[scheme_options]\nkl_threshold = 0.02\n')
    suite = tmp_path / "s.toml"
    head = '[suite]\nschemes = ["happo", "hatrpo"]\ntasks = ["mpe/simple_spread"]\nseeds = 1\nsteps = 400\n'
    suite.write_text(head + '[schemes.hatrpo]\ninclude = "best.toml"\n')
    loaded = load_suite(suite, tmp_path / "o")
    run = next(r for r in loaded.runs if r.scheme == "hatrpo")
    cfg = build_config(run.overrides)
    assert cfg.critic_lr == 0.001 and cfg.scheme_options == {"kl_threshold": 0.02}
    suite.write_text(head + '[schemes.happo]\ninclude = "best.toml"\n')
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match=r"include 'best.toml' holds the settings of scheme 'hatrpo'; "
                                           r"include it in \[schemes.hatrpo\]"):
        load_suite(suite, tmp_path / "o")
