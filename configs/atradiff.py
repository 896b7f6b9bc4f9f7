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
  PAPER+fixes                every paper preset above (sac-ENV, redq-ENV, rlpd-ENV) with
                             jaxaug's fixes switched on (FIXES below; docs/methods/atradiff.md)
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
from jaxaug.augment.atradiff.online import get_config as atradiff_config
from jaxaug.configs_io import load_config_file

ENVS = ("hopper", "halfcheetah", "walker2d")
AGENTS = ("sac", "redq", "rlpd")
CPU_PRESETS = ("cpu-hopper", "cpu-redq-hopper", "cpu-halfcheetah")
PAPER_PRESETS = tuple(f"{a}-{e}" for a in AGENTS for e in ENVS)
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
    c.atradiff = atradiff_config()
    a = c.atradiff
    a.lengths = (4, 8)
    a.denoiser_width, a.denoiser_blocks, a.denoiser_dim_t = 32, 1, 16
    a.generator_steps, a.generator_batch_size, a.steps_per_dispatch = 50, 64, 50
    a.ema_decay, a.ema_every = 0.9, 1
    a.num_sample_steps = 4
    a.estimator_hidden_dims = (32,)
    a.estimator_steps = 50
    a.preliminary_samples = 32
    a.queue_size = 16
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
  agent, env = arg.split("-")
  c = _sibling(agent, env)
  c.agent_name = agent
  c.num_env_steps = PAPER_ENV_STEPS
  c.atradiff = atradiff_config()
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
  c.atradiff = atradiff_config()
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
  a.queue_size = 64
  a.generation_interval = 250
  return c
