"""The plugin conformance kit: ``harness check-plugin NAME`` runs these checks on every task family,
network and update scheme a plugin registers (or on one component by name).

Each check returns a list of :class:`Check` results; nothing here is mocked: tasks are built and
stepped, networks evaluated, schemes trained for a tiny budget on a built-in MPE task.
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from harness.config import build_config
from harness.task_api import ActionSpace, VecTask
from harness.errors import HarnessError, PluginError, describe
from harness.plugins import Registries
from harness.replay import is_off_policy
from harness.scheme import core_advantages
from harness.scheme_config import resolve_network_options
from harness.sequences import arrange, chunk_length, hidden_size
from harness.tasks import make_task

# The task a scheme is trained on: heterogeneous agents (different observation and action sizes).
SCHEME_TASK = "mpe/simple_speaker_listener"
TINY = {"n_envs": 2, "rollout_length": 25, "steps": 100, "eval_episodes": 2, "eval_envs": 2, "eval_interval": 1,
        "hidden_sizes": [16, 16], "threads": 1, "ppo_epochs": 2, "critic_epochs": 2}

#: How far pi_new/pi_old may be from 1 on the first rollout, before any update. Measured on the scheme
#: task: the built-in mlp actors (through its NumPy acting policy) are off by at most 1.2e-7 (discrete)
#: and 9.5e-7 (box); an actor that adds a decaying memory of past observations to its input in act()
#: by 9e-3 and 4e-2.
RATIO_TOLERANCE = 1e-4
#: The critic fit of the return-units check: a fast critic (these settings, before the caller's), trained
#: by FIT_UPDATES calls of ``update`` on one batch, whose values must be within UNITS_LIMIT times the
#: returns' root mean square. Measured on the scheme task (seed 1; returns of mean -69 and
#: -39, rms 77 and 43, discrete and box): HAPPO, MAPPO and HATRPO are off by 0.28 and 0.41 times that
#: rms, HAPPO without a value normaliser by 0.96 (its critic has not fitted yet), a HAPPO whose value
#: loss compares normalised outputs with return-unit targets by 9.0 and 9.1 (25.7 and 15.3 after 20
#: updates). The fit costs 0.2 to 0.7 s per action kind (HATRPO the slowest).
FIT = {"critic_lr": 0.01, "critic_epochs": 5}
FIT_UPDATES = 10
UNITS_LIMIT = 3.0


@dataclass
class Check:
    kind: str
    name: str
    what: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.kind} {self.name}: {self.what}" + \
            (f" -- {self.detail}" if self.detail else "")


class _Collector:
    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name, self.checks = kind, name, []

    def run(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one check; an AssertionError or any exception is a failure with its message."""
        try:
            out = fn()
        except AssertionError as exc:
            self.checks.append(Check(self.kind, self.name, what, False, str(exc) or "assertion failed"))
            return None
        except Exception as exc:
            self.checks.append(Check(self.kind, self.name, what, False, f"{describe(exc)}"))
            return None
        self.checks.append(Check(self.kind, self.name, what, True))
        return out


def _random_actions(task: VecTask, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for s in task.action_spaces:
        if s.kind == "discrete":
            out.append(rng.integers(0, s.n, size=task.n_envs))
        else:
            out.append(rng.uniform(s.low, s.high, size=(task.n_envs, s.n)).astype(np.float32))
    return out


def _finite(x: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(x)))


