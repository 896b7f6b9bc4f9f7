"""ATraDiff's diffuser: M state-conditioned EDM generators of fixed lengths k, a length
estimator and the pruner, and the one batched synthesis call (ATraDiff Sec. 4.1-4.2, App. A.2).

Each generator models windows x = k rows of [s, a, r] (flattened, k * D values) conditioned on
the window's first state (and optionally a one-hot task id), with SynthER's residual-MLP
denoiser (App. A.2: "we directly refer to the architecture used in SynthER") trained by the EDM
learner of `jaxaug.diffusion.train`.

`synthesize` turns a fixed-size queue of start states into synthetic transitions in ONE jitted
call: it estimates each state's needed length, runs every generator on the whole queue (a static
Python loop over the M lengths: under jit, per-state routing to one generator would need
data-dependent shapes; with M = 5 small generators the extra evaluations are cheaper than M
dispatches), picks each state's generator, prunes, and flattens the kept transitions with a
validity mask. The first generated state is replaced by the true start state (s_1 = s').

Rewards of synthetic transitions are the generated ones (ICML version, Sec. 4.1: the diffuser
produces states, actions and rewards); the ICLR version queried the true environment instead.
The generator has no terminal channel: the pruner decides where a trajectory ends, and the last
kept transition of each trajectory is flagged as a timeout so that episode-aware consumers see
where it stops. With a termination rule (`terminal_fn`, jaxaug.envs.termination; the online
config's `atradiff.terminal_fn = "env"`) a trajectory also ends at its first generated terminal
state, stored with terminal = 1; without one every synthetic transition has terminal = 0.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxaug.augment.atradiff import data as adata
from jaxaug.augment.atradiff import length as alength
from jaxaug.augment.atradiff import pruner
from jaxaug.data.dataset import OfflineDataset, Transitions
from jaxaug.data.normalize import NormStats
from jaxaug.diffusion import samplers
from jaxaug.diffusion import train as dtrain
from jaxaug.envs import termination


@dataclasses.dataclass(frozen=True)
class DiffuserSpec:
  """Static description of a diffuser (hashable)."""

  obs_dim: int
  act_dim: int
  lengths: tuple[int, ...]  # sorted preset generator lengths k
  num_tasks: int = 0
  sampler: samplers.SamplerConfig = samplers.SamplerConfig()
  prune_min_gap: float = 0.1
  prune_rule: str = "signed"  # pruner.RULES
  # Replace the first state of the denoised estimate by the start state at every sampler step
  # (inpainting), so that the rest of the window is generated consistently with it.
  inpaint_first_state: bool = False

  @property
  def row_dim(self) -> int:
    return adata.row_dim(self.obs_dim, self.act_dim)

  @property
  def cond_dim(self) -> int:
    return self.obs_dim + max(self.num_tasks, 0)

  @property
  def max_length(self) -> int:
    return max(self.lengths)


class Diffuser(flax.struct.PyTreeNode):
  generators: tuple  # DiffusionState per length, in `spec.lengths` order
  estimator: alength.EstimatorState
  stats: NormStats  # row statistics ([s, a, r])
  spec: DiffuserSpec = flax.struct.field(pytree_node=False)


def spec_from_config(config: ml_collections.ConfigDict, obs_dim: int, act_dim: int) -> DiffuserSpec:
  lengths = tuple(sorted(int(k) for k in config.lengths))
  if not lengths or min(lengths) < 2 or len(set(lengths)) != len(lengths):
    raise ValueError(f"config.atradiff.lengths must be distinct integers >= 2, got "
                     f"{list(config.lengths)}")
  sampler = samplers.SamplerConfig(num_steps=int(config.num_sample_steps),
                                   s_churn=float(config.s_churn))
  return DiffuserSpec(obs_dim=obs_dim, act_dim=act_dim, lengths=lengths,
                      num_tasks=int(config.num_tasks), sampler=sampler,
                      prune_min_gap=float(config.prune_min_gap),
                      prune_rule=_prune_rule(config),
                      inpaint_first_state=bool(config.get("inpaint_first_state", False)))


def _prune_rule(config: ml_collections.ConfigDict) -> str:
  """`config.atradiff.prune_rule`; a config written before the field existed means "signed"."""
  rule = config.get("prune_rule", "signed")
  if rule not in pruner.RULES:
    raise ValueError(f"config.atradiff.prune_rule must be one of {pruner.RULES}, got {rule!r}")
  return rule


def diffusion_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The EDM learner's config (jaxaug.diffusion.train) for one generator."""
  c = dtrain.get_config()
  c.net = "resmlp"
  c.net_kwargs = ml_collections.ConfigDict(dict(width=int(config.denoiser_width),
                                                num_blocks=int(config.denoiser_blocks),
                                                dim_t=int(config.denoiser_dim_t)))
  c.num_steps = max(int(config.generator_steps), 1)
  c.learning_rate = float(config.generator_lr)
  c.ema_decay = float(config.ema_decay)
  c.ema_every = int(config.ema_every)
  return c


