"""Composed augmentation: a trained GTA or SynthER generator inside the offline train step.

The staged path (experiments/augment.py, then `config.augment.path`) generates every transition
up front, pulls them to the host, filters and writes them, and the agent stage loads them again.
The composed path (`config.augment.source = "generator:WORKDIR"`) keeps everything on device:

  * the generator's EMA parameters (frozen) and its source data (GTA's real windows, SynthER's
    row normaliser) sit beside the real transitions in the loop's `data` pytree: replicated,
    shared by all seeds of a vmapped run, never donated and never written to checkpoints (they
    are restored from WORKDIR on every start and checked against the checkpoint's record);
  * a fixed-capacity synthetic ring buffer (jaxaug.data.replay.ReplayBuffer), the generation RNG
    and round counters (`AugState`) join the train state, so orbax checkpoints them and a resume
    continues exactly;
  * a generation round (GTA: draw real windows, noise them partially, denoise with guidance on the
    amplified return, decode to transitions; SynthER: unconditional rows) runs every
    `augment.every` updates: as a separate jitted program between dispatches
    (`round_placement='dispatch'`) or under `lax.cond` inside the K-update scan
    (`round_placement='scan'`). Decoded rows are normalised with the real data's statistics and
    written over the oldest buffer rows; a validity mask (padded window positions, non-finite
    rows) replaces the staged path's numpy filtering: invalid rows are never written;
  * every policy batch mixes real and synthetic rows per `augment.mode`: `concat` draws
    uniformly over the union (what sampling the concatenated staged dataset does), `mix` a fixed
    `synthetic_ratio` share, `replace` synthetic rows only;
  * `augment.warm_start` fills the whole buffer before the first update.

Generated transitions in a run: capacity (warm start) + rounds x rows per round, with
rounds = the number of multiples of `every` in [1, num_steps) (also 0 without warm start); the
summary reports the count (docs/augmentation.md shows how to match the papers' 5M).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxaug.augment import gta, synther
from jaxaug.data import replay
from jaxaug.data.dataset import OfflineDataset, Transitions
from jaxaug.diffusion import samplers
from jaxaug.diffusion import train as dtrain
from jaxaug.train import config_io
from jaxaug.train import mesh as mesh_lib
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.train.loop import LoopHooks

PREFIX = "generator:"
MODES = ("concat", "mix", "replace")
PLACEMENTS = ("dispatch", "scan")
# The generation RNG is fold_in(init key, RNG_SALT): the agent's init key is untouched, so a
# composed run initialises the agent exactly as a staged run with the same seed.
RNG_SALT = 0x4A41


class AugState(flax.struct.PyTreeNode):
  """The synthetic side of the train state (checkpointed with it)."""

  buffer: replay.ReplayBuffer
  rng: jax.Array  # generation RNG: split once per round
  updates: jax.Array  # int32: updates run so far (decides scan-placed rounds)
  rounds: jax.Array  # int32: generation rounds run (warm-start rounds included)
  generated: jax.Array  # int32: valid transitions written to the buffer so far


class ComposedState(flax.struct.PyTreeNode):
  agent: Any
  aug: AugState


class GenData(flax.struct.PyTreeNode):
  """Frozen generator and what it needs on device (part of the loop's data, not the state)."""

  model: dtrain.DiffusionState  # EMA parameters only (params / opt_state dropped)
  source: Any  # gta: WindowData, synther: RowData
  log_probs: Any  # gta: log source-window probabilities (None = uniform)
  obs_mean: Any  # real-data observation normaliser (None = observations not normalised)
  obs_std: Any
  reward_scale: jax.Array
  reward_shift: jax.Array


@dataclasses.dataclass(frozen=True)
class Settings:
  """Static settings of a composed run (hashable)."""

  method: str  # gta | synther
  mode: str
  synthetic_ratio: float
  capacity: int
  round_size: int  # GTA windows / SynthER rows per round
  rows_per_round: int  # candidate transitions per round (round_size x (H - 1) for GTA)
  every: int
  warm_start: bool
  placement: str
  gta: gta.GenerationConfig | None = None
  sampler: samplers.SamplerConfig | None = None  # SynthER
  threshold: float = 0.5  # SynthER terminal threshold

  def evaluations_per_item(self) -> int:
    """Denoiser evaluations per generated window (GTA) or row (SynthER), guided passes counted."""
    if self.method == "gta":
      return samplers.num_evaluations(self.gta.sampler, self.gta.noising_ratio,
                                      self.gta.guidance_scale)
    return samplers.num_evaluations(self.sampler)


def is_composed(config) -> bool:
  return bool(str(config.augment.get("source", "") or ""))


def generator_workdir(config) -> str:
  src = str(config.augment.source)
  if not src.startswith(PREFIX) or not src[len(PREFIX):]:
    raise ValueError(f"config.augment.source={src!r}: expected 'generator:WORKDIR' (the workdir "
                     "of experiments/train_diffusion.py with a GTA or SynthER config) or ''")
  return src[len(PREFIX):]


def _positive_int(aug, name: str, allow_zero: bool = False) -> int:
  v = aug[name]
  if isinstance(v, bool) or int(v) != v or v < 0 or (v == 0 and not allow_zero):
    raise ValueError(f"config.augment.{name} must be a {'non-negative' if allow_zero else 'positive'}"
                     f" integer, got {v!r}")
  return int(v)


# ------------------------------------------------------------------------- the generator


def _same_dataset(a: str, b: str) -> bool:
  if a == b:
    return True
  base = lambda s: os.path.basename(str(s).split(":", 1)[-1])
  return base(a) == base(b)


def load_generator(config, ds: OfflineDataset):
  """(generator config, frozen DiffusionState, method source data, checkpoint step) of
  `augment.source`, checked against the offline run's dataset `ds`."""
  workdir = generator_workdir(config)
  if not os.path.isdir(workdir):
    raise ValueError(f"config.augment.source: {workdir} is not a directory (expected the workdir "
                     "of experiments/train_diffusion.py)")
  gconfig = config_io.load_config(workdir)
  method = gconfig.get("method", None)
  if method not in ("gta", "synther"):
    raise ValueError(f"config.augment.source: {workdir}/config.json is not a GTA or SynthER "
                     f"generator run (method={method!r}); train one with "
                     "experiments/train_diffusion.py --config=configs/gta.py:...")
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None)
  step = int(gconfig.get("checkpoint_step", -1))
  if step < 0:
    step = ckpt.latest_step()
  if step is None or step not in ckpt.all_steps():
    ckpt.close()
    raise ValueError(f"config.augment.source: {workdir}/checkpoints has no checkpoint "
                     f"{'' if step is None else step} to generate from; train the generator first")
  meta = ckpt.restore_meta(step)
  ckpt.close()
  trained_on, trained_size = meta.get("dataset", gconfig.get("dataset")), meta.get("dataset_size")
  if not _same_dataset(str(trained_on), str(config.dataset)) or (
      trained_size is not None and int(trained_size) != len(ds)):
    raise ValueError(
        f"config.augment.source: the generator in {workdir} was trained on {trained_on!r} "
        f"({trained_size} transitions); this run trains on config.dataset={config.dataset!r} "
        f"({len(ds)} transitions). Use a generator trained on the same dataset")
  from jaxaug.augment import pipeline  # pylint: disable=g-import-not-at-top  (pipeline imports loop)
  data = pipeline.method_module(gconfig).prepare(ds, gconfig)
  try:
    state, step = pipeline.restore_generator(gconfig, workdir, data)
  except ValueError as e:
    raise ValueError(
        f"config.augment.source: the generator in {workdir} does not fit this dataset's "
        f"dimensions (obs_dim {ds.obs_dim}, act_dim {ds.act_dim}) or its own config: {e}") from e
  # Only the EMA parameters generate; drop the rest (they would double the device memory).
  state = state.replace(params=None, opt_state=None)
  return gconfig, state, data, int(step)


