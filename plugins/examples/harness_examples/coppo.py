"""Update scheme ``coppo``: CoPPO-style joint-ratio updates (Wu et al., NeurIPS 2021), the joint-ratio example.

Every agent's PPO-clip surrogate is taken on the joint ratio: its own pi_new/pi_old times the
product of the other agents' current ratios on the same samples, detached, so each agent's step
moves its own policy only while accounting for how far the others have moved. As in CoPPO's double
clip, the others' product is first clipped to ``1 +- scheme.other_clip``. All agents train together
(``joint_ratio``); agents keep one actor each (MAPPO's sharing rules do not apply). The critic and
everything else is :class:`harness.scheme.OnPolicyScheme`'s.
"""

from __future__ import annotations

from harness import hookimpl
from harness.options import Option
from harness.ppo import clipped_surrogate
from harness.scheme import PPO_SEARCH_SPACE, OnPolicyScheme


class CoPPO(OnPolicyScheme):
    joint_ratio = True  # every agent's surrogate sees the others' current ratios, detached

    def joint_surrogate(self, ratio, others, advantages, logp):
        eps = self.cfg.scheme_options["other_clip"]
        return clipped_surrogate(ratio * others.clamp(1 - eps, 1 + eps), advantages, self.cfg.clip)


@hookimpl
def register_schemes(register):
    register("coppo", CoPPO, description="CoPPO-style: each agent's clipped surrogate on the joint ratio",
             options={"other_clip": Option(float, 0.1, "clip of the other agents' ratio product (the inner clip)",
                                           low=0, high=1)},
             search_space=PPO_SEARCH_SPACE)