# ---------------------------------------------------------------------------------- training

def train_diffuser(key: jax.Array, ds: OfflineDataset, config: ml_collections.ConfigDict,
                   task_ids: np.ndarray | None = None,
                   log_fn: Callable[[str, int, float], None] | None = None,
                   train: bool = True) -> Diffuser:
  """Trains the M generators and the length estimator on `ds` (Sec. 4.1).

  With train=False only initialises them (a restore target of the right structure).
  """
  spec = spec_from_config(config, ds.obs_dim, ds.act_dim)
  stats = adata.fit_row_stats(ds)
  windows = adata.build_window_data(ds, stats, spec.max_length, task_ids)
  dcfg = diffusion_config(config)
  batch_size = int(config.generator_batch_size)
  steps = int(config.generator_steps)
  chunk = max(1, min(int(config.steps_per_dispatch), steps))
  keys = jax.random.split(key, len(spec.lengths) + 1)
  gens = []
  for k_len, gkey in zip(spec.lengths, keys[:-1]):
    sample = lambda kk, k_len=k_len: adata.sample_window_batch(
        windows, kk, batch_size, k_len, spec.obs_dim, spec.num_tasks)
    k_init, k_train = jax.random.split(gkey)
    state = dtrain.init(k_init, sample(k_init), dcfg)
    multi = jax.jit(dtrain.make_multi_update(chunk, sample))
    done = 0
    while train and done < steps:
      k_train, k = jax.random.split(k_train)
      state, m = multi(state, k)
      done += chunk
      if log_fn is not None:
        log_fn(f"generator_k{k_len}/loss", done, float(m["loss"]))
    gens.append(state)

  est = alength.init_estimator(keys[-1], spec.cond_dim, spec.lengths,
                               tuple(config.estimator_hidden_dims),
                               float(config.estimator_lr))

  def est_step(s, kk):
    index = jax.random.randint(kk, (batch_size,), 0, windows.starts.shape[0])
    first = windows.rows[windows.starts[index], :spec.obs_dim]
    cond = adata.make_condition(first, windows.task_ids[index], spec.num_tasks)
    return alength.update(s, cond, windows.remaining[index])

  est_steps = int(config.estimator_steps)
  if train and est_steps > 0:
    est, losses = jax.jit(lambda s, kk: jax.lax.scan(est_step, s, jax.random.split(kk, est_steps)))(
        est, jax.random.fold_in(keys[-1], 1))
    if log_fn is not None:
      log_fn("estimator/loss", est_steps, float(losses[-1]))
  return Diffuser(generators=tuple(gens), estimator=est, stats=stats, spec=spec)


# ---------------------------------------------------------------------------------- synthesis

def _inpaint_first_state(den, first: jax.Array):
  """D'(x, sigma) = D(x, sigma) with the first state entries set to the (normalised) start
  state: the sampler's ODE then pulls row 0 onto it and the network sees a consistent row 0."""
  n = first.shape[-1]

  def wrapped(x, sigma, cond=None, use_cond=None):
    out = den(x, sigma, cond, use_cond)
    return out.at[:, :n].set(first.astype(out.dtype))

  return wrapped


def generate_windows(diffuser: Diffuser, key: jax.Array, cond: jax.Array,
                     generator_params: tuple | None = None) -> list[jax.Array]:
  """Every generator on the whole batch: list of normalised windows (B, k, D), one per length."""
  spec = diffuser.spec
  b = cond.shape[0]
  keys = jax.random.split(key, len(spec.lengths))
  out = []
  for j, (k_len, gen) in enumerate(zip(spec.lengths, diffuser.generators)):
    params = None if generator_params is None else generator_params[j]
    den = dtrain.denoiser(gen, ema=True, params=params)
    if spec.inpaint_first_state:
      den = _inpaint_first_state(den, cond[:, :spec.obs_dim])
    x = samplers.heun_sample(den, keys[j], (b, k_len * spec.row_dim), spec.sampler, cond=cond)
    out.append(x.reshape(b, k_len, spec.row_dim))
  return out


def condition(diffuser: Diffuser, start_states: jax.Array,
              task_ids: jax.Array | None = None) -> jax.Array:
  """The generators' condition for raw start states: normalised state (+ one-hot task id)."""
  spec = diffuser.spec
  s_norm = (start_states - diffuser.stats.mean[:spec.obs_dim]) / diffuser.stats.std[:spec.obs_dim]
  if task_ids is None:
    task_ids = jnp.zeros((start_states.shape[0],), jnp.int32)
  return adata.make_condition(s_norm, task_ids, spec.num_tasks)


