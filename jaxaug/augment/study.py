"""An augmentation study on one dataset: generate, measure data quality, train an offline agent.

The logic behind experiments/quickstart.py (GTA only, tiny) and experiments/gta_study.py (the
GTA results: original / S4RL / SynthER / GTA). For each generator in `methods`
(gta, synther), train it (pipeline.train_generator) and generate (pipeline.generate) into
WORKDIR/<name>/generated.npz; S4RL noise goes to WORKDIR/s4rl.npz; then the quality table
(jaxaug.metrics.quality) of every dataset against the original, and the offline agent (vmapped
seeds) without augmentation and with each method in `agent_methods`, all with the same agent
config (the generated data is concatenated with the original, GTA's protocol, unless the agent
config's augment.mode says otherwise).

Every stage checkpoints or writes atomically into WORKDIR, so re-running resumes where a killed
run stopped; finished stages are skipped. Results go to WORKDIR/study.json.
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any, Sequence

import ml_collections
import numpy as np
from absl import logging

from jaxaug.augment import pipeline, s4rl
from jaxaug.data import load_dataset, save_npz
from jaxaug.envs import resolve_env_id
from jaxaug.metrics import quality
from jaxaug.train.offline import train_offline
from jaxaug.utils import atomic_write_text

GENERATORS = ("gta", "synther")
METHODS = ("s4rl",) + GENERATORS
LABELS = {"none": "original", "s4rl": "S4RL", "synther": "SynthER", "gta": "GTA"}


def _check_methods(name: str, methods: Sequence[str], allowed: Sequence[str]) -> None:
  bad = [m for m in methods if m not in allowed]
  if bad:
    raise ValueError(f"{name}: unknown method(s) {bad}; expected a subset of {list(allowed)}")


def generated_path(workdir: str, method: str) -> str:
  if method == "s4rl":
    return os.path.join(workdir, "s4rl.npz")
  return os.path.join(workdir, method, "generated.npz")


def run_study(workdir: str, dataset: str, *, methods: Sequence[str],
              generator_configs: dict[str, ml_collections.ConfigDict],
              agent_config: ml_collections.ConfigDict, agent_methods: Sequence[str],
              s4rl_std: float = s4rl.DEFAULT_STD, seed: int = 0) -> dict[str, Any]:
  """Runs the study; returns (and writes to WORKDIR/study.json) the quality rows and scores.

  generator_configs: {'gta': configs/gta.py config, 'synther': configs/synther.py config}
  (only those in `methods` are used, on copies whose `dataset` is set to `dataset`; the
  caller's configs are not modified). agent_config: an offline agent config (configs/td3bc.py
  etc.); copies of it get `dataset` and `augment.path` set here. agent_methods: methods whose
  data the agent also trains on.
  """
  _check_methods("methods", methods, METHODS)
  _check_methods("agent_methods", agent_methods, methods)
  missing = [m for m in methods if m in GENERATORS and m not in generator_configs]
  if missing:
    raise ValueError(f"methods {missing} need a config in generator_configs "
                     f"(got configs for {sorted(generator_configs)})")
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  real = load_dataset(dataset)
  env_id = resolve_env_id(real.metadata.get("env_id") or dataset.split(":")[-1])
  timings: dict[str, float] = {}

  # 1. Generated data.
  for m in methods:
    path = generated_path(workdir, m)
    if os.path.exists(path):
      continue
    t0 = time.time()
    if m == "s4rl":
      save_npz(s4rl.augment(real, std=s4rl_std, seed=seed), path)
    else:
      cfg = copy.deepcopy(generator_configs[m])  # keeps its FieldReferences (num_steps)
      with cfg.unlocked():
        cfg.dataset = dataset
      mdir = os.path.dirname(path)
      pipeline.train_generator(cfg, mdir, dataset=real)
      timings[f"{m}/train_s"] = time.time() - t0
      t1 = time.time()
      pipeline.generate(cfg, mdir, path, dataset=real)
      timings[f"{m}/generate_s"] = time.time() - t1
    logging.info("%s data ready in %.1f s: %s", m, time.time() - t0, path)
  data = {m: load_dataset("npz:" + generated_path(workdir, m), episodic=False) for m in methods}

  # 2. Data quality.
  rows = []
  for name, ds in [("none", real)] + [(m, data[m]) for m in methods]:
    row, _ = quality.dataset_quality(env_id, ds, real, is_original=(name == "none"))
    rows.append(dict(row, name=LABELS[name]))
  table = quality.format_quality_table(rows)

  # 3. The offline agent without and with augmentation.
  scores: dict[str, dict[str, Any]] = {}
  for m in ("none",) + tuple(agent_methods):
    c = ml_collections.ConfigDict(agent_config.to_dict())
    c.dataset = dataset
    c.augment.path = "" if m == "none" else "npz:" + generated_path(workdir, m)
    summary = train_offline(c, os.path.join(workdir, f"agent_{m}"))
    per_seed = [float(summary[k]) for k in sorted(summary)
                if k.startswith("eval/normalized_score_seed")]
    per_seed = per_seed or [float(summary["eval/normalized_score"])]
    scores[LABELS[m]] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)),
                         "per_seed": per_seed, "num_steps": int(c.num_steps),
                         "eval_episodes": int(c.eval_episodes)}

  result = {"env_id": env_id, "dataset": dataset, "quality": rows, "scores": scores,
            "timings_s": timings,
            "generators": {m: generator_configs[m].to_dict() for m in methods if m in GENERATORS},
            "agent": agent_config.to_dict()}
  atomic_write_text(os.path.join(workdir, "study.json"),
                    json.dumps(result, indent=2, default=str))
  result["table"] = table
  return result


def format_scores(result: dict[str, Any], agent_label: str = "agent") -> str:
  lines = []
  for name, s in result["scores"].items():
    label = agent_label if name == "original" else f"{agent_label} + {name}"
    lines.append(f"  {label:22s} {s['mean']:7.2f} +- {s['std']:5.2f}   per seed "
                 + " ".join(f"{x:.2f}" for x in s["per_seed"]))
  return "\n".join(lines)
