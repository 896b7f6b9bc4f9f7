r"""Data-quality table of generated datasets against their original (GTA paper, App. D).

  python experiments/quality.py --original=embedded:hopper-medium-replay \
      --generated=npz:/tmp/gta.npz,npz:/tmp/synther.npz --out=/tmp/quality

Prints one row per dataset (the original first): oracle reward mean (the environment's true
reward of each (s, a)), the dataset's own reward mean, dynamic MSE (normalised with the
original's observation std), rows masked by the oracle, and state / action / state-action
novelty (mean L2 distance to the nearest original row; 0 for the original by definition).
"data r" averages all rows; the JSON also has reward_mean_valid (the oracle's valid rows, the
ones "oracle r" averages) and reward_abs_err.
Writes DIR/quality.json and DIR/rewards.png (reward distributions: original, generated, oracle)
atomically.

The original's dynamic MSE uses its infos/qpos, infos/qvel when present (it should then be ~0);
generated sets are always rebuilt from their observations (a generated file may carry infos
copied from the rows it was made from, which no longer describe its states).
"""

import os

from absl import app, flags, logging
import numpy as np

from jaxaug.data.fileio import atomic_path, write_json_atomic
from jaxaug.data.loaders import load_dataset
from jaxaug.data.normalize import NormStats
from jaxaug.envs.oracle import StateOracle
from jaxaug.envs.registry import resolve_env_id
from jaxaug.metrics import quality
from jaxaug.train.config_io import parse_flags

_ORIGINAL = flags.DEFINE_string("original", None, "Original dataset spec (see load_dataset).")
_GENERATED = flags.DEFINE_list("generated", [], "Generated dataset specs, comma separated.")
_NAMES = flags.DEFINE_list("names", [], "Display names of the generated sets (default: specs).")
_ENV = flags.DEFINE_string("env", None, "Environment (default: the original's metadata env_id).")
_OUT = flags.DEFINE_string("out", None, "Output directory for quality.json and rewards.png.")
_MAX_ROWS = flags.DEFINE_integer("max_rows", 0, "Evaluate a random subset of this many rows of "
                                 "each set (0: all). GTA evaluated 1M of 5M generated rows.")
_MAX_ORIGINAL_ROWS = flags.DEFINE_integer("max_original_rows", 0, "Novelty reference: a random "
                                          "subset of the original of this size (0: all).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the row subsets.")
_BACKEND = flags.DEFINE_enum("backend", "auto", ["auto", "batch", "rollout", "loop"],
                             "MuJoCo stepping backend of the oracle.")
_NTHREAD = flags.DEFINE_integer("nthread", 1, "Threads of the batched MuJoCo backends.")
_CHUNK = flags.DEFINE_integer("chunk", 256, "Novelty: generated rows per device call.")
_DATA_CHUNK = flags.DEFINE_integer("data_chunk", 2048, "Novelty: original rows per block.")
_NORM_NOVELTY = flags.DEFINE_bool("normalize_novelty", False, "Normalise states with the "
                                  "original's stats before novelty (default raw, as GTA).")

def _subset(ds, n: int, rng: np.random.Generator):
  if n and len(ds) > n:
    return ds.subset(np.sort(rng.choice(len(ds), n, replace=False)))
  return ds


def evaluate_set(name, spec, ds, original, stats, oracle, is_original):
  row, oracle_rewards = quality.dataset_quality(
      oracle.env_id, ds, original, obs_stats=stats, is_original=is_original, oracle=oracle,
      chunk=_CHUNK.value, data_chunk=_DATA_CHUNK.value, normalize_novelty=_NORM_NOVELTY.value)
  return {"name": name, "spec": spec, **row}, ds.rewards, oracle_rewards


