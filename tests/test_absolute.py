"""The absolute metric plays episodes no evaluation played, and training leaves the last policy in
memory (the best one is only borrowed for the absolute metric)."""

from __future__ import annotations

import json

import torch

from harness.checkpoint import load_policy
from harness.config import build_config
from harness.plugins import load_plugins
from harness.results import RunDir
from harness.task_api import ABSOLUTE_STREAM
from harness.trainer import Trainer

from conftest import TINY

CFG = {**TINY, "task": "mpe/simple_spread", "steps": 500, "seed": 3, "absolute_factor": 3}


def _train(tmp_path):
    regs = load_plugins()
    trainer = Trainer(build_config(CFG), regs, tmp_path / "run", progress=False)
    trainer.run_training()
    return trainer, regs, RunDir(tmp_path / "run")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_after_training_the_scheme_holds_the_last_policy_not_the_best(tmp_path):
    trainer, _, run = _train(tmp_path)
    absolute = json.loads(run.absolute_file.read_text())
    assert absolute["best_iteration"] != trainer.iteration  # the case that matters: best is not last
    last = load_policy(run.checkpoint_file)["scheme"]["actors"]
    best = load_policy(run.best_file)["scheme"]["actors"]
    now = trainer.scheme.state_dict()["actors"]
    assert all(_same(a, b) for a, b in zip(now, last))
    assert not all(_same(a, b) for a, b in zip(now, best))


def test_the_absolute_metric_plays_episodes_no_evaluation_played(tmp_path):
    _, regs, run = _train(tmp_path)
    absolute = json.loads(run.absolute_file.read_text())
    rows = run.rows()
    best_row = next(r for r in rows if r["eval_return"] and int(r["iteration"]) == absolute["best_iteration"])
    selecting = [float(x) for x in best_row["eval_returns"].split()]
    n = len(selecting)
    assert absolute["episodes"] == 3 * n and absolute["start_states"] == "own stream"
    # None of the episodes that chose the policy is played again (MPE's returns are continuous: equal
    # returns would be the same episode).
    assert not set(selecting) & set(absolute["returns"])
    # The same policy played by hand on the absolute metric's stream gives its returns.
    fresh = Trainer(build_config(CFG), regs, None, progress=False)
    try:
        fresh.scheme.load_state_dict(load_policy(run.best_file)["scheme"])
        fresh.weights_changed()
        again = fresh.evaluate(3 * n, stream=ABSOLUTE_STREAM)
    finally:
        fresh.close()
    assert [float(f"{r:.6g}") for r in again] == absolute["returns"]


def test_the_summary_marks_absolute_metrics_made_on_the_evaluation_episodes(tmp_path):
    from harness.report import load_runs, summarise
    from harness.tables import build_tables, summary_markdown
    _, _, run = _train(tmp_path)
    older = tmp_path / "older"
    import shutil
    shutil.copytree(run.path, older / "seed_4")
    record = json.loads((older / "seed_4" / "config.json").read_text())
    record["config"]["seed"] = record["seed"] = 4
    (older / "seed_4" / "config.json").write_text(json.dumps(record))
    absolute = json.loads((older / "seed_4" / "absolute.json").read_text())
    del absolute["start_states"]  # as runs made before the absolute metric had its own start states
    (older / "seed_4" / "absolute.json").write_text(json.dumps(absolute))
    row = summarise(load_runs(tmp_path), allow_mixed=True).iloc[0]
    assert row["n_absolute"] == 2 and row["n_absolute_replayed"] == 1
    md = summary_markdown(build_tables(load_runs(tmp_path), {}, allow_mixed=True))
    assert "1 on the evaluation episodes*" in md and "earlier protocol" in md
