r"""GTA configs: `--config=configs/gta.py:PRESET`.

  python experiments/train_diffusion.py --config=configs/gta.py:hopper-medium-replay \
      --config.data_dir=/data/d4rl --workdir=runs/gta/hopper-medium-replay
  python experiments/augment.py --config=configs/gta.py:hopper-medium-replay \
      --config.data_dir=/data/d4rl --workdir=runs/gta/hopper-medium-replay

Presets:
  * `tiny`  CPU, about a minute: H = 8 windows, a 2-level MixerUnet (dim 8), 300 steps, 32-step
    sampler, 2k generated transitions, on `embedded:hopper-medium-replay`.
  * `paper` (default): GTA's hopper-medium-replay settings on the embedded data: H = 32,
    MixerUnet dim 16 with multipliers (1, 2, 4, 8) (~29.6M params at D = 24), batch 256, 1M
    steps, AdamW 3e-4 (0.9, 0.99), cosine restarted every 100k, EMA 0.995 every 10 steps,
    condition dropout 0.25; sampling 128 Heun steps with churn, noising_ratio 0.5,
    return_multiplier 1.3, guidance_scale 2.0, return-bin reweighting (50 bins), 5M
    transitions in chunks of 1000 windows. `tiny` uses the same method settings.
  * `<dataset>`: the paper's per-dataset settings on `d4rl:<data_dir>/<dataset>-v2.hdf5`
    (maze2d: -v1) for the 9 locomotion datasets (halfcheetah/hopper/walker2d x medium,
    medium-replay, medium-expert), maze2d-{umaze,medium,large},
    antmaze-{umaze,umaze-diverse,medium-play,medium-diverse,large-play,large-diverse},
    pen-human, door-human (Adroit) and kitchen-{complete,partial,mixed} (FrankaKitchen, -v0).
    GTA trains IQL on the augmented maze, Adroit and Kitchen data (configs/iql.py has their
    presets); the environments are jaxaug's D4RL-layout suites (docs/suites.md).
  * `<dataset>+fixes`: the same with jaxaug's fixes of the official code switched on (FIXES;
    Kitchen also KITCHEN_FIXES: no -100 penalty on its terminals).

Every default of a paper preset is the official code's behaviour where it ran; the switches and
the values the paper leaves open are listed in docs/methods/gta.md.
"""

from __future__ import annotations

import os

import ml_collections

from jaxaug.nets import denoisers
from jaxaug.train.config import generator_base_config

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".d4rl", "datasets")
LOCOMOTION = tuple(f"{env}-{q}" for env in ("halfcheetah", "hopper", "walker2d")
                   for q in ("medium", "medium-replay", "medium-expert"))
MAZE2D = ("maze2d-umaze", "maze2d-medium", "maze2d-large")
ANTMAZE = ("antmaze-umaze", "antmaze-umaze-diverse", "antmaze-medium-play",
           "antmaze-medium-diverse", "antmaze-large-play", "antmaze-large-diverse")
ADROIT = ("pen-human", "door-human")
KITCHEN = ("kitchen-complete", "kitchen-partial", "kitchen-mixed")
DATASETS = LOCOMOTION + MAZE2D + ANTMAZE + ADROIT + KITCHEN
# D4RL file version per domain (GTA App. C.3: v2 locomotion/AntMaze, v1 Maze2D, v0 Adroit and
# Kitchen). Adroit reads v1 here: jaxaug's Adroit environments and the other methods' presets
# use v1, the layout is the same (pen 45, door 39 dims); --config.dataset=d4rl:DIR/pen-human-
# v0.hdf5 reads the paper's v0 file.
VERSIONS = {"maze2d": "v1", "kitchen": "v0", "pen": "v1", "door": "v1"}

# Paper Table 9: return-bin reweighting of the source windows (bins; None = off).
REWEIGHT_BINS = {
    "halfcheetah-medium": None, "halfcheetah-medium-replay": 50, "halfcheetah-medium-expert": 20,
    "hopper-medium": 50, "hopper-medium-replay": 50, "hopper-medium-expert": 50,
    "walker2d-medium": 100, "walker2d-medium-replay": 50, "walker2d-medium-expert": 50,
}

