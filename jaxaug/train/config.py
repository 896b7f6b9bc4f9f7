"""Base experiment configs shared by the config files in configs/.

Config files build on these and set presets; every field is overridable from the command line
(`--config.key=value`). Fields are documented where they are defined.
"""

from __future__ import annotations

import ml_collections

from jaxaug.diffusion import train as dtrain


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
  # S4RL: std of fresh Gaussian state noise added to every sampled batch (raw state units); 0 = off.
  # Applied inside the jitted step for every agent (TD3+BC, IQL, CQL, MCQ, DTQL) and on top of
  # any augment.path / augment.source data.
  c.augment.s4rl_std = 0.0
  # Composed mode (jaxaug; docs/augmentation.md): 'generator:WORKDIR' = a trained GTA or SynthER
  # run of experiments/train_diffusion.py generating on device inside this run (a synthetic ring
  # buffer in the train state), instead of a staged file (augment.path). '' = off.
  c.augment.source = ""
  c.augment.every = 1000  # updates between generation rounds (composed)
  # Windows (GTA) or rows (SynthER) per round; 0 = the generator's windows_per_chunk /
  # samples_per_chunk. A GTA round yields up to round_size * (horizon - 1) transitions.
  c.augment.round_size = 0
  c.augment.capacity = 0  # synthetic buffer rows; 0 = the generator config's num_transitions
  c.augment.warm_start = True  # fill the whole buffer before the first update
  # dispatch: a separate jitted round between dispatches (every must be a multiple of
  # updates_per_dispatch); scan: lax.cond inside the K-update scan (any every).
  c.augment.round_placement = "dispatch"
  return c


# EDM sampler settings of SynthER and GTA (GTA Table 7 = SynthER's).
EDM_SAMPLER = dict(num_steps=128, sigma_min=0.002, sigma_max=80.0, rho=7.0, s_churn=80.0,
                   s_tmin=0.05, s_tmax=50.0, s_noise=1.003)


def generator_base_config(method: str, num_steps: int, checkpoint_every: int
                          ) -> tuple[ml_collections.ConfigDict, ml_collections.FieldReference]:
  """Shared fields of the diffusion-generator configs (configs/gta.py, configs/synther.py).

  Returns the config and the FieldReference behind `num_steps` (also the learner's
  `diffusion.num_steps`, the horizon of its lr schedule), so presets change both with `.set()`.
  """
  c = ml_collections.ConfigDict()
  c.method = method
  c.seed = 0
  c.dataset = "embedded:hopper-medium-replay"
  steps = ml_collections.FieldReference(num_steps)
  c.num_steps = steps
  c.batch_size = 256
  c.updates_per_dispatch = 100
  c.log_every = 1000
  c.eval_every = 0
  c.checkpoint_every = checkpoint_every
  c.max_checkpoints = 3
  c.num_seeds = 1
  c.diffusion = dtrain.get_config()  # the learner (jaxaug.diffusion.train)
  c.diffusion.num_steps = steps
  c.sampler = ml_collections.ConfigDict(EDM_SAMPLER)
  # Switch (jaxaug, off = official GTA): classifier-free guidance in both Heun stages (one 2B call
  # each) instead of the guided Euler stage + conditional correction; 2(2n-1) instead of 3n-1
  # evaluations per item for n steps (254 vs 191 at n = 64).
  c.sampler.guide_correction = False
  # Switch (jaxaug, off = official GTA): no condition dropout while sampling. The official network
  # draws its dropout mask (diffusion.cond_dropout) on every call, training or not.
  c.sampler.no_sampling_dropout = False
  c.num_transitions = 5_000_000  # generated transitions
  c.checkpoint_step = -1  # which diffusion checkpoint to sample from; -1 = latest
  return c, steps
