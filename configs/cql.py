r"""CQL experiment configs (agent: jaxaug/agents/cql.py, CORL defaults).

  python experiments/train_offline.py --config=configs/cql.py:tiny --workdir=/tmp/cql
  python experiments/train_offline.py --config=configs/cql.py:hopper-medium \
      --config.data_dir=/data/d4rl --workdir=runs/cql/hopper-medium

The tiny and small presets use 2x64 / 2x128 networks and a 10x larger policy lr so that they run
on a CPU in seconds / minutes; the default and per-dataset presets keep CORL's 3x256, 3e-5.
"""

from jaxaug.agents import cql, presets


def get_config(arg=None):
  return presets.offline_config(
      "cql", cql.get_config(), arg, config_file="configs/cql.py",
      tiny={"num_steps": 1000, "eval_every": 500, "log_every": 200, "checkpoint_every": 500},
      tiny_agent={"hidden_dims": (64, 64), "policy_lr": 3e-4},
      small_agent={"hidden_dims": (128, 128), "policy_lr": 3e-4})