def terminal_fn_from_config(config: ml_collections.ConfigDict, env_id: str):
  """`config.atradiff.terminal_fn`: "env" -> the environment's termination rule, "none" -> None.

  A config without the field (written before it existed) means "none", the old behaviour."""
  mode = config.get("terminal_fn", "none")
  if mode not in ("env", "none"):
    raise ValueError(f"config.atradiff.terminal_fn must be 'env' or 'none', got {mode!r}")
  return termination.termination_fn(env_id) if mode == "env" else None


def synthesize(diffuser: Diffuser, key: jax.Array, start_states: jax.Array, valid: jax.Array,
               task_ids: jax.Array | None = None,
               terminal_fn: Callable[[jax.Array], jax.Array] | None = None,
               max_action: float | None = None, clip_actions: bool = True):
  """Synthetic trajectories from a queue of raw start states, in one call (jit it).

  Args:
    start_states: (Q, obs_dim) raw states s' (the queue, padded to a fixed size).
    valid: (Q,) bool, which queue entries are real.
    task_ids: (Q,) int task ids (only with num_tasks > 0).
    terminal_fn: optional termination rule on next states (jaxaug.envs.termination): a
      trajectory then ends at its first terminal transition, which is stored with terminal = 1
      (without it every transition is stored with terminal = 0, the paper's setting).
    max_action: the environment's action bound (actions live in [-max_action, max_action]).
      Given, the stored rows' out-of-range action entries are counted (info) and, with
      `clip_actions`, clipped to the bound: a generator trained on in-range actions still
      samples outside the range (its Gaussian noise is unbounded), and a critic trained on such
      rows is fitted on actions the policy can never take.

  Returns:
    transitions: Transitions with Q * (K - 1) rows (K = max length), row q * (K-1) + j being
      transition j of trajectory q;
    mask: (Q * (K - 1),) bool, the rows to store;
    info: {'length': (Q,) kept transitions per trajectory (0 where invalid),
      'generator': (Q,) index of the chosen length; with max_action also
      'out_of_range_rows' / 'out_of_range_entries': stored rows with an action outside the
      bound and such action entries, counted before clipping}.
  """
  spec = diffuser.spec
  q = start_states.shape[0]
  kmax = spec.max_length
  cond = condition(diffuser, start_states, task_ids)
  # 1. Needed length, rounded up to a preset (length estimator).
  choice = alength.round_up_to_preset(alength.predict(diffuser.estimator, cond), spec.lengths)
  # 2. Every generator on the whole queue; 3. prune each; 4. pick the chosen one per state.
  windows = generate_windows(diffuser, key, cond)
  padded, kept = [], []
  for k_len, w in zip(spec.lengths, windows):
    kept.append(pruner.prune_lengths(w[:, :, :spec.obs_dim], spec.prune_min_gap,
                                     spec.prune_rule))
    if k_len < kmax:
      w = jnp.concatenate([w, jnp.repeat(w[:, -1:], kmax - k_len, axis=1)], axis=1)
    padded.append(w)
  stacked = jnp.stack(padded)  # (M, Q, K, D)
  w = stacked[choice, jnp.arange(q)]  # (Q, K, D)
  length = jnp.stack(kept)[choice, jnp.arange(q)]
  length = jnp.where(valid, length, 0)
  raw = w * diffuser.stats.std + diffuser.stats.mean
  states = raw[:, :, :spec.obs_dim].at[:, 0].set(start_states)
  actions = raw[:, :-1, spec.obs_dim:spec.obs_dim + spec.act_dim]
  rewards = raw[:, :-1, -1]
  j = jnp.arange(kmax - 1)[None, :]
  terminals = jnp.zeros((q, kmax - 1), bool)
  if terminal_fn is not None:
    term = terminal_fn(states[:, 1:])  # (Q, K-1): transition j ends in a terminal state
    first = jnp.where(term.any(axis=1), jnp.argmax(term, axis=1), kmax)
    length = jnp.minimum(length, first + 1)  # nothing is stored after a terminal
    terminals = term & (j == first[:, None])
  mask = j < length[:, None]
  terminals = terminals & mask  # a terminal after the pruned end is not stored
  info = {"length": length, "generator": choice}
  if max_action is not None:
    outside = (jnp.abs(actions) > max_action) & mask[:, :, None]
    info["out_of_range_entries"] = jnp.sum(outside, dtype=jnp.int32)
    info["out_of_range_rows"] = jnp.sum(outside.any(axis=-1), dtype=jnp.int32)
    if clip_actions:
      actions = jnp.clip(actions, -max_action, max_action)
  last = (j == (length[:, None] - 1)) & ~terminals
  n = q * (kmax - 1)
  flat = lambda x: x.reshape((n,) + x.shape[2:])
  transitions = Transitions(
      observations=flat(states[:, :-1]), actions=flat(actions), rewards=flat(rewards),
      next_observations=flat(states[:, 1:]), terminals=flat(terminals.astype(jnp.float32)),
      timeouts=flat(last.astype(jnp.float32)))
  return transitions, flat(mask), info
