r"""MCQ experiment configs (agent: jaxaug/agents/mcq.py, OfflineRL-Kit's `run_mcq.py` defaults).

  python experiments/train_offline.py --config=configs/mcq.py:tiny --workdir=/tmp/mcq
  python experiments/train_offline.py --config=configs/mcq.py:halfcheetah-medium \
      --config.data_dir=/data/d4rl --workdir=runs/mcq/halfcheetah-medium

OfflineRL-Kit trains MCQ for 1000 epochs x 1000 steps (1M updates, batch 256), as here, on raw
observations and rewards (neither it nor the official MCQ code normalises states), so every
preset has normalize_obs=False. `<dataset>+fixes` presets turn on jaxaug's switch:
  normalize_obs=True  z-score states with the dataset's statistics (as TD3+BC/CORL do), which
                      puts the critics', actor's and CVAE's inputs on one scale; not measured.
The tiny and small presets shrink the networks (2x64 / 2x128, CVAE 2x128 / 2x256) to run on a
CPU. See docs/methods/mcq.md.
"""

from jaxaug.agents import mcq, presets

PRESETS = tuple(presets.all_presets(with_fixes=True))


def _fixes(c):
  c.normalize_obs = True  # jaxaug switch: z-scored states (reference: raw states)


def get_config(arg=None):
  return presets.offline_config(
      "mcq", mcq.get_config(), arg, config_file="configs/mcq.py", fixes=_fixes,
      # Reference: OfflineRL-Kit and the official code train on raw states.
      base={"normalize_obs": False},
      tiny={"num_steps": 1000, "eval_every": 500, "log_every": 200, "checkpoint_every": 500},
      tiny_agent={"hidden_dims": (64, 64), "vae_hidden_dims": (128, 128)},
      small_agent={"hidden_dims": (128, 128), "vae_hidden_dims": (256, 256)})
