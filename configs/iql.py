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

Suite presets (SUITE_DATASETS; the IQL runs GTA augments on Maze2D, Adroit and Kitchen): Maze2D
and Adroit follow CORL's yamls (`maze2d/<maze>_v1.yaml`: the locomotion defaults, 100 evaluation
episodes; `pen|door/<data>_v1.yaml`: expectile 0.8, actor dropout 0.1, 10 episodes); CORL has
no Kitchen yaml, so Kitchen follows the official IQL code's kitchen config (expectile 0.7,
beta 0.5, actor dropout 0.1, raw rewards, its default 10 evaluation episodes). GTA evaluates
every suite on 100 episodes: add --config.eval_episodes=100 for GTA's protocol. They evaluate
in jaxaug's D4RL-layout environments (the `suites` extra, docs/suites.md).
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

# Suite datasets: name -> (D4RL version, evaluation episodes, agent settings).
_ADROIT = dict(expectile=0.8, actor_dropout=0.1)  # CORL pen/door yamls (iql_tau 0.8, dropout)
_KITCHEN = dict(expectile=0.7, temperature=0.5, actor_dropout=0.1)  # official IQL kitchen config
SUITE_DATASETS = {
    "maze2d-umaze": ("v1", 100, {}), "maze2d-medium": ("v1", 100, {}),
    "maze2d-large": ("v1", 100, {}),
    "pen-human": ("v1", 10, _ADROIT), "pen-cloned": ("v1", 10, _ADROIT),
    "door-human": ("v1", 10, _ADROIT),
    "kitchen-complete": ("v0", 10, _KITCHEN), "kitchen-partial": ("v0", 10, _KITCHEN),
    "kitchen-mixed": ("v0", 10, _KITCHEN),
}

PRESETS = tuple(presets.all_presets(antmaze=True)) + tuple(SUITE_DATASETS)


def _dataset_hook(c, env_name, quality):
  overrides = dict(DATASET_OVERRIDES.get(f"{env_name}-{quality}", {}))
  c.reward_normalization = overrides.pop("reward_normalization", "none")
  c.agent.update(overrides)


def _suite_config(name):
  """A suite dataset preset: the paper-scale schedule of the D4RL presets (1M steps, batch 256,
  evaluation every 5000 steps) on `d4rl:<data_dir>/<name>-<version>.hdf5`."""
  version, episodes, agent = SUITE_DATASETS[name]
  c = presets.offline_config("iql", iql.get_config(), "default", config_file="configs/iql.py")
  c.dataset = "d4rl:" + c.get_ref("data_dir") + f"/{name}-{version}.hdf5"
  c.env_id = f"{name}-{version}"  # -> jaxaug's D4RL-layout suite environment
  c.num_steps = 1_000_000
  c.batch_size = 256
  c.eval_every = 5000
  c.eval_episodes = episodes
  c.checkpoint_every = 50_000
  c.reward_normalization = "none"  # raw rewards on every suite but AntMaze
  c.agent.update(agent)
  return c


def get_config(arg=None):
  name = (arg or "default").strip()
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r} for configs/iql.py; expected one of: "
                     f"{', '.join(PRESETS)}")
  if name in SUITE_DATASETS:
    c = _suite_config(name)
  else:
    c = presets.offline_config("iql", iql.get_config(), arg, config_file="configs/iql.py",
                               dataset_hook=_dataset_hook, antmaze=True)
  # Lazy: follows --config.num_steps; an explicit --config.agent.actor_lr_decay_steps wins.
  c.agent.actor_lr_decay_steps = c.get_ref("num_steps") + 0
  return c
