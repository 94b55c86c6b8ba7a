"""Normalisation references: the floor is a uniform-random policy's return on the task's evaluation
start states (measured, cached by protocol), the ceiling what the task plugin declares for the
options it holds under."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness import references
from harness.config import build_config
from harness.plugins import load_plugins

SPLIT = str(Path(__file__).parent / "plugins" / "split_lengths.py")


def _tree(root: Path, task: str, seeds: list[int], **config) -> pd.DataFrame:
    rows = []
    for scheme in ("happo", "mappo"):
        for seed in seeds:
            run = root / task.replace("/", "_") / scheme / f"seed_{seed}"
            run.mkdir(parents=True)
            (run / "config.json").write_text(json.dumps({"config": {"task": task, "scheme": scheme, "seed": seed,
                                                                    **config}}))
            rows.append({"task": task, "scheme": scheme, "seed": seed, "run_dir": str(run)})
    return pd.DataFrame(rows)


def test_the_floor_is_the_random_policys_return_on_the_evaluation_start_states(tmp_path, monkeypatch):
    # split/none: copies 0-1 end after 5 steps, 2-3 after 50, whatever the actions: one episode each is 27.5.
    regs = load_plugins([SPLIT])
    runs = _tree(tmp_path, "split/none", [1, 2], eval_episodes=4, eval_envs=4)
    refs = references.tree_references(tmp_path, runs, regs)
    assert refs["split/none"]["floor"] == 27.5 and refs["split/none"]["floor_episodes"] == 8
    assert refs["split/none"]["ceiling"] is None and "seed 1, 2" in refs["split/none"]["floor_note"]
    # Measured once: plotting again reads references.json.
    monkeypatch.setattr(references, "random_returns", lambda *a: (_ for _ in ()).throw(AssertionError("measured")))
    assert references.tree_references(tmp_path, runs, regs) == refs
    # Another protocol (other seeds) is measured afresh.
    monkeypatch.undo()
    more = pd.concat([runs, _tree(tmp_path / "more", "split/none", [3], eval_episodes=4, eval_envs=4)])
    again = references.tree_references(tmp_path, more, regs)["split/none"]
    assert again["floor_episodes"] == 12 and "seed 1, 2, 3 " in again["floor_note"]


def test_the_random_policy_samples_each_box_dimension_within_its_bounds_and_every_choice():
    regs = load_plugins()
    cfg = build_config({"task": "mpe/simple_spread", "eval_episodes": 2, "eval_envs": 2})
    by_hand = references.random_returns(regs, cfg, [4])
    assert len(by_hand) == 2 and by_hand == references.random_returns(regs, cfg, [4])  # seeded
    assert by_hand != references.random_returns(regs, cfg, [5])
    from harness.task_api import ActionSpace

    class Task:
        n_envs = 1000
        action_spaces = [ActionSpace("discrete", 5), ActionSpace("box", 2, (-1.0, 0.0), (1.0, 3.0))]
    disc, box = references._uniform(Task(), np.random.default_rng(0))(None, None)
    assert set(disc.tolist()) == {0, 1, 2, 3, 4}
    assert box[:, 0].min() >= -1 and box[:, 0].max() <= 1 and box[:, 1].min() >= 0 and box[:, 1].max() <= 3
    assert box[:, 1].max() > 2.9 and box.dtype == np.float32


def test_a_declared_ceiling_holds_only_for_the_options_it_was_published_for(tmp_path):
    regs = load_plugins()
    ok = references.ceiling(regs, build_config({"task": "mamujoco/HalfCheetah-6x1"}))
    assert ok["ceiling"] == 4400.0 and "ICLR 2022" in ok["ceiling_note"]
    short = references.ceiling(regs, build_config({"task": "mamujoco/HalfCheetah-6x1", "env": {"episode_limit": 500}}))
    assert short["ceiling"] is None
    assert references.ceiling(regs, build_config({"task": "mamujoco/Walker2d-6x1"}))["ceiling"] is None
    assert references.ceiling(regs, build_config({"task": "mpe/simple_spread"}))["ceiling"] == 0.0
    # Options as the command line gives them (strings) are resolved before they are compared.
    given = build_config({"task": "mamujoco/HalfCheetah-6x1", "env": {"episode_limit": "1000"}})
    assert references.ceiling(regs, given)["ceiling"] == 4400.0


def test_a_malformed_reference_declaration_is_the_plugins_one_line_error():
    import pytest
    from harness.errors import PluginError
    regs = load_plugins()
    entry = regs.tasks.get("mpe")
    entry.extra["references"] = {"simple_spread": {"source": "no return given"}}
    with pytest.raises(PluginError, match=r"plugin 'mpe': references.* is not .*KeyError: 'return'"):
        references.ceiling(regs, build_config({"task": "mpe/simple_spread"}))


def test_plot_refuses_an_incomparable_tree_before_measuring_its_references(tmp_path):
    import pytest
    from harness.errors import HarnessError
    from harness.plot import plot_results
    from test_plot import write_tree
    write_tree(tmp_path, {("mpe/simple_spread", "happo"): [-10.0, -12.0], ("mpe/simple_spread", "mappo"): [-20.0]})
    with pytest.raises(HarnessError, match="set of seeds|seeds"):
        plot_results(tmp_path)
    assert not (tmp_path / references.CACHE).exists()