# -- tasks -----------------------------------------------------------------------------------------
def check_task(regs: Registries, family: str) -> list[Check]:
    entry = regs.tasks.get(family)
    scenario, options = entry.extra.get("smoke") or ((entry.extra.get("scenarios") or [None])[0], {})
    c = _Collector("task", family)
    if scenario is None:
        c.checks.append(Check("task", family, "declares a scenario to test", False,
                              "register it with scenarios=(...) or smoke=(scenario, options)"))
        return c.checks
    name = f"{family}/{scenario}"
    task = c.run(f"builds {name} with 2 copies", lambda: make_task(regs, name, 2, 0, options))
    if task is None:
        return c.checks
    try:
        def spaces():
            n = len(task.agents)
            assert n >= 1 and all(isinstance(a, str) for a in task.agents), f"agents={task.agents!r}"
            assert len(task.obs_dims) == n and all(isinstance(d, int) and d > 0 for d in task.obs_dims), \
                f"obs_dims={task.obs_dims!r} must be {n} positive ints"
            assert len(task.action_spaces) == n and all(isinstance(s, ActionSpace) for s in task.action_spaces), \
                "action_spaces must be one harness.task_api.ActionSpace per agent"
            assert isinstance(task.state_dim, int) and task.state_dim > 0, f"state_dim={task.state_dim!r}"
            assert task.n_envs == 2, f"n_envs={task.n_envs}, asked for 2"
        c.run("spaces: agents, observation sizes, action spaces, state size", spaces)

        def reset():
            obs, state = task.reset()
            for i, (o, d) in enumerate(zip(obs, task.obs_dims)):
                assert o.shape == (2, d) and o.dtype == np.float32, f"agent {i} obs {o.shape} {o.dtype}, want (2, {d}) float32"
                assert _finite(o), f"agent {i} obs not finite"
            assert state.shape == (2, task.state_dim) and state.dtype == np.float32, \
                f"state {state.shape} {state.dtype}, want (2, {task.state_dim}) float32"
            assert _finite(state), "global state not finite"
        c.run("reset: observation and global state shapes, dtypes, finite", reset)

        def steps():
            rng = np.random.default_rng(0)
            task.reset()
            limit = task.episode_limit + 5 if task.episode_limit > 0 else 2000
            ended = 0
            counters = list(task.episode_counters())
            for _ in range(limit):
                res = task.step(_random_actions(task, rng))
                assert res.reward.shape == (2,) and _finite(res.reward), f"reward {res.reward!r}"
                assert res.terminated.dtype == bool and res.truncated.dtype == bool, "flags must be bool arrays"
                assert not np.any(res.terminated & res.truncated), "a copy is both terminated and truncated"
                assert res.final_state.shape == (2, task.state_dim) and _finite(res.final_state), "final_state"
                assert res.state.shape == (2, task.state_dim) and _finite(res.state), "state"
                done = set(np.flatnonzero(res.terminated | res.truncated).tolist())
                assert set(res.final_obs) == done, f"final_obs for copies {sorted(res.final_obs)}, episodes ended in {sorted(done)}"
                assert len(res.episode_returns) == len(done), "one episode return per ended episode"
                for fo in res.final_obs.values():
                    assert [o.shape for o in fo] == [(d,) for d in task.obs_dims], "final_obs shapes"
                ended += len(done)
                if ended:
                    now = task.episode_counters()
                    for copy in done:
                        assert now[copy] == counters[copy] + 1, \
                            f"copy {copy} ended an episode but episode_counters() went {counters[copy]} -> {now[copy]}, " \
                            "want +1 (each copy plays its next episode number after an automatic reset)"
                    break
            assert ended, f"no episode ended within {limit} random steps (episode_limit={task.episode_limit})"
        c.run("step: rewards, termination/truncation flags, final states and observations", steps)

        def seeding():
            def trace(seed):
                t = make_task(regs, name, 2, seed, options)
                try:
                    rng = np.random.default_rng(1)
                    obs, _ = t.reset()
                    out = [np.concatenate(obs, axis=1)]
                    for _ in range(5):
                        res = t.step(_random_actions(t, rng))
                        out += [np.concatenate(res.obs, axis=1), res.reward[:, None]]
                    return np.concatenate(out, axis=1)
                finally:
                    t.close()
            a, b, other = trace(3), trace(3), trace(4)
            assert np.array_equal(a, b), "the same seed and actions gave different observations or rewards"
            assert not np.array_equal(a, other), "seeds 3 and 4 gave identical episodes: the seed is ignored"
        c.run("seeding: one seed repeats, another differs", seeding)

        def episodes():
            o1, _ = task.reset([5, 9])
            o2, _ = task.reset([5, 9])
            assert all(np.array_equal(x, y) for x, y in zip(o1, o2)), "reset(episodes) is not repeatable"
            assert task.episode_counters() == [5, 9], f"episode_counters()={task.episode_counters()}, want [5, 9]"
        c.run("reset(episodes) repeats episodes and episode_counters() reports them", episodes)
        c.run("episodes differ by copy and by stream (where they differ by episode number)",
              lambda: _check_distinct_episodes(regs, name, options))
    finally:
        task.close()
    if "render" in (entry.extra.get("options") or {}):
        c.run("render=true: frames are H x W x 3 uint8 pictures that change as the task steps",
              lambda: _check_frames(regs, name, options))
    return c.checks


