"""SynthER configs: `--config=configs/synther.py:PRESET`.

Presets:
  * `tiny`  CPU, about a minute: residual MLP width 64 x 2 blocks, 300 steps, 32-step sampler,
    2k generated transitions, on `embedded:hopper-medium-replay`.
  * `paper` (default): SynthER offline (docs/methods/synther.md): residual MLP width 2048, 6
    blocks, dim_t 128 (~25.6M params for d_in 42), batch 256 (1024 for >= 800k transitions),
    100k steps, AdamW 3e-4 (0.9, 0.99), cosine, EMA 0.995 every 10 steps; 128-step Heun with
    churn; 5M transitions in batches of 100k.
  * `w1024`: the same with width 1024 (~6.5M params).
"""

from __future__ import annotations

import ml_collections

from jaxaug.nets import denoisers
from jaxaug.train.config import generator_base_config

PRESETS = ("tiny", "paper", "w1024")


def get_config(arg: str = "paper") -> ml_collections.ConfigDict:
  arg = arg or "paper"
  if arg not in PRESETS:
    raise ValueError(f"configs/synther.py: unknown preset {arg!r}; expected one of {PRESETS}")
  c, num_steps = generator_base_config("synther", num_steps=100_000, checkpoint_every=10_000)
  c.diffusion.net = "resmlp"
  c.diffusion.net_kwargs = ml_collections.ConfigDict(denoisers.PRESETS["resmlp_paper"])
  c.diffusion.lr_schedule = "cosine"

  c.synther = ml_collections.ConfigDict()
  c.synther.terminal_threshold = 0.5
  c.synther.normalizer_eps = 1e-5
  # The official batch rule: 1024 on datasets of >= 800k transitions, else batch_size (256).
  c.synther.large_batch_size = 1024  # 0 = always batch_size
  c.synther.large_dataset_transitions = 800_000

  c.samples_per_chunk = 100_000

  if arg == "w1024":
    c.diffusion.net_kwargs = ml_collections.ConfigDict(denoisers.PRESETS["resmlp_1024"])
  if arg == "tiny":
    num_steps.set(300)
    c.batch_size = 64
    c.updates_per_dispatch = 50
    c.log_every = 100
    c.checkpoint_every = 150
    c.diffusion.net_kwargs = ml_collections.ConfigDict(denoisers.PRESETS["resmlp_tiny"])
    c.diffusion.ema_every = 1
    c.sampler.num_steps = 32
    c.num_transitions = 2000
    c.samples_per_chunk = 1000
  return c
