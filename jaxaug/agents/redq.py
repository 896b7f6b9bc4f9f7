"""REDQ: "Randomized Ensembled Double Q-Learning" (Chen et al., ICLR 2021, Alg. 1).

SAC with three changes (paper Sec. 3):
  * an ensemble of N = 10 critics (`num_critics`);
  * the TD target minimises over a random subset of M = 2 of them, drawn afresh for every
    update (`num_min_critics`);
  * an update-to-data ratio G = 20: 20 critic steps per environment step (`utd_ratio`, a
    top-level field of configs/redq.py that the online loop passes to `update_utd`), with the
    actor (and temperature) updated once, its loss using the *mean* of all N critics.

Everything else is SAC's (lr 3e-4, 2x256 ReLU, gamma 0.99, tau 0.005, learned temperature with
target entropy -|A|, entropy term in the backup). The state, losses and updates are SAC's own
pieces (`jaxaug.agents.sac`), which already support ensembles, random subsets and UTD; this
module only fixes REDQ's defaults, so the two agents cannot drift apart.
"""

from __future__ import annotations

import ml_collections

from jaxaug.agents import sac

# The agent protocol: the state type, updates and acting are SAC's.
SACState = sac.SACState
init = sac.init
update = sac.update
update_utd = sac.update_utd
act = sac.act
act_jit = sac.act_jit
update_jit = sac.update_jit
policy_params = sac.policy_params

UTD_RATIO = 20  # G in the paper; the online config's `utd_ratio`


def get_config() -> ml_collections.ConfigDict:
  """SAC's defaults with REDQ's ensemble: N = 10, M = 2, mean-Q actor loss."""
  c = sac.get_config()
  c.num_critics = 10  # N
  c.num_min_critics = 2  # M: random subset in the target (fresh per update)
  c.actor_q_reduction = "mean"  # Alg. 1 line 10: average over all N critics
  c.backup_entropy = True
  c.critic_layer_norm = False
  return c
