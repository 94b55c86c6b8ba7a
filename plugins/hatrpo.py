"""Update-scheme plugin ``hatrpo``: Heterogeneous-Agent TRPO (Kuba et al., ICLR 2022).

HAPPO's sequential scheme (a fresh random agent order each iteration, each agent's advantage times
the factor M of the agents updated before it) with a trust-region step per agent instead of PPO-clip
epochs: maximise the surrogate E[r * M * A] subject to mean KL(pi_old || pi_new) <= ``kl_threshold``.
The step direction is the natural gradient F^-1 g (conjugate gradient on Fisher-vector products, the
Hessian of the mean KL plus a damping of 0.1 times the identity, as HARL does), scaled to the KL
bound, then shortened by ``backtrack_coeff`` at most ``ls_step`` times until the KL holds, the
surrogate improves, and the improvement is at least ``accept_ratio`` of the linear prediction; a
step that never qualifies is not taken. The critic is HAPPO's. Defaults are HARL's ``hatrpo.yaml``.

Written against the public contract only: it overrides ``order`` and ``train_group`` of
:class:`harness.scheme.OnPolicyScheme`, declares its options and the core keys it fixes (one actor
step per iteration on the whole batch; no entropy bonus, as in HARL), and needs actors that offer
``distribution(obs)`` (the ``mlp`` network's do). HARL computes the KL of categorical policies with
an approximation on logits; this scheme uses the exact KL of both distribution families.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from harness.errors import HarnessError
from harness.hookspecs import hookimpl
from harness.options import Option
from harness.scheme import OnPolicyScheme

#: Fisher damping and conjugate-gradient iterations (HARL's fixed values).
DAMPING, CG_ITERS = 0.1, 10


def _flat(tensors: Any) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def conjugate_gradient(mvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
                       tol: float = 1e-10) -> torch.Tensor:
    """An approximate solution x of A x = b for a symmetric positive definite A given by ``mvp``."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = mvp(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        new_rr = r @ r
        p = r + (new_rr / rr) * p
        rr = new_rr
    return x


def trust_region_step(actor: torch.nn.Module, obs: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                      advantages: torch.Tensor, kl_threshold: float, ls_step: int, accept_ratio: float,
                      backtrack_coeff: float, cg_iters: int = CG_ITERS, damping: float = DAMPING,
                      cg_tol: float = 1e-10) -> dict[str, float]:
    """One TRPO step of ``actor`` (an actor, or an actor group: anything with ``parameters``,
    ``evaluate`` and ``distribution``) on the surrogate mean(pi/pi_old * advantages); returns metrics
    (``kl`` and ``surrogate_gain`` of the step taken, ``step_accepted`` 1 or 0, ``step_fraction``)."""
    params = [p for p in actor.parameters() if p.requires_grad]
    with torch.no_grad():
        old_dist = actor.distribution(obs)
        old_params = _flat(params).clone()

    def surrogate() -> torch.Tensor:
        logp, _ = actor.evaluate(obs, actions)
        return (torch.exp(logp - old_logp) * advantages).mean()

    def mean_kl() -> torch.Tensor:
        return torch.distributions.kl_divergence(old_dist, actor.distribution(obs)).mean()

    # The KL's gradient at the current parameters, kept differentiable: every Fisher-vector product
    # (the KL's Hessian times v) differentiates it once more, without a new forward pass.
    kl_grad = _flat(torch.autograd.grad(mean_kl(), params, create_graph=True))

    def fisher_product(v: torch.Tensor) -> torch.Tensor:
        return _flat(torch.autograd.grad(kl_grad @ v, params, retain_graph=True)) + damping * v

    def set_params(flat: torch.Tensor) -> None:
        i = 0
        with torch.no_grad():
            for p in params:
                p.copy_(flat[i:i + p.numel()].view_as(p))
                i += p.numel()

    before = surrogate()
    g = _flat(torch.autograd.grad(before, params))
    before = before.item()
    direction = conjugate_gradient(fisher_product, g, cg_iters, cg_tol)
    shs = 0.5 * float(direction @ fisher_product(direction))
    stats = {"policy_loss": -before, "kl": 0.0, "surrogate_gain": 0.0, "step_accepted": 0.0, "step_fraction": 0.0}
    if not (shs > 0 and math.isfinite(shs)):  # no gradient (e.g. zero advantages): nothing to step on
        return stats
    full_step = direction * math.sqrt(kl_threshold / shs)
    expected = float(g @ full_step)
    fraction = 1.0
    for _ in range(ls_step):
        set_params(old_params + fraction * full_step)
        with torch.no_grad():
            gain, kl = surrogate().item() - before, mean_kl().item()
        if kl < kl_threshold and gain > 0 and gain / expected > accept_ratio:
            stats.update(policy_loss=-(before + gain), kl=kl, surrogate_gain=gain, step_accepted=1.0,
                         step_fraction=fraction)
            return stats
        expected *= backtrack_coeff
        fraction *= backtrack_coeff
    set_params(old_params)  # no step qualified: keep the old policy
    return stats


