"""The modified replay buffer D = D_o ∪ D_s (ATraDiff Sec. 4.2, Algorithm 1).

  Store z = (s, a, s', r):   write z into D_o; with probability rho / ((1 - rho) L) synthesise a
                             trajectory from s' and write its transitions into D_s.
  Sample:                    each row from D_s with probability rho, else from D_o.

With L the mean number of transitions per synthetic trajectory, |D_s| / |D_o| tends to
rho / (1 - rho), the same ratio the sampler draws at. `rho` is `synthetic_ratio`, L is
`expected_length`.

D_o is the online loop's own replay buffer (jaxaug.data.replay), D_s a second one of the same
type; the sampler takes both, so any agent that consumes batches (SAC, REDQ, RLPD) is
untouched. Writing and sampling are jaxaug.data.replay's: `replay.add_masked` writes the valid
rows of a fixed-size synthetic batch (one batched synthesis call) into D_s, and the modified
buffer is the source `replay.Blend(D_o, D_s, rho)` of `replay.sample_mixed`; `sample` below is
that source alone.
"""

from __future__ import annotations

import jax

from jaxaug.data import replay
from jaxaug.data.dataset import Transitions


def store_probability(synthetic_ratio: float, expected_length: float) -> float:
  """rho / ((1 - rho) L), clipped to [0, 1] (Algorithm 1, line 3)."""
  if not 0.0 <= synthetic_ratio < 1.0:
    raise ValueError(f"atradiff.synthetic_ratio must be in [0, 1), got {synthetic_ratio}")
  if not expected_length > 0:
    raise ValueError(f"atradiff.expected_length must be positive, got {expected_length}")
  return float(min(1.0, synthetic_ratio / ((1.0 - synthetic_ratio) * expected_length)))


# The masked ring write, re-exported under the name ATraDiff's code and tests use.
add_masked = replay.add_masked


def sample(real: replay.ReplayBuffer, synthetic: replay.ReplayBuffer, key: jax.Array,
           batch_size: int, synthetic_ratio: float) -> tuple[Transitions, jax.Array]:
  """A batch where each row comes from D_s with probability rho (Algorithm 1, lines 12-18).

  Returns (batch, from_synthetic (B,) bool). While D_s is empty every row comes from D_o.
  """
  return replay.sample_blend(real, synthetic, key, batch_size, synthetic_ratio)