def settings_from_config(config, gconfig, num_windows: int | None = None) -> Settings:
  aug = config.augment
  mode = aug.mode
  if mode not in MODES:
    raise ValueError(f"config.augment.mode must be one of {MODES} with augment.source, got "
                     f"{mode!r}")
  ratio = float(aug.synthetic_ratio)
  if mode == "mix" and not 0.0 <= ratio <= 1.0:
    raise ValueError(f"config.augment.synthetic_ratio must be in [0, 1], got {ratio}")
  placement = aug.round_placement
  if placement not in PLACEMENTS:
    raise ValueError(f"config.augment.round_placement must be one of {PLACEMENTS}, got "
                     f"{placement!r}")
  every = _positive_int(aug, "every")
  k = int(config.updates_per_dispatch)
  if placement == "dispatch" and every % k:
    raise ValueError(f"config.augment.every={every} must be a multiple of "
                     f"config.updates_per_dispatch={k} with augment.round_placement='dispatch' "
                     "(rounds run between dispatches); or use round_placement='scan'")
  method = gconfig.method
  round_size = _positive_int(aug, "round_size", allow_zero=True)
  capacity = _positive_int(aug, "capacity", allow_zero=True) or int(gconfig.num_transitions)
  if method == "gta":
    gen = gta.generation_config(gconfig)
    round_size = round_size or gen.windows_per_chunk
    rows = round_size * (int(gconfig.gta.horizon) - 1)
    kw = dict(gta=gen)
  else:
    round_size = round_size or int(gconfig.samples_per_chunk)
    rows = round_size
    kw = dict(sampler=synther.sampler_config(gconfig),
              threshold=float(gconfig.synther.terminal_threshold))
  if rows > capacity:
    raise ValueError(f"config.augment.capacity={capacity} is smaller than one generation round "
                     f"({rows} transitions from augment.round_size={round_size}); raise the "
                     "capacity or lower the round size")
  return Settings(method=method, mode=mode, synthetic_ratio=ratio, capacity=capacity,
                  round_size=round_size, rows_per_round=rows, every=every,
                  warm_start=bool(aug.warm_start), placement=placement, **kw)


