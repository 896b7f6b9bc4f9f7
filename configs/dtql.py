"""DTQL offline configs: `--config=configs/dtql.py:PRESET`.

Presets:
  * `tiny`  CPU, seconds (tests, smoke runs): small nets, 200 steps, 2 eval episodes.
  * `small` CPU, minutes: full-width nets, 20k steps (2k of them BC + critic pre-training),
    32 max-Q candidates, on `embedded:hopper-medium-replay`.
  * `gym` (default, = `''`): DTQL's gym defaults (batch 256, 50k pre-training steps, then
    1000 epochs x 1000 steps, eval every 50 epochs on 10 episodes, 1024 max-Q candidates).
  * one per D4RL dataset, e.g. `hopper-medium-replay`, `antmaze-large-diverse`, with the paper's
    per-dataset lr / trust_region_weight (alpha) / lr decay / gamma_ent / expectile / epochs /
    batch (official main.py, REFERENCE.md "DTQL"). They point `dataset` at the embedded dataset
    of that name; set `--config.dataset=d4rl:PATH` for the real D4RL file.

DTQL trains on raw observations (no state normalisation) and, on AntMaze, on r - 1.
"""

from __future__ import annotations

import ml_collections

from jaxaug.agents import dtql
from jaxaug.train.config import offline_base_config

STEPS_PER_EPOCH = 1000
PRETRAIN_STEPS = 50_000  # official: 50 pre-training epochs of BC + critic

# dataset -> (lr, trust_region_weight, lr_decay, num_epochs, gamma_ent, expectile, batch_size)
DATASETS: dict[str, tuple] = {
    "halfcheetah-medium": (3e-4, 1.0, False, 1000, 0.0, 0.7, 256),
    "halfcheetah-medium-replay": (3e-4, 5.0, False, 1000, 0.0, 0.7, 256),
    "halfcheetah-medium-expert": (3e-4, 50.0, False, 1000, 0.0, 0.7, 256),
    "hopper-medium": (1e-4, 5.0, True, 1000, 0.0, 0.7, 256),
    "hopper-medium-replay": (3e-4, 5.0, False, 1000, 0.0, 0.7, 256),
    "hopper-medium-expert": (3e-4, 20.0, False, 1000, 0.0, 0.7, 256),
    "walker2d-medium": (3e-4, 5.0, True, 1000, 0.0, 0.7, 256),
    "walker2d-medium-replay": (3e-4, 5.0, True, 1000, 0.0, 0.7, 256),
    "walker2d-medium-expert": (3e-4, 5.0, True, 1000, 0.0, 0.7, 256),
    "antmaze-umaze": (3e-4, 1.0, False, 500, 1.0, 0.9, 2048),
    "antmaze-umaze-diverse": (3e-5, 1.0, True, 500, 1.0, 0.9, 2048),
    "antmaze-medium-play": (3e-4, 1.0, False, 400, 1.0, 0.9, 2048),
    "antmaze-medium-diverse": (3e-4, 1.0, False, 400, 1.0, 0.9, 2048),
    "antmaze-large-play": (3e-4, 1.0, False, 350, 1.0, 0.9, 2048),
    "antmaze-large-diverse": (3e-4, 0.5, False, 300, 1.0, 0.9, 2048),
    "pen-human": (3e-5, 1500.0, True, 300, 0.0, 0.9, 256),
    "pen-cloned": (1e-5, 1500.0, False, 200, 0.0, 0.7, 256),
    "kitchen-complete": (1e-4, 200.0, True, 500, 0.0, 0.7, 256),
    "kitchen-partial": (1e-4, 100.0, True, 1000, 0.0, 0.7, 256),
    "kitchen-mixed": (3e-4, 200.0, True, 500, 0.0, 0.7, 256),
}
PRESETS = ("tiny", "small", "gym") + tuple(DATASETS)


def _set_schedule(c: ml_collections.ConfigDict, pretrain_steps: int, main_steps: int) -> None:
  """num_steps = pre-training + main phase; the lr decay spans the main phase only."""
  c.agent.pretrain_steps = pretrain_steps
  c.agent.lr_decay_steps = main_steps
  c.num_steps = pretrain_steps + main_steps


def get_config(arg: str = "gym") -> ml_collections.ConfigDict:
  arg = arg or "gym"
  if arg not in PRESETS:
    raise ValueError(f"configs/dtql.py: unknown preset {arg!r}; expected one of "
                     f"{', '.join(PRESETS)}")
  c = offline_base_config()
  c.agent_name = "dtql"
  c.agent = dtql.get_config()
  c.normalize_obs = False  # DTQL uses raw observations
  c.reward_normalization = "none"
  c.batch_size = 256
  c.updates_per_dispatch = 1000
  c.log_every = 5000
  c.eval_every = 50 * STEPS_PER_EPOCH
  c.eval_episodes = 10
  c.checkpoint_every = 50 * STEPS_PER_EPOCH
  _set_schedule(c, PRETRAIN_STEPS, 1000 * STEPS_PER_EPOCH)

  if arg == "tiny":
    c.agent.denoiser_hidden_dim = 32
    c.agent.policy_hidden_dims = (32, 32)
    c.agent.critic_hidden_dims = (32, 32)
    c.agent.num_candidates = 4
    c.batch_size = 64
    c.updates_per_dispatch = 50
    c.log_every = 100
    c.eval_every = 0
    c.eval_episodes = 2
    c.checkpoint_every = 100
    _set_schedule(c, 50, 150)
  elif arg == "small":
    c.agent.num_candidates = 32
    c.agent.trust_region_weight = 5.0  # hopper-medium-replay's alpha
    c.updates_per_dispatch = 500
    c.log_every = 2000
    c.eval_every = 10_000
    c.eval_episodes = 5
    c.checkpoint_every = 10_000
    _set_schedule(c, 2000, 18_000)
  elif arg in DATASETS:
    lr, alpha, decay, epochs, gamma_ent, expectile, batch = DATASETS[arg]
    c.dataset = f"embedded:{arg}"
    c.agent.lr = lr
    c.agent.trust_region_weight = alpha
    c.agent.lr_decay = decay
    c.agent.gamma_ent = gamma_ent
    c.agent.expectile = expectile
    c.batch_size = batch
    _set_schedule(c, PRETRAIN_STEPS, epochs * STEPS_PER_EPOCH)
    if arg.startswith("antmaze"):
      c.reward_normalization = "antmaze"  # r - 1 (IQL's AntMaze reward)
      c.eval_episodes = 100
  return c
