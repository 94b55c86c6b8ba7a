"""MAPPO's unshared actor updates: one agent after another against all agents at once, in one run.

Without parameter sharing MAPPO's agents train on the same advantage and never see each other's new
policy, so their PPO epochs could run as one batched computation over stacked parameters. This
measures whether that pays on this machine: ``loop`` is what the harness does (each ``MLPActor``
with its own Adam, ``ppo_epochs`` full-batch steps, gradient norm clipped per agent); ``vmap`` runs
the same steps for all agents at once with ``torch.func.functional_call`` under ``torch.vmap`` over
parameters stacked by ``torch.func.stack_module_state``, one Adam over the stacked tensors and the
clipping done per agent. It prints each one's seconds and their ratio, per task shape (agents,
observation size, action size) and thread count, over ``--repeats`` alternations, and the largest
difference between the two sides' parameters at the end (the same steps, reordered arithmetic).

Run: ``python benchmarks/actor_batching.py [--repeats 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from gymnasium.spaces import Box

from harness.task_api import ActionSpace
from harness_plugins.mlp import MLPActor

#: (label, agents, observation size, action size): Humanoid-17x1 and HalfCheetah-6x1 with global
#: observations (state + one-hot id), HalfCheetah-2x3 with local ones.
SHAPES = [("Humanoid-17x1 global", 17, 365, 1), ("HalfCheetah-6x1 global", 6, 23, 1),
          ("HalfCheetah-2x3 local", 2, 13, 3)]


def _loss(logp: torch.Tensor, entropy: torch.Tensor, old: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    ratio = torch.exp(logp - old)
    surrogate = torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean(-1)
    return -surrogate - 0.01 * entropy.mean(-1)


def run_loop(actors, opts, data, epochs: int) -> None:
    obs, act, old, adv = data
    for i, (actor, opt) in enumerate(zip(actors, opts)):
        for _ in range(epochs):
            logp, entropy = actor.evaluate(obs[i], act[i])
            loss = _loss(logp, entropy, old[i], adv[i])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(actor.parameters(), 10.0)
            opt.step()


def make_vmap(actors):
    params, buffers = torch.func.stack_module_state(actors)
    params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    base = copy.deepcopy(actors[0]).to("meta")
    base.forward = base.evaluate  # functional_call calls forward, with the stacked parameters swapped in

    def evaluate(p, b, o, a):
        return torch.func.functional_call(base, (p, b), (o, a))

    opt = torch.optim.Adam(list(params.values()), lr=5e-4, eps=1e-5)
    return params, buffers, evaluate, opt


def run_vmap(state, data, epochs: int) -> None:
    params, buffers, evaluate, opt = state
    obs, act, old, adv = data
    for _ in range(epochs):
        logp, entropy = torch.vmap(evaluate)(params, buffers, obs, act)
        loss = _loss(logp, entropy, old, adv).sum()  # agents' parameters are disjoint: each gets its own gradient
        opt.zero_grad()
        loss.backward()
        norms = torch.stack([p.grad.flatten(1).norm(dim=1) for p in params.values()]).norm(dim=0)
        scale = (10.0 / (norms + 1e-6)).clamp(max=1.0)
        for p in params.values():
            p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)))
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=4000, help="rows per agent (HARL's batch: 20 x 200)")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"MAPPO unshared actor epochs: {args.epochs} x {args.samples} rows per agent, MLP [128, 128], "
          f"{args.threads} torch thread(s)")
    print(f"{'shape':26s} {'loop s':>8s} {'vmap s':>8s} {'vmap / loop':>12s}")
    for label, n, obs_dim, act_dim in SHAPES:
        space = ActionSpace.from_gymnasium(Box(-1.0, 1.0, (act_dim,)))
        actors = [MLPActor(obs_dim, space, [128, 128], "relu") for _ in range(n)]
        data = (torch.randn(n, args.samples, obs_dim), torch.randn(n, args.samples, act_dim),
                torch.randn(n, args.samples), torch.randn(n, args.samples))
        loop_actors = [copy.deepcopy(a) for a in actors]
        opts = [torch.optim.Adam(a.parameters(), lr=5e-4, eps=1e-5) for a in loop_actors]
        state = make_vmap(actors)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_loop(loop_actors, opts, data, args.epochs)
            t1 = time.perf_counter()
            run_vmap(state, data, args.epochs)
            t2 = time.perf_counter()
            print(f"{label:26s} {t1 - t0:8.2f} {t2 - t1:8.2f} {(t2 - t1) / (t1 - t0):12.2f}")
        # the same computation: both started from the same parameters and took the same steps
        gap = max(float((dict(a.named_parameters())[k] - state[0][k][i]).detach().abs().max())
                  for i, a in enumerate(loop_actors) for k in state[0])
        print(f"{label:26s} largest parameter difference after {args.repeats * args.epochs} steps: {gap:.2e}")


if __name__ == "__main__":
    main()