# ------------------------------------------------------------------------- one round (pure)


def generate_raw(s: Settings, gen: GenData, key: jax.Array, mesh=None
                 ) -> tuple[Transitions, jax.Array]:
  """One round's candidate transitions (rows_per_round, raw units) and their validity (bool).

  GTA rows come window by window in time order, as the staged path writes them; `timeouts` = 1
  on a window's last valid non-terminal transition (each window is its own pseudo-episode).
  """
  if s.method == "gta":
    out = gta.generate_windows(gen.model, gen.source, key, gen.log_probs, s.gta, s.round_size,
                               mesh)
    valid = out["valid"]  # (B, n)
    n = valid.shape[1]
    n_valid = valid.sum(axis=1)
    last = jnp.arange(n)[None, :] == (n_valid - 1)[:, None]
    timeouts = (last & (out["terminals"] < 0.5)).astype(jnp.float32)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    rows = Transitions(observations=flat(out["observations"]), actions=flat(out["actions"]),
                       rewards=flat(out["rewards"]),
                       next_observations=flat(out["next_observations"]),
                       terminals=flat(out["terminals"]), timeouts=flat(timeouts))
    valid = flat(valid)
  else:
    out = synther.generate_rows(gen.model, gen.source, key, s.sampler, s.round_size,
                                s.threshold, mesh)
    rows = Transitions(**{f: out[f] for f in ("observations", "actions", "rewards",
                                               "next_observations", "terminals", "timeouts")})
    valid = jnp.ones((s.round_size,), bool)
  finite = jax.tree.reduce(
      lambda a, b: a & b,
      jax.tree.map(lambda x: jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1), rows))
  return rows, valid & finite


def normalize_rows(gen: GenData, rows: Transitions) -> Transitions:
  """The real data's normalisation (observations; reward transform), as the staged path does
  on the host before training."""
  obs, nxt = rows.observations, rows.next_observations
  if gen.obs_mean is not None:
    obs = (obs - gen.obs_mean) / gen.obs_std
    nxt = (nxt - gen.obs_mean) / gen.obs_std
  return rows.replace(observations=obs, next_observations=nxt,
                      rewards=rows.rewards * gen.reward_scale + gen.reward_shift)


def write(buf: replay.ReplayBuffer, rows: Transitions, valid: jax.Array, wrap: bool = True
          ) -> tuple[replay.ReplayBuffer, jax.Array]:
  """Write the valid rows, in order, at the ring's pointer; returns (buffer, rows written).

  Invalid rows are skipped (the rows after them move up). With wrap=False rows that would pass
  the end of the buffer are dropped instead of overwriting its oldest rows (the warm-start
  fill). Needs len(rows) <= capacity (no slot is written twice).
  """
  count = jnp.sum(valid.astype(jnp.int32))
  written = count if wrap else jnp.minimum(count, buf.capacity - buf.ptr)
  return replay.add_masked(buf, rows, valid, wrap=wrap), written.astype(jnp.int32)


