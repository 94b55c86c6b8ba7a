"""Update-scheme plugin ``happo``: Heterogeneous-Agent PPO (Kuba et al., ICLR 2022).

Each iteration draws a fresh random permutation of the agents from the run's seeded generator
(``fixed_order`` uses index order). Agents are updated one after another with PPO-clip on
M * A, where M is the product of pi_new/pi_old of the agents updated before (computed over the
whole batch, without gradient, never clipped); then the critic. No parameter sharing.
The sequential loop itself is :func:`harness.ppo.update_actors` with ``sequential=True``.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from harness.scheme import PPO_SEARCH_SPACE, OnPolicyScheme


class HAPPO(OnPolicyScheme):
    """One actor per agent, updated sequentially in a random order with the HAPPO factor."""

    sequential = True

    def order(self) -> list[int]:
        return self.random_order()


@hookimpl
def register_schemes(register):
    register("happo", HAPPO, search_space=PPO_SEARCH_SPACE, description="HAPPO: sequential updates in a random order with the ratio factor")
