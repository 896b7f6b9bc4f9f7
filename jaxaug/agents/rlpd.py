"""RLPD: "Efficient Online Reinforcement Learning with Offline Data" (Ball et al., ICML 2023).

SAC with the paper's three design choices (Sec. 4):
  * symmetric sampling: every minibatch is half offline data, half online replay
    (`offline_ratio` 0.5; Sec. 4.1), done by the online loop's one sampler
    (`jaxaug.train.online_state.OnlineFns.sample`);
  * LayerNorm in the critics against Q-value extrapolation (Sec. 4.2);
  * a large ensemble with a random subset in the target and a high update-to-data ratio:
    10 critics, min over 2 (Sec. 4.3; the reference config), UTD 20 (its README), the actor
    using the mean over the ensemble.
Also as in the official code (ikostrikov/rlpd): target entropy -|A|/2; the entropy term stays
in the TD backup (`backup_entropy` True, the code's default, used for the locomotion runs; its
README turns it off only for AntMaze and Adroit); flax LayerNorm with its default epsilon 1e-6;
Glorot-uniform kernels; the temperature loss alpha (H - target); the actor step reads the
critic after the last of the UTD critic steps.

The update functions are SAC's (`jaxaug.agents.sac`); the agent sees one batch and does not know
where its rows came from, so symmetric sampling is data-side (with ATraDiff, its modified
buffer is the online half).
"""

from __future__ import annotations

import jax
import ml_collections

from jaxaug.agents import sac
from jaxaug.types import EnvSpec

# The agent protocol: the state type, updates, acting and the TD error are SAC's.
from jaxaug.agents.sac import (  # pylint: disable=unused-import,g-multiple-import
    SACState, act, act_jit, policy_params, td_error, update, update_jit, update_utd)

UTD_RATIO = 20
OFFLINE_RATIO = 0.5  # symmetric sampling


def get_config() -> ml_collections.ConfigDict:
  """SAC's defaults with RLPD's critic: LayerNorm, 10 critics, min over 2 (locomotion settings).

  AntMaze / Adroit runs of the reference turn `backup_entropy` off (and use 3x256 networks).
  """
  c = sac.get_config()
  c.num_critics = 10
  c.num_min_critics = 2
  c.critic_layer_norm = True
  c.critic_layer_norm_epsilon = 1e-6  # flax nn.LayerNorm() default, as in the reference critic
  c.backup_entropy = True  # reference default; False only for AntMaze / Adroit
  c.actor_q_reduction = "mean"
  c.temperature_loss = "alpha"  # reference: alpha * (entropy - target)
  c.actor_uses_updated_critic = True  # reference: actor step after all UTD critic steps
  # target_entropy None -> -|A| / 2 (RLPD's official default, unlike SAC's -|A|).
  c.target_entropy_scale = 0.5
  return c


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> sac.SACState:
  """SAC's init; a key the config lacks takes RLPD's default (e.g. target_entropy_scale 0.5)."""
  return sac.init(key, spec, config, agent_name="rlpd", defaults=get_config())
