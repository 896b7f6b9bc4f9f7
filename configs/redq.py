"""REDQ online training configs: `--config=configs/redq.py:PRESET`.

SAC's online config (configs/sac.py) with REDQ's agent (10 critics, random 2 in the target,
mean-Q actor loss) and update-to-data ratio 20 (Chen et al., 2021, Sec. 3 and App. A), with the
settings of the official code (watchernyu/REDQ, experiments/train_redq_sac.py): 5000 random
start steps, MBPO's per-environment target entropy and epoch count (1000 env steps per epoch),
one deterministic test episode after every epoch. Presets: `tiny` (CPU, seconds; tests),
`hopper`, `halfcheetah`, `walker2d`, `ant`. Table and sources: docs/methods/redq.md.
"""

from __future__ import annotations


import ml_collections

from jaxaug.agents import redq
from jaxaug.configs_io import load_config_file

PRESETS = ("tiny", "hopper", "halfcheetah", "walker2d", "ant")


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
  c.start_steps = redq.START_STEPS
  env = "hopper" if arg == "tiny" else arg
  # MBPO's values, not -|A| (official code: target_entropy='mbpo').
  c.agent.target_entropy = redq.MBPO_TARGET_ENTROPY[env]
  if arg == "tiny":
    c.agent.num_critics = 4  # keep the tiny run fast; still a subset (2 of 4) in the target
    c.utd_ratio = 2
    c.start_steps = 200
  else:
    c.num_env_steps = redq.MBPO_EPOCHS[env] * 1000  # Hopper 125k ... HalfCheetah 400k
    c.eval_every = 1000  # one test episode per 1000-step epoch (n_evals_per_epoch=1)
    c.eval_episodes = 1
  return c