def generation_round(s: Settings, aug: AugState, gen: GenData, wrap: bool = True, mesh=None
                     ) -> AugState:
  rng, key = jax.random.split(aug.rng)
  rows, valid = generate_raw(s, gen, key, mesh)
  buf, written = write(aug.buffer, normalize_rows(gen, rows), valid, wrap)
  return aug.replace(buffer=buf, rng=rng, rounds=aug.rounds + 1,
                     generated=aug.generated + written)


def fill(s: Settings, aug: AugState, gen: GenData, mesh=None) -> AugState:
  """Rounds (without wrapping) until the buffer is full (warm start). A bound on the number of
  rounds stops a generator whose rows are all invalid (non-finite) from looping forever."""
  max_rounds = 4 * math.ceil(s.capacity / s.rows_per_round) + 1
  start = aug.rounds

  def cond(a):
    return (a.buffer.size < s.capacity) & (a.rounds - start < max_rounds)

  return jax.lax.while_loop(cond, lambda a: generation_round(s, a, gen, False, mesh), aug)


def round_due(s: Settings, update: Any) -> Any:
  """A round runs before update `update` (0-based) when it is a multiple of `every` (update 0
  only without warm start: the warm fill already provides that round's data)."""
  if s.warm_start:
    return (update % s.every == 0) & (update > 0)
  return update % s.every == 0


# ------------------------------------------------------------------------- sampling


