"""GTA configs: `--config=configs/gta.py:PRESET`.

Presets:
  * `tiny`  CPU, about a minute: H = 8 windows, a 2-level MixerUnet (dim 8), 300 steps, 32-step
    sampler, 2k generated transitions, on `embedded:hopper-medium-replay`.
  * `paper` (default): GTA's settings (REFERENCE.md "GTA"): H = 32, MixerUnet dim 16 with
    multipliers (1, 2, 4, 8) (~29.6M params at D = 24), batch 256, 1M steps, AdamW 3e-4 (0.9,
    0.99), cosine restarted every 100k, EMA 0.995 every 10 steps, condition dropout 0.25; sampling
    128 Heun steps with churn, noising_ratio 0.5, return_multiplier 1.3, guidance_scale 2.0 (the
    authors' final runs), 5M transitions in chunks of 1000 windows.
"""

from __future__ import annotations

import ml_collections

from jaxaug.nets import denoisers
from jaxaug.train.config import generator_base_config

PRESETS = ("tiny", "paper")


def get_config(arg: str = "paper") -> ml_collections.ConfigDict:
  arg = arg or "paper"
  if arg not in PRESETS:
    raise ValueError(f"configs/gta.py: unknown preset {arg!r}; expected one of {PRESETS}")
  c, num_steps = generator_base_config("gta", num_steps=1_000_000, checkpoint_every=200_000)
  c.diffusion.net = "mixer_unet"
  c.diffusion.net_kwargs = ml_collections.ConfigDict(
      dict(denoisers.PRESETS["mixer_unet_paper"], cond_dim=1))
  c.diffusion.cond_dropout = 0.25
  c.diffusion.lr_schedule = "cosine_restarts"
  c.diffusion.restart_every = 100_000

  # Method (GTA Sec. 4, App. A-B).
  c.gta = ml_collections.ConfigDict()
  c.gta.horizon = 32
  c.gta.terminal_penalty = -100.0  # 0 for maze tasks
  c.gta.discount = 0.99
  c.gta.return_scale = 0.01
  c.gta.short_episodes = "pad"  # pad | skip (official)
  c.gta.noising_ratio = 0.5
  c.gta.return_multiplier = 1.3
  c.gta.guidance_scale = 2.0
  c.gta.reweight = False
  c.gta.reweight_bins = 50
  c.gta.reweight_smoothing = 1e-3
  c.gta.reweight_temperature = 5.0
  c.gta.reweight_clip = 5.0

  # Generation (sampler and num_transitions: generator_base_config).
  c.windows_per_chunk = 1000

  if arg == "tiny":
    num_steps.set(300)
    c.batch_size = 64
    c.updates_per_dispatch = 50
    c.log_every = 100
    c.checkpoint_every = 150
    c.gta.horizon = 8
    c.diffusion.net_kwargs = ml_collections.ConfigDict(
        dict(denoisers.PRESETS["mixer_unet_tiny"], cond_dim=1))
    c.diffusion.lr_schedule = "cosine"
    c.diffusion.ema_every = 1
    c.sampler.num_steps = 32
    c.num_transitions = 2000
    c.windows_per_chunk = 64
  return c
