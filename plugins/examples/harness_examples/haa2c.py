"""Update scheme ``haa2c``: Heterogeneous-Agent A2C (Zhong et al., JMLR 2024), the small-scheme example.

HAPPO's sequential update (a random order each iteration, the factor M carried from agent to agent)
with the unclipped importance-weighted surrogate E[r * M * A] instead of PPO's clipped one, over
``ppo_epochs`` passes (5 by default, HARL's ``a2c_epoch``). Everything else (actor epochs, entropy
bonus, critic, checkpoints) is :class:`harness.scheme.OnPolicyScheme`'s.
"""

from __future__ import annotations

from harness import hookimpl
from harness.scheme import PPO_SEARCH_SPACE, OnPolicyScheme


class HAA2C(OnPolicyScheme):
    sequential = True  # carry the factor M from one agent to the next

    def order(self):
        return self.random_order()  # a fresh permutation each iteration (index order with fixed_order)

    def surrogate(self, ratio, advantages, logp):
        return (ratio * advantages).mean()  # importance-weighted, no clipping


@hookimpl
def register_schemes(register):
    register("haa2c", HAA2C, description="HAA2C: sequential unclipped importance-weighted updates",
             search_space={k: v for k, v in PPO_SEARCH_SPACE.items() if k != "clip"})
