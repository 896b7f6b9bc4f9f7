"""A device replay buffer as pure functions, and mixed sampling from several sources.

`ReplayBuffer` is a pytree (jit, scan and donate it like any state); `add` writes a batch into a
ring, `add_masked` only the rows a mask selects, `sample` draws uniformly from the filled rows.

Every mixed batch in jaxaug comes from `sample_mixed` (one batch) or `sample_mixed_utd` (UTD
minibatches, each mixed on its own): a fixed share of the batch from each source, e.g. RLPD's
50/50 offline/online, GTA/SynthER's real + generated data, or (with a `Blend` source) ATraDiff's
modified buffer, whose every row comes from the synthetic buffer with probability rho.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Union

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


def add(buf: ReplayBuffer, batch: Transitions, aligned: bool = False) -> ReplayBuffer:
  """Writes `batch` (B <= capacity rows) at ptr, wrapping around; B is static under jit.

  One row (the online loop's per-env-step write) goes through dynamic_update_slice: in place
  and O(1) under donation. The general scatter lowers, for a single row on CPU, to a select
  over the whole ring: O(capacity) per env step, ~10x slower at 1M rows. `aligned` (the caller
  guarantees that ptr and capacity are multiples of B, e.g. every write has B rows, one per
  env) takes the same in-place path for B rows.
  """
  b = batch.rewards.shape[0]
  if b > buf.capacity:
    raise ValueError(f"batch of {b} rows does not fit a replay buffer of capacity {buf.capacity}")
  if aligned and buf.capacity % b:
    raise ValueError(f"replay.add(aligned=True): capacity {buf.capacity} is not a multiple of "
                     f"the batch's {b} rows")
  if b == 1 or aligned:
    def write(d, x):
      x = jnp.asarray(x, d.dtype).reshape((b,) + d.shape[1:])
      return jax.lax.dynamic_update_slice(d, x, (buf.ptr,) + (0,) * (d.ndim - 1))
    data = jax.tree.map(write, buf.data, batch)
  else:
    idx = (buf.ptr + jnp.arange(b, dtype=jnp.int32)) % buf.capacity
    data = jax.tree.map(lambda d, x: d.at[idx].set(jnp.asarray(x, d.dtype).reshape(
        (b,) + d.shape[1:])), buf.data, batch)
  return buf.replace(data=data, size=jnp.minimum(buf.size + b, buf.capacity).astype(jnp.int32),
                     ptr=((buf.ptr + b) % buf.capacity).astype(jnp.int32))


def add_masked(buf: ReplayBuffer, batch: Transitions, mask: jax.Array, wrap: bool = True
               ) -> ReplayBuffer:
  """Writes the rows of `batch` where `mask` is true, in order, at the ring pointer.

  For fixed-size batches of which only some rows are valid (e.g. one batched synthesis call),
  keeping every shape static under jit. More valid rows than capacity in one call wrap around
  like `add`: the newest win. With wrap=False the valid rows that would pass the end of the
  buffer are dropped instead (a fill that never overwrites): min(valid, capacity - ptr) are
  written.
  """
  n = batch.rewards.shape[0]
  if jnp.shape(mask) != (n,):
    raise ValueError(f"add_masked: mask has shape {jnp.shape(mask)}, expected ({n},) for a batch "
                     f"of {n} rows")
  mask = mask.astype(jnp.int32)
  count = jnp.sum(mask)
  offset = jnp.cumsum(mask) - 1  # position of each valid row among the valid rows
  # Rows that would be overwritten within this same call are dropped (keep the last capacity).
  keep = (mask > 0) & (offset >= count - buf.capacity)
  if not wrap:
    room = buf.capacity - buf.ptr
    keep = (mask > 0) & (offset < room)
    count = jnp.minimum(count, room)
  dest = jnp.where(keep, (buf.ptr + offset) % buf.capacity, buf.capacity)  # capacity: dropped
  data = jax.tree.map(
      lambda d, x: d.at[dest].set(jnp.asarray(x, d.dtype).reshape((n,) + d.shape[1:]),
                                  mode="drop"), buf.data, batch)
  return buf.replace(data=data,
                     size=jnp.minimum(buf.size + count, buf.capacity).astype(jnp.int32),
                     ptr=((buf.ptr + count) % buf.capacity).astype(jnp.int32))


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


@dataclasses.dataclass(frozen=True, eq=False)
class Blend:
  """A source whose every row comes from `extra` with probability `p`, else from `base`.

  ATraDiff's modified buffer D_o ∪ D_s (its Algorithm 1): base the real replay buffer, extra
  the synthetic one, p = rho. While `extra` is empty every row comes from `base`. `p` is a
  Python float (static under jit).
  """
  base: Union[ReplayBuffer, Transitions]
  extra: ReplayBuffer
  p: float


Source = Union[ReplayBuffer, Transitions, Blend, None]


def sample_blend(base: ReplayBuffer | Transitions, extra: ReplayBuffer, key: jax.Array,
                 batch_size: int, p: float) -> tuple[Transitions, jax.Array]:
  """`batch_size` rows of `Blend(base, extra, p)`, and which of them came from `extra`.

  Draws the per-row choice, then batch_size rows from each side, and keeps one per row (both
  sides are drawn so that every shape is static).
  """
  k_choice, k_base, k_extra = jax.random.split(key, 3)
  from_extra = jax.random.bernoulli(k_choice, p, (batch_size,)) & (extra.size > 0)
  a = _draw(base, k_base, batch_size)
  b = _draw(extra, k_extra, batch_size)
  batch = jax.tree.map(
      lambda x, y: jnp.where(from_extra.reshape((batch_size,) + (1,) * (x.ndim - 1)), y, x),
      a, b)
  return batch, from_extra


def _draw(src: Source, key: jax.Array, n: int) -> Transitions:
  if isinstance(src, ReplayBuffer):
    return sample(src, key, n)
  if isinstance(src, Blend):
    return sample_blend(src.base, src.extra, key, n, src.p)[0]
  if isinstance(src, Transitions):
    return sample_transitions(src, key, n)
  raise ValueError(f"sample_mixed: a source with a non-zero share must be a ReplayBuffer, "
                   f"Transitions or Blend, got {type(src).__name__}")


def sample_mixed(sources: Sequence[Source], ratios: Sequence[float], key: jax.Array,
                 batch_size: int, shuffle: bool = False) -> Transitions:
  """One batch with mixed_counts(ratios, batch_size)[i] rows drawn uniformly from sources[i].

  Source i always draws with the i-th of len(sources) + 1 keys split from `key`, so a source's
  rows do not depend on which other sources have a zero share; a source whose count is zero is
  not read and may be None. Rows come in source order unless `shuffle` (the last key); the order
  matters only for per-shard statistics, since losses average over the whole (global) batch.
  Jittable with static ratios/batch_size.
  """
  if len(sources) != len(ratios):
    raise ValueError(f"sample_mixed got {len(sources)} sources but {len(ratios)} ratios")
  counts = mixed_counts(ratios, batch_size)
  keys = jax.random.split(key, len(sources) + 1)
  parts = [_draw(src, k, n) for src, n, k in zip(sources, counts, keys[:-1]) if n]
  batch = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)
  if shuffle:
    perm = jax.random.permutation(keys[-1], batch_size)
    batch = jax.tree.map(lambda x: x[perm], batch)
  return batch


def sample_mixed_utd(sources: Sequence[Source], ratios: Sequence[float], key: jax.Array,
                     batch_size: int, utd_ratio: int, shuffle: bool = False) -> Transitions:
  """utd_ratio minibatches of `sample_mixed`, each with the exact shares, laid end to end.

  What the agents' `update_utd` expects (it slices consecutive minibatches of batch_size): every
  critic step sees the exact mix, not just the whole stacked batch. Minibatch j uses the j-th
  of utd_ratio keys split from `key`.
  """
  if utd_ratio < 1:
    raise ValueError(f"sample_mixed_utd: utd_ratio must be >= 1, got {utd_ratio}")
  keys = jax.random.split(key, utd_ratio)
  parts = jax.vmap(lambda k: sample_mixed(sources, ratios, k, batch_size, shuffle))(keys)
  return jax.tree.map(lambda x: x.reshape((utd_ratio * batch_size,) + x.shape[2:]), parts)


def sample_mixed_n(sources: Sequence[Source], ratios: Sequence[float], key: jax.Array, n: int,
                   batch_size: int) -> Transitions:
  """`sample_mixed_utd` for a sample size n given in rows (the online loop's `sample_fn`
  contract: n = utd_ratio * batch_size)."""
  if n % batch_size:
    raise ValueError(f"sample size {n} is not a multiple of batch_size {batch_size}")
  return sample_mixed_utd(sources, ratios, key, batch_size, n // batch_size)
