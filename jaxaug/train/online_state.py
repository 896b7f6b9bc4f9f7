"""The online loop's state as one pytree, and the pure functions the loop runs over it.

    LoopState  agent state, real replay buffer D_o, PRNG key, the envs' next actions, and
               ATraDiff's AugState (synthetic buffer, start-state queue, ...) or None
    LoopData   read-only inputs: RLPD's offline transitions, ATraDiff's diffuser and windows

`OnlineFns` holds a run's static settings and these jittable functions:

    store(state, rows, first_step)          D_o <- rows (one per env); ATraDiff's store decision
    sample(state, data, key, n)             the ONE mixed sampler: RLPD's offline share of every
                                            minibatch, then D_o, each row from ATraDiff's D_s
                                            with probability rho (replay.sample_mixed)
    update(state, data, do_update)          num_envs agent updates (utd_ratio each) per loop
                                            iteration: UTD counted per env step
    act(state, obs, random_action)          the next actions with the current policy
    update_act(state, data, obs, ...)       update, then act with the updated policy (the
                                            reference order of SAC/REDQ/RLPD)
    augment_round(state, data, gen, adapt)  ATraDiff's generation / adaptation rounds

`update` and `act` split the same five keys from `state.key`, so acting before the update (the
loop's `overlap` option: the env steps while the device learns) uses the same randomness as
acting after it; only the policy's parameters differ (one update older).

Random start steps: actions are drawn uniformly inside `act` from the run's key (not from
gymnasium's action-space RNG), so they too are reproduced on resume.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.types import EnvSpec


class LoopState(flax.struct.PyTreeNode):
  agent: Any
  buffer: replay.ReplayBuffer
  key: jax.Array
  action: jax.Array  # (num_envs, act_dim): what the envs take next
  aug: Any = None  # jaxaug.augment.atradiff.online.AugState, or None


class LoopData(flax.struct.PyTreeNode):
  offline: Any = None  # Transitions of RLPD's offline dataset, or None
  aug: Any = None  # jaxaug.augment.atradiff.online.AugConst, or None


def row_size(spec: EnvSpec) -> int:
  """Floats per packed env step (see pack_rows)."""
  return 3 * spec.obs_dim + spec.act_dim + 3


def unpack_rows(spec: EnvSpec, packed: jax.Array) -> tuple[Transitions, jax.Array]:
  """(N, row_size) packed env steps -> (Transitions of N rows, acting observations (N, obs)).

  A row is [obs, action, reward, next_obs, terminal, timeout, acting_obs]; acting_obs is the
  observation the env acts from next (the next episode's first one when this step ended one)."""
  sizes = (spec.obs_dim, spec.act_dim, 1, spec.obs_dim, 1, 1, spec.obs_dim)
  parts, i = [], 0
  for n in sizes:
    parts.append(packed[:, i:i + n])
    i += n
  obs, action, reward, next_obs, terminal, timeout, acting_obs = parts
  rows = Transitions(observations=obs, actions=action, rewards=reward[:, 0],
                     next_observations=next_obs, terminals=terminal[:, 0],
                     timeouts=timeout[:, 0])
  return rows, acting_obs


@dataclasses.dataclass(frozen=True)
class OnlineFns:
  """A run's static settings and the pure functions over LoopState (module doc)."""
  agent: Any  # agent module: init/update/act (+ update_utd)
  spec: EnvSpec
  num_envs: int = 1
  batch_size: int = 256
  utd_ratio: int = 1
  offline_ratio: float = 0.0  # RLPD: share of every minibatch from LoopData.offline
  reward_shift: float = 0.0  # config.reward_shift: RLPD's AntMaze r - 1 on sampled batches
  atradiff: Any = None  # jaxaug.augment.atradiff.online.ATraDiff, or None
  replay_capacity: int = 1_000_000

  # -------------------------------------------------------------------------- init
  def init(self, key: jax.Array, agent_config, aug_state: Any = None,
           random_action: bool = True, first_obs: jax.Array | None = None) -> LoopState:
    """The state before the first env step: `key` is the run's root key."""
    key, init_key = jax.random.split(key)
    agent_state = self.agent.init(init_key, self.spec, agent_config)
    buf = replay.init_buffer(self.spec.obs_dim, self.spec.act_dim, self.replay_capacity)
    state = LoopState(agent=agent_state, buffer=buf, key=key,
                      action=jnp.zeros((self.num_envs, self.spec.act_dim), jnp.float32),
                      aug=aug_state)
    if first_obs is not None:
      state = self.first_action(state, first_obs, random_action)
    return state

  def first_action(self, state: LoopState, obs: jax.Array, random_action) -> LoopState:
    key, k_act, k_rand = jax.random.split(state.key, 3)
    return state.replace(key=key, action=self._act(state.agent, obs, k_act, k_rand,
                                                   random_action))

  # -------------------------------------------------------------------------- store / sample
  def store(self, state: LoopState, rows: Transitions, first_step: jax.Array) -> LoopState:
    """Writes one row per env into D_o (in env order) and makes ATraDiff's store decisions."""
    n = rows.rewards.shape[0]
    buf = replay.add(state.buffer, rows, aligned=self.replay_capacity % n == 0)
    aug = state.aug
    if self.atradiff is not None:
      aug = self.atradiff.store(aug, rows, first_step)
    return state.replace(buffer=buf, aug=aug)

  def sample(self, state: LoopState, data: LoopData, key: jax.Array, n: int) -> Transitions:
    """n rows as minibatches of batch_size: offline_ratio of each from data.offline, the rest
    from D_o, each of those from ATraDiff's D_s with probability rho."""
    online = state.buffer
    if self.atradiff is not None:
      online = replay.Blend(state.buffer, state.aug.synthetic, self.atradiff.synthetic_ratio)
    if self.offline_ratio == 0 and self.atradiff is None:
      return replay.sample(state.buffer, key, n)  # plain SAC/REDQ: uniform over D_o
    if self.offline_ratio > 0 and data.offline is None:
      raise ValueError("offline_ratio > 0 needs LoopData.offline (an offline dataset)")
    return replay.sample_mixed_n([data.offline, online],
                                 (self.offline_ratio, 1.0 - self.offline_ratio), key, n,
                                 self.batch_size)

  # -------------------------------------------------------------------------- learn / act
  def update(self, state: LoopState, data: LoopData, do_update: bool = True
             ) -> tuple[LoopState, dict]:
    """num_envs agent updates of utd_ratio gradient steps each (the per-env-step work of the
    references, once per env step taken); the key advances whether or not it updates."""
    key, k_sample, k_update, _, _ = jax.random.split(state.key, 5)
    if not do_update:
      return state.replace(key=key), {}
    per_step = self.batch_size * self.utd_ratio
    batch = self.sample(state, data, k_sample, per_step * self.num_envs)
    if self.reward_shift:
      batch = batch.replace(rewards=batch.rewards + self.reward_shift)
    if self.num_envs == 1:
      agent_state, metrics = self._update_one(state.agent, batch, k_update)
    else:
      chunks = jax.tree.map(lambda x: x.reshape((self.num_envs, per_step) + x.shape[1:]), batch)
      def body(agent_state, xs):
        b, k = xs
        return self._update_one(agent_state, b, k)
      agent_state, metrics = jax.lax.scan(body, state.agent,
                                          (chunks, jax.random.split(k_update, self.num_envs)))
      metrics = jax.tree.map(lambda m: m[-1], metrics)
    return state.replace(agent=agent_state, key=key), metrics

  def _update_one(self, agent_state, batch, key):
    if self.utd_ratio == 1 or not hasattr(self.agent, "update_utd"):
      return self.agent.update(agent_state, batch, key)
    return self.agent.update_utd(agent_state, batch, key, self.utd_ratio)

  def act(self, state: LoopState, obs: jax.Array, random_action) -> jax.Array:
    """The next actions (num_envs, act_dim) with state.agent, from the keys `update` would use
    next (so acting before or after the update draws the same noise)."""
    _, _, _, k_act, k_rand = jax.random.split(state.key, 5)
    return self._act(state.agent, obs, k_act, k_rand, random_action)

  def update_act(self, state: LoopState, data: LoopData, obs: jax.Array, random_action,
                 do_update: bool = True) -> tuple[LoopState, dict]:
    """update, then the next actions with the updated policy (state.action)."""
    _, _, _, k_act, k_rand = jax.random.split(state.key, 5)
    state, metrics = self.update(state, data, do_update)
    action = self._act(state.agent, obs, k_act, k_rand, random_action)
    return state.replace(action=action), metrics

  def _act(self, agent_state, obs, k_act, k_rand, random_action) -> jax.Array:
    obs = jnp.asarray(obs, jnp.float32).reshape(self.num_envs, self.spec.obs_dim)
    policy = self.agent.act(agent_state, obs, k_act, deterministic=False)
    uniform = jax.random.uniform(k_rand, (self.num_envs, self.spec.act_dim),
                                 minval=-self.spec.max_action, maxval=self.spec.max_action)
    return jnp.where(random_action, uniform, policy)

  # -------------------------------------------------------------------------- augmentation
  def augment_round(self, state: LoopState, data: LoopData, generation: bool,
                    adaptation: bool) -> LoopState:
    """ATraDiff's rounds between policy updates (generation first, as Algorithm 1 stores
    before it samples)."""
    aug = state.aug
    if generation:
      aug = self.atradiff.generation_round(aug, data.aug)
    if adaptation:
      aug = self.atradiff.adaptation_round(aug, data.aug, state.buffer, state.agent)
    return state.replace(aug=aug)
