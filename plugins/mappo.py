"""Update-scheme plugin ``mappo``: MAPPO (Yu et al., 2022), the simultaneous baseline.

Every actor group trains on the raw (normalised) advantage, no permutation and no factor; the
critic update is HAPPO's. ``share_params`` (auto by default) puts all agents behind one actor when
they share observation and action spaces, as HARL's ``mappo.yaml`` does. A shared actor always knows
which agent it acts for: each agent's one-hot id is appended to its observation, unless the task's
observations already carry it (``obs_has_agent_id``, e.g. MaMuJoCo's ``obs_mode=global``), as
HARL's observations always do.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.errors import HarnessError
from harness.hookspecs import hookimpl
from harness.ppo import ActorGroup
from harness.scheme import PPO_SEARCH_SPACE, OnPolicyScheme


class MAPPO(OnPolicyScheme):
    """Simultaneous PPO-clip updates of all actors, optionally one actor shared by every agent."""

    sequential = False

    def make_groups(self, task: Any, builder: Any) -> list[ActorGroup]:
        same = len(set(task.obs_dims)) == 1 and len(set(task.action_spaces)) == 1
        choice = self.cfg.share_params
        if choice == "true" and not same:
            raise HarnessError(f"share_params=true is impossible on {self.cfg.task}: its agents have different "
                               "observation or action spaces (use share_params=false or auto)")
        n = len(task.agents)
        if choice == "false" or not same or n == 1:
            return super().make_groups(task, builder)
        ids = 0 if getattr(task, "obs_has_agent_id", False) else n
        actor = builder.actor(task.obs_dims[0] + ids, task.action_spaces[0], self.cfg)
        opt = torch.optim.Adam(actor.parameters(), lr=self.cfg.lr, eps=self.cfg.adam_eps)
        return [ActorGroup(actor, opt, list(range(n)), agent_ids=ids)]


@hookimpl
def register_schemes(register):
    register("mappo", MAPPO, search_space=PPO_SEARCH_SPACE, description="MAPPO: simultaneous updates on the raw advantage, optional parameter sharing")