def _check_distinct_episodes(regs: Registries, name: str, options: dict[str, Any]) -> None:
    """Episode k of copy c must be its own episode: another copy's episode k, and the evaluation
    stream's, must differ (else evaluation plays one episode many times, or replays training's).
    Checked where episodes differ at all: a task whose every episode is the same passes."""
    def trace(task: VecTask, episodes: list[int]) -> list[np.ndarray]:
        obs, _ = task.reset(episodes)
        rng = np.random.default_rng(3)
        rows = [np.concatenate(obs, axis=1)]
        for _ in range(3):
            actions = [np.repeat(a[:1], task.n_envs, axis=0) for a in _random_actions(task, rng)]  # copies act alike
            res = task.step(actions)
            rows += [np.concatenate(res.obs, axis=1), res.reward[:, None]]
        both = np.concatenate(rows, axis=1)
        return [both[0], both[1]]

    train, evaluation = make_task(regs, name, 2, 0, options, stream=0), make_task(regs, name, 2, 0, options, stream=1)
    try:
        first, second = trace(train, [0, 0]), trace(train, [1, 1])
        if np.array_equal(first[0], second[0]):
            return  # episodes do not depend on their number: nothing to tell apart
        assert not np.array_equal(first[0], first[1]), \
            "copies 0 and 1 play the same episode 0: put the copy index into each episode's seed " \
            "(harness.task_api.episode_seed(seed, copy, episode, stream))"
        assert not np.array_equal(first[0], trace(evaluation, [0, 0])[0]), \
            "streams 0 and 1 play the same episode 0: put the stream into each episode's seed, or evaluation " \
            "replays training's episodes (harness.task_api.episode_seed(seed, copy, episode, stream))"
    finally:
        train.close()
        evaluation.close()


def _check_frames(regs: Registries, name: str, options: dict[str, Any]) -> None:
    """A task that declares the ``render`` option draws RGB frames of copy 0 that change over steps
    (``harness eval --video``), with the episodes it plays without drawing."""
    from harness.eval_run import headless_gl
    headless_gl()
    plain = make_task(regs, name, 1, 0, options)
    drawn = make_task(regs, name, 1, 0, {**options, "render": True})
    try:
        rng = np.random.default_rng(2)
        plain.reset()
        drawn.reset()
        frames = [drawn.render(0)]
        for _ in range(5):
            actions = _random_actions(drawn, rng)
            a, b = plain.step(actions), drawn.step(actions)
            assert np.array_equal(a.reward, b.reward), "drawing changed the episode (rewards differ)"
            frames.append(drawn.render(0))
        for f in frames:
            assert isinstance(f, np.ndarray) and f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8, \
                f"render() gave {type(f).__name__} {getattr(f, 'shape', '')} {getattr(f, 'dtype', '')}, want H x W x 3 uint8"
        assert any(not np.array_equal(frames[0], f) for f in frames[1:]), "the frames do not change over 5 steps"
    finally:
        plain.close()
        drawn.close()


# -- networks ----------------------------------------------------------------------------------------
def network_overrides(overrides: Any) -> list[tuple[str, Any]]:
    """The network options among ``check-plugin --set`` overrides (``network.NAME=value``)."""
    return [(k, v) for k, v in overrides
            if (k.partition(".")[0] == "network" and "." in k) or k == "network_options"]


