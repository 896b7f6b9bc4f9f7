"""DTQL offline configs: `--config=configs/dtql.py:PRESET`.

Presets:
  * `tiny`  CPU, seconds (tests, smoke runs): small nets, 200 steps, 2 eval episodes at the end.
  * `small` CPU, minutes: full-width nets, 20k steps (2k of them BC + critic pre-training),
    32 max-Q candidates, on `embedded:hopper-medium-replay`.
  * `gym` (default, = `''`): DTQL's gym defaults (batch 256, 50k pre-training steps, then
    1000 epochs x 1000 steps, evaluation every 50 epochs of the main phase on 10 episodes,
    1024 max-Q candidates).
  * one per D4RL dataset of the paper, e.g. `hopper-medium-replay`, `antmaze-large-diverse`,
    `pen-human`, `kitchen-mixed`, with the official per-dataset lr / trust_region_weight (alpha) /
    lr decay / gamma_ent / expectile / epochs / batch size. They read
    `d4rl:<data_dir>/<dataset>-<version>.hdf5` (locomotion and antmaze v2, pen v1, kitchen v0);
    `--config.data_dir=/data/d4rl` moves it, `--config.dataset=...` replaces it.
  * `<preset>+fixes` (every dataset preset, and `small+fixes`): the same with jaxaug's fixes of
    the official code switched on (FIXES below; docs/methods/dtql.md).

Paper presets reproduce the official code, quirks included. DTQL trains on raw observations
(no state normalisation) and, on AntMaze, on r - 1. AntMaze, Adroit (pen) and FrankaKitchen
presets evaluate in jaxaug's D4RL-layout environments (the optional `suites` extra,
docs/suites.md): AntMaze scores success x 100, Kitchen tasks completed / 4 x 100, pen the D4RL
normalised return.
"""

from __future__ import annotations

import ml_collections

from jaxaug.agents import dtql
from jaxaug.agents.presets import DEFAULT_DATA_DIR, LOCOMOTION_ENVS
from jaxaug.train.config import offline_base_config

STEPS_PER_EPOCH = 1000
PRETRAIN_STEPS = 50_000  # official: 50 pre-training epochs of BC + critic
EVAL_EVERY_EPOCHS = 50  # official: evaluate every 50 epochs of the main phase

# dataset -> (lr, trust_region_weight, lr_decay, num_epochs, gamma_ent, expectile, batch_size)
# (the official per-dataset table; the paper's appendix lists the same values).
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
# D4RL dataset version per domain (the file names D4RL's datasets carry).
D4RL_VERSIONS = {"antmaze": "v2", "pen": "v1", "kitchen": "v0"}  # locomotion: v2

# jaxaug's fixes of the official code: agent field -> value in `+fixes` presets (the paper
# presets keep the official value, the agent's default).
FIXES: dict[str, object] = {
    # Bootstrap Q from the Polyak target V instead of the online V (stabler TD target).
    "target_value": True,
    # Move the target critic from step 0; a target V frozen at init would poison the bootstrap.
    "polyak_during_pretrain": True,
    # Mish after the first denoiser layer too (official: two stacked linear layers).
    "faithful_denoiser": False,
    # ReLU gain for hidden layers, 1e-2 heads: the policy starts ~state-independent, std ~1.
    "policy_init": "small_head",
}
FIXES_SUFFIX = "+fixes"
BASE_PRESETS = ("tiny", "small", "gym") + tuple(DATASETS)
PRESETS = ("tiny", "small", "small+fixes", "gym") + tuple(DATASETS) + tuple(
    d + FIXES_SUFFIX for d in DATASETS)


def d4rl_name(dataset: str) -> str:
  """The D4RL dataset id of a preset name: 'pen-human' -> 'pen-human-v1'."""
  return f"{dataset}-{D4RL_VERSIONS.get(dataset.split('-')[0], 'v2')}"


