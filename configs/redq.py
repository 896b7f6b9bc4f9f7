"""REDQ online training configs: `--config=configs/redq.py:PRESET`.

SAC's online config (configs/sac.py) with REDQ's agent (10 critics, random 2 in the target,
mean-Q actor loss) and update-to-data ratio 20 (Chen et al., 2021, Sec. 3 and App. A).
Presets: `tiny` (CPU, seconds; tests), `hopper`, `halfcheetah`, `walker2d`.
"""

from __future__ import annotations


import ml_collections

from jaxaug.agents import redq
from jaxaug.configs_io import load_config_file

PRESETS = ("tiny", "hopper", "halfcheetah", "walker2d")


def get_config(arg: str = "hopper") -> ml_collections.ConfigDict:
  arg = arg or "hopper"
  if arg not in PRESETS:
    raise ValueError(f"configs/redq.py: unknown preset {arg!r}; expected one of {PRESETS}")
  c = load_config_file(f"sac:{arg}")
  c.agent_name = "redq"
  hidden = c.agent.hidden_dims
  c.agent = redq.get_config()
  c.agent.hidden_dims = hidden
  c.utd_ratio = redq.UTD_RATIO  # G = 20
  if arg == "tiny":
    c.agent.num_critics = 4  # keep the tiny run fast; still a subset (2 of 4) in the target
    c.utd_ratio = 2
  return c
