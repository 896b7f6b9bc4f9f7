r"""The main job, end to end on the embedded Hopper dataset (a few minutes on 2 CPU cores):

  1. train GTA's trajectory diffusion model (configs/gta.py:tiny),
  2. augment: partial noising + amplified-return guidance -> generated transitions,
  3. data quality of the original, S4RL and GTA data (oracle reward, dynamic MSE, novelty),
  4. TD3+BC (configs/td3bc.py:tiny, vmapped seeds) on the original data and on original + GTA,
  5. print both tables and write WORKDIR/quickstart.json.

  python experiments/quickstart.py --workdir=runs/quickstart

Every stage checkpoints into WORKDIR; re-running resumes where it stopped.
"""

import json
import os

import numpy as np
from absl import app, flags, logging

from jaxaug.augment import pipeline, s4rl
from jaxaug.configs_io import load_config_file
from jaxaug.data import load_dataset, save_npz
from jaxaug.envs import resolve_env_id
from jaxaug.metrics import quality
from jaxaug.train.logging import quiet_third_party_logs
from jaxaug.train.offline import train_offline
from jaxaug.utils import atomic_write_text

_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Output directory.")
_DATASET = flags.DEFINE_string("dataset", "embedded:hopper-medium-replay", "Dataset spec.")
_SEEDS = flags.DEFINE_integer("num_seeds", 3, "TD3+BC seeds (vmapped in one program).")
_TD3BC_STEPS = flags.DEFINE_integer("td3bc_steps", 3000, "TD3+BC updates per run.")
_GTA_STEPS = flags.DEFINE_integer("gta_steps", 1000, "GTA diffusion training steps.")
_NUM_GEN = flags.DEFINE_integer("num_transitions", 5000, "Generated transitions.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 5, "Evaluation episodes per seed.")


def main(argv):
  del argv
  quiet_third_party_logs()
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  real = load_dataset(_DATASET.value)
  env_id = resolve_env_id(real.metadata.get("env_id") or _DATASET.value.split(":")[-1])

  # 1-2. GTA: train the generator, then generate.
  gcfg = load_config_file("gta:tiny")
  gcfg.dataset = _DATASET.value
  gcfg.num_steps = _GTA_STEPS.value
  gcfg.checkpoint_every = _GTA_STEPS.value
  gcfg.log_every = min(gcfg.log_every, _GTA_STEPS.value)
  gcfg.num_transitions = _NUM_GEN.value
  gta_dir = os.path.join(workdir, "gta")
  gta_path = os.path.join(gta_dir, "generated.npz")
  if not os.path.exists(gta_path):
    pipeline.train_generator(gcfg, gta_dir, dataset=real)
    pipeline.generate(gcfg, gta_dir, gta_path, dataset=real)
  gta = load_dataset("npz:" + gta_path, episodic=False)

  s4rl_path = os.path.join(workdir, "s4rl.npz")
  if not os.path.exists(s4rl_path):
    save_npz(s4rl.augment(real, seed=0), s4rl_path)
  s4 = load_dataset("npz:" + s4rl_path, episodic=False)

  # 3. Data quality.
  rows = []
  for name, ds in (("original", real), ("S4RL", s4), ("GTA", gta)):
    row, _ = quality.dataset_quality(env_id, ds, real, is_original=(name == "original"))
    rows.append(dict(row, name=name))
  table = quality.format_quality_table(rows)

  # 4. TD3+BC with and without augmentation.
  scores = {}
  for name, aug in (("TD3+BC", ""), ("TD3+BC + GTA", "npz:" + gta_path)):
    c = load_config_file("td3bc:tiny")
    c.dataset = _DATASET.value
    c.num_steps = _TD3BC_STEPS.value
    c.eval_every = _TD3BC_STEPS.value
    c.checkpoint_every = _TD3BC_STEPS.value
    c.log_every = 1000 if _TD3BC_STEPS.value % 1000 == 0 else _TD3BC_STEPS.value
    c.num_seeds = _SEEDS.value
    c.eval_episodes = _EVAL_EPISODES.value
    c.augment.path = aug
    summary = train_offline(c, os.path.join(workdir, name.replace(" ", "").replace("+", "_")))
    per_seed = [summary[k] for k in sorted(summary) if k.startswith("eval/normalized_score_seed")]
    per_seed = per_seed or [summary["eval/normalized_score"]]
    scores[name] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)),
                    "per_seed": [float(s) for s in per_seed]}

  print("\nData quality (" + env_id + ", " + _DATASET.value + ")\n" + table)
  print(f"\nD4RL-normalised score after {_TD3BC_STEPS.value} TD3+BC updates, "
        f"{_SEEDS.value} seeds x {_EVAL_EPISODES.value} episodes")
  for name, s in scores.items():
    print(f"  {name:14s} {s['mean']:7.2f} +- {s['std']:5.2f}   per seed "
          + " ".join(f"{x:.2f}" for x in s["per_seed"]))
  atomic_write_text(os.path.join(workdir, "quickstart.json"),
                    json.dumps({"env_id": env_id, "dataset": _DATASET.value, "quality": rows,
                                "scores": scores}, indent=2, default=float))
  logging.info("wrote %s", os.path.join(workdir, "quickstart.json"))


if __name__ == "__main__":
  app.run(main)
