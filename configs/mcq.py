r"""MCQ experiment configs (agent: jaxaug/agents/mcq.py, OfflineRL-Kit defaults).

  python experiments/train_offline.py --config=configs/mcq.py:tiny --workdir=/tmp/mcq
  python experiments/train_offline.py --config=configs/mcq.py:halfcheetah-medium \
      --config.data_dir=/data/d4rl --workdir=runs/mcq/halfcheetah-medium

OfflineRL-Kit trains MCQ for 1000 epochs x 1000 steps (1M updates, batch 256), as here. The tiny
and small presets shrink the networks (2x64 / 2x128, CVAE 2x128 / 2x256) to run on a CPU.
"""

from jaxaug.agents import mcq, presets


def get_config(arg=None):
  return presets.offline_config(
      "mcq", mcq.get_config(), arg, config_file="configs/mcq.py",
      tiny={"num_steps": 1000, "eval_every": 500, "log_every": 200, "checkpoint_every": 500},
      tiny_agent={"hidden_dims": (64, 64), "vae_hidden_dims": (128, 128)},
      small_agent={"hidden_dims": (128, 128), "vae_hidden_dims": (256, 256)})
