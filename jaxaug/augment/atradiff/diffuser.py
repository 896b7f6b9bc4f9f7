"""ATraDiff's diffuser: M state-conditioned EDM generators of fixed lengths k, a length
estimator and the pruner, and the batched generation calls (ATraDiff Sec. 4.1-4.2, App. A.2).

Each generator models windows x = k rows of [s, a, r] (flattened, k * D values) conditioned on
the window's first state (and optionally a one-hot task id), with SynthER's residual-MLP
denoiser (App. A.2: "we directly refer to the architecture used in SynthER") trained by the EDM
learner of `jaxaug.diffusion.train`.

`generate_into` is one online generation round in ONE jittable call: it estimates each queued
start state's needed length, routes the state to the generator of that length, samples each
generator only on the states routed to it (fixed-size chunks in a while_loop, so shapes stay
static while the per-generator counts are data-dependent), prunes, and appends the kept
transitions to the synthetic replay buffer. The first generated state is replaced by the true
start state (s_1 = s'). `synthesize` is the unrouted reference (every generator on the whole
queue, then the chosen one picked per state: M - 1 of every M sampled windows are thrown
away). Both share one copy
of the per-trajectory post-processing (`finish_trajectories`).

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
from jaxaug.data import replay
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
  """Trains the M generators and the length estimator on `ds` (Sec. 4.1), in memory.

  Runs the stages of jaxaug.augment.atradiff.training (one run_training run per generator, then
  the estimator) without a directory: nothing is written or resumed (`training.train_or_restore`
  is the resumable form). With train=False only initialises them (a restore target of the
  right structure). `log_fn(name, steps, value)` receives each stage's final loss.
  """
  from jaxaug.augment.atradiff import training  # pylint: disable=g-import-not-at-top
  if not train:
    return training.init_diffuser(key, ds, config, task_ids)
  diffuser, _ = training.train_stages(config, ds, key, None, task_ids=task_ids, log_fn=log_fn)
  return diffuser


# ---------------------------------------------------------------------------------- synthesis

def _inpaint_first_state(den, first: jax.Array):
  """D'(x, sigma) = D(x, sigma) with the first state entries set to the (normalised) start
  state: the sampler's ODE then pulls row 0 onto it and the network sees a consistent row 0."""
  n = first.shape[-1]

  def wrapped(x, sigma, cond=None, use_cond=None):
    out = den(x, sigma, cond, use_cond)
    return out.at[:, :n].set(first.astype(out.dtype))

  return wrapped


def chunk_key(key: jax.Array, generator: int | jax.Array, chunk: int | jax.Array) -> jax.Array:
  """Sampling key of one generator call: chunk `chunk` of generator `generator` (its index in
  `spec.lengths`) within the generation call keyed by `key`.

  `generate_windows` / `synthesize` sample generator j once on the whole queue with chunk 0's
  key, so a routed call (`generate_into`) whose single chunk of generator j holds the same
  states in the same order draws exactly the same noise."""
  return jax.random.fold_in(jax.random.fold_in(key, generator), chunk)


def sample_generator(diffuser: Diffuser, j: int, key: jax.Array, cond: jax.Array,
                     params=None) -> jax.Array:
  """Generator j (static index) alone on a batch of conditions: normalised windows (B, k_j, D).
  `params`: the generator's sampling parameters (None: its EMA parameters)."""
  spec = diffuser.spec
  k_len = spec.lengths[j]
  den = dtrain.denoiser(diffuser.generators[j], ema=True, params=params)
  if spec.inpaint_first_state:
    den = _inpaint_first_state(den, cond[:, :spec.obs_dim])
  x = samplers.heun_sample(den, key, (cond.shape[0], k_len * spec.row_dim), spec.sampler,
                           cond=cond)
  return x.reshape(cond.shape[0], k_len, spec.row_dim)


def generate_windows(diffuser: Diffuser, key: jax.Array, cond: jax.Array,
                     generator_params: tuple | None = None) -> list[jax.Array]:
  """Every generator on the whole batch: list of normalised windows (B, k, D), one per length."""
  m = len(diffuser.spec.lengths)
  params = (None,) * m if generator_params is None else tuple(generator_params)
  return [sample_generator(diffuser, j, chunk_key(key, j, 0), cond, params[j]) for j in range(m)]


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


def route(diffuser: Diffuser, cond: jax.Array) -> jax.Array:
  """(B,) int32 index into `spec.lengths` of each state's generator: the length estimator's
  needed length rounded up to a preset (Sec. 4.1)."""
  return alength.round_up_to_preset(alength.predict(diffuser.estimator, cond),
                                    diffuser.spec.lengths)


