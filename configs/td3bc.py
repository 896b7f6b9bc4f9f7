r"""TD3+BC experiment configs (agent: jaxaug/agents/td3bc.py; CORL's settings = the paper's).

  python experiments/train_offline.py --config=configs/td3bc.py:tiny --workdir=/tmp/td3bc
  python experiments/train_offline.py --config=configs/td3bc.py:hopper-medium \
      --config.data_dir=/data/d4rl --workdir=runs/td3bc/hopper-medium

Presets: default, tiny, small, and <env>-<quality> for env in hopper, halfcheetah, walker2d and
quality in random, medium, medium-replay, medium-expert, expert (see jaxaug/agents/presets.py).
CORL's 15 locomotion yamls (`configs/offline/td3_bc/<env>/<dataset>_v2.yaml`) all use the same
settings (alpha 2.5, state normalisation, raw rewards, batch 256, 1M steps, policy noise 0.2,
noise clip 0.5, policy delay 2), which are the agent's defaults, so the dataset presets differ
only in their data file and environment. CORL's 6 AntMaze yamls differ only in rewards (r - 1)
and 100 evaluation episodes; they evaluate in jaxaug's D4RL-layout AntMaze (the `suites` extra,
docs/suites.md). See docs/methods/td3bc.md.
"""

from jaxaug.agents import presets, td3bc

PRESETS = tuple(presets.all_presets(antmaze=True))


def get_config(arg=None):
  return presets.offline_config("td3bc", td3bc.get_config(), arg, config_file="configs/td3bc.py",
                                antmaze=True)
