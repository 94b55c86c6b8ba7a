"""The mlp network plugin: shapes, log-probabilities, and the NumPy acting policy against the torch actors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.envs import ActionSpace
from harness_plugins.mlp import MLPActor, MLPBuilder, MLPCritic

DISCRETE = ActionSpace(kind="discrete", n=5)
BOX = ActionSpace(kind="box", n=3, low=[-1.0] * 3, high=[1.0] * 3)


def _perturb(actor: torch.nn.Module, seed: int) -> None:
    """Move every parameter off its initial value (LayerNorm gains start at exactly 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("layer_norm", [True, False])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_numpy_policy_matches_torch_actors(activation, layer_norm):
    # Heterogeneous agents: two discrete ones with the same shapes (stacked together), one with
    # another observation size, one Gaussian; agent 4 is agent 0 again (parameter sharing).
    # (network.layer_norm=false: the same without any LayerNorm.)
    actors = [MLPActor(7, DISCRETE, [16, 16], activation, layer_norm),
              MLPActor(7, DISCRETE, [16, 16], activation, layer_norm),
              MLPActor(4, DISCRETE, [16, 16], activation, layer_norm), MLPActor(6, BOX, [16, 16], activation, layer_norm)]
    assert any(isinstance(m, torch.nn.LayerNorm) for m in actors[0].modules()) == layer_norm
    for k, a in enumerate(actors):
        _perturb(a, k)
    actors.append(actors[0])
    policy = MLPBuilder().acting_policy(actors)
    rng = np.random.default_rng(0)
    dims = [7, 7, 4, 6, 7]
    obs = [rng.standard_normal((9, d)).astype(np.float32) for d in dims]
    for deterministic in (True, False):
        acts, logps = policy(obs, np.random.default_rng(1), deterministic)
        for i, actor in enumerate(actors):
            with torch.no_grad():
                lp_torch, _ = actor.evaluate(torch.from_numpy(obs[i]), torch.as_tensor(acts[i]))
                if deterministic:
                    a_torch, _ = actor.act(torch.from_numpy(obs[i]), deterministic=True)
                    np.testing.assert_allclose(acts[i], a_torch.numpy(), atol=1e-5)
            assert logps[i].shape == (9,) and logps[i].dtype == np.float32
            np.testing.assert_allclose(logps[i], lp_torch.numpy(), atol=1e-5)


def test_numpy_policy_samples_from_the_policy():
    """Gumbel-max sampling: empirical action frequencies match the softmax probabilities."""
    actor = MLPActor(3, DISCRETE, [8], "relu")
    _perturb(actor, 3)
    with torch.no_grad():
        actor.head.weight.mul_(30.0)  # a clearly non-uniform distribution
    policy = MLPBuilder().acting_policy([actor])
    obs = np.tile(np.array([[0.5, -1.0, 2.0]], np.float32), (20_000, 1))
    acts, logps = policy([obs], np.random.default_rng(0))
    freq = np.bincount(acts[0], minlength=5) / len(acts[0])
    with torch.no_grad():
        expected = torch.softmax(actor.head(actor.body(torch.from_numpy(obs[:1]))), -1)[0].numpy()
    np.testing.assert_allclose(freq, expected, atol=0.015)
    np.testing.assert_allclose(np.exp(logps[0]), expected[acts[0]], rtol=1e-4)


def test_gaussian_log_prob_by_hand():
    actor = MLPActor(2, BOX, [4], "relu")
    obs = torch.tensor([[0.1, -0.2]])
    action = torch.tensor([[0.3, -0.1, 0.0]])
    with torch.no_grad():
        mean = actor.head(actor.body(obs))[0]
        std = torch.sigmoid(actor.log_std) * 0.5
        lp, ent = actor.evaluate(obs, action)
    by_hand = sum(-0.5 * ((action[0, k] - mean[k]) / std[k]) ** 2 - math.log(std[k]) - 0.5 * math.log(2 * math.pi)
                  for k in range(3))
    assert lp.item() == pytest.approx(float(by_hand), abs=1e-5)
    assert std[0].item() == pytest.approx(0.5 / (1 + math.exp(-1.0)), abs=1e-6)  # sigmoid(1) * 0.5
    assert ent.item() == pytest.approx(sum(0.5 + 0.5 * math.log(2 * math.pi) + math.log(s) for s in std.tolist()), abs=1e-5)


def test_critic_shape():
    critic = MLPCritic(11, [16, 16], "relu")
    assert critic(torch.zeros(5, 11)).shape == (5,)


def test_acting_policy_declines_foreign_actors():
    class Other(torch.nn.Module):
        pass
    assert MLPBuilder().acting_policy([Other()]) is None


def test_layer_norm_option_reaches_the_builder():
    """``config.network_options["layer_norm"]`` decides the LayerNorms; a config without the key (built by
    hand) gets the default, the network as it was before it declared the option."""
    from types import SimpleNamespace
    base = {"hidden_sizes": [8], "activation": "relu"}
    lns = lambda net: sum(isinstance(m, torch.nn.LayerNorm) for m in net.modules())  # noqa: E731
    for options, want in (({}, 2), ({"layer_norm": True}, 2), ({"layer_norm": False}, 0)):
        cfg = SimpleNamespace(**base, network_options=options)
        assert lns(MLPBuilder().actor(5, DISCRETE, cfg)) == want and lns(MLPBuilder().critic(5, cfg)) == want
    assert lns(MLPBuilder().actor(5, DISCRETE, SimpleNamespace(**base))) == 2
    # the default keeps the module layout older runs' checkpoints were saved with
    actor = MLPBuilder().actor(5, BOX, SimpleNamespace(**base, network_options={"layer_norm": True}))
    assert list(actor.state_dict()) == ["log_std", "body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias",
                                        "body.3.weight", "body.3.bias", "head.weight", "head.bias"]
