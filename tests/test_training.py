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


@pytest.mark.parametrize("scheme", _REGS.schemes.names())
@pytest.mark.parametrize("task", ["mpe/simple_spread", "mpe/simple_speaker_listener", "mpe/simple_reference"])
def test_every_registered_scheme_runs_on_every_mpe_task(regs, tmp_path, scheme, task):
    rows = train(regs, tmp_path / "r", scheme=scheme, task=task, steps=50)
    assert rows[-1]["eval_return"] != "" and float(rows[-1]["value_loss"]) >= 0
