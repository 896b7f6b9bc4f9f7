r"""IQL experiment configs (agent: jaxaug/agents/iql.py, CORL defaults for locomotion).

  python experiments/train_offline.py --config=configs/iql.py:tiny --workdir=/tmp/iql
  python experiments/train_offline.py --config=configs/iql.py:walker2d-medium-replay \
      --config.data_dir=/data/d4rl --workdir=runs/iql/walker2d-medium-replay

Rewards are rescaled as in CORL/IQL for locomotion (reward_normalization='locomotion': 1000 /
(max - min episode return)). The actor's cosine schedule follows config.num_steps unless
config.agent.actor_lr_decay_steps is set explicitly.
"""

from jaxaug.agents import iql, presets


def get_config(arg=None):
  c = presets.offline_config("iql", iql.get_config(), arg, config_file="configs/iql.py")
  c.reward_normalization = "locomotion"
  # Lazy: follows --config.num_steps; an explicit --config.agent.actor_lr_decay_steps wins.
  c.agent.actor_lr_decay_steps = c.get_ref("num_steps") + 0
  return c
