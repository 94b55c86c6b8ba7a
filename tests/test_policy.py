"""Acting (harness.policy): one Policy for rollouts, evaluations and ``harness eval``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import build_config
from harness.errors import HarnessError, PluginError, plugin_call
from harness.plugins import load_plugins
from harness.trainer import Trainer

from conftest import TINY


class TorchActing:
    """A network plugin's acting policy written with torch (as the guide allows): it must run without
    gradients, or ``numpy()`` of its outputs fails."""

    def __init__(self, actors):
        self.actors = actors

    def __call__(self, obs, rng, deterministic):
        out = [a.act(torch.from_numpy(o), deterministic=deterministic) for a, o in zip(self.actors, obs)]
        return [x.numpy() for x, _ in out], [lp.numpy() for _, lp in out]


def test_a_torch_acting_policy_runs_without_gradients(regs):
    trainer = Trainer(build_config({**TINY, "task": "mpe/simple_spread", "steps": 50}), regs, None, progress=False)
    try:
        trainer.builder.acting_policy = TorchActing  # instance attribute: this builder only
        trainer.weights_changed()
        batch, _ = trainer.collect()
        assert trainer.evaluate() and batch.obs[0].shape[0] == 50
    finally:
        trainer.close()


def test_the_plugin_call_wrapper_keeps_or_names_harness_errors():
    with pytest.raises(HarnessError) as kept:
        with plugin_call("plugin 'x': factory raised"):
            raise HarnessError("env.n=0 must be >= 1")
    assert str(kept.value) == "env.n=0 must be >= 1" and not isinstance(kept.value, PluginError)
    with pytest.raises(PluginError, match=r"^plugin 'x' raised in hook on_metrics: HarnessError: bad$"):
        with plugin_call("plugin 'x' raised in hook on_metrics:", keep=()):
            raise HarnessError("bad")
    with pytest.raises(PluginError, match=r"^plugin 'x': factory raised KeyError: 'k'$"):
        with plugin_call("plugin 'x': factory raised"):
            {}["k"]


@pytest.fixture(scope="module")
def regs():
    return load_plugins()