def sample_union(real: Transitions, buf: replay.ReplayBuffer, key: jax.Array, n: int
                 ) -> Transitions:
  """Uniform rows over real ∪ filled buffer rows: index i < N_real is real row i, else buffer row
  i - N_real, i.e. exactly what sampling the concatenated [real, generated] dataset draws."""
  n_real = real.rewards.shape[0]
  idx = jax.random.randint(key, (n,), 0, n_real + buf.size)
  is_real = idx < n_real
  r = jax.tree.map(lambda x: x[jnp.minimum(idx, n_real - 1)], real)
  g = jax.tree.map(lambda x: x[jnp.clip(idx - n_real, 0, buf.capacity - 1)], buf.data)
  pick = lambda a, b: jnp.where(is_real.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
  return jax.tree.map(pick, r, g)


def make_sample_fn(s: Settings) -> Callable[[Any, jax.Array, int], Transitions]:
  """sample_fn((real, buffer), key, n) of `augment.mode`."""
  if s.mode == "concat":
    return lambda d, key, n: sample_union(d[0], d[1], key, n)
  if s.mode == "replace":
    return lambda d, key, n: replay.sample(d[1], key, n)
  ratios = (1.0 - s.synthetic_ratio, s.synthetic_ratio)
  return lambda d, key, n: replay.sample_mixed(d, ratios, key, n)


# ------------------------------------------------------------------------- wiring


@dataclasses.dataclass
class Composed:
  """What train_offline needs to run a composed job (see `build`)."""

  settings: Settings
  data: dict  # {"real": Transitions, "gen": GenData}
  sample_fn: Callable
  hooks: LoopHooks
  wrap_init: Callable[[Callable], Callable]
  wrap_update: Callable[[Callable], Callable]
  meta: dict
  gconfig: Any


def init_aug(s: Settings, key: jax.Array, obs_dim: int, act_dim: int) -> AugState:
  z = jnp.zeros((), jnp.int32)
  return AugState(buffer=replay.init_buffer(obs_dim, act_dim, s.capacity),
                  rng=jax.random.fold_in(key, RNG_SALT), updates=z, rounds=z, generated=z)


def build(config, ds: OfflineDataset, real: Transitions, obs_stats, reward_tf, mesh=None,
          num_seeds: int = 1) -> Composed:
  """Restore the generator of `config.augment.source` and build the composed run's pieces."""
  if config.augment.get("path", ""):
    raise ValueError("config.augment.path and config.augment.source are exclusive: path trains "
                     "on a staged generated file, source generates inside the run; set one")
  gconfig, model, source, step = load_generator(config, ds)
  s = settings_from_config(config, gconfig)
  if s.placement == "scan" and num_seeds > 1:
    logging.warning("augment.round_placement='scan' with num_seeds=%d: under vmap the round's "
                    "lax.cond becomes a select and generates on every update; "
                    "round_placement='dispatch' avoids that", num_seeds)
  log_probs = None
  if s.method == "gta":
    probs = gta.window_probabilities(source, gconfig)
    if probs is not None:
      with np.errstate(divide="ignore"):
        log_probs = jnp.asarray(np.log(np.asarray(probs)), jnp.float32)
    if mesh is not None and s.round_size % mesh.devices.size:
      raise ValueError(f"config.augment.round_size={s.round_size} windows must be divisible by "
                       f"the number of devices ({mesh.devices.size})")
  elif mesh is not None and s.round_size % mesh.devices.size:
    raise ValueError(f"config.augment.round_size={s.round_size} rows must be divisible by the "
                     f"number of devices ({mesh.devices.size})")
  gen = GenData(
      model=model, source=source, log_probs=log_probs,
      obs_mean=None if obs_stats is None else jnp.asarray(obs_stats.mean, jnp.float32),
      obs_std=None if obs_stats is None else jnp.asarray(obs_stats.std, jnp.float32),
      reward_scale=jnp.asarray(reward_tf.scale, jnp.float32),
      reward_shift=jnp.asarray(reward_tf.shift, jnp.float32))
  # Shard the generation batch like the policy batch (single-seed runs; under vmap the seed axis
  # is the parallel one, as in the loop).
  gmesh = mesh if (mesh is not None and mesh.devices.size > 1 and num_seeds == 1) else None

  def wrap_init(init_fn):
    def init(key):
      return ComposedState(agent=init_fn(key), aug=init_aug(s, key, ds.obs_dim, ds.act_dim))
    return init

  def wrap_update(update_fn):
    def update(state, batch, key):
      agent, metrics = update_fn(state.agent, batch, key)
      return state.replace(agent=agent), metrics
    return update

  def before_update(state, data):
    aug = state.aug
    if s.placement == "scan":
      aug = jax.lax.cond(round_due(s, aug.updates),
                         lambda a: generation_round(s, a, data["gen"], True, gmesh),
                         lambda a: a, aug)
    aug = aug.replace(updates=aug.updates + 1)
    return state.replace(aug=aug), (data["real"], aug.buffer)

  # Separate programs between dispatches: the warm fill, and (placement 'dispatch') one round.
  def fill_state(state, data):
    return state.replace(aug=fill(s, state.aug, data["gen"], gmesh))

  def round_state(state, data):
    return state.replace(aug=generation_round(s, state.aug, data["gen"], True, gmesh))

  def compile_between(fn):
    if num_seeds > 1:
      fn = jax.vmap(fn, in_axes=(0, None))
    if mesh is None:
      return jax.jit(fn, donate_argnums=0)
    rep = mesh_lib.replicated_sharding(mesh)
    return jax.jit(fn, donate_argnums=0, in_shardings=(rep, rep), out_shardings=rep)

  fill_jit = compile_between(fill_state)
  round_jit = compile_between(round_state)

  def between_dispatches(state, data, step):
    if step == 0 and s.warm_start:
      state = fill_jit(state, data)
    # every is a multiple of K here: the only update of this dispatch a round can precede is
    # its first.
    if s.placement == "dispatch" and round_due(s, step):
      state = round_jit(state, data)
    return state

  meta = {"generator": {"workdir": os.path.abspath(generator_workdir(config)),
                        "method": s.method, "checkpoint_step": step,
                        "evaluations_per_item": s.evaluations_per_item()}}
  return Composed(settings=s, data={"real": real, "gen": gen}, sample_fn=make_sample_fn(s),
                  hooks=LoopHooks(before_update=before_update,
                                  between_dispatches=between_dispatches),
                  wrap_init=wrap_init, wrap_update=wrap_update, meta=meta, gconfig=gconfig)


def total_generated(s: Settings, num_steps: int) -> int:
  """Upper bound on the transitions a run generates (exact when every row is valid)."""
  rounds = sum(1 for u in range(0, num_steps, s.every) if not (s.warm_start and u == 0))
  return (s.capacity if s.warm_start else 0) + rounds * s.rows_per_round
