"""ATraDiff online configs: `--config=configs/atradiff.py:PRESET`.

An online agent (SAC, REDQ or RLPD config from configs/) plus `config.atradiff`, the diffuser
and modified-replay-buffer hyperparameters (jaxaug.augment.atradiff.online.get_config; paper
names: synthetic_ratio = rho, expected_length = L, lengths = the preset k's). The paper leaves
rho, the k set, the diffuser's size and training length open; jaxaug's choices and the reasons
are in docs/methods/atradiff.md.

Presets:
  tiny                       SAC + ATraDiff on Hopper, tiny networks (CPU, ~1 min; tests)
  tiny-rlpd                  RLPD + ATraDiff (symmetric sampling + modified buffer), tiny
  sac-ENV, redq-ENV          online RL (Sec. 5.1): 250k env steps, a fixed diffuser (no online
                             adaptation) trained on D4RL's ENV-medium-replay-v2
  rlpd-ENV                   offline-to-online (Sec. 5.2): RLPD's symmetric sampling of the same
                             dataset, online adaptation with the TD-error indicator, 250k steps
  cpu-hopper                 SAC + ATraDiff at CPU scale (the comparison in BUILD_NOTES.md)
  cpu-redq-hopper            REDQ + ATraDiff at CPU scale: REDQ's N=10, M=2, UTD 20 with
                             2x128 networks and 10k env steps (BUILD_NOTES.md, REDQ results)
  cpu-halfcheetah            SAC + ATraDiff on HalfCheetah-v5 at CPU scale; the generators train
                             on `d4rl:<data_dir>/halfcheetah-medium-replay-v2.hdf5` (the CPU
                             results used a locally built file: --config.atradiff.
                             offline_dataset=d4rl:data/halfcheetah-medium-replay.hdf5 from
                             experiments/build_dataset.py --env=halfcheetah --out=data/)
  rlpd-antmaze-DATA          offline-to-online on D4RL AntMaze (Sec. 5.2, Fig. 4): RLPD with its
                             reference AntMaze settings (3x256 networks, one critic in the
                             target, no entropy backup, rewards - 1 on every batch), 300k steps,
                             `d4rl:<data_dir>/antmaze-DATA-v2.hdf5` (DATA: umaze, umaze-diverse,
                             medium-play, medium-diverse, large-play, large-diverse)
  rlpd-kitchen-DATA          the same on D4RL Kitchen (complete, partial, mixed; -v0 files),
                             300k steps
  rlpd-metaworld-TASK        Meta-World single task with ATraDiff's sparse success reward
                             (env Meta-World/TASK-v3-sparse), 1M steps, offline data
                             `d4rl:<data_dir>/metaworld-TASK-v3-sparse.hdf5` (a D4RL-layout file
                             from experiments/build_dataset.py; the paper's SAC-collected data
                             are not published). TASK: push (the paper's multi-task evaluation
                             task) or one of the 8 tasks of its sequence task. NOT the paper's
                             multi-task (14 tasks' data) or 8-task sequence environments:
                             docs/methods/atradiff.md, "Suites"
  PAPER+fixes                every paper preset above (sac-ENV, redq-ENV, rlpd-ENV and the suite
                             presets) with jaxaug's fixes switched on (FIXES below;
                             docs/methods/atradiff.md)
ENV is hopper, halfcheetah or walker2d. The D4RL presets read
`d4rl:<data_dir>/<ENV>-<dataset_quality>-v2.hdf5`, a lazy reference to `data_dir` and
`dataset_quality` (default medium-replay; the paper's Fig. 12 also uses random, medium and
medium-expert): `--config.data_dir=/data/d4rl --config.dataset_quality=medium` moves it,
`--config.atradiff.offline_dataset=...` replaces it. For rlpd-ENV, RLPD's own
`offline_dataset` follows the same two fields. `--config.atradiff.enabled=False` gives the
baseline with otherwise identical settings.
"""

from __future__ import annotations


import ml_collections

from jaxaug.agents.presets import DEFAULT_DATA_DIR
from jaxaug.augment.atradiff.online import get_config as _online_atradiff_config
from jaxaug.configs_io import load_config_file

ENVS = ("hopper", "halfcheetah", "walker2d")
AGENTS = ("sac", "redq", "rlpd")
CPU_PRESETS = ("cpu-hopper", "cpu-redq-hopper", "cpu-halfcheetah")
# Offline-to-online suites (Sec. 5.2, App. B): AntMaze's 6 datasets, Kitchen's 3, and Meta-World
# tasks (Table 3: push is the multi-task setting's evaluation task, the other 8 form its
# sequence task), each a single-task preset here.
ANTMAZE = ("antmaze-umaze", "antmaze-umaze-diverse", "antmaze-medium-play",
           "antmaze-medium-diverse", "antmaze-large-play", "antmaze-large-diverse")
KITCHEN = ("kitchen-complete", "kitchen-partial", "kitchen-mixed")
METAWORLD_EVAL_TASK = "push"
METAWORLD_SEQUENCE = ("sweep", "sweep-into", "coffee-push", "box-close", "push-wall",
                      "peg-insert-side", "basketball", "soccer")
