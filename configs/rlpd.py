"""RLPD offline-to-online configs: `--config=configs/rlpd.py:PRESET`.

SAC's online config (configs/sac.py) with RLPD's agent (LayerNorm critics, 10 critics with a
random 2 in the target, no entropy backup, target entropy -|A|/2), update-to-data ratio 20 and
symmetric sampling: every batch half from `offline_dataset`, half from the online replay buffer
(Ball et al., 2023, Sec. 4). Presets: `tiny` (CPU, seconds; tests), `hopper`, `halfcheetah`,
`walker2d` (each with the D4RL-style medium-replay dataset of that environment; point
`offline_dataset` at d4rl:PATH / minari:PATH for the real ones).
"""

from __future__ import annotations


import ml_collections

from jaxaug.agents import rlpd
from jaxaug.configs_io import load_config_file

PRESETS = ("tiny", "hopper", "halfcheetah", "walker2d")


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
  # Symmetric sampling (Sec. 4.1): share of each batch drawn from the offline dataset.
  c.offline_ratio = rlpd.OFFLINE_RATIO
  env = "hopper" if arg == "tiny" else arg
  c.offline_dataset = f"embedded:{env}-medium-replay"  # dataset spec string
  c.start_steps = 5000  # uniform-random warm-up steps as in SAC (0: act with the policy at once)
  if arg == "tiny":
    c.agent.num_critics = 4
    c.utd_ratio = 2
    c.start_steps = 100
  return c
