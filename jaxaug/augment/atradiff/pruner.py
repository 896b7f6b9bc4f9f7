"""The non-parametric trajectory pruner (ATraDiff Sec. 4.1, "Generation of trajectories with
flexible lengths").

For generated states s_1..s_k, with c_j = sim(s_j, s_{j+1}) (j = 1..k-1) the similarity of
adjacent states, a candidate end state i (2 <= i <= k-1) splits the similarities into

    prefix  pre_i = mean(c_1 .. c_{i-1})   (moves among s_1..s_i: a real trajectory)
    suffix  suf_i = mean(c_i .. c_{k-1})   (moves among s_i..s_k: near-duplicate frames)

and the end is the i with the largest difference. The paper writes |pre_i - suf_i| with
overlapping index ranges; we use disjoint ranges (every c_j counted once) and the signed
difference suf_i - pre_i, which is the paper's stated assumption ("the average similarity before
the ending point should be significantly lower than that after") and never cuts a trajectory
whose *start* is static. If the best difference is below `min_gap`, the window holds no ending
(the estimator asked for a length past the episode's end only up to rounding) and the whole
window is kept.

Similarity: sim(s, s') = exp(-||s - s'||_2 / sqrt(obs_dim)) on normalised states, in (0, 1],
1 for identical states (the paper does not specify the similarity).

The result is the number of transitions to keep, l = i - 1 (transitions z_j = (s_j, a_j,
s_{j+1}, r_j), j = 1..l); without an ending l = k - 1.

That is `rule="signed"`, jaxaug's reading. `rule="paper"` is the formula as printed:
pre_i = mean(c_1 .. c_i), suf_i = mean(c_{i-1} .. c_{k-1}) (ranges overlapping in c_{i-1}, c_i),
end = argmax over 1 < i < k of |pre_i - suf_i|, always cut there (no `min_gap`). With the
absolute value a window that starts slowly and then moves is cut at its start, and a window
without an ending is still cut somewhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def adjacent_similarity(states: jax.Array) -> jax.Array:
  """(B, k, obs_dim) states -> (B, k-1) similarities exp(-||s_{j+1} - s_j|| / sqrt(obs_dim))."""
  diff = states[:, 1:] - states[:, :-1]
  dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1) + 1e-12)
  return jnp.exp(-dist / jnp.sqrt(jnp.asarray(states.shape[-1], states.dtype)))


def split_gaps(sim: jax.Array) -> jax.Array:
  """(B, k-1) similarities -> (B, k) gaps suf_i - pre_i at end state i (1-based; index i-1).

  Entries for i = 1 and i = k (no prefix or no suffix) are -inf.
  """
  b, m = sim.shape  # m = k - 1
  k = m + 1
  csum = jnp.concatenate([jnp.zeros((b, 1), sim.dtype), jnp.cumsum(sim, axis=1)], axis=1)
  i = jnp.arange(1, k + 1)  # end-state index, 1-based
  n_pre = i - 1  # c_1..c_{i-1}
  n_suf = k - i  # c_i..c_{k-1}
  pre_sum = csum[:, jnp.clip(n_pre, 0, m)]
  suf_sum = csum[:, m:m + 1] - pre_sum
  pre = pre_sum / jnp.maximum(n_pre, 1)
  suf = suf_sum / jnp.maximum(n_suf, 1)
  valid = (n_pre >= 1) & (n_suf >= 1)
  return jnp.where(valid[None, :], suf - pre, -jnp.inf)


def split_gaps_paper(sim: jax.Array) -> jax.Array:
  """(B, k-1) similarities -> (B, k) |pre_i - suf_i| as printed in the paper (1-based i at
  index i-1): pre_i = mean(c_1..c_i), suf_i = mean(c_{i-1}..c_{k-1}); -inf for i = 1 and k."""
  b, m = sim.shape  # m = k - 1
  k = m + 1
  csum = jnp.concatenate([jnp.zeros((b, 1), sim.dtype), jnp.cumsum(sim, axis=1)], axis=1)
  i = jnp.arange(1, k + 1)
  valid = (i > 1) & (i < k)
  ic = jnp.clip(i, 2, k - 1)  # keeps the (masked) edge entries finite
  pre = csum[:, ic] / ic  # c_1..c_i
  suf = (csum[:, m:m + 1] - csum[:, ic - 2]) / (k - ic + 1)  # c_{i-1}..c_{k-1}
  return jnp.where(valid[None, :], jnp.abs(pre - suf), -jnp.inf)


RULES = ("paper", "signed")


def prune_lengths(states: jax.Array, min_gap: float = 0.1, rule: str = "signed") -> jax.Array:
  """(B, k, obs_dim) generated states -> (B,) int32 transitions to keep (1..k-1)."""
  if rule not in RULES:
    raise ValueError(f"pruner rule must be one of {RULES}, got {rule!r}")
  k = states.shape[1]
  if k < 2:
    raise ValueError(f"prune_lengths needs windows of >= 2 states, got {k}")
  if k < 3:  # no interior split point
    return jnp.full((states.shape[0],), k - 1, jnp.int32)
  if rule == "paper":
    end = jnp.argmax(split_gaps_paper(adjacent_similarity(states)), axis=1) + 1
    return (end - 1).astype(jnp.int32)
  gaps = split_gaps(adjacent_similarity(states))
  end = jnp.argmax(gaps, axis=1) + 1  # 1-based end state
  best = jnp.max(gaps, axis=1)
  keep = jnp.where(best >= min_gap, end - 1, k - 1)
  return keep.astype(jnp.int32)
