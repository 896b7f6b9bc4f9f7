"""Importance indicators and pick-up strategies for online adaptation (ATraDiff Sec. 4.3, App. A.1).

Both keep a fixed-capacity set of real samples (rows of the online buffer D_o) with a priority:

* TD-error indicator: |r + gamma max_a' Q(s', a') - Q(s, a)| (max over a' approximated, as in SAC,
  by the policy's action and the min over the target critics). A 50k-entry "heap": new rows enter
  while there is room or when they beat the least important entry; before each generator update
  every entry's priority is recomputed with the current critic (so an entry that was unimportant
  can become important), and the 5k most important are used.
* Reward indicator: the return of the real trajectory the sample belongs to (static). A 5k-entry
  buffer updated the same way, plus rotation: after each update every used entry counts one
  use and is dropped after `max_uses` uses (older entries go first), and each used entry is also
  dropped at random with probability `drop_prob` regardless of its importance ("random
  dropping", Fig. 10).

The "heap" is a pair of fixed-size arrays with `lax.top_k` merges: the same semantics as a
bounded priority queue (evict the minimum), jittable, with no host round trip. Empty slots have
index -1 and priority -inf.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from jaxaug.data import replay
from jaxaug.data.dataset import Transitions


class ImportanceBuffer(flax.struct.PyTreeNode):
  index: jax.Array  # (C,) int32 row of D_o; -1 = empty
  priority: jax.Array  # (C,) float32; -inf = empty
  uses: jax.Array  # (C,) int32: generator updates this entry took part in
  age: jax.Array  # (C,) int32: insertion counter (larger = newer)
  clock: jax.Array  # () int32
  capacity: int = flax.struct.field(pytree_node=False)


def init_importance(capacity: int) -> ImportanceBuffer:
  if capacity <= 0:
    raise ValueError(f"importance buffer capacity must be positive, got {capacity}")
  return ImportanceBuffer(index=jnp.full((capacity,), -1, jnp.int32),
                          priority=jnp.full((capacity,), -jnp.inf, jnp.float32),
                          uses=jnp.zeros((capacity,), jnp.int32),
                          age=jnp.zeros((capacity,), jnp.int32),
                          clock=jnp.zeros((), jnp.int32), capacity=capacity)


def size(buf: ImportanceBuffer) -> jax.Array:
  return jnp.sum(buf.index >= 0)


def invalidate(buf: ImportanceBuffer, rows: jax.Array, valid: jax.Array | None = None):
  """Empties entries pointing at D_o `rows` (those rows were overwritten by the ring)."""
  valid = jnp.ones(rows.shape, bool) if valid is None else valid
  hit = jnp.any((buf.index[:, None] == rows[None, :]) & valid[None, :], axis=1)
  return buf.replace(index=jnp.where(hit, -1, buf.index),
                     priority=jnp.where(hit, -jnp.inf, buf.priority),
                     uses=jnp.where(hit, 0, buf.uses))


def insert(buf: ImportanceBuffer, rows: jax.Array, priority: jax.Array,
           valid: jax.Array | None = None) -> ImportanceBuffer:
  """Adds (rows, priority), then keeps the `capacity` most important entries (ties: newer)."""
  valid = jnp.ones(rows.shape, bool) if valid is None else valid
  buf = invalidate(buf, rows, valid)
  n = rows.shape[0]
  new_age = buf.clock + 1 + jnp.arange(n, dtype=jnp.int32)
  idx = jnp.concatenate([buf.index, jnp.where(valid, rows, -1).astype(jnp.int32)])
  pri = jnp.concatenate([buf.priority, jnp.where(valid, priority, -jnp.inf).astype(jnp.float32)])
  uses = jnp.concatenate([buf.uses, jnp.zeros((n,), jnp.int32)])
  age = jnp.concatenate([buf.age, new_age])
  # Rank by priority, newer first among equals; empty slots (-inf) last.
  score = jnp.where(idx >= 0, pri, -jnp.inf)
  order = jnp.lexsort((-age, -score))[:buf.capacity]
  return buf.replace(index=idx[order], priority=pri[order], uses=uses[order], age=age[order],
                     clock=buf.clock + n)


def refresh(buf: ImportanceBuffer, priority: jax.Array) -> ImportanceBuffer:
  """New priorities (C,) for the occupied entries (the TD-error indicator changes with Q)."""
  return buf.replace(priority=jnp.where(buf.index >= 0, priority, -jnp.inf))


def select_top(buf: ImportanceBuffer, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The k most important entries: (D_o rows (k,), valid (k,), slots (k,))."""
  k = min(k, buf.capacity)
  score = jnp.where(buf.index >= 0, buf.priority, -jnp.inf)
  _, slots = jax.lax.top_k(score, k)
  return buf.index[slots], buf.index[slots] >= 0, slots


def rotate(buf: ImportanceBuffer, key: jax.Array, slots: jax.Array, max_uses: int,
           drop_prob: float) -> ImportanceBuffer:
  """After an update with entries `slots`: count a use, drop entries used `max_uses` times,
  and drop each used entry with probability `drop_prob` (random dropping)."""
  used = jnp.zeros((buf.capacity,), bool).at[slots].set(True) & (buf.index >= 0)
  uses = buf.uses + used.astype(jnp.int32)
  drop = used & ((uses >= max_uses) | jax.random.bernoulli(key, drop_prob, (buf.capacity,)))
  return buf.replace(index=jnp.where(drop, -1, buf.index),
                     priority=jnp.where(drop, -jnp.inf, buf.priority),
                     uses=jnp.where(drop, 0, uses))


# ------------------------------------------------------------------------------ indicators

def td_error(td_error_fn, agent_state, batch: Transitions, key: jax.Array) -> jax.Array:
  """The TD-error indicator of `batch` (B,): the agent's own `td_error(state, batch, key)` (the
  agent protocol, jaxaug/types.py; for SAC, REDQ and RLPD |r + gamma m min_i Q'_i(s', a') -
  mean_i Q_i(s, a)|, a' ~ pi(s')). Never negative: it is a priority."""
  return jnp.abs(td_error_fn(agent_state, batch, key))


def rows_of(buf: replay.ReplayBuffer, rows: jax.Array) -> Transitions:
  return jax.tree.map(lambda x: x[jnp.clip(rows, 0, buf.capacity - 1)], buf.data)
