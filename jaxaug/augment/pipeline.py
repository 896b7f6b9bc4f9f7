"""Train a generator (GTA or SynthER) and generate data with it: the logic behind
experiments/train_diffusion.py and experiments/augment.py.

Training runs through the generic loop (jaxaug.train.loop.run_training): K updates per
dispatch in lax.scan, state replicated and batches sharded over the 'data' mesh, orbax
checkpoints of {state, rng} in WORKDIR/checkpoints with exact resume, metrics.jsonl. The
diffusion learner (jaxaug.diffusion.train) plays the agent; the method module provides
`prepare(dataset, config) -> data` and `sample_batch(data, key, batch_size)`.

Generation restores the checkpoint (latest, or `config.checkpoint_step`), rebuilds the same
training data (deterministic from the dataset), and generates `config.num_transitions` in
chunks under OUT.chunks/ (resumable), then writes OUT with jaxaug.data.loaders.save_npz. The
generation key is fold_in(key(seed), GENERATION_SALT), independent of the training stream.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxaug.augment import gta, synther
from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.loaders import load_dataset, save_npz
from jaxaug.diffusion import train as dtrain
from jaxaug.nets.denoisers import count_params
from jaxaug.train import config_io
from jaxaug.train import mesh as mesh_lib
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.train.loop import LoopConfig, run_training, seed_keys

METHODS = {"gta": gta, "synther": synther}
GENERATION_SALT = 0x6E4A


def method_module(config):
  if config.method not in METHODS:
    raise ValueError(f"config.method: expected one of {sorted(METHODS)}, got {config.method!r}")
  return METHODS[config.method]


def prepare_data(config, dataset: OfflineDataset | None = None):
  dataset = dataset if dataset is not None else load_dataset(config.dataset)
  return dataset, method_module(config).prepare(dataset, config)


def _init_fn(config, data):
  mod = method_module(config)

  def init(key):
    k_ex, k_init = jax.random.split(key)
    return dtrain.init(k_init, mod.sample_batch(data, k_ex, 2), config.diffusion)

  return init


def init_fn(config, data):
  """`init(key) -> DiffusionState` of a run of `config` (the key: seed_keys' init key); used by
  sweeps (jaxaug.train.sweep) to build each point's state as a single run does."""
  return _init_fn(config, data)


def train_generator(config, workdir: str | None, dataset: OfflineDataset | None = None
                    ) -> tuple[dtrain.DiffusionState, dict]:
  """Train (or resume training) the diffusion model; returns (state, last metrics)."""
  dataset, data = prepare_data(config, dataset)
  if config.method == "synther":
    batch = synther.training_batch_size(config, len(dataset))
    if batch != config.batch_size:
      logging.info("synther: batch %d for %d transitions (synther.large_batch_size)", batch,
                   len(dataset))
      config = copy.deepcopy(config)  # keeps FieldReferences; the caller's config is untouched
      with config.unlocked():
        config.batch_size = batch
  if workdir is not None:
    config_io.save_config(config, workdir)
  init = _init_fn(config, data)
  n_params = count_params(jax.eval_shape(init, jax.random.key(0)).params)
  logging.info("%s generator: %d trainable parameters, %d training items", config.method,
               n_params, int(getattr(data, "num_windows", 0) or len(dataset)))
  meta = {"method": config.method, "num_params": n_params, "dataset": config.dataset,
          "dataset_size": len(dataset)}
  state, last = run_training(
      cfg=LoopConfig.from_config(config), workdir=workdir, init_fn=init,
      update_fn=dtrain.update, sample_fn=method_module(config).sample_batch, data=data,
      meta=meta)
  return state, last


def restore_generator(config, workdir: str, data) -> tuple[dtrain.DiffusionState, int]:
  """The trained state from WORKDIR/checkpoints (config.checkpoint_step, -1 = latest)."""
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None)
  step = int(config.checkpoint_step)
  if step < 0:
    step = ckpt.latest_step()
    if step is None:
      raise ValueError(f"{workdir}/checkpoints: no checkpoint; train first with "
                       "experiments/train_diffusion.py")
  elif step not in ckpt.all_steps():
    raise ValueError(f"config.checkpoint_step={step}: not in {workdir}/checkpoints "
                     f"(have {ckpt.all_steps()})")
  state = jax.jit(_init_fn(config, data))(seed_keys(int(config.seed), 1)[0])
  _, rng = seed_keys(int(config.seed), 1)
  restored = ckpt.restore(step, {"state": state, "rng": rng})
  ckpt.close()
  return restored["state"], step


def generate(config, workdir: str, out: str | None, dataset: OfflineDataset | None = None,
             log=None, max_chunks: int | None = None) -> OfflineDataset:
  """Generate config.num_transitions with the trained generator; save to `out` (npz)."""
  dataset, data = prepare_data(config, dataset)
  state, step = restore_generator(config, workdir, data)
  mesh = mesh_lib.make_data_mesh()
  state, data = mesh_lib.replicate((state, data), mesh)
  key = jax.random.fold_in(jax.random.key(int(config.seed)), GENERATION_SALT)
  chunk_dir = (out + ".chunks") if out else None
  extra = {"checkpoint_step": int(step), "seed": int(config.seed), "dataset": config.dataset,
           "workdir": os.path.abspath(workdir)}
  gen = method_module(config).augment(
      state, data, config, key, int(config.num_transitions), chunk_dir=chunk_dir, mesh=mesh,
      log=log or logging.info, fingerprint_extra=extra, max_chunks=max_chunks)
  gen.metadata["source_dataset"] = dataset.source
  if out and len(gen) == int(config.num_transitions):
    save_npz(gen, out)
  return gen


def summarize(gen: OfflineDataset, real: OfflineDataset) -> dict[str, Any]:
  """A few sanity figures of generated vs real data."""
  return {"transitions": len(gen), "reward_mean": float(np.mean(gen.rewards)),
          "real_reward_mean": float(np.mean(real.rewards)),
          "terminal_rate": float(np.mean(gen.terminals)),
          "real_terminal_rate": float(np.mean(real.terminals))}
