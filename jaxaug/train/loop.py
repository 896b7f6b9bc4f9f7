"""The generic jitted, data-parallel, resumable training loop.

`run_training` drives any learner with the agent protocol's shape (`update(state, batch, key)`)
over device-resident data:

  * K updates per dispatch in `lax.scan`, metrics averaged over the K and fetched from the
    device only when logged;
  * optional vmap over a leading seed axis (`num_seeds`): several seeds in one program;
  * or (`sweep=SweepAxis(...)`, jaxaug.train.sweep) over a leading axis of sweep points
    (seeds x float hyperparameters), sharded over the `sweep` axis of a 2-D mesh;
  * one data-parallel path (jaxaug.train.mesh): state replicated, each sampled batch sharded
    over the `data` axis, buffers donated;
  * orbax checkpoints every `checkpoint_every` steps holding the learner state *and* the RNG
    key that drives sampling, so a re-run with the same workdir resumes from the latest
    checkpoint and continues exactly as an uninterrupted run would (same RNG stream, same
    data order);
  * metrics.jsonl / TensorBoard / console through MetricLogger, from process 0 only.

Used by the offline agents (jaxaug.train.offline), diffusion training (GTA, SynthER, ATraDiff
generators) and DTQL.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxaug.train import mesh as mesh_lib
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.train.logging import MetricLogger

UpdateFn = Callable[[Any, Any, jax.Array], tuple[Any, Mapping[str, jax.Array]]]
SampleFn = Callable[[Any, jax.Array, int], Any]
# (state, data) -> (state, what sample_fn draws from), traced inside the scan before each update.
BeforeUpdateFn = Callable[[Any, Any], tuple[Any, Any]]


@dataclasses.dataclass(frozen=True)
class LoopHooks:
  """Optional extensions of the loop (all None = the plain loop).

  before_update: inside the jitted scan, before each update's sampling: (state, data) ->
    (state, sample data). Lets a state extension (e.g. a synthetic buffer the state carries,
    jaxaug.augment.composed) be refreshed and sampled from; it must not use the loop RNG.
  between_dispatches: on the host, before every dispatch: (state, data, step) -> state, with
    `step` the number of updates done (also after a resume). Whatever it computes must be
    jitted by the caller; the state keeps the seed axis when num_seeds > 1.
  """
  before_update: BeforeUpdateFn | None = None
  between_dispatches: Callable[[Any, Any, int], Any] | None = None


@dataclasses.dataclass(frozen=True)
class SweepAxis:
  """A leading axis of `size` sweep points (jaxaug.train.sweep) instead of the seed axis.

  init: () -> (state, rng), host pytrees stacked on axis 0 (point p's state and the loop key of
    a single run of point p). run_training shards them over the mesh's `sweep` axis.
  make_logger: resume_step -> an object with log(step, record) and close(); the record's values
    carry the point axis (train metrics, and whatever eval_fn returns per point).
  """
  init: Callable[[], tuple[Any, Any]]
  size: int
  make_logger: Callable[[int], Any] | None = None


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  num_steps: int
  batch_size: int
  updates_per_dispatch: int = 100
  log_every: int = 1000
  eval_every: int = 0  # 0 = never (except the final step when eval_fn is given)
  # Evaluations at eval_offset + k * eval_every (k >= 1), e.g. counted from the end of a
  # pre-training phase (DTQL) so none lands on the untrained policy.
  eval_offset: int = 0
  checkpoint_every: int = 0  # 0 = only at the end
  max_checkpoints: int = 3
  num_seeds: int = 1
  seed: int = 0

  def validate(self) -> None:
    k = self.updates_per_dispatch
    if k <= 0:
      raise ValueError(f"config.updates_per_dispatch must be positive, got {k}")
    if self.num_steps <= 0 or self.batch_size <= 0 or self.num_seeds <= 0:
      raise ValueError("config.num_steps, config.batch_size and config.num_seeds must be "
                       f"positive, got {self.num_steps}, {self.batch_size}, {self.num_seeds}")
    if self.eval_offset < 0:
      raise ValueError(f"config.eval_offset must be >= 0, got {self.eval_offset}")
    for name in ("num_steps", "log_every", "eval_every", "eval_offset", "checkpoint_every"):
      v = getattr(self, name)
      if v and v % k:
        raise ValueError(f"config.{name}={v} must be a multiple of config.updates_per_dispatch={k}"
                         " (metrics, evaluation and checkpoints happen between dispatches)")

  @classmethod
  def from_config(cls, config) -> "LoopConfig":
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: config[k] for k in fields if k in config})


def make_dispatch(update_fn: UpdateFn, sample_fn: SampleFn, batch_size: int, num_updates: int,
                  mesh, num_seeds: int = 1, before_update: BeforeUpdateFn | None = None,
                  sweep: bool = False):
  """Build the jitted function: (state, rng, data) -> (state, rng, mean metrics).

  With num_seeds > 1 the state and rng carry a leading seed axis and the data is shared.
  `before_update` (LoopHooks) runs before each update's sampling. With `sweep` (a mesh with a
  `sweep` axis) the leading axis is the sweep axis: state and rng sharded over `sweep`, each
  point's batch over `data`; metrics come back replicated (every process can read them).
  """
  shard_batch = mesh is not None and (num_seeds == 1 or sweep)

  def one_update(carry, _, data):
    state, rng = carry
    sample_data = data
    if before_update is not None:
      state, sample_data = before_update(state, data)
    rng, k_sample, k_update = jax.random.split(rng, 3)
    batch = sample_fn(sample_data, k_sample, batch_size)
    if shard_batch:
      batch = mesh_lib.shard_batch_constraint(batch, mesh)
    state, metrics = update_fn(state, batch, k_update)
    return (state, rng), metrics

  def dispatch(state, rng, data):
    (state, rng), metrics = jax.lax.scan(
        lambda c, x: one_update(c, x, data), (state, rng), None, length=num_updates)
    return state, rng, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)

  if sweep:
    # spmd_axis_name: the vmapped axis of every sharding constraint inside is `sweep`, so a
    # point's batch is sharded P('sweep', 'data') and never gathered across points.
    dispatch = jax.vmap(dispatch, in_axes=(0, 0, None), spmd_axis_name=mesh_lib.SWEEP_AXIS)
    sw, rep = mesh_lib.sweep_sharding(mesh), mesh_lib.replicated_sharding(mesh)
    return jax.jit(dispatch, donate_argnums=(0, 1), in_shardings=(sw, sw, rep),
                   out_shardings=(sw, sw, rep))
  if num_seeds > 1:
    dispatch = jax.vmap(dispatch, in_axes=(0, 0, None))
  if mesh is None:
    return jax.jit(dispatch, donate_argnums=(0, 1))
  rep = mesh_lib.replicated_sharding(mesh)
  return jax.jit(dispatch, donate_argnums=(0, 1), in_shardings=(rep, rep, rep),
                 out_shardings=(rep, rep, rep))


def _all_finite(metrics: Mapping[str, jax.Array]) -> jax.Array:
  """One device boolean: every metric of a dispatch is finite (enqueued, not waited for)."""
  return jax.tree.reduce(lambda a, b: a & b,
                         jax.tree.map(lambda v: jnp.all(jnp.isfinite(v)), metrics),
                         jnp.asarray(True))


def _check_finite(pending, k: int, ckpt) -> None:
  """Stops the run when a dispatch produced a NaN/Inf metric (loss), before anything is saved.

  `pending` = (device flag, step, metrics) of one dispatch. The loop checks it one dispatch late
  (after enqueueing the next one, so the host never idles the device), and at once on steps
  that log, evaluate or checkpoint: the state of a bad dispatch is never checkpointed, so the
  last checkpoint on disk is the last good one.
  """
  flag, step, metrics = pending
  if bool(jax.device_get(flag)):
    return
  raise_if_nonfinite(jax.device_get(metrics), f"updates {step - k + 1}..{step}", ckpt)


def raise_if_nonfinite(host: Mapping[str, Any], where: str, ckpt) -> None:
  """FloatingPointError naming `where`, the non-finite metrics and the last good checkpoint."""
  bad = sorted(n for n, v in host.items() if not np.all(np.isfinite(np.asarray(v))))
  if not bad:
    return
  last = ckpt.latest_step() if ckpt is not None else None
  raise FloatingPointError(
      f"non-finite training metrics in {where}: "
      + ", ".join(f"train/{n}={np.asarray(host[n]).tolist()}" for n in bad)
      + (f"; nothing was saved after step {last}: the checkpoint of step {last} in "
         f"{ckpt.directory} is the last good one" if last is not None else
         "; no checkpoint was written"))


def seed_init(init_fn: Callable[[jax.Array], Any], num_seeds: int) -> Callable[[jax.Array], Any]:
  """init_fn over a leading seed axis of keys (num_seeds > 1), or init_fn itself.

  Seeds are initialised one after another inside the program (`lax.map`), not vmapped: a vmapped
  init turns the orthogonal initialisers' QR into one batched LAPACK call, which deadlocks
  jaxlib 0.10.0-0.11.0 on small CPU machines (docs/xla_cpu.md). `lax.map` gives the same values.
  """
  if num_seeds == 1:
    return init_fn
  return lambda keys: jax.lax.map(init_fn, keys)


def seed_keys(seed: int, num_seeds: int) -> tuple[jax.Array, jax.Array]:
  """(init keys, loop rng) for one seed, or stacked over num_seeds seeds seed..seed+n-1.

  Seed s of a vmapped run gets exactly the keys a separate run with seed=s would get.
  """
  def one(s):
    k_init, k_loop = jax.random.split(jax.random.key(s))
    return k_init, k_loop
  if num_seeds == 1:
    return one(seed)
  pairs = [one(seed + i) for i in range(num_seeds)]
  return jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])


def run_training(
    *,
    cfg: LoopConfig,
    workdir: str | None,
    init_fn: Callable[[jax.Array], Any],
    update_fn: UpdateFn,
    sample_fn: SampleFn,
    data: Any,
    eval_fn: Callable[[Any, int], Mapping[str, float]] | None = None,
    meta: dict | None = None,
    mesh=None,
    is_main: bool | None = None,
    hooks: LoopHooks | None = None,
    sweep: SweepAxis | None = None,
    keys: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[Any, dict]:
  """Train, checkpoint, resume. Returns (final state, last logged metrics).

  init_fn(key) builds one seed's state; with num_seeds > 1 it is vmapped. eval_fn(state, step)
  runs on the host at eval steps and returns scalars to log (state has the seed axis when
  num_seeds > 1). `meta` (JSON-able) is stored with every checkpoint.

  With `sweep` (SweepAxis) the initial state comes from sweep.init (init_fn is not used),
  `mesh` must be a sweep mesh (mesh.make_sweep_mesh) whose `sweep` size divides sweep.size,
  and the logger comes from sweep.make_logger.

  `keys` = (init key, loop rng) of a single-seed run replaces seed_keys(cfg.seed): a job of
  several runs (ATraDiff's generators, one per length) gives each its own stream.
  """
  cfg.validate()
  if keys is not None and (cfg.num_seeds != 1 or sweep is not None):
    raise ValueError("run_training: explicit keys are for a single-seed run without a sweep")
  if sweep is not None:
    if cfg.num_seeds != 1:
      raise ValueError(f"config.num_seeds={cfg.num_seeds}: a sweep replaces the seed axis; "
                       "sweep over seed instead (e.g. seed=range(4)) with num_seeds=1")
    mesh = mesh if mesh is not None else mesh_lib.make_sweep_mesh()
    n_sweep = mesh.shape[mesh_lib.SWEEP_AXIS]
    if sweep.size % n_sweep:
      raise ValueError(f"{sweep.size} sweep points cannot be split over {n_sweep} devices on "
                       "the 'sweep' mesh axis (pad the points: jaxaug.train.sweep)")
    if cfg.batch_size % mesh.shape[mesh_lib.DATA_AXIS]:
      raise ValueError(f"config.batch_size={cfg.batch_size} must be divisible by the 'data' mesh "
                       f"axis ({mesh.shape[mesh_lib.DATA_AXIS]} devices)")
  mesh = mesh if mesh is not None else mesh_lib.make_data_mesh()
  if cfg.num_seeds == 1 and sweep is None:
    mesh_lib.check_batch_divisible(cfg.batch_size, mesh)
  is_main = mesh_lib.is_main_process() if is_main is None else is_main
  k = cfg.updates_per_dispatch

  if sweep is not None:
    state, rng = mesh_lib.shard_sweep(sweep.init(), mesh)
    data = mesh_lib.replicate(data, mesh)
  else:
    init_keys, rng = keys if keys is not None else seed_keys(cfg.seed, cfg.num_seeds)
    state = jax.jit(seed_init(init_fn, cfg.num_seeds))(init_keys)
    state, rng, data = mesh_lib.replicate((state, rng, data), mesh)

  ckpt = None
  step = 0
  last: dict = {}
  if workdir is not None:
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.max_checkpoints)
    latest = ckpt.latest_step()
    if latest is not None:
      restored = ckpt.restore(latest, {"state": state, "rng": rng})
      state, rng = restored["state"], restored["rng"]
      step = int(latest)
      # A finished run re-run (killed after its last checkpoint, say) returns the final record
      # it logged, so its summary is the uninterrupted run's.
      last = {n: np.asarray(v, dtype) for n, (dtype, v)
              in ckpt.restore_meta(latest).get("last", {}).items()}
      logging.info("Resumed from %s at step %d", ckpt.directory, step)
  # resume_step 0 when nothing was checkpointed: records of a killed earlier attempt are dropped.
  if sweep is not None and sweep.make_logger is not None:
    logger = sweep.make_logger(step)
  else:
    logger = MetricLogger(workdir, cfg.num_steps, is_main=is_main and workdir is not None,
                          resume_step=step) if workdir else None

  hooks = hooks or LoopHooks()
  dispatch = make_dispatch(update_fn, sample_fn, cfg.batch_size, k, mesh,
                           sweep.size if sweep is not None else cfg.num_seeds,
                           before_update=hooks.before_update, sweep=sweep is not None)
  pending = None  # the previous dispatch's finiteness, checked one dispatch late
  while step < cfg.num_steps:
    if hooks.between_dispatches is not None:
      state = hooks.between_dispatches(state, data, step)
    state, rng, metrics = dispatch(state, rng, data)
    step += k
    if pending is not None:
      _check_finite(pending, k, ckpt)
    pending = (_all_finite(metrics), step, metrics)
    log_now = bool(cfg.log_every and step % cfg.log_every == 0) or step == cfg.num_steps
    eval_now = eval_fn is not None and (
        bool(cfg.eval_every and step > cfg.eval_offset
             and (step - cfg.eval_offset) % cfg.eval_every == 0) or step == cfg.num_steps)
    save_now = ckpt is not None and (
        bool(cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.num_steps)
    if log_now or eval_now or save_now:
      _check_finite(pending, k, ckpt)
      pending = None
    record: dict = {}
    if log_now:
      record.update({f"train/{n}": v for n, v in jax.device_get(metrics).items()})
    if eval_now:
      record.update(eval_fn(state, step))
    if record:
      last = {n: np.asarray(v) for n, v in record.items()}
      if logger is not None:
        logger.log(step, {n: v for n, v in record.items()})
    if save_now:
      ckpt.save(step, {"state": state, "rng": rng}, dict(
          meta or {}, step=step, last={n: (str(v.dtype), v.tolist()) for n, v in last.items()}))
  if ckpt is not None:
    ckpt.close()
  if logger is not None:
    logger.close()
  return state, last