def _lazy_schedule(c: ml_collections.ConfigDict) -> None:
  """The lr decay spans the main phase (num_steps - pretrain_steps) and evaluations are counted
  from its start; both follow --config.num_steps / --config.agent.pretrain_steps lazily, and an
  explicit --config.agent.lr_decay_steps or --config.eval_offset replaces the formula. (`+ 0`
  makes eval_offset its own reference: assigning it never changes pretrain_steps.)"""
  c.agent.lr_decay_steps = c.get_ref("num_steps") - c.agent.get_ref("pretrain_steps")
  c.eval_offset = c.agent.get_ref("pretrain_steps") + 0


def _set_schedule(c: ml_collections.ConfigDict, pretrain_steps: int, main_steps: int) -> None:
  """num_steps = pre-training + main phase."""
  c.agent.pretrain_steps = pretrain_steps
  c.num_steps = pretrain_steps + main_steps


def get_config(arg: str = "gym") -> ml_collections.ConfigDict:
  arg = (arg or "gym").strip()
  fixes = arg.endswith(FIXES_SUFFIX)
  base = arg[:-len(FIXES_SUFFIX)] if fixes else arg
  if base not in BASE_PRESETS or (fixes and base in ("tiny", "gym")):
    raise ValueError(f"configs/dtql.py: unknown preset {arg!r}; expected one of "
                     f"{', '.join(PRESETS)}")
  c = offline_base_config()
  c.agent_name = "dtql"
  c.agent = dtql.get_config()
  c.data_dir = DEFAULT_DATA_DIR  # where the per-dataset presets find the D4RL hdf5 files
  c.normalize_obs = False  # DTQL uses raw observations
  c.reward_normalization = "none"
  c.batch_size = 256
  c.updates_per_dispatch = 1000
  c.log_every = 5000
  c.eval_every = EVAL_EVERY_EPOCHS * STEPS_PER_EPOCH
  c.eval_episodes = 10
  c.checkpoint_every = 50 * STEPS_PER_EPOCH
  _set_schedule(c, PRETRAIN_STEPS, 1000 * STEPS_PER_EPOCH)
  _lazy_schedule(c)

  if base == "tiny":
    c.agent.denoiser_hidden_dim = 32
    c.agent.policy_hidden_dims = (32, 32)
    c.agent.critic_hidden_dims = (32, 32)
    c.agent.num_candidates = 4
    c.batch_size = 64
    c.updates_per_dispatch = 50
    c.log_every = 100
    c.eval_every = 0  # final step only
    c.eval_episodes = 2
    c.checkpoint_every = 100
    _set_schedule(c, 50, 150)
  elif base == "small":
    c.agent.num_candidates = 32
    c.agent.trust_region_weight = 5.0  # hopper-medium-replay's alpha
    c.updates_per_dispatch = 500
    c.log_every = 2000
    c.eval_every = 9000  # main-phase steps: evaluations at 11k and 20k
    c.eval_episodes = 5
    c.checkpoint_every = 10_000
    _set_schedule(c, 2000, 18_000)
  elif base in DATASETS:
    lr, alpha, decay, epochs, gamma_ent, expectile, batch = DATASETS[base]
    domain = base.split("-")[0]
    name = d4rl_name(base)
    c.dataset = "d4rl:" + c.get_ref("data_dir") + f"/{name}.hdf5"
    # Locomotion evaluates in jaxaug's v5 environments; the other ids name the D4RL task, which
    # resolves to jaxaug's D4RL-layout suite environment (jaxaug/envs/suites).
    c.env_id = LOCOMOTION_ENVS.get(domain, name)
    c.agent.lr = lr
    c.agent.trust_region_weight = alpha
    c.agent.lr_decay = decay
    c.agent.gamma_ent = gamma_ent
    c.agent.expectile = expectile
    c.batch_size = batch
    _set_schedule(c, PRETRAIN_STEPS, epochs * STEPS_PER_EPOCH)
    if domain == "antmaze":
      c.reward_normalization = "antmaze"  # r - 1 (official reward_tune 'iql_antmaze')
    # Official main.py: AntMaze 100 episodes; others 10 on '-v2' datasets, else 100 (pen v1,
    # kitchen v0).
    c.eval_episodes = 10 if domain in LOCOMOTION_ENVS else 100
  if fixes:
    c.agent.update(FIXES)
  return c
