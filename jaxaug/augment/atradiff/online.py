"""ATraDiff in the online loop as pure functions over the loop's state (ATraDiff Sec. 4.2-4.3).

The online loop (jaxaug.train.online) carries one pytree; ATraDiff's part of it is `AugState`
(synthetic buffer D_s, the start-state queue, the generators' adapted parameters and optimiser
states, the importance buffers, counters and keys). `ATraDiff` holds the static settings and the
functions over that state, all jittable and free of host state:

* `store(aug, transitions, first_step)`: after the real rows are written into D_o, each row's
  next state s' is queued with probability rho / ((1 - rho) L) (never after a true terminal:
  nothing follows it). The draw for env step t is Bernoulli(fold_in(store_key, t)): made on the
  device, a pure function of the run's key and t, so a resumed run makes the same decisions.
* `generation_round(aug, const)`: every `generation_interval` env steps, every queued state is
  synthesised by the ONE generator its estimated length selects, in fixed-size calls of
  `bucket_size` states per generator (`diffuser.generate_into`), pruned, and written into D_s.
  The queue holds one interval's stores, so nothing is ever dropped and |D_s| / |D_o| follows
  rho / (1 - rho) (logged as `atradiff/synthetic_to_real` next to the target).
* `adaptation_round(aug, const, buf, agent_state)`: every `adapt_every` env steps (if `adapt`),
  the importance buffer is updated from the newest rows of D_o and every generator is fine-tuned
  in one call. Episodes (for the reward indicator) are read from D_o's terminal/timeout flags.
* sampling: the loop's one mixed sampler draws each row from D_s with probability rho
  (`replay.Blend`), after RLPD's offline share when there is one (jaxaug.train.online_state).

`setup` (host, once) loads the offline dataset, trains or restores the diffuser
(jaxaug.augment.atradiff.store), finds L by preliminary generation, and returns the settings and
the read-only arrays (`AugConst`: diffuser, training windows) that the functions take.

Differences from the paper, on purpose: generation is deferred to the next round (at most
`generation_interval` env steps late) so that it is batched; with `terminal_fn = "env"` (default)
synthetic trajectories end at their first terminal state under the environment's termination
rule, stored as terminal; with `clip_actions` (default) their actions are clipped to the action
range; the paper says neither (docs/methods/atradiff.md).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxaug.augment.atradiff import adapt as aadapt
from jaxaug.augment.atradiff import buffer as abuffer
from jaxaug.augment.atradiff import data as adata
from jaxaug.augment.atradiff import diffuser as adiff
from jaxaug.augment.atradiff import importance as aimp
from jaxaug.augment.atradiff import store as astore
from jaxaug.augment.atradiff import training as atraining
from jaxaug.data import replay
from jaxaug.data.dataset import OfflineDataset, Transitions
from jaxaug.data.loaders import load_dataset
from jaxaug.types import EnvSpec
from jaxaug.types import td_error_fn as td_error_fn_of

IMPORTANCE = ("td_error", "reward", "uniform")
# Device counters of AugState (int32), logged as atradiff/<name>.
COUNTERS = ("queued", "rounds", "trajectories", "synthetic_transitions", "generator_calls",
            "adapt_rounds", "clipped_rows", "clipped_entries")


def get_config() -> ml_collections.ConfigDict:
  """ATraDiff's hyperparameters (config.atradiff). Paper-named fields keep the paper's names."""
  c = ml_collections.ConfigDict()
  c.enabled = True
  c.offline_dataset = "embedded:hopper-medium-replay"  # trains the generators
  c.synthetic_ratio = 0.5  # rho: probability that a sampled row comes from D_s
  c.expected_length = 0.0  # L (transitions per synthetic trajectory); 0 = preliminary generation
  c.preliminary_samples = 256  # start states for the preliminary generation that sets L
  c.lengths = (5, 10, 15, 20, 25)  # preset generator lengths k
  c.num_tasks = 0  # > 0: the condition gets a one-hot task id
  c.task_id = 0  # this run's task (with num_tasks > 0)
  # Pruner (jaxaug.augment.atradiff.pruner). "paper": the printed rule, argmax |pre_i - suf_i|
  # with overlapping ranges, always cut. "signed" (+fixes presets): suf_i - pre_i on disjoint
  # ranges, the paper's stated assumption; it does not cut a window that starts slowly, and
  # keeps a window whole when no split beats prune_min_gap ("signed" only).
  c.prune_rule = "paper"
  c.prune_min_gap = 0.1
  c.synthetic_capacity = 1_000_000  # rows of D_s
  # Generation rounds: every generation_interval env steps, every start state queued since the
  # last round is synthesised, each by the one generator its estimated length selects, in
  # fixed-size calls of bucket_size states per generator (only the states routed to a generator
  # are generated by it; a round never drops a state).
  c.bucket_size = 16
  c.generation_interval = 100  # env steps between generation rounds
  c.generation_start = 0  # no generation before this env step
  # Generators: SynthER's residual MLP (App. A.2) trained with jaxaug.diffusion.train.
  c.denoiser_width = 512
  c.denoiser_blocks = 4
  c.denoiser_dim_t = 128
  c.generator_steps = 20_000
  c.generator_batch_size = 256
  c.generator_lr = 3e-4
  # Cadence of the diffuser's training stages (jaxaug.augment.atradiff.training): updates
  # between logged losses and between checkpoints (0 = only at a stage's end). They change
  # nothing that is trained (rounded to whole dispatches).
  c.generator_log_every = 1000
  c.generator_checkpoint_every = 5000
  c.ema_decay = 0.995
  c.ema_every = 10
  c.steps_per_dispatch = 200
  c.num_sample_steps = 32  # EDM Heun steps (SynthER: 128)
  c.inpaint_first_state = False  # True: start state imposed on the denoised estimate each step
  # "env": end synthetic trajectories at the first state the environment's termination rule
  # calls terminal and store that transition as terminal (jaxaug.envs.termination); "none":
  # every synthetic transition has terminal = 0 (the paper does not say; BUILD_NOTES.md).
  c.terminal_fn = "env"
  # Clip synthetic actions to the environment's action range before they are stored (the paper
  # does not say; the generator's samples are unbounded, and out-of-range actions are ones the
  # policy can never take). Out-of-range entries are counted either way (atradiff/clipped_*).
  c.clip_actions = True
  c.s_churn = 80.0
  # Length estimator.
  c.estimator_hidden_dims = (256, 256)
  c.estimator_lr = 1e-3
  c.estimator_steps = 5000
  # Online adaptation (Sec. 4.3; App. A.1).
  c.adapt = False
  c.adapt_every = 10_000  # env steps between adaptation rounds
  c.adapt_start = 10_000
  c.adapt_steps = 200  # gradient steps per generator per round
  c.adapt_batch_size = 256
  c.adapt_lr = 1e-4
  c.forgetting_weight = 1.0  # weight of the distillation to the frozen original generator
  c.importance = "td_error"  # td_error | reward | uniform
  c.td_heap_size = 50_000
  c.td_top_k = 5_000
  c.reward_buffer_size = 5_000
  c.reward_max_uses = 3  # rotation: an entry is dropped after this many updates
  c.reward_drop_prob = 0.1  # random dropping of used entries
  # '' = WORKDIR/atradiff_diffuser. A trained diffuser there is reused only if it was trained
  # on the same dataset (content hash) with the same diffuser config; else the run stops with an
  # error naming both (jaxaug.augment.atradiff.store).
  c.diffuser_dir = ""
  return c


class AugState(flax.struct.PyTreeNode):
  synthetic: replay.ReplayBuffer
  gen_params: tuple  # parameters generation uses (adapted online; start = EMA params)
  adapt_opt: tuple
  td: aimp.ImportanceBuffer
  reward: aimp.ImportanceBuffer
  key: jax.Array  # generation and adaptation
  store_key: jax.Array  # store decisions: Bernoulli(fold_in(store_key, env step))
  queue: jax.Array  # (queue_capacity, obs_dim) raw start states waiting for the next round
  queue_count: jax.Array  # int32
  counters: dict  # COUNTERS -> int32 scalar
  last: dict  # the last round's metrics (float32 scalars)


class AugConst(flax.struct.PyTreeNode):
  """Read-only arrays the functions take: the trained diffuser (its EMA parameters are the
  frozen originals that adaptation distils towards) and the offline training windows."""
  diffuser: adiff.Diffuser
  windows: adata.WindowData


@dataclasses.dataclass(frozen=True)
class ATraDiff:
  """Static settings of one run and the pure functions over `AugState` (module doc)."""
  spec: EnvSpec
  synthetic_ratio: float  # rho
  expected_length: float  # L
  store_probability: float  # rho / ((1 - rho) L)
  synthetic_capacity: int
  queue_capacity: int
  bucket_size: int
  generation_interval: int
  generation_start: int
  task_id: int
  lengths: tuple
  terminal_fn: Callable | None
  clip_actions: bool
  adapt: bool
  adapt_every: int
  adapt_start: int
  adapt_steps: int
  adapt_batch_size: int
  adapt_lr: float
  forgetting_weight: float
  importance: str
  td_heap_size: int
  td_top_k: int
  reward_buffer_size: int
  reward_max_uses: int
  reward_drop_prob: float
  max_episode_len: int
  td_error_fn: Callable | None
  pretrain_s: float = 0.0

  # Fields of AugState only the rounds read or write: the loop keeps them out of its per-step
  # dispatches (hundreds of leaves: every jitted call pays per argument leaf).
  round_only_fields = ("gen_params", "adapt_opt", "td", "reward")

  # ---------------------------------------------------------------------------- state
  def init(self, const: AugConst, key: jax.Array) -> AugState:
    k_gen, k_store = jax.random.split(key)
    tx = aadapt.make_adapt_optimizer(self.adapt_lr)
    gen_params = tuple(g.ema_params for g in const.diffuser.generators)
    last = {"atradiff/mean_length": jnp.zeros((), jnp.float32)}
    if self.adapt:
      last["adapt/selected"] = jnp.zeros((), jnp.float32)
      for k in self.lengths:
        last[f"adapt/real_loss_k{k}"] = jnp.zeros((), jnp.float32)
        last[f"adapt/distill_loss_k{k}"] = jnp.zeros((), jnp.float32)
    return AugState(
        synthetic=replay.init_buffer(self.spec.obs_dim, self.spec.act_dim,
                                     self.synthetic_capacity),
        gen_params=gen_params, adapt_opt=tuple(tx.init(p) for p in gen_params),
        td=aimp.init_importance(self.td_heap_size),
        reward=aimp.init_importance(self.reward_buffer_size), key=k_gen, store_key=k_store,
        queue=jnp.zeros((self.queue_capacity, self.spec.obs_dim), jnp.float32),
        queue_count=jnp.zeros((), jnp.int32),
        counters={name: jnp.zeros((), jnp.int32) for name in COUNTERS}, last=last)

  # ---------------------------------------------------------------------------- store
  def store(self, aug: AugState, rows: Transitions, first_step: jax.Array) -> AugState:
    """Queues the next states of `rows` (the env steps first_step, first_step + 1, ...) drawn
    with the store probability; a state after a true terminal is never queued."""
    n = rows.rewards.shape[0]
    steps = first_step + jnp.arange(n, dtype=jnp.int32)
    u = jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(aug.store_key, t)))(steps)
    take = ((u < self.store_probability) & (rows.terminals <= 0)
            & (steps >= self.generation_start))
    offset = aug.queue_count + jnp.cumsum(take.astype(jnp.int32)) - 1
    dest = jnp.where(take, offset, self.queue_capacity)  # queue_capacity: not written
    queue = aug.queue.at[dest].set(rows.next_observations.astype(jnp.float32), mode="drop")
    count = jnp.minimum(aug.queue_count + jnp.sum(take, dtype=jnp.int32), self.queue_capacity)
    counters = dict(aug.counters, queued=aug.counters["queued"] + jnp.sum(take, dtype=jnp.int32))
    return aug.replace(queue=queue, queue_count=count, counters=counters)

  # ---------------------------------------------------------------------------- generation
  def generation_round(self, aug: AugState, const: AugConst) -> AugState:
    """Synthesises every queued state (routed by estimated length) and writes D_s."""
    key, k = jax.random.split(aug.key)
    tasks = jnp.full((self.queue_capacity,), self.task_id, jnp.int32)
    synthetic, info = adiff.generate_into(
        const.diffuser, aug.gen_params, aug.synthetic, k, aug.queue, aug.queue_count, tasks,
        bucket_size=self.bucket_size, terminal_fn=self.terminal_fn,
        max_action=float(self.spec.max_action), clip_actions=self.clip_actions)
    c = aug.counters
    n = aug.queue_count
    counters = dict(c, rounds=c["rounds"] + 1, trajectories=c["trajectories"] + n,
                    synthetic_transitions=c["synthetic_transitions"] + info["transitions"],
                    generator_calls=c["generator_calls"] + info["chunks"],
                    clipped_rows=c["clipped_rows"] + info["out_of_range_rows"],
                    clipped_entries=c["clipped_entries"] + info["out_of_range_entries"])
    mean_len = info["transitions"].astype(jnp.float32) / jnp.maximum(n, 1).astype(jnp.float32)
    last = dict(aug.last)
    last["atradiff/mean_length"] = jnp.where(n > 0, mean_len, aug.last["atradiff/mean_length"])
    return aug.replace(synthetic=synthetic, key=key, queue_count=jnp.zeros((), jnp.int32),
                       counters=counters, last=last)

  # ---------------------------------------------------------------------------- adaptation
  def adaptation_round(self, aug: AugState, const: AugConst, buf: replay.ReplayBuffer,
                       agent_state: Any) -> AugState:
    """Updates the importance buffer from the newest `adapt_every` rows of D_o, picks the
    samples and fine-tunes every generator (Sec. 4.3), in one call."""
    spec = const.diffuser.spec
    every = self.adapt_every
    key, k_td, k_ref, k_pick, k_rot, k_gen = jax.random.split(aug.key, 6)
    del k_pick
    i = jnp.arange(every, dtype=jnp.int32)
    new_rows = ((buf.ptr - every + i) % buf.capacity).astype(jnp.int32)
    new_valid = (every - i) <= buf.size
    td, rew = aimp.invalidate(aug.td, new_rows, new_valid), aimp.invalidate(
        aug.reward, new_rows, new_valid)
    if self.importance == "td_error":
      pri = aimp.td_error(self.td_error_fn, agent_state, aimp.rows_of(buf, new_rows), k_td)
      td = aimp.insert(td, new_rows, pri, new_valid)
      td = aimp.refresh(td, aimp.td_error(self.td_error_fn, agent_state,
                                          aimp.rows_of(buf, td.index), k_ref))
      rows, valid, _ = aimp.select_top(td, self.td_top_k)
    elif self.importance == "reward":
      ep_rows, ep_return, ep_valid = episodes_from_flags(buf, every, self.max_episode_len)
      rew = aimp.insert(rew, ep_rows, ep_return, ep_valid)
      rows, valid, slots = aimp.select_top(rew, self.reward_buffer_size)
    else:  # uniform over the newest rows
      rows, valid = new_rows, new_valid
    weights = valid.astype(jnp.float32)
    tx = aadapt.make_adapt_optimizer(self.adapt_lr)
    new_params, new_opt = [], []
    last = dict(aug.last)
    gen_keys = jax.random.split(k_gen, len(spec.lengths))
    for j, (k_len, gen) in enumerate(zip(spec.lengths, const.diffuser.generators)):
      def body(carry, kk, k_len=k_len, gen=gen):
        params, opt = carry
        k_b, k_a, k_s = jax.random.split(kk, 3)
        total = weights.sum()  # uniform over the selected (valid) samples
        probs = jnp.where(total > 0, weights / jnp.maximum(total, 1.0), 1.0 / rows.shape[0])
        pick = jax.random.choice(k_b, rows.shape[0], (self.adapt_batch_size,), p=probs)
        x, cond, w = aadapt.window_batch(buf, const.diffuser.stats, rows[pick], weights[pick],
                                         k_len, spec.obs_dim, spec.num_tasks, self.task_id)
        anchor = adata.sample_window_batch(const.windows, k_a, self.adapt_batch_size, k_len,
                                           spec.obs_dim, spec.num_tasks)
        params, opt, m = aadapt.adapt_step(params, opt, tx, gen, gen.ema_params, k_s, x, cond,
                                           w, anchor["x"], anchor["cond"],
                                           self.forgetting_weight)
        return (params, opt), m
      (p, o), ms = jax.lax.scan(body, (aug.gen_params[j], aug.adapt_opt[j]),
                                jax.random.split(gen_keys[j], self.adapt_steps))
      new_params.append(p)
      new_opt.append(o)
      for name, v in ms.items():
        last[f"{name}_k{k_len}"] = v[-1].astype(jnp.float32)
    if self.importance == "reward":
      rew = aimp.rotate(rew, k_rot, slots, self.reward_max_uses, self.reward_drop_prob)
    last["adapt/selected"] = jnp.sum(valid).astype(jnp.float32)
    counters = dict(aug.counters, adapt_rounds=aug.counters["adapt_rounds"] + 1)
    return aug.replace(gen_params=tuple(new_params), adapt_opt=tuple(new_opt), td=td,
                       reward=rew, key=key, counters=counters, last=last)

  # ---------------------------------------------------------------------------- host side
  def rounds_due(self, done: int, num_envs: int) -> tuple[bool, bool]:
    """(generation, adaptation) rounds after the loop iteration that ended at env step `done`
    (it took num_envs env steps): a round is due when its period boundary was crossed."""
    crossed = lambda every: done // every != (done - num_envs) // every
    gen = done > self.generation_start and crossed(self.generation_interval)
    ada = self.adapt and done >= self.adapt_start and crossed(self.adapt_every)
    return gen, ada

  def metrics(self, aug: AugState, real_size: int | None = None) -> dict:
    """Host metrics of `aug` (one device-to-host transfer)."""
    host = jax.device_get({"counters": aug.counters, "last": aug.last,
                           "size": aug.synthetic.size})
    out = {f"atradiff/{k}": float(v) for k, v in host["counters"].items()}
    out["atradiff/pretrain_s"] = self.pretrain_s
    syn = int(host["size"])
    out["atradiff/synthetic_size"] = float(syn)
    if real_size:
      # realised |D_s| / |D_o| next to the target rho / (1 - rho) that Algorithm 1 aims at
      out["atradiff/synthetic_to_real"] = syn / real_size
      out["atradiff/synthetic_to_real_target"] = self.synthetic_ratio / (1.0 - self.synthetic_ratio)
    out["atradiff/expected_length"] = self.expected_length  # L (sets the store probability)
    if out["atradiff/trajectories"]:  # the realised mean length l that L stands for
      out["atradiff/realised_length"] = (out["atradiff/synthetic_transitions"]
                                         / out["atradiff/trajectories"])
    out.update({k: float(v) for k, v in host["last"].items()})
    return out


def episodes_from_flags(buf: replay.ReplayBuffer, recent: int, max_episode_len: int):
  """The rows of the episodes of D_o that ended within its newest `recent` rows, with each
  row's episode return, read from the buffer's terminal/timeout flags (no host bookkeeping).

  Returns (rows, returns, valid), each of static length recent + max_episode_len: the window of
  newest rows that holds every such episode whole (an episode has at most max_episode_len rows).
  """
  w = recent + max_episode_len
  i = jnp.arange(w, dtype=jnp.int32)
  age = w - i  # 1 = the newest row
  rows = ((buf.ptr - w + i) % buf.capacity).astype(jnp.int32)
  exists = age <= buf.size
  d = buf.data
  ends = ((d.terminals[rows] > 0) | (d.timeouts[rows] > 0)) & exists
  eid = jnp.cumsum(ends.astype(jnp.int32)) - ends.astype(jnp.int32)  # episode index in window
  rewards = jnp.where(exists, d.rewards[rows], 0.0)
  returns = jax.ops.segment_sum(rewards, eid, num_segments=w + 1)
  recent_end = jax.ops.segment_max((ends & (age <= recent)).astype(jnp.int32), eid,
                                   num_segments=w + 1) > 0
  # the first segment may begin before the window (a partial episode): it cannot end within the
  # newest `recent` rows unless it is whole, since episodes have at most max_episode_len rows
  valid = exists & recent_end[eid]
  return rows, returns[eid].astype(jnp.float32), valid


# ------------------------------------------------------------------------------- setup (host)

def _keys(seed: int):
  """(diffuser training, preliminary generation, AugState) keys of run `seed` (the first is
  training.diffuser_key(seed))."""
  return jax.random.split(jax.random.fold_in(jax.random.key(int(seed)), atraining.KEY_SALT), 3)


def state_key(seed: int) -> jax.Array:
  """The key `ATraDiff.init` takes in run `seed`."""
  return _keys(seed)[2]


def setup(config: ml_collections.ConfigDict, spec: EnvSpec, workdir: str | None, *,
          num_envs: int = 1, max_episode_len: int = 1000, agent: Any = None
          ) -> tuple[ATraDiff, AugConst]:
  """Validates config.atradiff, trains or restores the diffuser, finds L; returns the run's
  static settings and read-only arrays."""
  acfg = config.atradiff
  if acfg.importance not in IMPORTANCE:
    raise ValueError(f"config.atradiff.importance must be one of {IMPORTANCE}, got "
                     f"{acfg.importance!r}")
  for name in ("bucket_size", "generation_interval", "synthetic_capacity"):
    if int(acfg[name]) <= 0:
      raise ValueError(f"config.atradiff.{name} must be positive, got {acfg[name]}")
  if acfg.adapt and int(acfg.adapt_every) <= 0:
    raise ValueError(f"config.atradiff.adapt_every must be positive, got {acfg.adapt_every}")
  td_error_fn = None
  if acfg.importance == "td_error":  # the agent's own TD error (protocol, jaxaug/types.py)
    if agent is None:
      from jaxaug.agents import get_agent  # pylint: disable=g-import-not-at-top
      agent = get_agent(config.get("agent_name") or "sac")
    td_error_fn = td_error_fn_of(agent, "config.atradiff.importance='td_error'")
  terminal_fn = adiff.terminal_fn_from_config(acfg, config.env_id)  # validates the field
  ds = load_dataset(acfg.offline_dataset)
  if (ds.obs_dim, ds.act_dim) != (spec.obs_dim, spec.act_dim):
    raise ValueError(f"config.atradiff.offline_dataset {acfg.offline_dataset!r} has "
                     f"obs/act dims {(ds.obs_dim, ds.act_dim)}, environment {spec.env_id} "
                     f"has {(spec.obs_dim, spec.act_dim)}")
  k_train, k_len, _ = _keys(int(config.seed))
  t0 = time.time()
  directory = acfg.diffuser_dir or (os.path.join(workdir, "atradiff_diffuser") if workdir
                                    else "")
  length_fp = astore.length_fingerprint(acfg, config.env_id)
  # Restored when `directory` holds one trained on this dataset with this diffuser config (else
  # a ValueError naming both), else trained there through run_training (resumable).
  diffuser, meta = atraining.train_or_restore(config, ds, directory, k_train)
  const = AugConst(diffuser=diffuser,
                   windows=adata.build_window_data(ds, diffuser.stats, diffuser.spec.max_length))
  settings = dict(
      spec=spec, synthetic_ratio=float(acfg.synthetic_ratio), expected_length=1.0,
      store_probability=0.0, synthetic_capacity=int(acfg.synthetic_capacity),
      # one interval's stores at most (one per env step), so a round never drops a state
      queue_capacity=int(acfg.generation_interval) + int(num_envs),
      bucket_size=int(acfg.bucket_size), generation_interval=int(acfg.generation_interval),
      generation_start=int(acfg.generation_start), task_id=int(acfg.task_id),
      lengths=tuple(int(k) for k in acfg.lengths), terminal_fn=terminal_fn,
      clip_actions=bool(acfg.get("clip_actions", True)), adapt=bool(acfg.adapt),
      adapt_every=int(acfg.adapt_every), adapt_start=int(acfg.adapt_start),
      adapt_steps=int(acfg.adapt_steps), adapt_batch_size=int(acfg.adapt_batch_size),
      adapt_lr=float(acfg.adapt_lr), forgetting_weight=float(acfg.forgetting_weight),
      importance=str(acfg.importance), td_heap_size=int(acfg.td_heap_size),
      td_top_k=int(acfg.td_top_k), reward_buffer_size=int(acfg.reward_buffer_size),
      reward_max_uses=int(acfg.reward_max_uses), reward_drop_prob=float(acfg.reward_drop_prob),
      max_episode_len=int(max_episode_len), td_error_fn=td_error_fn)
  if float(acfg.expected_length) > 0:
    length = float(acfg.expected_length)
  elif meta.get("length_fingerprint") == length_fp and meta.get("expected_length"):
    length = float(meta["expected_length"])
  else:  # new diffuser, or its stored L came from other sampler/pruner/termination settings
    length = preliminary_length(ATraDiff(**settings), const, ds, k_len, int(config.seed),
                                int(acfg.preliminary_samples))
    if directory:
      astore.save_expected_length(directory, length, length_fp)
  settings.update(expected_length=length, pretrain_s=time.time() - t0,
                  store_probability=abuffer.store_probability(float(acfg.synthetic_ratio),
                                                              length))
  atd = ATraDiff(**settings)
  logging.info("ATraDiff: L=%.2f, store probability %.4f, synthetic_ratio %.2f", length,
               atd.store_probability, atd.synthetic_ratio)
  return atd, const


def preliminary_length(atd: ATraDiff, const: AugConst, ds: OfflineDataset, key: jax.Array,
                       seed: int, num_samples: int) -> float:
  """L from preliminary generation (Sec. 4.2): the mean kept transitions over offline start
  states, generated as one round of the online loop (same routing and settings)."""
  rng = np.random.default_rng(seed)
  n = min(int(num_samples), len(ds))
  starts = ds.observations[rng.choice(len(ds), size=n, replace=False)].astype(np.float32)
  scratch = replay.init_buffer(atd.spec.obs_dim, atd.spec.act_dim, 1)
  gen_params = tuple(g.ema_params for g in const.diffuser.generators)
  fn = jax.jit(lambda c, p, q, k: adiff.generate_into(
      c.diffuser, p, scratch, k, q, jnp.int32(n), jnp.full((n,), atd.task_id, jnp.int32),
      bucket_size=atd.bucket_size, terminal_fn=atd.terminal_fn,
      max_action=float(atd.spec.max_action), clip_actions=atd.clip_actions)[1]["length"])
  lengths = np.asarray(fn(const, gen_params, jnp.asarray(starts), key))
  return max(float(np.mean(lengths)), 1.0)