def plot_rewards(path, env_id, original_rewards, sets) -> None:
  """One panel per generated set: original, generated and oracle reward histograms."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  panels = max(1, len(sets))
  fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8), squeeze=False)
  for ax, (name, gen, orc) in zip(axes[0], sets or [("original", None, None)]):
    vals = [original_rewards] + [x[np.isfinite(x)] for x in (gen, orc) if x is not None]
    lo = min(float(np.min(v)) for v in vals if len(v))
    hi = max(float(np.max(v)) for v in vals if len(v))
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
    ax.hist(original_rewards, bins=bins, density=True, alpha=0.45, label="original")
    if gen is not None:
      ax.hist(gen, bins=bins, density=True, histtype="step", lw=1.8, label="generated")
      ax.hist(orc[np.isfinite(orc)], bins=bins, density=True, histtype="step", lw=1.8,
              ls="--", label="oracle (true r of generated s, a)")
    ax.set_title(f"{env_id}: {name}", fontsize=9)
    ax.set_xlabel("reward")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
  fig.tight_layout()
  with atomic_path(path, suffix=".png") as tmp:
    fig.savefig(tmp, dpi=110)
  plt.close(fig)


def _load(flag: str, spec: str):
  try:
    return load_dataset(spec)
  except ValueError as e:
    raise app.UsageError(f"--{flag}={spec}: {e}") from e


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for flag in (_MAX_ROWS, _MAX_ORIGINAL_ROWS):
    if flag.value < 0:
      raise app.UsageError(f"--{flag.name} must be >= 0 (0: all rows), got {flag.value}")
  for flag in (_CHUNK, _DATA_CHUNK, _NTHREAD):
    if flag.value <= 0:
      raise app.UsageError(f"--{flag.name} must be positive, got {flag.value}")
  if os.path.isfile(_OUT.value):
    raise app.UsageError(f"--out={_OUT.value} is a file, expected a directory")
  rng = np.random.default_rng(_SEED.value)
  original_full = _load("original", _ORIGINAL.value)
  env_name = _ENV.value or original_full.metadata.get("env_id")
  if not env_name:
    raise app.UsageError(f"--env is needed: {_ORIGINAL.value} has no metadata env_id")
  env_id = resolve_env_id(env_name)
  names = list(_NAMES.value) or list(_GENERATED.value)
  if len(names) != len(_GENERATED.value):
    raise app.UsageError(f"--names has {len(names)} entries for {len(_GENERATED.value)} "
                         "--generated sets")
  oracle = StateOracle(env_id, backend=_BACKEND.value, nthread=_NTHREAD.value)
  if original_full.obs_dim != oracle.obs_dim or original_full.act_dim != oracle.act_dim:
    raise ValueError(f"--original={_ORIGINAL.value}: dims ({original_full.obs_dim}, "
                     f"{original_full.act_dim}) do not match {env_id} ({oracle.obs_dim}, "
                     f"{oracle.act_dim})")
  stats = NormStats.fit(original_full.observations)  # the ORIGINAL's stats normalise every set
  novelty_ref = _subset(original_full, _MAX_ORIGINAL_ROWS.value, rng)
  rows, plot_sets = [], []
  row, orig_rewards, _ = evaluate_set("original", _ORIGINAL.value,
                                      _subset(original_full, _MAX_ROWS.value, rng),
                                      novelty_ref, stats, oracle, True)
  rows.append(row)
  for name, spec in zip(names, _GENERATED.value):
    ds = _load("generated", spec)
    if ds.obs_dim != oracle.obs_dim or ds.act_dim != oracle.act_dim:
      raise ValueError(f"--generated={spec}: dims ({ds.obs_dim}, {ds.act_dim}) do not match "
                       f"{env_id} ({oracle.obs_dim}, {oracle.act_dim})")
    row, gen_rewards, orc = evaluate_set(name, spec, _subset(ds, _MAX_ROWS.value, rng),
                                         novelty_ref, stats, oracle, False)
    rows.append(row)
    plot_sets.append((name, gen_rewards, orc))
    logging.info("%s: %s", name, row)
  table = quality.format_quality_table(rows)
  print(table)
  os.makedirs(_OUT.value, exist_ok=True)
  write_json_atomic(os.path.join(_OUT.value, "quality.json"), {
      "env_id": env_id, "original": _ORIGINAL.value, "max_rows": _MAX_ROWS.value,
      "max_original_rows": _MAX_ORIGINAL_ROWS.value, "seed": _SEED.value,
      "normalize_novelty": _NORM_NOVELTY.value, "backend": oracle.backend,
      "obs_stats": stats.to_dict(), "rows": rows, "table": table})
  plot_rewards(os.path.join(_OUT.value, "rewards.png"), env_id, original_full.rewards
               if not _MAX_ROWS.value else orig_rewards, plot_sets)
  print(f"wrote {os.path.join(_OUT.value, 'quality.json')} and rewards.png")


if __name__ == "__main__":
  flags.mark_flags_as_required(["original", "out"])
  app.run(main, flags_parser=parse_flags)
