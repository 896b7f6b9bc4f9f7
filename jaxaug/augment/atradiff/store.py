"""Saving and reusing a trained ATraDiff diffuser, with a fingerprint of what it was trained on.

A diffuser directory (`config.atradiff.diffuser_dir`) lets several runs (seeds, SAC and REDQ on
one environment) share one pretraining. A run may reuse it only if it would have trained the
same diffuser, so the directory's metadata holds a fingerprint:

  dataset    the dataset spec, its size and dimensions and a SHA-256 of its arrays (the spec
             alone is not enough: a file can be rebuilt in place, and the same file can be
             reached under two paths);
  diffuser   every config field that changes the trained weights (sizes, lengths, training
             steps and rates, EMA, length estimator).

A mismatch in either is an error that names both sides. The seed is not part of it: another
seed reusing the diffuser is the point of sharing one.

The expected length L found by preliminary generation is stored too, with the settings it
depends on (sampler, pruner, termination rule, number of start states); when those differ the
run recomputes L instead of reusing it.

Layouts `restore` reads: a training directory (jaxaug.augment.atradiff.training: stages, then
the assembled diffuser in DIR/diffuser/, L in DIR/expected_length.json once an online run has
computed it), or a directory that is itself the diffuser checkpoint (`save(DIR, ...)`).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxaug.augment.atradiff import diffuser as adiff
from jaxaug.data.dataset import OfflineDataset

# 2: generators trained through run_training (jaxaug.augment.atradiff.training), whose random
# stream differs from version 1's in-run trainer and does not depend on steps_per_dispatch.
FINGERPRINT_VERSION = 2
# config.atradiff fields that change the trained generators or length estimator.
DIFFUSER_FIELDS = ("lengths", "num_tasks", "denoiser_width", "denoiser_blocks", "denoiser_dim_t",
                   "generator_steps", "generator_batch_size", "generator_lr", "ema_decay",
                   "ema_every", "estimator_hidden_dims", "estimator_lr", "estimator_steps")
DIFFUSER_SUBDIR = "diffuser"  # a training directory's assembled diffuser
LENGTH_FILE = "expected_length.json"
# Fields the preliminary estimate of L depends on (besides the diffuser itself).
LENGTH_FIELDS = ("num_sample_steps", "s_churn", "prune_rule", "prune_min_gap",
                 "inpaint_first_state", "terminal_fn", "preliminary_samples", "bucket_size",
                 "task_id")
_ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def _plain(value: Any) -> Any:
  """JSON-comparable form of a config value (tuples become lists)."""
  return json.loads(json.dumps(value, default=list))


def dataset_fingerprint(ds: OfflineDataset, spec: str) -> dict:
  h = hashlib.sha256()
  for name in _ARRAYS:
    a = np.ascontiguousarray(getattr(ds, name))
    h.update(f"{name}:{a.dtype}:{a.shape};".encode())
    h.update(memoryview(a).cast("B"))
  return {"spec": str(spec), "transitions": len(ds), "obs_dim": int(ds.obs_dim),
          "act_dim": int(ds.act_dim), "sha256": h.hexdigest()}


def diffuser_fingerprint(acfg: ml_collections.ConfigDict) -> dict:
  return {name: _plain(acfg.get(name)) for name in DIFFUSER_FIELDS}


def length_fingerprint(acfg: ml_collections.ConfigDict, env_id: str) -> dict:
  out = {name: _plain(acfg.get(name)) for name in LENGTH_FIELDS}
  out["env_id"] = str(env_id)
  return out


def fingerprint(ds: OfflineDataset, spec: str, acfg: ml_collections.ConfigDict) -> dict:
  return {"version": FINGERPRINT_VERSION, "dataset": dataset_fingerprint(ds, spec),
          "diffuser": diffuser_fingerprint(acfg)}


def check_fingerprint(saved: dict | None, current: dict, directory: str) -> None:
  """Raises ValueError unless `saved` (a directory's) matches `current` (this run's)."""
  where = f"config.atradiff.diffuser_dir {directory!r}"
  fix = ("Point config.atradiff.diffuser_dir at another directory (or delete this one) to "
         "train a diffuser for this run.")
  if not saved or "version" not in saved:
    raise ValueError(f"{where} holds a diffuser without a training fingerprint (written before "
                     f"fingerprints were stored); its dataset and config cannot be checked. {fix}")
  if saved["version"] != FINGERPRINT_VERSION:
    raise ValueError(f"{where} holds a diffuser with training fingerprint version "
                     f"{saved['version']}; this jaxaug trains and reads version "
                     f"{FINGERPRINT_VERSION} (generators trained through run_training, another "
                     f"random stream), so it is not the diffuser this run would train. {fix}")
  old_ds, new_ds = saved["dataset"], current["dataset"]
  if any(old_ds.get(k) != new_ds[k] for k in ("transitions", "obs_dim", "act_dim", "sha256")):
    raise ValueError(
        f"{where} holds a diffuser trained on dataset {old_ds.get('spec')!r} "
        f"({old_ds.get('transitions')} transitions, obs/act dims {old_ds.get('obs_dim')}/"
        f"{old_ds.get('act_dim')}, sha256 {str(old_ds.get('sha256'))[:12]}), but this run's "
        f"config.atradiff.offline_dataset is {new_ds['spec']!r} ({new_ds['transitions']} "
        f"transitions, obs/act dims {new_ds['obs_dim']}/{new_ds['act_dim']}, sha256 "
        f"{new_ds['sha256'][:12]}). {fix}")
  old_cfg, new_cfg = saved["diffuser"], current["diffuser"]
  diffs = [f"config.atradiff.{k}: trained with {old_cfg.get(k)!r}, this run {new_cfg[k]!r}"
           for k in DIFFUSER_FIELDS if old_cfg.get(k) != new_cfg[k]]
  if diffs:
    raise ValueError(f"{where} holds a diffuser trained with another config: "
                     + "; ".join(diffs) + f". {fix}")


def save(directory: str, diffuser: adiff.Diffuser, fp: dict, expected_length: float | None,
         length_fp: dict | None) -> None:
  """`diffuser` as the checkpoint of `directory`, with its fingerprint and (when known) L."""
  from jaxaug.train.checkpoint import Checkpointer  # local: keeps import light
  ckpt = Checkpointer(directory, max_to_keep=1)
  try:
    ckpt.save(0, diffuser, meta={
        "fingerprint": fp, "length_fingerprint": length_fp,
        "expected_length": None if expected_length is None else float(expected_length)})
    ckpt.wait()
  finally:
    ckpt.close()


def _is_training_dir(directory: str) -> bool:
  return os.path.exists(os.path.join(directory, "config.json"))


def diffuser_path(directory: str) -> str:
  """Where the diffuser checkpoint of `directory` lives (see the module docstring)."""
  sub = os.path.join(directory, DIFFUSER_SUBDIR)
  return sub if os.path.isdir(sub) or _is_training_dir(directory) else directory


def save_expected_length(directory: str, expected_length: float, length_fp: dict) -> None:
  """Stores L (and the settings it depends on) next to a training directory's diffuser, for
  the next run with those settings (`restore` returns it in meta)."""
  from jaxaug.utils import atomic_write_text  # pylint: disable=g-import-not-at-top
  atomic_write_text(os.path.join(directory, LENGTH_FILE), json.dumps(
      {"expected_length": float(expected_length), "length_fingerprint": length_fp}, indent=2))


def restore(directory: str, key: jax.Array, ds: OfflineDataset, acfg: ml_collections.ConfigDict,
            fp: dict) -> tuple[adiff.Diffuser | None, dict | None]:
  """(diffuser, meta) from `directory` after checking its fingerprint against `fp`;
  (None, None) if the directory holds no finished diffuser. meta: 'fingerprint',
  'expected_length' and 'length_fingerprint' (None when L is not stored)."""
  from jaxaug.augment.atradiff import training  # pylint: disable=g-import-not-at-top
  from jaxaug.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  path = diffuser_path(directory)
  if path != directory and not os.path.isdir(path):
    return None, None  # a training directory whose stages are not all done
  ckpt = Checkpointer(path, max_to_keep=1)
  try:
    step = ckpt.latest_step()
    if step is None:
      return None, None
    meta = ckpt.restore_meta(step)
    check_fingerprint(meta.get("fingerprint"), fp, directory)
    target = training.init_diffuser(key, ds, acfg)
    diffuser = ckpt.restore(step, target)
  finally:
    ckpt.close()
  length_file = os.path.join(directory, LENGTH_FILE)
  if path != directory and os.path.exists(length_file):
    with open(length_file) as f:
      meta.update(json.load(f))
  meta.setdefault("expected_length", None)
  meta.setdefault("length_fingerprint", None)
  return diffuser, meta
