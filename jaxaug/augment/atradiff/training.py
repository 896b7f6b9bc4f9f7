"""Training ATraDiff's diffuser (M generators and the length estimator) through the shared loop.

Every part is one run of `jaxaug.train.loop.run_training`, a *stage*, so each resumes exactly
after a kill, trains data-parallel over the devices (state replicated, batches sharded over the
`data` mesh axis) and writes metrics.jsonl like any other run. The generators model windows of
different lengths (different shapes), so the stages run one after another; the estimator is the
last one. A training directory (a `train_diffusion` workdir, `config.atradiff.diffuser_dir`, or
an online run's WORKDIR/atradiff_diffuser) holds:

  config.json          the diffuser-training config (`training_config`: method 'atradiff', the
                       dataset, the diffuser fields of config.atradiff, the training key)
  generator_k<K>/      stage of the generator of length K (increasing K): checkpoints/,
                       metrics.jsonl, tb/
  estimator/           stage of the length estimator
  metrics.jsonl        every stage's records, names prefixed by the stage (generator_k5/loss,
                       estimator/loss), steps counted over the stages one after another
  diffuser/            the assembled Diffuser and its training fingerprint (store.save), written
                       when every stage is done: what `store.restore` and the online run load
  summary.json         per-stage final losses and parameter counts, the fingerprint

A re-run with the same directory resumes the unfinished stage from its latest checkpoint and
restores the finished ones from their last; a finished directory is restored without training.

Random streams: `key` (for an online run of seed s, `diffuser_key(s)`, which is also what
`train_diffusion --config.seed=s` uses, so both train the same diffuser) is split into one key
per generator and one for the estimator; each gives the stage's (init key, loop rng) for
run_training. Initial parameters are those of the earlier in-run trainer for the same key; the
training batches follow run_training's stream, which does not depend on `steps_per_dispatch`
(the earlier trainer re-split its key per dispatch, so its result did).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxaug.augment.atradiff import data as adata
from jaxaug.augment.atradiff import diffuser as adiff
from jaxaug.augment.atradiff import length as alength
from jaxaug.augment.atradiff import store
from jaxaug.data.dataset import OfflineDataset
from jaxaug.diffusion import train as dtrain
from jaxaug.nets.denoisers import count_params
from jaxaug.train import config_io
from jaxaug.train import mesh as mesh_lib
from jaxaug.train.loop import LoopConfig, run_training
from jaxaug.utils import atomic_write_text

ESTIMATOR = "estimator"
KEY_SALT = 0xA7D  # online runs: fold_in(key(seed), KEY_SALT), split in 3, the first trains
# Cadence of the stages (updates); they do not change what is trained.
DEFAULT_LOG_EVERY = 1000
DEFAULT_CHECKPOINT_EVERY = 5000


def generator_stage(k_len: int) -> str:
  return f"generator_k{int(k_len)}"


def diffuser_key(seed: int) -> jax.Array:
  """The key that trains the diffuser of an online run of `seed` (and of train_diffusion with
  config.seed = seed)."""
  return jax.random.split(jax.random.fold_in(jax.random.key(int(seed)), KEY_SALT), 3)[0]


@dataclasses.dataclass(frozen=True)
class Stage:
  name: str
  steps: int
  init_key: jax.Array
  rng: jax.Array
  init_fn: Callable[[jax.Array], Any]
  update_fn: Callable
  sample_fn: Callable


@dataclasses.dataclass(frozen=True)
class Setup:
  spec: adiff.DiffuserSpec
  stats: Any
  windows: adata.WindowData
  stages: tuple[Stage, ...]  # generators in spec.lengths order, then the estimator
  batch_size: int


def _estimator_batch(spec: adiff.DiffuserSpec):
  def sample(windows: adata.WindowData, key: jax.Array, batch_size: int) -> dict:
    index = jax.random.randint(key, (batch_size,), 0, windows.starts.shape[0])
    first = windows.rows[windows.starts[index], :spec.obs_dim]
    return {"cond": adata.make_condition(first, windows.task_ids[index], spec.num_tasks),
            "remaining": windows.remaining[index]}
  return sample


def _estimator_update(state: alength.EstimatorState, batch: dict, key: jax.Array):
  del key  # a deterministic regression step
  state, loss = alength.update(state, batch["cond"], batch["remaining"])
  return state, {"loss": loss}


def setup(acfg: ml_collections.ConfigDict, ds: OfflineDataset, key: jax.Array,
          task_ids: np.ndarray | None = None) -> Setup:
  """Training data (row statistics, windows) and the stages of `acfg` (config.atradiff)."""
  spec = adiff.spec_from_config(acfg, ds.obs_dim, ds.act_dim)
  stats = adata.fit_row_stats(ds)
  windows = adata.build_window_data(ds, stats, spec.max_length, task_ids)
  dcfg = adiff.diffusion_config(acfg)
  batch_size = int(acfg.generator_batch_size)
  if batch_size <= 0:
    raise ValueError(f"config.atradiff.generator_batch_size must be positive, got {batch_size}")
  keys = jax.random.split(key, len(spec.lengths) + 1)
  stages = []
  for k_len, gkey in zip(spec.lengths, keys[:-1]):
    def sample(data, kk, b, k_len=k_len):
      return adata.sample_window_batch(data, kk, b, k_len, spec.obs_dim, spec.num_tasks)
    # Only the shapes of the example batch matter (dtrain.init).
    example = {"x": jnp.zeros((batch_size, k_len * spec.row_dim), jnp.float32),
               "cond": jnp.zeros((batch_size, spec.cond_dim), jnp.float32)}
    k_init, k_loop = jax.random.split(gkey)
    stages.append(Stage(
        name=generator_stage(k_len), steps=int(acfg.generator_steps), init_key=k_init,
        rng=k_loop, init_fn=lambda kk, example=example: dtrain.init(kk, example, dcfg),
        update_fn=dtrain.update, sample_fn=sample))
  hidden, lr = tuple(acfg.estimator_hidden_dims), float(acfg.estimator_lr)
  stages.append(Stage(
      name=ESTIMATOR, steps=int(acfg.estimator_steps), init_key=keys[-1],
      rng=jax.random.fold_in(keys[-1], 1),
      init_fn=lambda kk: alength.init_estimator(kk, spec.cond_dim, spec.lengths, hidden, lr),
      update_fn=_estimator_update, sample_fn=_estimator_batch(spec)))
  for s in stages:
    if s.steps < 0:
      field = "estimator_steps" if s.name == ESTIMATOR else "generator_steps"
      raise ValueError(f"config.atradiff.{field} must be >= 0, got {s.steps}")
  return Setup(spec=spec, stats=stats, windows=windows, stages=tuple(stages),
               batch_size=batch_size)


def _assemble(st: Setup, states: list) -> adiff.Diffuser:
  return adiff.Diffuser(generators=tuple(states[:-1]), estimator=states[-1], stats=st.stats,
                        spec=st.spec)


def init_diffuser(key: jax.Array, ds: OfflineDataset, acfg: ml_collections.ConfigDict,
                  task_ids: np.ndarray | None = None) -> adiff.Diffuser:
  """The untrained diffuser of `acfg` for `key` (a restore target of the right structure)."""
  st = setup(acfg, ds, key, task_ids)
  return _assemble(st, [jax.jit(s.init_fn)(s.init_key) for s in st.stages])


def dispatch_size(steps: int, per_dispatch: int) -> int:
  """Updates per dispatch: the largest divisor of `steps` not above `per_dispatch` (the
  result does not depend on it, so a stage never overshoots its step count)."""
  k = max(1, min(int(per_dispatch), int(steps)))
  while steps % k:
    k -= 1
  return k


def _every(value: int, k: int) -> int:
  """A cadence rounded down to a multiple of the dispatch size (0 = only at the end)."""
  value = int(value)
  return max(k, value // k * k) if value > 0 else 0


def loop_config(acfg: ml_collections.ConfigDict, steps: int, batch_size: int) -> LoopConfig:
  k = dispatch_size(steps, int(acfg.steps_per_dispatch))
  return LoopConfig(
      num_steps=steps, batch_size=batch_size, updates_per_dispatch=k,
      log_every=_every(acfg.get("generator_log_every", DEFAULT_LOG_EVERY), k),
      checkpoint_every=_every(acfg.get("generator_checkpoint_every",
                                       DEFAULT_CHECKPOINT_EVERY), k),
      max_checkpoints=2)


def training_config(config: ml_collections.ConfigDict, key: jax.Array
                    ) -> ml_collections.ConfigDict:
  """The config a training directory records (config.json): what the diffuser depends on.

  `method = 'atradiff'` marks a train_diffusion job (jaxaug.train.config_io.job_kind); the
  cadence fields are named like the loop's so that they may change when a run is resumed.
  """
  acfg = config.atradiff
  c = ml_collections.ConfigDict()
  c.method = "atradiff"
  c.offline_dataset = str(acfg.offline_dataset)
  c.key = [int(x) for x in np.asarray(jax.random.key_data(key)).reshape(-1)]
  a = ml_collections.ConfigDict()
  for name in store.DIFFUSER_FIELDS + ("steps_per_dispatch",):
    v = acfg.get(name)
    a[name] = tuple(v) if isinstance(v, (list, tuple)) else v
  a.log_every = int(acfg.get("generator_log_every", DEFAULT_LOG_EVERY))
  a.checkpoint_every = int(acfg.get("generator_checkpoint_every", DEFAULT_CHECKPOINT_EVERY))
  c.atradiff = a
  return c


def has_training(directory: str) -> bool:
  """Whether `directory` holds (part of) a trained diffuser: stage checkpoints or diffuser/."""
  if not directory or not os.path.isdir(directory):
    return False
  for name in os.listdir(directory):
    sub = os.path.join(directory, name)
    if name == store.DIFFUSER_SUBDIR and os.path.isdir(sub) and os.listdir(sub):
      return True
    ck = os.path.join(sub, "checkpoints")
    if os.path.isdir(ck) and any(not n.endswith(".orbax-checkpoint-tmp")
                                 for n in os.listdir(ck)):
      return True
  return False


def _save_training_config(tc: ml_collections.ConfigDict, directory: str) -> None:
  """config.json; a directory with stage checkpoints of another config is refused, naming the
  fields (the cadence fields may change, as on any resume)."""
  if has_training(directory) and os.path.exists(os.path.join(directory, "config.json")):
    diffs = config_io.config_differences(config_io.load_config(directory), tc)
    if diffs:
      raise ValueError(
          f"{directory} holds a partly trained ATraDiff diffuser of another config "
          f"({os.path.join(directory, 'config.json')}): " + "; ".join(diffs[:6])
          + ". Resume it with that config, or train into another directory "
          "(--workdir / config.atradiff.diffuser_dir)")
  if mesh_lib.is_main_process():
    config_io.save_config(tc, directory)


def _stage_fingerprint_check(stage_dir: str, fp: dict) -> None:
  """A stage resumed on another dataset (same config.json) is refused like a diffuser is."""
  from jaxaug.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  ck_dir = os.path.join(stage_dir, "checkpoints")
  if not os.path.isdir(ck_dir):
    return
  ckpt = Checkpointer(ck_dir)
  try:
    step = ckpt.latest_step()
    if step is not None:
      store.check_fingerprint(ckpt.restore_meta(step).get("fingerprint"), fp, stage_dir)
  finally:
    ckpt.close()


def _merge_metrics(directory: str, st: Setup) -> None:
  """WORKDIR/metrics.jsonl from the stages' files: names prefixed by the stage, steps counted
  over the stages one after another (rebuilt whole, so a resumed run writes the same file)."""
  lines, offset = [], 0
  for s in st.stages:
    path = os.path.join(directory, s.name, "metrics.jsonl")
    if s.steps and os.path.exists(path):
      with open(path) as f:
        for line in f:
          if not line.strip():
            continue
          r = json.loads(line)
          out = {"step": offset + int(r.pop("step"))}
          out.update({f"{s.name}/{n.removeprefix('train/')}": v for n, v in r.items()})
          lines.append(json.dumps(out) + "\n")
    offset += s.steps
  atomic_write_text(os.path.join(directory, "metrics.jsonl"), "".join(lines))


def train_stages(acfg: ml_collections.ConfigDict, ds: OfflineDataset, key: jax.Array,
                 directory: str | None, *, task_ids: np.ndarray | None = None,
                 fp: dict | None = None, mesh=None,
                 log_fn: Callable[[str, int, float], None] | None = None
                 ) -> tuple[adiff.Diffuser, dict]:
  """Runs (or resumes) every stage; returns (diffuser, summary). `directory` None: in memory
  (nothing written, nothing resumed)."""
  st = setup(acfg, ds, key, task_ids)
  mesh = mesh if mesh is not None else mesh_lib.make_data_mesh()
  n_dev = mesh.devices.size
  if st.batch_size % n_dev:
    raise ValueError(f"config.atradiff.generator_batch_size={st.batch_size} must be divisible "
                     f"by the number of devices ({n_dev}): each batch is sharded over them")
  states, stages_out = [], {}
  t0 = time.time()
  for s in st.stages:
    n_params = count_params(jax.eval_shape(s.init_fn, s.init_key).params)
    if s.steps == 0:  # nothing to train: the initial state
      states.append(jax.jit(s.init_fn)(s.init_key))
      stages_out[s.name] = {"steps": 0, "num_params": n_params}
      continue
    stage_dir = os.path.join(directory, s.name) if directory else None
    if stage_dir is not None and fp is not None:
      _stage_fingerprint_check(stage_dir, fp)
    logging.info("ATraDiff %s: %d steps, %d parameters", s.name, s.steps, n_params)
    state, last = run_training(
        cfg=loop_config(acfg, s.steps, st.batch_size), workdir=stage_dir, init_fn=s.init_fn,
        update_fn=s.update_fn, sample_fn=s.sample_fn, data=st.windows, mesh=mesh,
        keys=(s.init_key, s.rng),
        meta={"stage": s.name, "num_params": n_params, "fingerprint": fp})
    states.append(state)
    loss = float(np.asarray(last["train/loss"])) if "train/loss" in last else float("nan")
    stages_out[s.name] = {"steps": s.steps, "num_params": n_params, "loss": loss}
    if log_fn is not None:
      log_fn(f"{s.name}/loss", s.steps, loss)
    if directory and mesh_lib.is_main_process():
      _merge_metrics(directory, st)
  summary = {"method": "atradiff", "stages": stages_out, "wall_time_s": time.time() - t0}
  return _assemble(st, states), summary


def train_or_restore(config: ml_collections.ConfigDict, ds: OfflineDataset, directory: str,
                     key: jax.Array, *, task_ids: np.ndarray | None = None, mesh=None
                     ) -> tuple[adiff.Diffuser, dict]:
  """The diffuser of `config.atradiff` trained on `ds`: restored from `directory` when it holds
  a finished one (after checking it was trained on the same dataset with the same diffuser
  config: else ValueError naming both), else trained there, resuming any finished stages.

  Returns (diffuser, meta); meta['fingerprint'] is the training fingerprint, meta['restored']
  says whether nothing was trained, meta['expected_length'] / ['length_fingerprint'] hold a
  stored L (store.save_expected_length) or None. `directory` '' trains in memory.
  """
  acfg = config.atradiff
  fp = store.fingerprint(ds, acfg.offline_dataset, acfg)
  if directory:
    diffuser, meta = store.restore(directory, key, ds, acfg, fp)
    if diffuser is not None:
      logging.info("ATraDiff: restored the trained diffuser from %s", directory)
      return diffuser, dict(meta, restored=True)
    _save_training_config(training_config(config, key), directory)
  diffuser, summary = train_stages(acfg, ds, key, directory or None, task_ids=task_ids, fp=fp,
                                   mesh=mesh)
  meta = {"fingerprint": fp, "expected_length": None, "length_fingerprint": None}
  if directory:
    summary.update({"dataset": str(acfg.offline_dataset), "transitions": len(ds),
                    "fingerprint": fp})
    if mesh_lib.is_main_process():
      atomic_write_text(os.path.join(directory, "summary.json"), json.dumps(summary, indent=2))
    # Last (every process: an orbax save): diffuser/ marks the directory finished; a kill
    # before it re-runs the stages, which restore at once, and rewrites the files above alike.
    store.save(os.path.join(directory, store.DIFFUSER_SUBDIR), diffuser, fp, None, None)
  return diffuser, dict(meta, restored=False, summary=summary)
