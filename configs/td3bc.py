r"""TD3+BC experiment configs (agent: jaxaug/agents/td3bc.py, CORL defaults).

  python experiments/train_offline.py --config=configs/td3bc.py:tiny --workdir=/tmp/td3bc
  python experiments/train_offline.py --config=configs/td3bc.py:hopper-medium \
      --config.data_dir=/data/d4rl --workdir=runs/td3bc/hopper-medium

Presets: default, tiny, small, and <env>-<quality> for env in hopper, halfcheetah, walker2d and
quality in random, medium, medium-replay, medium-expert, expert (see jaxaug/agents/presets.py).
"""

from jaxaug.agents import presets, td3bc


def get_config(arg=None):
  return presets.offline_config("td3bc", td3bc.get_config(), arg, config_file="configs/td3bc.py")
