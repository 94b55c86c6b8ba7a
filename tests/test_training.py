"""Whole training runs at a tiny budget: determinism, resume, every scheme on every env family."""

from __future__ import annotations

import pytest

from harness.config import build_config
from harness.plugins import load_plugins
from harness.results import RunDir
from harness.trainer import Trainer

from conftest import TINY

TIMING = {"steps_per_s", "collect_s", "update_s", "wall_s"}


def metrics(path):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in RunDir(path).rows()]


def train(regs, out, **over):
    cfg = build_config({**TINY, **over})
    Trainer(cfg, regs, out, progress=False).run_training()
    return metrics(out)


def test_same_seed_gives_identical_metrics(regs, tmp_path):
    a = train(regs, tmp_path / "a", steps=150, seed=4)
    b = train(regs, tmp_path / "b", steps=150, seed=4)
    c = train(regs, tmp_path / "c", steps=150, seed=5)
    assert len(a) == 4 and a == b
    assert a != c


def test_resume_after_stop_continues_exactly(regs, tmp_path):
    full = train(regs, tmp_path / "full", steps=250, checkpoint_interval=2)
    # a run stopped after iteration 3 (checkpoint at 2, one row past it, a partial line)
    cfg = build_config({**TINY, "steps": 250, "checkpoint_interval": 2})
    trainer = Trainer(cfg, regs, tmp_path / "cut", progress=False)
    run = RunDir(tmp_path / "cut")
    calls = {"n": 0}
    real = trainer.scheme.update

    def dying_update(batch):
        calls["n"] += 1
        if calls["n"] == 4:
            with open(run.metrics_file, "a") as fh:
                fh.write("4,100,-1")  # a partial line, as a kill mid-write leaves
            raise KeyboardInterrupt
        return real(batch)

    trainer.scheme.update = dying_update
    with pytest.raises(KeyboardInterrupt):
        trainer.run_training()
    assert not run.done and [int(r["iteration"]) for r in run.rows()] == [0, 1, 2, 3]
    resumed = Trainer(cfg, regs, tmp_path / "cut", progress=False)
    resumed.run_training()
    assert metrics(tmp_path / "cut") == full


_REGS = load_plugins()
SMOKE = [(f"{e.name}/{e.extra['smoke'][0]}", e.extra["smoke"][1]) for e in _REGS.tasks if "smoke" in e.extra]


def test_every_builtin_task_family_declares_a_smoke_task():
    assert {t.split("/")[0] for t, _ in SMOKE} >= {"mpe", "mamujoco"}


# The on-policy schemes (their metrics: policy, value, entropy); the off-policy ones (hasac) have
# tests of their own (tests/test_hasac.py) and the conformance kit's box-action checks.
ON_POLICY = [s for s in _REGS.schemes.names() if not getattr(_REGS.schemes.get(s).factory, "off_policy", False)]


@pytest.mark.parametrize("scheme", ON_POLICY)
@pytest.mark.parametrize("task,options", SMOKE, ids=[t for t, _ in SMOKE])
def test_every_registered_scheme_trains_on_every_task_family(regs, tmp_path, monkeypatch, scheme, task, options):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    rows = train(regs, tmp_path / "r", scheme=scheme, task=task, steps=100, env=options)
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    last = rows[-1]
    for col in ("eval_return", "train_return", "policy_loss", "value_loss", "entropy"):
        assert last[col] not in ("", "nan"), col
    assert float(last["value_loss"]) >= 0 and float(last["entropy"]) != 0


@pytest.mark.parametrize("scheme", ON_POLICY)
@pytest.mark.parametrize("task", ["mpe/simple_spread", "mpe/simple_speaker_listener", "mpe/simple_reference"])
def test_every_registered_scheme_runs_on_every_mpe_task(regs, tmp_path, scheme, task):
    rows = train(regs, tmp_path / "r", scheme=scheme, task=task, steps=50)
    assert rows[-1]["eval_return"] != "" and float(rows[-1]["value_loss"]) >= 0


def test_batch_carries_the_raw_rollout_with_final_observations(regs):
    """next_obs is the observation each step led to: the next step's observation inside an
    episode, the episode's final observation (not the reset one) where it ended."""
    import torch
    cfg = build_config({**TINY, "task": "mpe/simple_spread", "rollout_length": 60, "n_envs": 3})
    trainer = Trainer(cfg, regs, None, progress=False)
    batch, _ = trainer.collect()
    T, E = batch.shape
    assert (T, E) == (60, 3) and batch.rewards.shape == (T * E,)
    ended = (batch.terminated | batch.truncated).reshape(T, E)
    assert ended.sum() == 2 * E and bool(ended[24].all()) and bool(ended[49].all())  # 25-step episodes
    for i, (o, n) in enumerate(zip(batch.obs, batch.next_obs)):
        o, n = o.reshape(T, E, -1), n.reshape(T, E, -1)
        inside = ~ended[:-1]
        assert torch.equal(n[:-1][inside], o[1:][inside])
        assert not torch.equal(n[24], o[25])  # the reset observation differs from the final one
    # MPE's state is the concatenation of the agents' observations: the final state the trainer
    # bootstraps from must equal the concatenated final observations.
    nxt = torch.cat([n.reshape(T, E, -1) for n in batch.next_obs], dim=-1)
    trainer.close()
    assert nxt.shape[-1] == trainer.task.state_dim
    cfg2 = build_config({**TINY, "task": "mpe/simple_spread", "rollout_length": 60, "n_envs": 3})
    t2 = Trainer(cfg2, regs, None, progress=False)
    rollout = t2.rollout.collect()  # the arrays the batch and its advantages are made from
    t2.close()
    final = torch.from_numpy(rollout.final_states)
    assert torch.allclose(final[ended], nxt[ended])
