"""An augmentation study on one dataset: generate, measure data quality, train an offline agent.

The logic behind experiments/quickstart.py (GTA only, tiny) and experiments/gta_study.py (the
GTA results: original / S4RL / SynthER / GTA). For each generator in `methods`
(gta, synther), train it (pipeline.train_generator) and generate (pipeline.generate) into
WORKDIR/<name>/generated.npz; a fixed S4RL-noised copy goes to WORKDIR/s4rl.npz (for the quality
table); then the quality table (jaxaug.metrics.quality) of every dataset against the original,
and the offline agent (vmapped seeds) without augmentation and with each method in
`agent_methods`.

The agent protocol is GTA's comparison (paper Sec. 5.1, App. C), each arm as its paper does it
(`Protocol`; the defaults are the faithful ones):
  * GTA: original + generated data, sampled uniformly (`augment.mode='concat'`);
  * SynthER: generated data only (`augment.mode='replace'`; `synther_mode='concat'` mixes in the
    original data instead);
  * S4RL: the original data with fresh N(0, 3e-4^2) state noise in every sampled batch
    (`augment.s4rl_std`; `s4rl_fixed_copy=True` trains on the one fixed noisy copy instead);
  * every arm, the unaugmented baseline included, with batch 1024 (GTA App. C.3, G.1);
    `agent_batch_size=None` keeps the agent config's batch size.

Every stage checkpoints or writes atomically into WORKDIR, so re-running resumes where a killed
run stopped; finished stages are skipped. Results go to WORKDIR/study.json.
"""

from __future__ import annotations

import copy
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How each arm trains the agent (defaults: the papers' protocols, see the module doc)."""
  synther_mode: str = "replace"  # replace (SynthER: generated only) | concat
  s4rl_fixed_copy: bool = False  # False: fresh noise per update (S4RL); True: one noisy copy
  agent_batch_size: int | None = 1024  # GTA App. C.3: 1024 for every arm; None: agent config's

  def __post_init__(self):
    if self.synther_mode not in ("replace", "concat"):
      raise ValueError(f"synther_mode: expected 'replace' or 'concat', got {self.synther_mode!r}")
    if self.agent_batch_size is not None and self.agent_batch_size < 1:
      raise ValueError(f"agent_batch_size must be >= 1 or None, got {self.agent_batch_size}")


def agent_arm_config(agent_config: ml_collections.ConfigDict, dataset: str, method: str,
                     workdir: str, protocol: Protocol, s4rl_std: float
                     ) -> ml_collections.ConfigDict:
  """The agent config of one arm ('none' or a method) under `protocol`."""
  c = ml_collections.ConfigDict(agent_config.to_dict())
  c.dataset = dataset
  c.augment.path = ""
  c.augment.mode = "concat"
  c.augment.s4rl_std = 0.0
  if protocol.agent_batch_size is not None:
    c.batch_size = int(protocol.agent_batch_size)
  if method == "s4rl" and not protocol.s4rl_fixed_copy:
    c.augment.s4rl_std = float(s4rl_std)
  elif method != "none":
    c.augment.path = "npz:" + generated_path(workdir, method)
    if method == "synther":
      c.augment.mode = protocol.synther_mode
  return c


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
              s4rl_std: float = s4rl.DEFAULT_STD, seed: int = 0,
              protocol: Protocol = Protocol()) -> dict[str, Any]:
  """Runs the study; returns (and writes to WORKDIR/study.json) the quality rows and scores.

  generator_configs: {'gta': configs/gta.py config, 'synther': configs/synther.py config}
  (only those in `methods` are used, on copies whose `dataset` is set to `dataset`; the
  caller's configs are not modified). agent_config: an offline agent config (configs/td3bc.py
  etc.); copies of it get `dataset`, `batch_size` and `augment` set here (agent_arm_config).
  agent_methods: methods the agent is also trained with.
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
    c = agent_arm_config(agent_config, dataset, m, workdir, protocol, s4rl_std)
    summary = train_offline(c, os.path.join(workdir, f"agent_{m}"))
    per_seed = [float(summary[k]) for k in sorted(summary)
                if k.startswith("eval/normalized_score_seed")]
    per_seed = per_seed or [float(summary["eval/normalized_score"])]
    scores[LABELS[m]] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)),
                         "per_seed": per_seed, "num_steps": int(c.num_steps),
                         "eval_episodes": int(c.eval_episodes),
                         "batch_size": int(c.batch_size), "augment": c.augment.to_dict()}

  result = {"env_id": env_id, "dataset": dataset, "quality": rows, "scores": scores,
            "timings_s": timings, "protocol": dataclasses.asdict(protocol),
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
