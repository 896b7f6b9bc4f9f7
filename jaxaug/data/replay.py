"""A device replay buffer as pure functions, and mixed sampling from several sources.

`ReplayBuffer` is a pytree (jit, scan and donate it like any state); `add` writes a batch into a
ring, `sample` draws uniformly from the filled rows. `sample_mixed` draws a fixed share of one
batch from each source, e.g. real ⊕ synthetic at ATraDiff's synthetic_ratio, RLPD's 50/50
offline/online, or GTA/SynthER's real + generated data.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxaug.data.dataset import Transitions, sample_transitions


class ReplayBuffer(flax.struct.PyTreeNode):
  data: Transitions  # capacity rows
  size: jax.Array  # int32 scalar: rows filled, <= capacity
  ptr: jax.Array  # int32 scalar: next row to write
  capacity: int = flax.struct.field(pytree_node=False)


def init_buffer(obs_dim: int, act_dim: int, capacity: int) -> ReplayBuffer:
  """An empty buffer of `capacity` zero rows (float32)."""
  if capacity <= 0:
    raise ValueError(f"replay buffer capacity must be positive, got {capacity}")
  z = lambda *shape: jnp.zeros((capacity,) + shape, jnp.float32)
  data = Transitions(observations=z(obs_dim), actions=z(act_dim), rewards=z(),
                     next_observations=z(obs_dim), terminals=z(), timeouts=z())
  return ReplayBuffer(data=data, size=jnp.zeros((), jnp.int32), ptr=jnp.zeros((), jnp.int32),
                      capacity=capacity)


def add(buf: ReplayBuffer, batch: Transitions) -> ReplayBuffer:
  """Writes `batch` (B <= capacity rows) at ptr, wrapping around; B is static under jit."""
  b = batch.rewards.shape[0]
  if b > buf.capacity:
    raise ValueError(f"batch of {b} rows does not fit a replay buffer of capacity {buf.capacity}")
  idx = (buf.ptr + jnp.arange(b, dtype=jnp.int32)) % buf.capacity
  data = jax.tree.map(lambda d, x: d.at[idx].set(jnp.asarray(x, d.dtype).reshape(
      (b,) + d.shape[1:])), buf.data, batch)
  return buf.replace(data=data, size=jnp.minimum(buf.size + b, buf.capacity).astype(jnp.int32),
                     ptr=((buf.ptr + b) % buf.capacity).astype(jnp.int32))


def sample(buf: ReplayBuffer, key: jax.Array, batch_size: int) -> Transitions:
  """Uniform sample with replacement from the filled rows (row 0, zeros, while empty)."""
  idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buf.size, 1))
  return jax.tree.map(lambda x: x[idx], buf.data)


def mixed_counts(ratios: Sequence[float], batch_size: int) -> tuple[int, ...]:
  """Static per-source counts ~ ratio * batch_size that sum exactly to batch_size.

  Each count is floor(ratio * batch_size); the remainder goes to the largest fractional parts
  (earlier sources win ties), i.e. rounding that keeps the total.
  """
  r = np.asarray(ratios, np.float64)
  if r.ndim != 1 or len(r) == 0 or (r < 0).any() or abs(r.sum() - 1.0) > 1e-6:
    raise ValueError(f"ratios must be non-negative and sum to 1, got {list(ratios)}")
  exact = r * batch_size
  counts = np.floor(exact + 1e-9).astype(np.int64)
  remainder = batch_size - int(counts.sum())
  order = np.argsort(-(exact - counts), kind="stable")
  counts[order[:remainder]] += 1
  return tuple(int(c) for c in counts)


def sample_mixed(sources: Sequence[ReplayBuffer | Transitions], ratios: Sequence[float],
                 key: jax.Array, batch_size: int, shuffle: bool = False) -> Transitions:
  """One batch with mixed_counts(ratios, batch_size)[i] rows drawn uniformly from sources[i].

  Rows come in source order unless `shuffle`; the order matters only for per-shard statistics,
  since losses average over the whole (global) batch. Jittable with static ratios/batch_size.
  """
  if len(sources) != len(ratios):
    raise ValueError(f"sample_mixed got {len(sources)} sources but {len(ratios)} ratios")
  counts = mixed_counts(ratios, batch_size)
  keys = jax.random.split(key, len(sources) + 1)
  parts = []
  for src, n, k in zip(sources, counts, keys[:-1]):
    if n == 0:
      continue
    if isinstance(src, ReplayBuffer):
      parts.append(sample(src, k, n))
    else:
      parts.append(sample_transitions(src, k, n))
  batch = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)
  if shuffle:
    perm = jax.random.permutation(keys[-1], batch_size)
    batch = jax.tree.map(lambda x: x[perm], batch)
  return batch