def check_network(regs: Registries, name: str, overrides: list[tuple[str, Any]] = ()) -> list[Check]:
    """The network checks, its actors and critic built with its declared options (defaults, or as
    ``overrides`` set them: ``check-plugin --set network.NAME=value``; a value the network refuses is
    a one-line error before any check)."""
    entry = regs.networks.get(name)
    c = _Collector("network", name)
    net_over = network_overrides(overrides)
    cfg = build_config(list({**TINY, "network": name}.items()) + net_over)
    try:
        resolve_network_options(cfg, regs)
    except PluginError as exc:
        c.checks.append(Check("network", name, "declares its options as harness.options.Option", False, str(exc)))
        return c.checks
    builder = c.run("the builder constructs", entry.factory)
    if builder is None:
        return c.checks
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(7, 6, generator=gen)
    for space in (ActionSpace(kind="discrete", n=5), ActionSpace(kind="box", n=3, low=[-1.0] * 3, high=[1.0] * 3)):
        def actor_contract(space=space):
            actor = builder.actor(6, space, cfg)
            assert isinstance(actor, torch.nn.Module), "an actor must be a torch.nn.Module"
            # A recurrent actor is called as harness.sequences says: 7 one-step rows from random states.
            width = hidden_size(actor)
            kw = {"hidden": torch.randn(7, width, generator=gen), "starts": torch.zeros(7, dtype=torch.bool)} \
                if width else {}

            def act(**more):
                out = actor.act(obs, **{**kw, **more})
                if width:
                    assert len(out) == 3, "a recurrent actor's act() returns actions, log-probs and its new state"
                    assert tuple(out[2].shape) == (7, width), \
                        f"act() state {tuple(out[2].shape)}, want (7, {width}) (hidden_size)"
                return out[0], out[1]
            with torch.no_grad():
                a, lp = act()
                want = (7,) if space.kind == "discrete" else (7, 3)
                assert tuple(a.shape) == want, f"act() actions {tuple(a.shape)}, want {want}"
                assert tuple(lp.shape) == (7,) and torch.isfinite(lp).all(), f"act() log-probs {tuple(lp.shape)}"
                lp2, ent = actor.evaluate(obs, a, **kw)
                assert torch.allclose(lp, lp2, atol=1e-5), "evaluate() disagrees with act() on the same actions"
                assert tuple(ent.shape) == (7,) and torch.isfinite(ent).all(), "entropies must be [B] and finite"
                d1, _ = act(deterministic=True)
                d2, _ = act(deterministic=True)
                assert torch.equal(d1, d2), "deterministic act() is not repeatable"
                if space.kind == "discrete":
                    total = sum(actor.evaluate(obs, torch.full((7,), k), **kw)[0].exp() for k in range(5))
                    assert torch.allclose(total, torch.ones(7), atol=1e-5), "probabilities do not sum to 1"
                    assert (ent >= -1e-6).all(), "negative entropy of a categorical"
            logp, _ = actor.evaluate(obs, a, **kw)
            logp.sum().backward()
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters()), \
                "log-probabilities do not depend on the parameters"
            dist = getattr(actor, "distribution", None)
            if dist is not None:  # optional (trust-region schemes need it): must agree with evaluate()
                with torch.no_grad():
                    d = dist(obs, **kw)
                    assert tuple(d.batch_shape) == (7,), f"distribution() batch shape {tuple(d.batch_shape)}, want (7,)"
                    assert torch.allclose(d.log_prob(a), actor.evaluate(obs, a, **kw)[0], atol=1e-5), \
                        "distribution().log_prob disagrees with evaluate()"
            make = getattr(builder, "acting_policy", None)
            if make is not None and not width:
                policy = make([actor])
                if policy:
                    acts, lps = policy([obs.numpy()], np.random.default_rng(0))
                    with torch.no_grad():
                        ref, _ = actor.evaluate(obs, torch.as_tensor(acts[0]))
                    assert np.allclose(lps[0], ref.numpy(), atol=1e-4), "acting_policy log-probs differ from evaluate()"
        c.run(f"{space.kind} actor: act/evaluate shapes, log-probs, determinism, gradients", actor_contract)

        def recurrent_contract(space=space):
            actor = builder.actor(6, space, cfg)
            with torch.no_grad():
                a = actor.act(obs, hidden=torch.zeros(7, hidden_size(actor)), starts=torch.ones(7, dtype=torch.bool))[0]
                _check_recurrent(actor, obs, a, hidden_size(actor), gen)
        try:
            recurrent = hidden_size(builder.actor(6, space, cfg)) > 0
        except Exception:  # noqa: BLE001 - the contract check above reports it
            recurrent = False
        if recurrent:
            c.run(f"{space.kind} recurrent actor: an episode start begins from zeros; a sequence scores what "
                  "step-by-step act() gave", recurrent_contract)

    def critic_contract():
        critic = builder.critic(11, cfg)
        out = critic(torch.randn(7, 11, generator=gen))
        assert tuple(out.shape) == (7,), f"critic output {tuple(out.shape)}, want (7,)"
        assert torch.isfinite(out).all(), "critic output not finite"
    c.run("critic maps [B, state_dim] to [B]", critic_contract)
    if RATIO_SCHEME in regs.schemes:
        for kind, env in KIND_OPTIONS.items():
            c.run(f"{kind} actors in a {RATIO_SCHEME} run: {RATIO_CHECK}",
                  lambda env=env: _network_ratio(regs, name, env, net_over))
    return c.checks


def _check_recurrent(actor: Any, obs: torch.Tensor, actions: torch.Tensor, width: int, gen: torch.Generator) -> None:
    """A recurrent actor's sequences: an episode start begins from zeros whatever the state given, and
    ``evaluate`` over one 7-step sequence (an episode starting at step 4) scores what step-by-step
    ``act`` calls, carrying the state, gave."""
    h = torch.randn(7, width, generator=gen)
    fresh, _, _ = actor.act(obs, deterministic=True, hidden=h, starts=torch.ones(7, dtype=torch.bool))
    zero, _, _ = actor.act(obs, deterministic=True, hidden=torch.zeros(7, width), starts=torch.ones(7, dtype=torch.bool))
    assert torch.allclose(fresh, zero, atol=1e-5), \
        "act() at an episode start depends on the state given: where starts is True the actor must begin from zeros"
    starts = torch.zeros(7, dtype=torch.bool)
    starts[4] = True
    h0 = torch.randn(1, width, generator=gen)
    state, steps = h0, []
    for t in range(7):
        steps.append(actor.evaluate(obs[t:t + 1], actions[t:t + 1], hidden=state, starts=starts[t:t + 1])[0])
        _, _, state = actor.act(obs[t:t + 1], deterministic=True, hidden=state, starts=starts[t:t + 1])
    whole, _ = actor.evaluate(obs, actions, hidden=h0, starts=starts)
    assert torch.allclose(whole, torch.cat(steps), atol=1e-4), (
        "evaluate() over a sequence disagrees with act() step by step: rows are sequences of rows/N steps, "
        "each carrying the state of the previous row (harness.sequences)")


