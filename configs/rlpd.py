"""RLPD offline-to-online configs: `--config=configs/rlpd.py:PRESET`.

SAC's online config (configs/sac.py) with RLPD's agent (LayerNorm critics, 10 critics with a
random 2 in the target, target entropy -|A|/2, entropy term in the backup as in the reference's
locomotion runs), update-to-data ratio 20 and symmetric sampling: every minibatch half from
`offline_dataset`, half from the online replay buffer (Ball et al., 2023, Sec. 4). Run settings
of the reference README's D4RL locomotion command (ikostrikov/rlpd): 250k env steps, 5000
random start steps, evaluation of 10 episodes every 5000 steps.

Presets: `tiny` (CPU, seconds; tests; the embedded Hopper medium-replay data), `hopper`,
`halfcheetah`, `walker2d`: `offline_dataset` is `d4rl:<data_dir>/<env>-medium-replay-v2.hdf5`,
a lazy reference to `data_dir`, so `--config.data_dir=/data/d4rl` moves it and
`--config.offline_dataset=minari:PATH` replaces it. Table and sources: docs/methods/rlpd.md.
"""

from __future__ import annotations


import ml_collections

from jaxaug.agents import rlpd
from jaxaug.agents.presets import DEFAULT_DATA_DIR
from jaxaug.configs_io import load_config_file

PRESETS = ("tiny", "hopper", "halfcheetah", "walker2d")
ACT_DIMS = {"hopper": 3, "halfcheetah": 6, "walker2d": 6}


def get_config(arg: str = "hopper") -> ml_collections.ConfigDict:
  arg = arg or "hopper"
  if arg not in PRESETS:
    raise ValueError(f"configs/rlpd.py: unknown preset {arg!r}; expected one of {PRESETS}")
  c = load_config_file(f"sac:{arg}")
  c.agent_name = "rlpd"
  hidden = c.agent.hidden_dims
  c.agent = rlpd.get_config()
  c.agent.hidden_dims = hidden
  c.utd_ratio = rlpd.UTD_RATIO
  # Symmetric sampling (Sec. 4.1): share of each minibatch drawn from the offline dataset.
  c.offline_ratio = rlpd.OFFLINE_RATIO
  c.data_dir = DEFAULT_DATA_DIR  # where the per-environment presets find the D4RL hdf5 files
  c.start_steps = 5000  # reference README: --start_training 5000
  if arg == "tiny":
    c.offline_dataset = "embedded:hopper-medium-replay"  # runs out of the box
    c.agent.num_critics = 4
    c.utd_ratio = 2
    c.start_steps = 100
  else:
    c.offline_dataset = "d4rl:" + c.get_ref("data_dir") + f"/{arg}-medium-replay-v2.hdf5"
    # -|A|/2, the reference's default, written out so that the config shows it.
    c.agent.target_entropy = -ACT_DIMS[arg] / 2.0
    # Locomotion keeps the entropy backup (reference default); the reference README sets
    # --config.backup_entropy=False only for AntMaze and Adroit.
    c.agent.backup_entropy = True
    c.num_env_steps = 250_000  # README: --max_steps 250000
    c.replay_capacity = 250_000  # the reference's online buffer holds max_steps transitions
    c.eval_every = 5000  # reference eval_interval
    c.eval_episodes = 10
  return c