def kept_lengths(diffuser: Diffuser, windows: jax.Array) -> jax.Array:
  """The pruner on normalised windows (B, k, D): (B,) transitions to keep (1..k-1)."""
  spec = diffuser.spec
  return pruner.prune_lengths(windows[:, :, :spec.obs_dim], spec.prune_min_gap, spec.prune_rule)


def finish_trajectories(diffuser: Diffuser, windows: jax.Array, kept: jax.Array,
                        start_states: jax.Array, valid: jax.Array,
                        terminal_fn: Callable[[jax.Array], jax.Array] | None = None,
                        max_action: float | None = None, clip_actions: bool = True):
  """Per-trajectory post-processing shared by `synthesize` and `generate_into`.

  windows (B, k, D) normalised, kept (B,) pruned lengths, start_states (B, obs_dim) raw, valid
  (B,) bool. Denormalises, imposes the true start state on row 0 (s_1 = s'), ends a trajectory
  at its first terminal transition under `terminal_fn` (stored with terminal = 1), flags the
  last kept transition of every other trajectory as a timeout, counts (and with
  `clip_actions` clips) actions outside [-max_action, max_action].

  Returns (transitions with B * (k - 1) rows, row b * (k - 1) + i being transition i of
  trajectory b; mask (B * (k - 1),) rows to store; info {'length': (B,) kept transitions, 0
  where invalid; with max_action 'out_of_range_rows' / 'out_of_range_entries' counted on the
  stored rows before clipping}).
  """
  spec = diffuser.spec
  b, k = windows.shape[:2]
  length = jnp.where(valid, kept, 0)
  raw = windows * diffuser.stats.std + diffuser.stats.mean
  states = raw[:, :, :spec.obs_dim].at[:, 0].set(start_states)
  actions = raw[:, :-1, spec.obs_dim:spec.obs_dim + spec.act_dim]
  rewards = raw[:, :-1, -1]
  j = jnp.arange(k - 1)[None, :]
  terminals = jnp.zeros((b, k - 1), bool)
  if terminal_fn is not None:
    term = terminal_fn(states[:, 1:])  # (B, k-1): transition j ends in a terminal state
    first = jnp.where(term.any(axis=1), jnp.argmax(term, axis=1), k)
    length = jnp.minimum(length, first + 1)  # nothing is stored after a terminal
    terminals = term & (j == first[:, None])
  mask = j < length[:, None]
  terminals = terminals & mask  # a terminal after the pruned end is not stored
  info = {"length": length}
  if max_action is not None:
    outside = (jnp.abs(actions) > max_action) & mask[:, :, None]
    info["out_of_range_entries"] = jnp.sum(outside, dtype=jnp.int32)
    info["out_of_range_rows"] = jnp.sum(outside.any(axis=-1), dtype=jnp.int32)
    if clip_actions:
      actions = jnp.clip(actions, -max_action, max_action)
  last = (j == (length[:, None] - 1)) & ~terminals
  n = b * (k - 1)
  flat = lambda x: x.reshape((n,) + x.shape[2:])
  transitions = Transitions(
      observations=flat(states[:, :-1]), actions=flat(actions), rewards=flat(rewards),
      next_observations=flat(states[:, 1:]), terminals=flat(terminals.astype(jnp.float32)),
      timeouts=flat(last.astype(jnp.float32)))
  return transitions, flat(mask), info


