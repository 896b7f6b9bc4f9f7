r"""IQL experiment configs (agent: jaxaug/agents/iql.py; settings of CORL's per-dataset yamls).

  python experiments/train_offline.py --config=configs/iql.py:tiny --workdir=/tmp/iql
  python experiments/train_offline.py --config=configs/iql.py:walker2d-medium-replay \
      --config.data_dir=/data/d4rl --workdir=runs/iql/walker2d-medium-replay

The dataset presets follow CORL's `configs/offline/iql/<env>/<dataset>_v2.yaml` (the code behind
CORL's IQL numbers): most locomotion datasets use a Gaussian actor, tau 0.005, beta 3,
expectile 0.7 and raw rewards; the exceptions (and AntMaze) are in DATASET_OVERRIDES. Reward normalisation
('locomotion': r * 1000 / (max - min episode return)) is on only where the yaml sets
`normalize_reward: true`. `default`, `tiny` and `small` use CORL's TrainConfig defaults.
The actor's cosine schedule follows config.num_steps unless config.agent.actor_lr_decay_steps is
set explicitly. See docs/methods/iql.md.
"""

from jaxaug.agents import iql, presets

# Per-dataset differences from CORL's IQL defaults (actor, tau, beta, expectile, rewards).
DATASET_OVERRIDES = {
    "hopper-medium": dict(actor="deterministic", tau=0.001, reward_normalization="locomotion"),
    "hopper-medium-replay": dict(actor="deterministic", tau=0.001,
                                 reward_normalization="locomotion"),
    "hopper-medium-expert": dict(temperature=6.0, expectile=0.5),
    # AntMaze (all six yamls): beta 10, expectile 0.9, rewards r - 1, 100 evaluation episodes.
    **{name: dict(temperature=10.0, expectile=0.9, reward_normalization="antmaze")
       for name in presets.ANTMAZE_DATASETS},
}

PRESETS = tuple(presets.all_presets(antmaze=True))


def _dataset_hook(c, env_name, quality):
  overrides = dict(DATASET_OVERRIDES.get(f"{env_name}-{quality}", {}))
  c.reward_normalization = overrides.pop("reward_normalization", "none")
  c.agent.update(overrides)


def get_config(arg=None):
  c = presets.offline_config("iql", iql.get_config(), arg, config_file="configs/iql.py",
                             dataset_hook=_dataset_hook, antmaze=True)
  # Lazy: follows --config.num_steps; an explicit --config.agent.actor_lr_decay_steps wins.
  c.agent.actor_lr_decay_steps = c.get_ref("num_steps") + 0
  return c