class HATRPO(OnPolicyScheme):
    """One actor per agent, updated sequentially in a random order, each with a trust-region step."""

    sequential = True

    def __init__(self, task: Any, builder: Any, config: Any) -> None:
        super().__init__(task, builder, config)
        lacking = sorted({type(a).__name__ for a in self.actors if not callable(getattr(a, "distribution", None))})
        if lacking:
            raise HarnessError(f"scheme 'hatrpo' needs actors with distribution(obs) (for KL divergences); "
                               f"network {config.network!r} builds {', '.join(lacking)} without it")

    @staticmethod
    def check_options(options: dict[str, Any]) -> None:
        """Ranges of the options (called when a config is resolved, before any work)."""
        o = options
        # The declared ranges (OPTIONS) are checked first; these are the strict ends.
        for bad, need in ((not o["kl_threshold"] > 0, "kl_threshold must be > 0"),
                          (not 0 < o["backtrack_coeff"] < 1, "backtrack_coeff must be strictly between 0 and 1")):
            if bad:
                key = need.split()[0]
                raise HarnessError(f"scheme.{key}={o[key]}: {need}")

    def order(self) -> list[int]:
        return self.random_order()

    def train_group(self, group, obs, actions, old_logp, advantages) -> dict[str, float]:
        # The group scores its data as its actor takes it (a recurrent actor's chunks with their states).
        stats = trust_region_step(group, obs, actions, old_logp, advantages, **self.cfg.scheme_options)
        with torch.no_grad():
            stats["entropy"] = group.evaluate(obs, actions)[1].mean().item()
        return stats


#: HARL's hatrpo.yaml defaults.
OPTIONS = {
    "kl_threshold": Option(float, 0.01, "largest mean KL(old || new) of one agent's step", low=0, high=1),
    "ls_step": Option(int, 10, "backtracking line-search steps before the step is given up", low=1, high=1000),
    "accept_ratio": Option(float, 0.5, "smallest surrogate gain accepted, as a fraction of the linear prediction",
                           low=0, high=1),
    "backtrack_coeff": Option(float, 0.8, "factor shortening the step at each line-search step", low=0, high=1),
}
SEARCH_SPACE = {
    "scheme.kl_threshold": {"low": 0.001, "high": 0.05, "log": True},
    "critic_lr": {"low": 1e-4, "high": 2e-3, "log": True},
    "critic_epochs": {"low": 3, "high": 15},
    "gae_lambda": {"low": 0.9, "high": 0.99},
    "hidden_sizes": {"choices": ["64,64", "128,128", "256,256"]},
}


@hookimpl
def register_schemes(register):
    register("hatrpo", HATRPO, options=OPTIONS, fixed={"ppo_epochs": 1, "actor_minibatches": 1, "entropy_coef": 0.0},
             search_space=SEARCH_SPACE,
             description="HATRPO: sequential trust-region steps in a random order with the ratio factor")