METAWORLD_TASKS = (METAWORLD_EVAL_TASK,) + METAWORLD_SEQUENCE
SUITE_PRESETS = (tuple(f"rlpd-{d}" for d in ANTMAZE + KITCHEN)
                 + tuple(f"rlpd-metaworld-{t}" for t in METAWORLD_TASKS))
# Env steps of the learning curves: Fig. 4 (AntMaze, Kitchen: 300k), Fig. 5 (Meta-World: 1M).
SUITE_ENV_STEPS = {"antmaze": 300_000, "kitchen": 300_000, "metaworld": 1_000_000}
PAPER_PRESETS = tuple(f"{a}-{e}" for a in AGENTS for e in ENVS) + SUITE_PRESETS
PRESETS = (("tiny", "tiny-rlpd") + CPU_PRESETS + PAPER_PRESETS
           + tuple(f"{p}+fixes" for p in PAPER_PRESETS))
# jaxaug's fixes of the paper's method (config.atradiff field -> value), OFF in paper presets.
FIXES = {
    # The printed pruner rule (argmax |pre_i - suf_i|, overlapping ranges, always cut) cuts
    # windows that start slowly at their start; "signed" follows the paper's stated assumption.
    "prune_rule": "signed",
}
PAPER_ENV_STEPS = 250_000  # Sec. 5.1 (SAC, REDQ) and Fig. 4's locomotion panel (RLPD)


def _sibling(name: str, arg: str) -> ml_collections.ConfigDict:
  return load_config_file(f"{name}:{arg}")


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  arg = arg or "tiny"
  if arg not in PRESETS:
    raise ValueError(f"configs/atradiff.py: unknown preset {arg!r}; expected one of {PRESETS}")
  if arg in ("tiny", "tiny-rlpd"):
    c = _sibling("sac", "tiny") if arg == "tiny" else _sibling("rlpd", "tiny")
    c.agent_name = "sac" if arg == "tiny" else "rlpd"
    c.atradiff = _online_atradiff_config()
    a = c.atradiff
    a.lengths = (4, 8)
    a.denoiser_width, a.denoiser_blocks, a.denoiser_dim_t = 32, 1, 16
    a.generator_steps, a.generator_batch_size, a.steps_per_dispatch = 50, 64, 50
    a.ema_decay, a.ema_every = 0.9, 1
    a.num_sample_steps = 4
    a.estimator_hidden_dims = (32,)
    a.estimator_steps = 50
    a.preliminary_samples = 32
    a.bucket_size = 8
    a.generation_interval = 50
    a.synthetic_capacity = 2000
    a.adapt = True  # exercise the adaptation path too
    a.adapt_every, a.adapt_start = 200, 400
    a.adapt_steps, a.adapt_batch_size = 2, 16
    a.td_heap_size, a.td_top_k = 256, 32
    a.reward_buffer_size = 64
    return c
  if arg.endswith("+fixes"):
    c = get_config(arg[:-len("+fixes")])
    c.atradiff.update(FIXES)
    return c
  if arg in CPU_PRESETS:
    parts = arg.split("-")  # cpu-[redq-]ENV
    return _cpu_scale("redq" if parts[1] == "redq" else "sac", parts[-1])
  if arg in SUITE_PRESETS:
    return _suite_preset(arg[len("rlpd-"):])
  agent, env = arg.split("-")
  c = _sibling(agent, env)
  c.agent_name = agent
  c.num_env_steps = PAPER_ENV_STEPS
  c.atradiff = _online_atradiff_config()
  a = c.atradiff
  a.offline_dataset = _d4rl_dataset(c, env)
  if agent == "rlpd":  # offline-to-online with online adaptation (Sec. 5.2, Fig. 7)
    c.offline_dataset = _d4rl_dataset(c, env)  # RLPD's symmetric sampling reads the same file
    a.adapt = True
    a.importance = "td_error"
  return c


def _d4rl_dataset(c: ml_collections.ConfigDict, env: str, quality: str = "medium-replay"):
  """`d4rl:<data_dir>/<env>-<dataset_quality>-v2.hdf5`, lazy in both fields (adds them)."""
  if "data_dir" not in c:
    c.data_dir = DEFAULT_DATA_DIR  # where D4RL's hdf5 files are
  if "dataset_quality" not in c:
    c.dataset_quality = quality  # D4RL dataset the generators train on (Sec. 5.1: 4 per env)
  return ("d4rl:" + c.get_ref("data_dir") + f"/{env}-" + c.get_ref("dataset_quality")
          + "-v2.hdf5")