#: The scheme a network's actors act and are scored in for the network's ratio check.
RATIO_SCHEME = "happo"


def _network_ratio(regs: Registries, network: str, env: dict[str, Any],
                   overrides: list[tuple[str, Any]] = ()) -> None:
    """The first-rollout ratio check (:func:`_check_ratio`) for ``network``'s actors in a
    ``RATIO_SCHEME`` run on the scheme task (``overrides``: the network's options)."""
    from harness.trainer import Trainer

    settings = list({**TINY, "scheme": RATIO_SCHEME, "network": network, "task": SCHEME_TASK, "seed": 1,
                     "env": env}.items()) + list(overrides)
    probe_cfg = build_config(settings)
    resolve_network_options(probe_cfg, regs)
    probe = regs.networks.get(network).factory().actor(4, ActionSpace(kind="discrete", n=2), probe_cfg)
    if hidden_size(probe):  # a recurrent network's chunks must tile the rollout: two of them
        settings.append(("rollout_length", 2 * chunk_length(probe)))
    trainer = Trainer(build_config(settings), regs, None, progress=False)
    try:
        batch, _ = trainer.collect()
        _check_ratio(trainer.scheme, batch)
    finally:
        trainer.close()


# -- schemes ----------------------------------------------------------------------------------------
#: The action kinds a scheme is checked on (its ``action_kinds``, default both): the scheme task with
#: discrete actions, and with continuous ones.
KIND_OPTIONS = {"discrete": {}, "box": {"continuous": True}}


def check_scheme(regs: Registries, name: str, overrides: list[tuple[str, Any]] = ()) -> list[Check]:
    """The scheme checks on each action kind the scheme takes (``action_kinds``, default both), with
    ``overrides`` (``check-plugin --set``, e.g. an off-policy scheme's ``scheme.warmup_steps``)."""
    entry = regs.schemes.get(name)
    kinds = getattr(entry.factory, "action_kinds", tuple(KIND_OPTIONS))
    # the settings the scheme registered for a short check (``kit={...}``), then the caller's
    own = list((entry.extra.get("kit") or {}).items())
    return [c for kind in kinds for c in _check_scheme_on(regs, name, kind, own + list(overrides))]