# Switches that fix the official code; off in the paper presets, on in `<dataset>+fixes`.
FIXES = {
    # The official sampler guides only the Euler stage and corrects with the conditional output.
    "sampler.guide_correction": True,
    # Condition dropout is a training device; the official sampler leaves it on (~25% of the
    # conditional passes silently unconditional).
    "sampler.no_sampling_dropout": True,
    # Output true rewards and decode terminals from the reward code (official: the -100 penalty
    # stays in generated rewards; terminal flags are copied from the source window).
    "gta.decode_terminals": True,
    # Maze success weighting as the paper describes it (official: every episode weighs the same).
    "gta.fix_success_weighting": True,
}

# Fixes for the Kitchen datasets only (on in kitchen-*+fixes, with FIXES).
KITCHEN_FIXES = {
    # The official rule penalises terminals of every dataset whose name lacks 'maze'. D4RL's
    # Kitchen files mark the last transition of every demonstration terminal (its generation
    # script; there is no timeouts field), whether or not the tasks were done: in
    # kitchen-complete every demonstration completes all four tasks, so GTA labels the
    # successful final states -100. Kitchen has no failure states; no penalty.
    "gta.terminals_are_failures": False,
}

PRESETS = ("tiny", "paper") + DATASETS + tuple(f"{d}+fixes" for d in DATASETS)


def _dataset_preset(c: ml_collections.ConfigDict, name: str) -> None:
  """The paper's settings for one D4RL dataset (GTA Tables 7-9, App. B-C)."""
  version = VERSIONS.get(name.split("-")[0], "v2")
  c.dataset = "d4rl:" + c.get_ref("data_dir") + f"/{name}-{version}.hdf5"
  g = c.gta
  if name in LOCOMOTION:
    # The paper gives only a search space for mu / alpha on locomotion ({0.25, 0.5} /
    # {1.1, 1.3, 1.4}, Table 8), not the per-dataset pick; the official config ships 0.5 / 1.3.
    g.noising_ratio = 0.5
    g.return_multiplier = 1.3
    bins = REWEIGHT_BINS[name]
    g.reweight = "none" if bins is None else "return_bins"
    g.reweight_bins = bins or 50
    return
  if name in ADROIT:
    # Table 8: alpha {1.1, 1.3}, mu {0.1, 0.25}, no reweighting; the paper does not give the
    # per-dataset pick: alpha 1.3 as everywhere else, mu 0.1 (the small human datasets).
    # The -100 terminal penalty stays (the official code skips it only for 'maze' names).
    g.noising_ratio = 0.1
    g.return_multiplier = 1.3
    g.reweight = "none"
    return
  if name in KITCHEN:
    # Table 8: alpha {1.1, 1.3, 1.5}, mu {0.1, 0.25, 0.5}, success-episode reweighting
    # (weight 10); picks: alpha 1.3, mu 0.25 (the middle). The official code keeps the -100
    # penalty on Kitchen's terminals (every demonstration's end), as for any name without
    # 'maze'; kitchen-*+fixes turns it off (KITCHEN_FIXES).
    g.noising_ratio = 0.25
    g.return_multiplier = 1.3
    g.reweight = "success_episodes"
    g.success_weight = 10.0
    return
  # Maze datasets: a terminal means success, so no -100 penalty (the official code skips it for
  # any dataset whose name contains 'maze'), and episodes are reweighted by success.
  g.terminal_penalty = 0.0
  g.reweight = "success_episodes"
  g.success_weight = 10.0  # Table 8 (maze2d: 10; antmaze: {10, 30})
  if name in MAZE2D:
    g.noising_ratio = 0.5  # Table 8: {0.5}
    g.return_multiplier = 1.3  # Table 8: {1.25, 1.3}; the official config's value
  else:
    g.noising_ratio = 0.1  # Table 8: {0.05, 0.1, 0.25}
    g.return_multiplier = 1.3  # Table 8: {1.1, 1.3, 1.5}; the official config's value


