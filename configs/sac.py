"""SAC online training configs: `--config=configs/sac.py:PRESET`.

Presets: `tiny` (CPU, seconds; tests), `hopper`, `halfcheetah`, `walker2d`, `ant`: the settings
of the SAC paper (Haarnoja et al. 2018, "SAC: Algorithms and Applications", Table 1: Adam 3e-4,
batch 256, 2x256, replay 1M, tau 0.005, one gradient step per env step, target entropy -|A|)
with 5000 uniform-random start steps as in the REDQ/SynthER code bases' SAC baseline, 1M env
steps. Hyperparameter table and sources: docs/methods/sac.md.
"""

from __future__ import annotations

import ml_collections

from jaxaug.agents import sac

PRESETS = ("tiny", "hopper", "halfcheetah", "walker2d", "ant")
ENV_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5",
           "ant": "Ant-v5"}
# |A| of each environment (Ant-v5 with 27-dim observations keeps its 8 actions).
ACT_DIMS = {"hopper": 3, "halfcheetah": 6, "walker2d": 6, "ant": 8}


def get_config(arg: str = "hopper") -> ml_collections.ConfigDict:
  arg = arg or "hopper"
  if arg not in PRESETS:
    raise ValueError(f"configs/sac.py: unknown preset {arg!r}; expected one of {PRESETS}")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.env_id = "Hopper-v5"
  c.agent = sac.get_config()
  c.num_env_steps = 1_000_000
  c.start_steps = 5000  # uniform-random actions and no updates before this many env steps
  c.batch_size = 256
  c.replay_capacity = 1_000_000
  c.utd_ratio = 1  # gradient updates per env step (critic; actor once per step)
  c.eval_every = 10_000
  c.eval_episodes = 10
  c.checkpoint_every = 50_000
  c.max_checkpoints = 2
  c.log_every = 1000
  # Environments stepped per loop iteration (one replay row each); num_env_steps counts all of
  # them and every env step gets utd_ratio gradient steps, as in the references (1 = their loop).
  c.num_envs = 1
  # jaxaug switch: act with the policy before the iteration's update, so the host steps the envs
  # while the device learns (one update of lag). False = the references' order: update, then act.
  c.overlap = False
  # Add the loop's cumulative per-phase seconds (timings/env_s, wait_s, dispatch_s, ...) to the
  # train log lines (experiments/bench_online.py); summary.json has them either way.
  c.log_timings = False
  # Keep host-side infos/qpos and infos/qvel for every replay row (the dataset builder's
  # medium-replay needs them); costs (nq + nv) * 8 bytes per row of replay capacity.
  c.record_infos = False
  if arg == "tiny":
    c.agent.hidden_dims = (32, 32)
    c.num_env_steps = 600
    c.start_steps = 200
    c.batch_size = 32
    c.replay_capacity = 1000
    c.eval_every = 300
    c.eval_episodes = 2
    c.checkpoint_every = 300
    c.log_every = 100
  else:
    c.env_id = ENV_IDS[arg]
    # -|A| (SAC paper Sec. 5), written out so that the config shows what the agent uses.
    c.agent.target_entropy = -float(ACT_DIMS[arg])
  return c