def _check_scheme_on(regs: Registries, name: str, kind: str, overrides: list[tuple[str, Any]]) -> list[Check]:
    from harness.trainer import Trainer

    c = _Collector("scheme", name)
    timing = {"steps_per_s", "collect_s", "update_s", "wall_s"}
    env = KIND_OPTIONS[kind]

    def train(seed: int) -> tuple[list[dict], Any]:
        cfg = build_config(list({**TINY, "scheme": name, "task": SCHEME_TASK, "seed": seed, "env": env}.items())
                           + overrides)
        trainer = Trainer(cfg, regs, None, progress=False)
        before = [p.detach().clone() for a in trainer.scheme.actors for p in a.parameters()]
        rows = trainer.run_training()
        after = [p.detach() for a in trainer.scheme.actors for p in a.parameters()]
        changed = any(not torch.equal(x, y) for x, y in zip(before, after))
        return [{k: v for k, v in r.items() if k not in timing} for r in rows], (changed, trainer)

    out = c.run(f"trains {TINY['steps']} steps on {SCHEME_TASK} (heterogeneous agents, {kind} actions)",
                lambda: train(1))
    if out is None:
        return c.checks
    rows, (changed, trainer) = out

    def metrics():
        assert len(rows) == 1 + trainer.cfg.iterations, f"{len(rows)} metric rows for {trainer.cfg.iterations} iterations"
        for r in rows[1:]:
            for k, v in r.items():
                assert v is None or isinstance(v, (int, float, str, np.number)) and not isinstance(v, bool), \
                    f"metric {k} is a {type(v).__name__} at iteration {r['iteration']}; return plain numbers " \
                    "(a tensor's .item())"
                if isinstance(v, (float, np.floating)):
                    assert math.isfinite(v), f"metric {k}={v} at iteration {r['iteration']}"
        assert all(r.get("eval_return") is not None for r in rows), "evaluation missing"
    c.run("returns finite metrics every iteration", metrics)
    def learns():
        assert changed, "no actor parameter changed after training"
    c.run("changes the actors' parameters", learns)

    def seeded():
        again, _ = train(1)
        other, _ = train(2)
        assert again == rows, "two runs with seed 1 gave different metrics"
        assert other != rows, "seeds 1 and 2 gave identical metrics"
    c.run("respects the seed (same seed repeats, another differs)", seeded)

    def round_trip():
        buf = io.BytesIO()
        torch.save(trainer.scheme.state_dict(), buf)
        buf.seek(0)
        try:  # as checkpoints are loaded: without running code
            state = torch.load(buf, weights_only=True)
        except Exception as exc:
            raise AssertionError("state_dict() holds objects that torch.load(weights_only=True) refuses (use "
                                 f"tensors, numbers, strings, lists and dicts): {str(exc).splitlines()[-1][:200]}")
        cfg = trainer.cfg
        fresh = Trainer(cfg, regs, None, progress=False)
        try:
            fresh.scheme.load_state_dict(state)
            x = [torch.from_numpy(o) for o in fresh.obs]
            with torch.no_grad():
                for i, (a, b) in enumerate(zip(trainer.scheme.actors, fresh.scheme.actors)):
                    assert torch.equal(a.act(x[i], deterministic=True)[0], b.act(x[i], deterministic=True)[0]), \
                        f"agent {i}: a restored scheme acts differently"
        finally:
            fresh.close()
    c.run("state_dict() survives a weights-only save and load; load_state_dict() restores the policy", round_trip)
    c.run("resumes exactly (a run stopped after a checkpoint and resumed writes the rows of one that was not)",
          lambda: _check_resume(regs, name, env, overrides))
    if not is_off_policy(trainer.scheme):  # an off-policy scheme has no ratio and no values()
        _check_on_policy(c, regs, name, env, overrides)
    return c.checks


RATIO_CHECK = "pi_new/pi_old is 1 on the first rollout, before any update (act() and evaluate() agree, no undeclared state)"
UNITS_CHECK = "the critic fits a batch's returns in return units (values(states)[1] against batch.returns)"
NORM_CHECK = "values(states) returns (raw, value_norm.denormalize(raw))"


def _check_on_policy(c: _Collector, regs: Registries, name: str, env: dict[str, Any],
                     overrides: list[tuple[str, Any]]) -> None:
    """An on-policy scheme's checks on the first rollout of a fresh run: the ratio before any update,
    then (for a scheme whose critic the core uses) the critic's units and ``values()`` against the
    value normaliser, after fitting the critic to that rollout."""
    from harness.trainer import Trainer

    cfg = build_config(list({**TINY, "scheme": name, "task": SCHEME_TASK, "seed": 1, "env": env, **FIT}.items())
                       + overrides)
    trainer = None
    try:
        trainer = Trainer(cfg, regs, None, progress=False)
        batch, _ = trainer.collect()  # as training collects: the trainer's policy
    except Exception as exc:
        c.checks.append(Check(c.kind, c.name, RATIO_CHECK, False, describe(exc)))
        if trainer is not None:
            trainer.close()
        return
    try:
        scheme = trainer.scheme
        c.run(RATIO_CHECK, lambda: _check_ratio(scheme, batch))
        if getattr(scheme, "joint_ratio", False):
            c.run(JOINT_CHECK, lambda: _check_joint(regs, name, env, overrides))
        if not core_advantages(scheme) or not callable(getattr(scheme, "values", None)):
            return
        c.run(UNITS_CHECK, lambda: _check_return_units(scheme, batch))
        if getattr(scheme, "value_norm", None) is not None:
            c.run(NORM_CHECK, lambda: _check_values_norm(scheme, batch.states))
    finally:
        trainer.close()


JOINT_CHECK = "joint_ratio: each agent's step follows its own surrogate, the others' ratios detached"