def get_config(arg: str = "paper") -> ml_collections.ConfigDict:
  arg = (arg or "paper").strip()
  if arg not in PRESETS:
    raise ValueError(f"configs/gta.py: unknown preset {arg!r}; expected one of: "
                     f"{', '.join(PRESETS)}")
  name, fixes = (arg[:-len("+fixes")], True) if arg.endswith("+fixes") else (arg, False)
  c, num_steps = generator_base_config("gta", num_steps=1_000_000, checkpoint_every=200_000)
  c.data_dir = DEFAULT_DATA_DIR  # where the per-dataset presets find the D4RL hdf5 files
  c.diffusion.net = "mixer_unet"
  c.diffusion.net_kwargs = ml_collections.ConfigDict(
      dict(denoisers.PRESETS["mixer_unet_paper"], cond_dim=1))
  c.diffusion.cond_dropout = 0.25
  c.diffusion.lr_schedule = "cosine_restarts"
  c.diffusion.restart_every = 100_000
  # The official sampler: guidance on the Euler stage only, the Heun correction conditional;
  # the network's condition dropout (0.25) stays on while sampling.
  c.sampler.guide_correction = False
  c.sampler.no_sampling_dropout = False

  # Method (GTA Sec. 4, App. A-B).
  c.gta = ml_collections.ConfigDict()
  c.gta.horizon = 32  # 31 transitions + the last next state
  c.gta.terminal_penalty = -100.0  # added to terminal rewards (App. A.1); 0 on maze datasets
  # True (official): a terminal is a failure and gets terminal_penalty. False: terminals end a
  # demonstration or complete the task (Kitchen), no penalty (see KITCHEN_FIXES).
  c.gta.terminals_are_failures = True
  c.gta.discount = 0.99  # condition = discounted return-to-go from the window start
  c.gta.return_scale = 0.01
  c.gta.short_episodes = "skip"  # skip (official: dropped) | pad (one padded window each)
  c.gta.noising_ratio = 0.5  # mu
  c.gta.return_multiplier = 1.3  # alpha
  c.gta.guidance_scale = 2.0  # w (paper Table 7)
  c.gta.decode_terminals = False  # False = official (see FIXES)
  # Source-window reweighting (Sec. 4.4, App. A.3, B.2): none | return_bins | success_episodes.
  c.gta.reweight = "none"
  c.gta.reweight_bins = 50  # return_bins: number of equal-width bins (an integer)
  c.gta.reweight_smoothing = 1e-3
  c.gta.reweight_temperature = 5.0
  c.gta.reweight_clip = 5.0
  c.gta.success_weight = 10.0  # success_episodes: weight of a successful episode
  c.gta.fix_success_weighting = False  # False = official (see FIXES)

  # Generation (sampler and num_transitions: generator_base_config).
  c.windows_per_chunk = 1000

  if arg == "tiny":
    num_steps.set(300)
    c.batch_size = 64
    c.updates_per_dispatch = 50
    c.log_every = 100
    c.checkpoint_every = 150
    c.gta.horizon = 8
    c.diffusion.net_kwargs = ml_collections.ConfigDict(
        dict(denoisers.PRESETS["mixer_unet_tiny"], cond_dim=1))
    c.diffusion.lr_schedule = "cosine"
    c.diffusion.ema_every = 1
    c.sampler.num_steps = 32
    c.num_transitions = 2000
    c.windows_per_chunk = 64
  if name in DATASETS:
    _dataset_preset(c, name)
  else:
    # tiny / paper run on the embedded hopper-medium-replay data: that dataset's paper settings.
    _dataset_preset(c, "hopper-medium-replay")
    c.dataset = "embedded:hopper-medium-replay"
  if fixes:
    for field, value in {**FIXES, **(KITCHEN_FIXES if name in KITCHEN else {})}.items():
      group, key = field.split(".")
      if key not in c[group]:
        raise ValueError(f"configs/gta.py: fix switch {field} is not a config field")
      c[group][key] = value
  return c
