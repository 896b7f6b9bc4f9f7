"""ATraDiff in the online loop: the modified replay buffer, batched generation rounds between
policy updates, and online adaptation (ATraDiff Sec. 4.2-4.3).

`ATraDiffAugmenter` implements the online loop's extras protocol (jaxaug.augment.online_hooks):

* `after_step(...)` (host, every env step): with probability rho / ((1 - rho) L) the stored
  next state s' is queued (never after a true terminal: nothing follows it). Every
  `generation_interval` env steps, and as soon as `queue_size` states are waiting, the queued
  states are synthesised in ONE jitted call (`_generation_round`: length estimate, all
  generators, pruning, action clipping, masked write into D_s); the call always takes
  `queue_size` states (padded) so it compiles once. No queued state is ever dropped, so
  |D_s| / |D_o| follows rho / (1 - rho) whatever queue_size and generation_interval are
  (logged as `atradiff/synthetic_to_real` next to `atradiff/synthetic_to_real_target`). Every
  `adapt_every` env steps (if `adapt`), the generators are fine-tuned in one jitted call
  (`_adaptation_round`).
* `sample_fn(buf, key, n, aux)` (inside the loop's jitted step): rows from D_s with probability
  rho, else from D_o (a `replay.Blend` source of `replay.sample_mixed`); with `offline_ratio` > 0 (RLPD) that share of every
  minibatch comes from the offline dataset first (symmetric sampling), the rest from D.
* `state_dict()` / `load_state_dict()`: everything needed for an exact resume (D_s, adapted
  parameters and optimiser states, importance buffers, the host queue).

Differences from the paper, on purpose: generation is deferred to the next round (at most
`generation_interval` env steps late, earlier when the queue is full) so that it is batched;
store decisions use a counter-based RNG (seed, env step) so they are reproduced on resume.
With `terminal_fn = "env"` (default) synthetic trajectories end at their first terminal state
under the environment's termination rule, stored as terminal; with `clip_actions` (default)
their actions are clipped to the action range; the paper says neither (docs/methods/atradiff.md).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

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
from jaxaug.data import replay
from jaxaug.data.dataset import OfflineDataset, Transitions
from jaxaug.data.loaders import load_dataset
from jaxaug.types import EnvSpec
from jaxaug.types import td_error_fn as td_error_fn_of

IMPORTANCE = ("td_error", "reward", "uniform")
MAX_PENDING_EPISODES = 256  # completed episodes waiting for the next adaptation round


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
  # Start states per generation round (one jitted call of this fixed batch size). A round runs
  # every generation_interval env steps, and early whenever queue_size states are waiting.
  c.queue_size = 64
  c.generation_interval = 100  # env steps between generation rounds
  c.generation_start = 0  # no generation before this env step
  # Generators: SynthER's residual MLP (App. A.2) trained with jaxaug.diffusion.train.
  c.denoiser_width = 512
  c.denoiser_blocks = 4
  c.denoiser_dim_t = 128
  c.generator_steps = 20_000
  c.generator_batch_size = 256
  c.generator_lr = 3e-4
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
  key: jax.Array


# ------------------------------------------------------------------------------- jitted rounds

def _generation_round(diffuser: adiff.Diffuser, state: AugState, queue: jax.Array,
                      valid: jax.Array, task_ids: jax.Array, terminal_fn=None,
                      max_action: float | None = None, clip_actions: bool = True):
  """ONE call: synthesise from the queue and write the kept transitions into D_s."""
  key, k = jax.random.split(state.key)
  d = diffuser.replace(generators=tuple(
      g.replace(ema_params=p) for g, p in zip(diffuser.generators, state.gen_params)))
  transitions, mask, info = adiff.synthesize(d, k, queue, valid, task_ids, terminal_fn,
                                             max_action=max_action, clip_actions=clip_actions)
  synthetic = replay.add_masked(state.synthetic, transitions, mask)
  return state.replace(synthetic=synthetic, key=key), info


def _adaptation_round(diffuser: adiff.Diffuser, state: AugState, windows: adata.WindowData,
                      buf: replay.ReplayBuffer, agent_state: Any, new_rows: jax.Array,
                      new_valid: jax.Array, episodes: jax.Array, *, importance: str,
                      top_k: int, adapt_steps: int, batch_size: int, forgetting_weight: float,
                      max_uses: int, drop_prob: float, task_id: int, adapt_lr: float,
                      max_episode_len: int, td_error_fn=None):
  """ONE call: update the importance buffer, pick samples, fine-tune every generator."""
  spec = diffuser.spec
  key, k_td, k_ref, k_pick, k_rot, k_gen = jax.random.split(state.key, 6)
  td, rew = state.td, state.reward
  td = aimp.invalidate(td, new_rows, new_valid)
  rew = aimp.invalidate(rew, new_rows, new_valid)
  if importance == "td_error":
    pri = aimp.td_error(td_error_fn, agent_state, aimp.rows_of(buf, new_rows), k_td)
    td = aimp.insert(td, new_rows, pri, new_valid)
    td = aimp.refresh(td, aimp.td_error(td_error_fn, agent_state,
                                        aimp.rows_of(buf, td.index), k_ref))
    rows, valid, _ = aimp.select_top(td, top_k)
  elif importance == "reward":
    # episodes: (P, 3) [first row, length, return]; length 0 = unused slot
    def add_episode(r, ep):
      j = jnp.arange(max_episode_len)
      ok = j < ep[1].astype(jnp.int32)
      ep_rows = ((ep[0].astype(jnp.int32) + j) % buf.capacity).astype(jnp.int32)
      return aimp.insert(r, ep_rows, jnp.full((max_episode_len,), ep[2], jnp.float32), ok), None
    rew, _ = jax.lax.scan(add_episode, rew, episodes)
    rows, valid, slots = aimp.select_top(rew, top_k)
  else:  # uniform over the newest rows
    rows, valid = new_rows, new_valid
  weights = valid.astype(jnp.float32)
  new_params, new_opt, metrics = [], [], {}
  tx = aadapt.make_adapt_optimizer(adapt_lr)
  gen_keys = jax.random.split(k_gen, len(spec.lengths))
  for j, (k_len, gen) in enumerate(zip(spec.lengths, diffuser.generators)):
    def body(carry, kk, k_len=k_len, gen=gen):
      params, opt = carry
      k_b, k_a, k_s = jax.random.split(kk, 3)
      # uniform over the selected (valid) samples
      total = weights.sum()
      probs = jnp.where(total > 0, weights / jnp.maximum(total, 1.0), 1.0 / rows.shape[0])
      pick = jax.random.choice(k_b, rows.shape[0], (batch_size,), p=probs)
      x, cond, w = aadapt.window_batch(buf, diffuser.stats, rows[pick], weights[pick], k_len,
                                       spec.obs_dim, spec.num_tasks, task_id)
      anchor = adata.sample_window_batch(windows, k_a, batch_size, k_len, spec.obs_dim,
                                         spec.num_tasks)
      params, opt, m = aadapt.adapt_step(params, opt, tx, gen, gen.ema_params, k_s, x, cond, w,
                                         anchor["x"], anchor["cond"], forgetting_weight)
      return (params, opt), m
    (p, o), ms = jax.lax.scan(body, (state.gen_params[j], state.adapt_opt[j]),
                              jax.random.split(gen_keys[j], adapt_steps))
    new_params.append(p)
    new_opt.append(o)
    metrics.update({f"{name}_k{k_len}": v[-1] for name, v in ms.items()})
  if importance == "reward":
    rew = aimp.rotate(rew, k_rot, slots, max_uses, drop_prob)
  metrics["adapt/selected"] = jnp.sum(valid)
  state = state.replace(gen_params=tuple(new_params), adapt_opt=tuple(new_opt), td=td,
                        reward=rew, key=key)
  return state, metrics


# ------------------------------------------------------------------------------- augmenter

def store_draw(seed: int, step: int, probability: float) -> bool:
  """Bernoulli(probability) for env step `step` from a counter-based stream (seed, step): the
  same decision on every run and after a resume, with no RNG state to checkpoint."""
  return bool(np.random.default_rng([int(seed), int(step), 0xA7]).random() < probability)


class ATraDiffAugmenter:
  """Host-side driver of ATraDiff in `jaxaug.train.online.train_online` (see module doc)."""

  def __init__(self, config: ml_collections.ConfigDict, spec: EnvSpec, workdir: str | None,
               offline_ratio: float = 0.0, offline: Transitions | None = None,
               offline_dataset: OfflineDataset | None = None, max_episode_len: int = 1000,
               agent: Any = None):
    acfg = config.atradiff
    if acfg.importance not in IMPORTANCE:
      raise ValueError(f"config.atradiff.importance must be one of {IMPORTANCE}, got "
                       f"{acfg.importance!r}")
    td_error_fn = None
    if acfg.importance == "td_error":  # the agent's own TD error (protocol, jaxaug/types.py)
      if agent is None:
        from jaxaug.agents import get_agent  # pylint: disable=g-import-not-at-top
        agent = get_agent(config.get("agent_name") or "sac")
      td_error_fn = td_error_fn_of(agent, "config.atradiff.importance='td_error'")
    terminal_fn = adiff.terminal_fn_from_config(acfg, config.env_id)  # validates the field
    if int(acfg.queue_size) <= 0 or int(acfg.generation_interval) <= 0:
      raise ValueError(f"config.atradiff.queue_size and generation_interval must be positive, "
                       f"got {acfg.queue_size} and {acfg.generation_interval}")
    self.cfg = acfg
    self.spec = spec
    self.seed = int(config.seed)
    self.rho = float(acfg.synthetic_ratio)
    self.offline_ratio = float(offline_ratio)
    self.batch_size = int(config.batch_size)
    self.utd_ratio = int(config.utd_ratio)
    self.max_episode_len = int(max_episode_len)
    ds = offline_dataset if offline_dataset is not None else load_dataset(acfg.offline_dataset)
    if (ds.obs_dim, ds.act_dim) != (spec.obs_dim, spec.act_dim):
      raise ValueError(f"config.atradiff.offline_dataset {acfg.offline_dataset!r} has "
                       f"obs/act dims {(ds.obs_dim, ds.act_dim)}, environment {spec.env_id} "
                       f"has {(spec.obs_dim, spec.act_dim)}")
    self.offline = offline
    self.timings = {"pretrain_s": 0.0, "generation_s": 0.0, "adaptation_s": 0.0}
    key = jax.random.fold_in(jax.random.key(self.seed), 0xA7D)
    k_train, k_len, k_state = jax.random.split(key, 3)
    t0 = time.time()
    directory = acfg.diffuser_dir or (os.path.join(workdir, "atradiff_diffuser") if workdir
                                      else "")
    self.fingerprint = astore.fingerprint(ds, acfg.offline_dataset, acfg) if directory else None
    length_fp = astore.length_fingerprint(acfg, config.env_id)
    self.diffuser, meta = self._load_or_train(k_train, ds, directory)
    spec_d = self.diffuser.spec
    self.windows = adata.build_window_data(ds, self.diffuser.stats, spec_d.max_length)
    tx = aadapt.make_adapt_optimizer(float(acfg.adapt_lr))
    gen_params = tuple(g.ema_params for g in self.diffuser.generators)
    self.state = AugState(
        synthetic=replay.init_buffer(spec.obs_dim, spec.act_dim, int(acfg.synthetic_capacity)),
        gen_params=gen_params, adapt_opt=tuple(tx.init(p) for p in gen_params),
        td=aimp.init_importance(int(acfg.td_heap_size)),
        reward=aimp.init_importance(int(acfg.reward_buffer_size)), key=k_state)
    q = int(acfg.queue_size)
    self.queue = np.zeros((q, spec.obs_dim), np.float32)  # host queue: one round's batch
    self.queue_count = 0
    self.episodes = np.zeros((MAX_PENDING_EPISODES, 3), np.float64)  # [first row, len, return]
    self.episode_count = 0
    self.episode_first_row = 0
    self.episode_return = 0.0
    self.counters = {"queued": 0, "rounds": 0, "early_rounds": 0, "trajectories": 0,
                     "synthetic_transitions": 0, "adapt_rounds": 0, "clipped_rows": 0,
                     "clipped_entries": 0}
    self._last = {}
    self._gen_fn = jax.jit(functools.partial(
        _generation_round, terminal_fn=terminal_fn, max_action=float(spec.max_action),
        clip_actions=bool(acfg.get("clip_actions", True))))
    self._adapt_fn = jax.jit(functools.partial(
        _adaptation_round, importance=acfg.importance, top_k=int(acfg.td_top_k)
        if acfg.importance == "td_error" else int(acfg.reward_buffer_size),
        adapt_steps=int(acfg.adapt_steps), batch_size=int(acfg.adapt_batch_size),
        forgetting_weight=float(acfg.forgetting_weight), max_uses=int(acfg.reward_max_uses),
        drop_prob=float(acfg.reward_drop_prob), task_id=int(acfg.task_id),
        adapt_lr=float(acfg.adapt_lr), max_episode_len=self.max_episode_len,
        td_error_fn=td_error_fn))
    if float(acfg.expected_length) > 0:
      self.expected_length = float(acfg.expected_length)
    elif meta is not None and meta.get("length_fingerprint") == length_fp:
      self.expected_length = float(meta["expected_length"])
    else:  # new diffuser, or its stored L came from other sampler/pruner/termination settings
      self.expected_length = self._preliminary_length(ds, k_len)
    if meta is None and directory:
      astore.save(directory, self.diffuser, self.fingerprint, self.expected_length, length_fp)
    self.timings["pretrain_s"] = time.time() - t0
    self.p_store = abuffer.store_probability(self.rho, self.expected_length)
    logging.info("ATraDiff: L=%.2f, store probability %.4f, synthetic_ratio %.2f",
                 self.expected_length, self.p_store, self.rho)

  # -------------------------------------------------------------------------- pretraining
  def _load_or_train(self, k_train, ds, directory):
    """(diffuser, meta): restored from `directory` if it holds one trained on the same dataset
    with the same diffuser config (else ValueError; meta has L), or newly trained."""
    if directory:
      diffuser, meta = astore.restore(directory, k_train, ds, self.cfg, self.fingerprint)
      if diffuser is not None:
        logging.info("ATraDiff: restored the diffuser from %s", directory)
        return diffuser, meta
    diffuser = adiff.train_diffuser(
        k_train, ds, self.cfg,
        log_fn=lambda n, s, v: logging.info("atradiff %s %d %.4f", n, s, v))
    return diffuser, None

  def _preliminary_length(self, ds, key) -> float:
    """L from preliminary generation (Sec. 4.2): mean kept transitions over offline start
    states, with the same jitted call as the online rounds (one compilation for both)."""
    acfg = self.cfg
    rng = np.random.default_rng(self.seed)
    n = min(int(acfg.preliminary_samples), len(ds))
    starts = ds.observations[rng.choice(len(ds), size=n, replace=False)]
    q = int(acfg.queue_size)
    scratch = self.state.replace(key=key)
    tasks = jnp.full((q,), int(acfg.task_id), jnp.int32)
    lengths = []
    for i in range(0, n, q):
      chunk = np.zeros((q, self.spec.obs_dim), np.float32)
      m = min(q, n - i)
      chunk[:m] = starts[i:i + m]
      valid = np.arange(q) < m
      scratch, info = self._gen_fn(self.diffuser, scratch, jnp.asarray(chunk),
                                   jnp.asarray(valid), tasks)
      lengths.append(np.asarray(info["length"])[valid])
    return max(float(np.mean(np.concatenate(lengths))), 1.0)

  # -------------------------------------------------------------------------- loop protocol
  @property
  def aux(self) -> dict:
    aux = {"synthetic": self.state.synthetic}
    if self.offline is not None and self.offline_ratio > 0:
      aux["offline"] = self.offline
    return aux

  def sample_fn(self, buf: replay.ReplayBuffer, key: jax.Array, n: int, aux: dict) -> Transitions:
    """Jittable: minibatches of `batch_size`, each offline_ratio offline + the modified buffer."""
    return make_modified_sample_fn(self.rho, self.offline_ratio, self.batch_size)(buf, key, n,
                                                                                   aux)

  def after_step(self, step: int, next_obs: np.ndarray, reward: float, terminated: bool,
                 truncated: bool, agent_state: Any, buf: replay.ReplayBuffer) -> None:
    """Called once per env step, after the transition was stored (step = index of that step)."""
    acfg = self.cfg
    row = step % buf.capacity
    self.episode_return += float(reward)
    if terminated or truncated:
      if self.episode_count < MAX_PENDING_EPISODES:
        first = self.episode_first_row
        self.episodes[self.episode_count] = (first, (row - first) % buf.capacity + 1,
                                             self.episode_return)
        self.episode_count += 1
      self.episode_first_row = (row + 1) % buf.capacity
      self.episode_return = 0.0
    if step >= int(acfg.generation_start) and not terminated and self._store_draw(step):
      self._enqueue(next_obs)
      if self.queue_count == len(self.queue):  # a full batch waits: generate now, drop nothing
        self.generation_round()
        self.counters["early_rounds"] += 1
    done_steps = step + 1
    if self.queue_count and done_steps % int(acfg.generation_interval) == 0:
      self.generation_round()
    if (acfg.adapt and done_steps >= int(acfg.adapt_start)
        and done_steps % int(acfg.adapt_every) == 0):
      self.adaptation_round(agent_state, buf, done_steps)

  def _store_draw(self, step: int) -> bool:
    return store_draw(self.seed, step, self.p_store)

  def _enqueue(self, state: np.ndarray) -> None:
    if self.queue_count == len(self.queue):  # after_step generates before this can happen
      raise RuntimeError("ATraDiff generation queue is full; run generation_round() first")
    self.counters["queued"] += 1
    self.queue[self.queue_count] = np.asarray(state, np.float32)
    self.queue_count += 1

  def generation_round(self) -> dict:
    """Synthesise every queued state (at most queue_size) in ONE jitted call."""
    q = len(self.queue)
    n = self.queue_count
    batch = np.zeros((q, self.spec.obs_dim), np.float32)
    batch[:n] = self.queue[:n]
    valid = np.arange(q) < n
    self.queue_count = 0
    t0 = time.time()
    tasks = jnp.full((q,), int(self.cfg.task_id), jnp.int32)
    self.state, info = self._gen_fn(self.diffuser, self.state, jnp.asarray(batch),
                                    jnp.asarray(valid), tasks)
    lengths = np.asarray(info["length"])[valid]  # blocks: the round's cost is measured
    self.timings["generation_s"] += time.time() - t0
    self.counters["rounds"] += 1
    self.counters["trajectories"] += int(n)
    self.counters["synthetic_transitions"] += int(lengths.sum())
    self.counters["clipped_rows"] += int(info["out_of_range_rows"])
    self.counters["clipped_entries"] += int(info["out_of_range_entries"])
    self._last["atradiff/mean_length"] = float(lengths.mean()) if n else 0.0
    return {"length": lengths, "generator": np.asarray(info["generator"])[valid]}

  def adaptation_round(self, agent_state: Any, buf: replay.ReplayBuffer, done_steps: int) -> dict:
    every = int(self.cfg.adapt_every)
    rows = (np.arange(done_steps - every, done_steps) % buf.capacity).astype(np.int32)
    valid = np.arange(done_steps - every, done_steps) >= 0
    t0 = time.time()
    episodes = np.zeros((MAX_PENDING_EPISODES, 3), np.float32)
    episodes[:self.episode_count] = self.episodes[:self.episode_count]
    self.state, metrics = self._adapt_fn(self.diffuser, self.state, self.windows, buf,
                                         agent_state, jnp.asarray(rows), jnp.asarray(valid),
                                         jnp.asarray(episodes))
    metrics = {k: float(v) for k, v in metrics.items()}
    self.timings["adaptation_s"] += time.time() - t0
    self.episode_count = 0
    self.counters["adapt_rounds"] += 1
    self._last.update(metrics)
    return metrics

  def metrics(self, real_size: int | None = None) -> dict:
    out = {f"atradiff/{k}": float(v) for k, v in self.counters.items()}
    out.update({f"atradiff/{k}": v for k, v in self.timings.items()})
    syn = int(self.state.synthetic.size)
    out["atradiff/synthetic_size"] = float(syn)
    if real_size:
      # realised |D_s| / |D_o| next to the target rho / (1 - rho) that Algorithm 1 aims at
      out["atradiff/synthetic_to_real"] = syn / real_size
      out["atradiff/synthetic_to_real_target"] = self.rho / (1.0 - self.rho)
    out["atradiff/expected_length"] = self.expected_length  # L (sets the store probability)
    if self.counters["trajectories"]:  # the realised mean length l that L stands for
      out["atradiff/realised_length"] = (self.counters["synthetic_transitions"]
                                         / self.counters["trajectories"])
    out.update(self._last)
    return out

  # -------------------------------------------------------------------------- checkpointing
  def state_dict(self) -> dict:
    return {"state": self.state, "queue": self.queue,
            "scalars": np.asarray([self.queue_count, self.episode_count, self.episode_first_row,
                                   self.episode_return], np.float64),
            "episodes": self.episodes,
            "counters": np.asarray([self.counters[k] for k in sorted(self.counters)], np.int64)}

  def load_state_dict(self, d: dict) -> None:
    self.state = d["state"]
    self.queue = np.array(d["queue"], np.float32)
    qc, ec, first, ret = np.asarray(d["scalars"]).tolist()
    self.queue_count, self.episode_count = int(qc), int(ec)
    self.episode_first_row, self.episode_return = int(first), float(ret)
    self.episodes = np.array(d["episodes"], np.float64)
    for k, v in zip(sorted(self.counters), np.asarray(d["counters"]).tolist()):
      self.counters[k] = int(v)


def make_modified_sample_fn(synthetic_ratio: float, offline_ratio: float, batch_size: int):
  """`sample_fn(buf, key, n, aux)` for the online loop: n = utd * batch_size rows, made of
  utd minibatches; each minibatch has round(offline_ratio * batch_size) rows from aux['offline']
  (if present) and the rest from D_o ∪ D_s (each row from aux['synthetic'] with probability
  synthetic_ratio): `replay.sample_mixed` with a `replay.Blend` source."""
  ratios = (offline_ratio, 1.0 - offline_ratio)
  n_off = replay.mixed_counts(ratios, batch_size)[0]

  def sample_fn(buf, key, n, aux):
    if n_off and "offline" not in aux:
      raise ValueError("offline_ratio > 0 needs aux['offline'] (an offline dataset)")
    online = replay.Blend(buf, aux["synthetic"], synthetic_ratio)
    return replay.sample_mixed_n([aux.get("offline"), online], ratios, key, n, batch_size)

  return sample_fn