def _check_joint(regs: Registries, name: str, env: dict[str, Any], overrides: list[tuple[str, Any]]) -> None:
    """A ``joint_ratio`` scheme's one actor step (one epoch, one minibatch, no entropy bonus, no clipping
    of the gradient norm) from a fresh run: every actor's gradient must be that of its own agents'
    ``joint_surrogate`` alone, computed here with the others' ratios fixed at what they are before the
    step (1). A scheme that lets the others' ratios carry gradient adds their surrogates' gradients to
    each agent's, N times the own one on the first step."""
    from harness.trainer import Trainer

    fixed = {"ppo_epochs": 1, "actor_minibatches": 1, "entropy_coef": 0.0, "max_grad_norm": 1e9}
    cfg = build_config(list({**TINY, "scheme": name, "task": SCHEME_TASK, "seed": 1, "env": env}.items())
                       + list(overrides) + list(fixed.items()))
    trainer = Trainer(cfg, regs, None, progress=False)
    try:
        batch, _ = trainer.collect()
        scheme = trainer.scheme
        ref = copy.deepcopy(scheme)
        for group in ref.groups:
            for i in group.agents:
                logp, _ = group.actor.evaluate(group.actor_input(i, batch.obs[i]), batch.actions[i])
                ratio = torch.exp(logp - batch.old_logp[i])
                (-ref.joint_surrogate(ratio, torch.ones_like(ratio), batch.advantages, logp)).backward()
        scheme.update(batch)
        for k, (mine, own) in enumerate(zip(scheme.groups, ref.groups)):
            got = [p.grad for p in mine.actor.parameters()]
            if any(g is None for g in got):
                continue  # the scheme clears its gradients after stepping: nothing to compare
            g = torch.cat([x.reshape(-1) for x in got])
            want = torch.cat([p.grad.reshape(-1) for p in own.actor.parameters()])
            scale = (g @ want / (want @ want).clamp_min(1e-30)).item()
            assert torch.allclose(g, want, rtol=1e-3, atol=1e-7), (
                f"actor {k}'s gradient is {scale:.3g} x its own agents' joint_surrogate's: the other agents' ratios "
                "must enter each agent's surrogate detached (set joint_ratio and override joint_surrogate; the core "
                "detaches them, harness.joint)")
    finally:
        trainer.close()


def _check_ratio(scheme: Any, batch: Any) -> None:
    """Score a first rollout's actions with each actor's ``evaluate`` (actors without one are
    skipped): before any update, pi_new/pi_old must be 1 for every sample. An actor that keeps state
    between ``act`` calls, or whose ``act`` and ``evaluate`` score different policies, fails."""
    obs = [o.numpy() for o in batch.obs]
    inputs = getattr(scheme, "actor_inputs", None)
    obs = inputs(obs) if inputs is not None else obs
    for i, actor in enumerate(scheme.actors):
        if not callable(getattr(actor, "evaluate", None)):
            continue
        x, actions, old, kw = torch.as_tensor(obs[i]), batch.actions[i], batch.old_logp[i], {}
        if hidden_size(actor) and batch.hidden is not None:  # scored in chunks, as the update scores it
            index, seq = arrange([i], batch, chunk_length(actor))
            x, actions, old, kw = x[index], actions[index], old[index], seq.inputs()
        with torch.no_grad():
            logp, _ = actor.evaluate(x, actions, **kw)
        off = (torch.exp(logp - old) - 1).abs()
        bad = off > RATIO_TOLERANCE
        assert not bad.any() or not kw, (
            f"agent {i}: pi_new/pi_old is off 1 by up to {off.max().item():.3g} on {bad.float().mean().item():.0%} "
            "of the first rollout's samples, before any update: evaluate(obs, actions, hidden=, starts=) over the "
            "rollout's chunks must give the log-probs act() gave step by step, from the states it returned "
            "(harness.sequences)")
        assert not bad.any(), (
            f"agent {i}: pi_new/pi_old is off 1 by up to {off.max().item():.3g} on {bad.float().mean().item():.0%} "
            "of the first rollout's samples, before any update: evaluate(obs, actions) must give the log-probs "
            "act(obs) gave, on every row alone (an actor must not keep state between act() calls: a recurrent one "
            "declares it, see harness.sequences; and a fast acting_policy must compute the actors' own policy)")


def _check_return_units(scheme: Any, batch: Any) -> None:
    """Fit the critic to ``batch`` (``FIT_UPDATES`` updates on it, with the fast critic settings of
    ``FIT``): the values ``values(states)`` reports must then be near ``batch.returns``, within
    ``UNITS_LIMIT`` times the returns' root mean square (a value loss that compares the normalised
    outputs with return-unit targets leaves them many times further off)."""
    for _ in range(FIT_UPDATES):
        scheme.update(batch)
    _, values = scheme.values(batch.states)
    returns = batch.returns
    size = returns.pow(2).mean().sqrt().item()
    off = (values - returns).pow(2).mean().sqrt().item()
    assert off <= UNITS_LIMIT * max(size, 1e-3), (
        f"after {FIT_UPDATES} updates on one batch, values(states)[1] (mean {values.mean().item():.4g}) are off "
        f"batch.returns (mean {returns.mean().item():.4g}) by {off / max(size, 1e-3):.1f} times the returns' size "
        f"(at most {UNITS_LIMIT:g}): the value loss must compare like with like (with value_norm, normalise the "
        "targets, as harness.ppo.train_critic does) and values() must report return units")


