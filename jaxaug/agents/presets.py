"""Preset machinery shared by the offline agents' config files (configs/<agent>.py).

    get_config('tiny')            CPU smoke run, well under a minute
    get_config('small')           CPU run of a few minutes
    get_config('hopper-medium')   paper scale: 1M steps, batch 256, the D4RL v2 file, and the
                                  reference code's per-dataset settings for that dataset
    get_config('hopper-medium+fixes')  the same plus jaxaug's opt-in switches (only for agents
                                  that have some; see docs/methods/<agent>.md)
    get_config() / 'default'      the reference code's default hyperparameters on the default
                                  (embedded) dataset

Per-dataset presets read `d4rl:<data_dir>/<name>-v2.hdf5`; `dataset` is a lazy reference to
`data_dir`, so `--config.data_dir=/data/d4rl` moves it, and `--config.dataset=...` still
replaces it outright. Evaluation uses the v5 gymnasium environments (jaxaug.envs).
"""

from __future__ import annotations

import os
from typing import Callable

import ml_collections

from jaxaug.train.config import offline_base_config

LOCOMOTION_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5",
                   "walker2d": "Walker2d-v5"}
D4RL_QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert")
# D4RL AntMaze v2 datasets; they evaluate in jaxaug's D4RL-layout AntMaze (jaxaug/envs/suites,
# the optional `suites` extra; docs/suites.md).
ANTMAZE_DATASETS = ("antmaze-umaze", "antmaze-umaze-diverse", "antmaze-medium-play",
                    "antmaze-medium-diverse", "antmaze-large-play", "antmaze-large-diverse")
DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".d4rl", "datasets")
BASE_PRESETS = ("default", "tiny", "small")
FIXES_SUFFIX = "+fixes"

# hook(config, env_name, quality) -> None: per-dataset agent settings (e.g. IQL's actor type).
DatasetHook = Callable[[ml_collections.ConfigDict, str, str], None]
# fixes(config) -> None: flips an agent's opt-in switches (the `<preset>+fixes` presets).
FixesHook = Callable[[ml_collections.ConfigDict], None]


def dataset_presets(antmaze: bool = False) -> list[str]:
  names = [f"{env}-{q}" for env in LOCOMOTION_ENVS for q in D4RL_QUALITIES]
  return names + list(ANTMAZE_DATASETS) if antmaze else names


def all_presets(with_fixes: bool = False, antmaze: bool = False) -> list[str]:
  """Every preset name `offline_config` accepts (with `with_fixes`: also `<dataset>+fixes`;
  with `antmaze`: also the AntMaze datasets)."""
  names = list(BASE_PRESETS) + dataset_presets(antmaze)
  if with_fixes:
    names += [p + FIXES_SUFFIX for p in dataset_presets(antmaze)]
  return names


def offline_config(agent_name: str, agent_config: ml_collections.ConfigDict, arg: str | None,
                   *, tiny_agent: dict | None = None, small_agent: dict | None = None,
                   tiny: dict | None = None, small: dict | None = None,
                   base: dict | None = None, dataset_hook: DatasetHook | None = None,
                   fixes: FixesHook | None = None, antmaze: bool = False,
                   config_file: str = "configs/<agent>.py") -> ml_collections.ConfigDict:
  """The base offline config with `agent_name`'s defaults and the preset `arg` applied.

  tiny_agent / small_agent override agent fields in those presets (e.g. smaller networks);
  tiny / small override top-level fields; `base` overrides top-level fields in every preset
  (e.g. an agent whose reference does not normalise states). `dataset_hook` applies the reference's per-dataset
  settings in the dataset presets. `fixes`, when given, enables `<dataset>+fixes` presets: the
  paper preset of that dataset with `fixes` applied on top. `antmaze` adds the AntMaze
  presets (rewards r - 1 and 100 evaluation episodes unless the hook says otherwise).
  """
  preset = (arg or "default").strip()
  known = all_presets(with_fixes=fixes is not None, antmaze=antmaze)
  if preset not in known:
    raise ValueError(f"unknown preset {preset!r} for {config_file}; expected one of: "
                     f"{', '.join(known)}")
  with_fixes = preset.endswith(FIXES_SUFFIX)
  if with_fixes:
    preset = preset[:-len(FIXES_SUFFIX)]
  c = offline_base_config()
  c.agent_name = agent_name
  c.agent = agent_config
  c.data_dir = DEFAULT_DATA_DIR  # where the per-dataset presets find D4RL hdf5 files
  c.update(base or {})
  if preset == "default":
    pass
  elif preset == "tiny":
    c.num_steps = 2000
    c.batch_size = 256
    c.updates_per_dispatch = 100
    c.log_every = 500
    c.eval_every = 1000
    c.eval_episodes = 2
    c.checkpoint_every = 1000
    c.update(tiny or {})
    c.agent.update(tiny_agent or {})
  elif preset == "small":
    c.num_steps = 30_000
    c.batch_size = 256
    c.updates_per_dispatch = 100
    c.log_every = 1000
    c.eval_every = 5000
    c.eval_episodes = 5
    c.checkpoint_every = 10_000
    c.update(small or {})
    c.agent.update(small_agent or {})
  else:  # a D4RL dataset
    env_name, quality = preset.split("-", 1)
    c.dataset = "d4rl:" + c.get_ref("data_dir") + f"/{preset}-v2.hdf5"
    c.num_steps = 1_000_000
    c.batch_size = 256
    c.eval_every = 5000
    if env_name == "antmaze":
      c.env_id = f"{preset}-v2"  # the D4RL task -> jaxaug's AntMaze (jaxaug/envs/suites)
      c.eval_episodes = 100
      c.reward_normalization = "antmaze"  # r - 1 (IQL, CORL, OfflineRL-Kit)
    else:
      c.env_id = LOCOMOTION_ENVS[env_name]
      c.eval_episodes = 10
    c.checkpoint_every = 50_000
    if dataset_hook is not None:
      dataset_hook(c, env_name, quality)
    if with_fixes:
      fixes(c)
  return c