def synthesize(diffuser: Diffuser, key: jax.Array, start_states: jax.Array, valid: jax.Array,
               task_ids: jax.Array | None = None,
               terminal_fn: Callable[[jax.Array], jax.Array] | None = None,
               max_action: float | None = None, clip_actions: bool = True):
  """Synthetic trajectories from a queue of raw start states, every generator on every state
  (jit it). The unrouted reference of `generate_into`, which samples only the chosen generator
  per state; kept for analyses that look at the flat output (experiments/atradiff_quality.py).

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
  choice = route(diffuser, cond)
  padded, kept = [], []
  for k_len, w in zip(spec.lengths, generate_windows(diffuser, key, cond)):
    kept.append(kept_lengths(diffuser, w))
    if k_len < kmax:  # rows past k_len - 1 are never stored (kept <= k_len - 1)
      w = jnp.concatenate([w, jnp.repeat(w[:, -1:], kmax - k_len, axis=1)], axis=1)
    padded.append(w)
  w = jnp.stack(padded)[choice, jnp.arange(q)]  # (Q, K, D)
  length = jnp.stack(kept)[choice, jnp.arange(q)]
  transitions, mask, info = finish_trajectories(diffuser, w, length, start_states, valid,
                                                terminal_fn, max_action, clip_actions)
  info["generator"] = choice
  return transitions, mask, info


def generate_into(diffuser: Diffuser, gen_params: tuple | None, synthetic: replay.ReplayBuffer,
                  key: jax.Array, queue: jax.Array, count: jax.Array,
                  task_ids: jax.Array | None, *, bucket_size: int,
                  terminal_fn: Callable[[jax.Array], jax.Array] | None = None,
                  max_action: float | None = None, clip_actions: bool = True):
  """One generation round, routed: each start state is sampled by its chosen generator only,
  and the kept transitions are written into `synthetic` (pure; jit it with `bucket_size`,
  `terminal_fn`, `max_action`, `clip_actions` static).

  The first `count` rows of `queue` (Qc, obs_dim) are the round's raw start states. Each goes
  to the generator the length estimator selects (`route`). For generator j (a static loop over
  the M lengths) the n_j states routed to it are processed in queue order, in ceil(n_j /
  bucket_size) chunks of `bucket_size` (a while_loop: n_j is traced, the shapes are not), each
  chunk sampled with `chunk_key(key, j, chunk)`, pruned, post-processed by
  `finish_trajectories` (the same code `synthesize` uses) and appended with
  `replay.add_masked`. Every valid state is generated in this call; the sampled work is
  sum_j ceil(n_j / bucket_size) * bucket_size trajectories instead of M * Qc.

  Write order: generator by generator (in `spec.lengths` order), within a generator in queue
  order, each trajectory's kept transitions consecutively.

  `gen_params`: per-generator sampling parameters (tuple of M; online adaptation's), None for
  the generators' EMA parameters. `task_ids`: (Qc,) int32 (used with num_tasks > 0).

  Returns (synthetic, info) with device values only: 'length' (Qc,) kept transitions per queue
  slot (0 for slots >= count), 'generator' (Qc,) chosen generator index (-1 for slots >=
  count), 'trajectories' (valid states), 'transitions' (rows written), 'chunks' (generator
  calls run), with max_action also 'out_of_range_rows' / 'out_of_range_entries' (counted
  before clipping, as in `synthesize`).
  """
  spec = diffuser.spec
  m = len(spec.lengths)
  b = int(bucket_size)
  if b < 1:
    raise ValueError(f"generate_into: bucket_size must be a positive integer, got {bucket_size}")
  if gen_params is None:
    gen_params = (None,) * m
  elif len(gen_params) != m:
    raise ValueError(f"generate_into: gen_params has {len(gen_params)} entries, expected one per "
                     f"generator length {spec.lengths}")
  qc = queue.shape[0]
  padded_q = -(-qc // b) * b  # chunk starts never run past the index list
  valid = jnp.arange(qc) < count
  cond = condition(diffuser, queue, task_ids)
  choice = route(diffuser, cond)
  zero = jnp.zeros((), jnp.int32)
  carry = (synthetic, jnp.zeros((qc,), jnp.int32), zero, zero, zero)  # buf, length, oor x2, chunks
  for j in range(m):
    member = valid & (choice == j)
    n_j = jnp.sum(member, dtype=jnp.int32)
    order = jnp.nonzero(member, size=padded_q, fill_value=0)[0].astype(jnp.int32)
    num_chunks = (n_j + b - 1) // b

    def body(state, j=j, n_j=n_j, order=order):
      c, (buf, length, oor_rows, oor_entries, chunks) = state
      idx = jax.lax.dynamic_slice(order, (c * b,), (b,))
      ok = c * b + jnp.arange(b) < n_j
      w = sample_generator(diffuser, j, chunk_key(key, j, c), cond[idx], gen_params[j])
      tr, mask, inf = finish_trajectories(diffuser, w, kept_lengths(diffuser, w), queue[idx],
                                          ok, terminal_fn, max_action, clip_actions)
      buf = replay.add_masked(buf, tr, mask)
      length = length.at[jnp.where(ok, idx, qc)].set(inf["length"], mode="drop")
      if max_action is not None:
        oor_rows = oor_rows + inf["out_of_range_rows"]
        oor_entries = oor_entries + inf["out_of_range_entries"]
      return c + 1, (buf, length, oor_rows, oor_entries, chunks + 1)

    _, carry = jax.lax.while_loop(lambda s, n=num_chunks: s[0] < n, body, (zero, carry))
  synthetic, length, oor_rows, oor_entries, chunks = carry
  info = {"length": length, "generator": jnp.where(valid, choice, -1),
          "trajectories": jnp.sum(valid, dtype=jnp.int32),
          "transitions": jnp.sum(length, dtype=jnp.int32), "chunks": chunks}
  if max_action is not None:
    info["out_of_range_rows"] = oor_rows
    info["out_of_range_entries"] = oor_entries
  return synthetic, info
