"""The modified replay buffer D = D_o ∪ D_s (ATraDiff Sec. 4.2, Algorithm 1).

  Store z = (s, a, s', r):   write z into D_o; with probability rho / ((1 - rho) L) synthesise a
                             trajectory from s' and write its transitions into D_s.
  Sample:                    each row from D_s with probability rho, else from D_o.

With L the mean number of transitions per synthetic trajectory, |D_s| / |D_o| tends to
rho / (1 - rho), the same ratio the sampler draws at. `rho` is `synthetic_ratio`, L is
`expected_length`.

D_o is the online loop's own replay buffer (jaxaug.data.replay), D_s a second one of the same
type; these functions take both, so any agent that consumes batches (SAC, REDQ, RLPD) is
untouched. `add_masked` writes only the valid rows of a fixed-size synthetic batch (the output
of one batched synthesis call), keeping every shape static under jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxaug.data import replay
from jaxaug.data.dataset import Transitions


def store_probability(synthetic_ratio: float, expected_length: float) -> float:
  """rho / ((1 - rho) L), clipped to [0, 1] (Algorithm 1, line 3)."""
  if not 0.0 <= synthetic_ratio < 1.0:
    raise ValueError(f"atradiff.synthetic_ratio must be in [0, 1), got {synthetic_ratio}")
  if not expected_length > 0:
    raise ValueError(f"atradiff.expected_length must be positive, got {expected_length}")
  return float(min(1.0, synthetic_ratio / ((1.0 - synthetic_ratio) * expected_length)))


def add_masked(buf: replay.ReplayBuffer, batch: Transitions, mask: jax.Array) -> replay.ReplayBuffer:
  """Writes the rows of `batch` where `mask` is true, in order, at the ring pointer.

  Rows beyond capacity in one call wrap around like `replay.add` (the newest win).
  """
  n = batch.rewards.shape[0]
  mask = mask.astype(jnp.int32)
  count = jnp.sum(mask)
  offset = jnp.cumsum(mask) - 1  # position of each valid row among the valid rows
  # Rows that would be overwritten within this same call are dropped (keep the last capacity).
  keep = (mask > 0) & (offset >= count - buf.capacity)
  dest = jnp.where(keep, (buf.ptr + offset) % buf.capacity, buf.capacity)  # capacity: dropped
  data = jax.tree.map(
      lambda d, x: d.at[dest].set(jnp.asarray(x, d.dtype).reshape((n,) + d.shape[1:]),
                                  mode="drop"), buf.data, batch)
  return buf.replace(data=data,
                     size=jnp.minimum(buf.size + count, buf.capacity).astype(jnp.int32),
                     ptr=((buf.ptr + count) % buf.capacity).astype(jnp.int32))


def sample(real: replay.ReplayBuffer, synthetic: replay.ReplayBuffer, key: jax.Array,
           batch_size: int, synthetic_ratio: float) -> tuple[Transitions, jax.Array]:
  """A batch where each row comes from D_s with probability rho (Algorithm 1, lines 12-18).

  Returns (batch, from_synthetic (B,) bool). While D_s is empty every row comes from D_o.
  """
  k_choice, k_real, k_syn = jax.random.split(key, 3)
  from_syn = jax.random.bernoulli(k_choice, synthetic_ratio, (batch_size,))
  from_syn = from_syn & (synthetic.size > 0)
  r = replay.sample(real, k_real, batch_size)
  s = replay.sample(synthetic, k_syn, batch_size)
  batch = jax.tree.map(
      lambda a, b: jnp.where(from_syn.reshape((batch_size,) + (1,) * (a.ndim - 1)), b, a), r, s)
  return batch, from_syn
