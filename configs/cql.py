r"""CQL experiment configs (agent: jaxaug/agents/cql.py; settings of CORL's per-dataset yamls).

  python experiments/train_offline.py --config=configs/cql.py:tiny --workdir=/tmp/cql
  python experiments/train_offline.py --config=configs/cql.py:hopper-medium \
      --config.data_dir=/data/d4rl --workdir=runs/cql/hopper-medium

The dataset presets follow CORL's `configs/offline/cql/<env>/<dataset>_v2.yaml`: every
locomotion yaml has the same agent settings (the agent defaults), and only hopper-medium sets
`normalize_reward: true` (with reward_scale 1, reward_bias 0, i.e. r * 1000 / (max - min
episode return): reward_normalization='locomotion'); DATASET_OVERRIDES lists it.
The tiny and small presets use 2x64 / 2x128 networks and a 10x larger policy lr so that they run
on a CPU in seconds / minutes; the default and per-dataset presets keep CORL's 3x256, 3e-5.
See docs/methods/cql.md.
"""

from jaxaug.agents import cql, presets

# Per-dataset differences from CORL's CQL defaults.
DATASET_OVERRIDES = {
    "hopper-medium": dict(reward_normalization="locomotion"),
}

PRESETS = tuple(presets.all_presets())


def _dataset_hook(c, env_name, quality):
  overrides = dict(DATASET_OVERRIDES.get(f"{env_name}-{quality}", {}))
  c.reward_normalization = overrides.pop("reward_normalization", "none")
  c.agent.update(overrides)


def get_config(arg=None):
  return presets.offline_config(
      "cql", cql.get_config(), arg, config_file="configs/cql.py", dataset_hook=_dataset_hook,
      tiny={"num_steps": 1000, "eval_every": 500, "log_every": 200, "checkpoint_every": 500},
      tiny_agent={"hidden_dims": (64, 64), "policy_lr": 3e-4},
      small_agent={"hidden_dims": (128, 128), "policy_lr": 3e-4})