def _check_values_norm(scheme: Any, states: Any) -> None:
    """``values(states)`` must be ``(raw, value_norm.denormalize(raw))``: the critic's outputs in
    normalised units first, the values in return units second (two outputs swapped fail)."""
    raw, values = scheme.values(states)
    want = scheme.value_norm.denormalize(raw)
    gap = (values - want).abs().max().item()
    assert torch.allclose(values, want, rtol=1e-5, atol=1e-4), (
        f"values(states) gave (raw, values) with values off value_norm.denormalize(raw) by up to {gap:.4g}: "
        "return the critic's outputs (normalised units) first and their denormalised values (return units) second")


def _check_resume(regs: Registries, name: str, env: dict[str, Any], overrides: list[tuple[str, Any]]) -> None:
    """Train three iterations whole, and again stopped after the second's checkpoint and resumed:
    every metric but the timings must agree (an off-policy scheme that declares ``save_replay`` is
    checked with its buffer saved, since a resume without it warms up again by design)."""
    import csv
    import tempfile
    from pathlib import Path

    from harness.trainer import Trainer

    entry = regs.schemes.get(name)
    keep = [("scheme.save_replay", True)] if "save_replay" in (entry.extra.get("options") or {}) else []
    base = {**TINY, "scheme": name, "task": SCHEME_TASK, "seed": 1, "env": env, "checkpoint_interval": 1}
    cfg = build_config(list(base.items()) + overrides + keep)
    cfg = build_config(list({**base, "steps": 3 * cfg.n_envs * cfg.rollout_length}.items()) + overrides + keep)
    timing = {"steps_per_s", "collect_s", "update_s", "wall_s"}

    def rows(run: Path) -> list[dict[str, str]]:
        with open(run / "metrics.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(f)]

    with tempfile.TemporaryDirectory(prefix="harness-kit-") as tmp:
        whole, stopped = Path(tmp) / "whole", Path(tmp) / "stopped"
        Trainer(cfg, regs, whole, progress=False).run_training()
        first = Trainer(cfg, regs, stopped, progress=False)
        try:
            for row in first.iterate():
                if row["iteration"] == 2:
                    break  # as a stop after iteration 2's checkpoint
        finally:
            first.close()
        Trainer(cfg, regs, stopped, progress=False).run_training()
        a, b = rows(whole), rows(stopped)
        assert len(a) == len(b), f"{len(b)} rows after the resume, {len(a)} without a stop"
        for x, y in zip(a, b):
            diff = sorted(k for k in x if x[k] != y.get(k))
            assert not diff, (f"iteration {x['iteration']} differs after a resume in {', '.join(diff[:4])}: "
                              "state_dict() must hold everything the update uses (optimisers, target networks, "
                              "generators, counters)")


def components(regs: Registries, name: str) -> list[tuple[str, str]]:
    """``(kind, name)`` of every component registered by plugin ``name`` (or by every plugin of the
    installed distribution ``name``), or of the component named ``name``."""
    from_dist = {r["name"] for r in regs.plugins if r.get("distribution") == name}
    out = []
    for kind, registry in (("task", regs.tasks), ("network", regs.networks), ("scheme", regs.schemes)):
        for entry in registry:
            if entry.plugin == name or entry.name == name or entry.plugin in from_dist:
                out.append((kind, entry.name))
    broken = [name] if name in regs.failed else regs.failed_distributions.get(name, [])
    if not out and broken:
        raise HarnessError(f"plugin {broken[0]!r} cannot be checked: {regs.failed[broken[0]]}")
    if not out:
        plugins = sorted({e.plugin for r in (regs.tasks, regs.networks, regs.schemes) for e in r})
        dists = sorted({r["distribution"] for r in regs.plugins if r.get("distribution")})
        raise HarnessError(f"no plugin, distribution or component named {name!r}; plugins: {', '.join(plugins)}; "
                           f"distributions: {', '.join(dists)}")
    return out


def check_plugin(regs: Registries, name: str, overrides: list[tuple[str, Any]] = ()) -> list[Check]:
    """Checks for every component :func:`components` finds for ``name`` (schemes trained with
    ``overrides``, networks built with the ``network.NAME`` ones)."""
    run = {"task": check_task, "network": lambda r, n: check_network(r, n, overrides),
           "scheme": lambda r, n: check_scheme(r, n, overrides)}
    return [c for kind, component in components(regs, name) for c in run[kind](regs, component)]
