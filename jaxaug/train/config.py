"""Base experiment configs shared by the config files in configs/.

Config files build on these and set presets; every field is overridable from the command line
(`--config.key=value`). Fields are documented where they are defined.
"""

from __future__ import annotations

import ml_collections


def offline_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Dataset spec string: d4rl:PATH | minari:PATH | npz:PATH | embedded:NAME
  c.dataset = "embedded:hopper-medium-replay"
  c.env_id = ""  # gymnasium id for evaluation; '' = infer from dataset metadata / name
  c.agent_name = "td3bc"
  c.agent = ml_collections.ConfigDict()  # the agent's own hyperparameters (agent.get_config())
  c.batch_size = 256  # global batch, sharded over all devices
  c.num_steps = 1_000_000  # gradient updates
  c.updates_per_dispatch = 100  # K updates per jitted call, run in lax.scan
  c.log_every = 1000
  c.eval_every = 5000
  c.eval_episodes = 10
  c.checkpoint_every = 50_000
  c.max_checkpoints = 3
  c.num_seeds = 1  # >1 trains seeds seed..seed+n-1 in one vmapped program
  c.normalize_obs = True
  c.reward_normalization = "none"  # none | locomotion | antmaze
  c.distributed = False  # call jax.distributed.initialize() (multi-host)
  # Real + generated data (GTA's way: concat; SynthER's way: replace).
  c.augment = ml_collections.ConfigDict()
  c.augment.path = ""  # a dataset spec string for the generated data; '' = none
  c.augment.mode = "concat"  # concat | replace | mix
  c.augment.synthetic_ratio = 0.5  # share of each batch drawn from generated data when mode=mix
  return c