def _cpu_scale(agent: str, env: str) -> ml_collections.ConfigDict:
  """SAC or REDQ (+ ATraDiff) sized for a shared 2-core CPU.

  The ATraDiff part is the same for both agents, so one trained diffuser
  (`--config.atradiff.diffuser_dir`) serves both comparisons on an environment.
  """
  c = _sibling(agent, env)
  c.agent_name = agent
  c.start_steps = 1000
  c.replay_capacity = 100_000
  c.eval_episodes = 5
  c.log_every = 500
  if agent == "sac":  # 15k env steps
    c.num_env_steps = 15_000
    c.eval_every = 1500
    c.checkpoint_every = 5000
  else:
    # REDQ keeps N = 10, M = 2 and UTD 20 (what defines it) but with 2x128 networks and 10k
    # env steps: at 2x256 one env step (20 critic steps of 10 critics) costs 168 ms on the
    # 2-core CPU, at 2x128 63 ms (BUILD_NOTES.md, REDQ results).
    c.agent.hidden_dims = (128, 128)
    c.num_env_steps = 10_000
    c.eval_every = 1000
    c.checkpoint_every = 2500
  c.atradiff = _online_atradiff_config()
  a = c.atradiff
  if env != "hopper":  # only Hopper's medium-replay is embedded; the others read D4RL's file
    a.offline_dataset = _d4rl_dataset(c, env)
  # Generators of 5 and 10 steps with a 256-wide input projection (dim_t) and trunk. The
  # residual MLP projects [x, cond] to dim_t first; at dim_t = 32 (sessions 1-2) that bottleneck
  # made the generators ignore their condition (first state off by a normalised MSE of 0.65-1.4)
  # and their dynamics worse than random pairing. Windows of 15-25 steps (225-375 values) did
  # not become usable within a CPU budget at any width we tried (BUILD_NOTES, "Generator
  # quality"); the paper's 5-25 set is kept for the accelerator presets.
  a.lengths = (5, 10)
  a.denoiser_width, a.denoiser_blocks, a.denoiser_dim_t = 256, 2, 256
  # 5000 steps with a per-step EMA: with SynthER's EMA (0.995 every 10 steps) a 1500-step run
  # still held ~47% of the initial weights (BUILD_NOTES, ATraDiff results).
  a.generator_steps = 5000
  a.ema_every = 1
  a.steps_per_dispatch = 250
  a.estimator_steps = 1000
  a.num_sample_steps = 16
  a.synthetic_capacity = 100_000
  a.bucket_size = 16
  a.generation_interval = 250
  return c


def _suite_preset(name: str) -> ml_collections.ConfigDict:
  """RLPD + ATraDiff (online adaptation) on an AntMaze / Kitchen dataset or a Meta-World task.

  RLPD's reference (ikostrikov/rlpd) has run settings for AntMaze (README: 3x256 networks,
  num_min_qs 1, no entropy backup, 300k steps; train_finetuning.py: rewards - 1 on every batch,
  offline and online); it has none for Kitchen or Meta-World, which get its settings for the
  other sparse-reward suites (AntMaze/Adroit: 3x256, no entropy backup) with the default two
  critics in the target and no reward shift. The paper states none of these.
  """
  from jaxaug.envs import env_spec, resolve_env_id
  from jaxaug.envs.suites.specs import metaworld_env_id
  c = _sibling("rlpd", "hopper")  # RLPD's run settings: UTD 20, 5000 start steps, 10 episodes
  c.agent_name = "rlpd"
  if name.startswith("metaworld-"):
    suite = "metaworld"
    c.env_id = metaworld_env_id(name[len("metaworld-"):], sparse=True)  # App. B.2: sparse 0/1
    data = f"{name}-v3-sparse"  # experiments/build_dataset.py --env=metaworld-TASK-v3-sparse
  else:
    suite = name.split("-")[0]
    data = f"{name}-{'v2' if suite == 'antmaze' else 'v0'}"  # D4RL's file versions
    c.env_id = resolve_env_id(data)
  c.offline_dataset = "d4rl:" + c.get_ref("data_dir") + f"/{data}.hdf5"
  c.agent.hidden_dims = (256, 256, 256)
  c.agent.backup_entropy = False
  c.agent.target_entropy = -env_spec(c.env_id).act_dim / 2.0  # RLPD's -|A|/2
  # Added to the reward of every sampled batch (real, offline and synthetic rows alike), not
  # to what the environment returns or evaluation reports.
  c.reward_shift = 0.0
  if suite == "antmaze":
    c.agent.num_min_critics = 1  # README: --config.num_min_qs=1
    c.reward_shift = -1.0  # train_finetuning.py: batch["rewards"] -= 1 for antmaze
  c.num_env_steps = SUITE_ENV_STEPS[suite]
  c.replay_capacity = c.num_env_steps  # the reference's online buffer holds max_steps
  c.atradiff = _online_atradiff_config()
  a = c.atradiff
  a.offline_dataset = c.get_ref("offline_dataset")  # the diffusers learn the same data
  a.adapt = True  # Sec. 5.2: online adaptation (TD-error importance)
  a.importance = "td_error"
  # No termination rule computable from these observations (the AntMaze goal is not in the
  # observation, Kitchen ends when all 4 tasks are done, Meta-World at success from the
  # simulator's info): synthetic transitions are stored non-terminal and trajectories are cut
  # by the pruner only.
  a.terminal_fn = "none"
  return c
