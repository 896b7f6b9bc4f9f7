"""S4RL (Sinha et al., CoRL 2021) Gaussian state augmentation: s + eps, eps ~ N(0, std^2).

std = 3e-4 (the value GTA App. C.1 uses). Two forms:
  * `augment_batch`: jittable, on a Transitions batch inside an agent's update (fresh noise each
    step, as in S4RL); the offline trainer applies it to every sampled batch when
    `config.augment.s4rl_std` > 0, for every agent (DTQL included) and on top of staged
    (`augment.path`) or composed (`augment.source`) generated data;
  * `augment`: a host-side augmented copy of a dataset (`num_copies` noisy copies), for the
    data-quality comparison and for training on a fixed augmented dataset.
`augment_batch` noises observations and next observations independently; `augment` gives a
next observation the same noise as the identical observation of the following row inside an
episode (the copy stays a set of consistent episodes). Actions, rewards, terminals are kept.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxaug.data.dataset import OfflineDataset, Transitions

DEFAULT_STD = 3e-4


def augment_batch(batch: Transitions, key: jax.Array, std: float = DEFAULT_STD,
                  scale: jax.Array | None = None) -> Transitions:
  """Fresh N(0, std^2) noise on a batch's states (jittable). `scale` (obs_dim,) multiplies the
  noise per dimension, e.g. 1 / obs_std when the batch holds normalised observations, so that
  `std` stays in raw state units."""
  k1, k2 = jax.random.split(key)
  sd = std if scale is None else std * scale
  return batch.replace(
      observations=batch.observations
      + sd * jax.random.normal(k1, batch.observations.shape, batch.observations.dtype),
      next_observations=batch.next_observations
      + sd * jax.random.normal(k2, batch.next_observations.shape, batch.next_observations.dtype))


def augment(dataset: OfflineDataset, seed: int = 0, std: float = DEFAULT_STD,
            num_copies: int = 1) -> OfflineDataset:
  if std < 0 or num_copies < 1:
    raise ValueError(f"s4rl.augment: need std >= 0 and num_copies >= 1, got {std}, {num_copies}")
  rng = np.random.default_rng(seed)
  n = len(dataset)
  # Where next_observations[t] is observations[t+1] (inside an episode), it gets the same noise,
  # so the augmented copy is still a set of consistent episodes.
  cont = np.zeros(n, bool)
  if n > 1:
    cont[:-1] = ~((dataset.terminals[:-1] > 0) | (dataset.timeouts[:-1] > 0)) & np.all(
        dataset.next_observations[:-1] == dataset.observations[1:], axis=1)
  parts = []
  for _ in range(num_copies):
    eps = std * rng.standard_normal(dataset.observations.shape)
    eps_next = std * rng.standard_normal(dataset.next_observations.shape)
    eps_next[:-1][cont[:-1]] = eps[1:][cont[:-1]]
    parts.append(OfflineDataset(
        observations=dataset.observations + eps,
        actions=dataset.actions, rewards=dataset.rewards,
        next_observations=dataset.next_observations + eps_next,
        terminals=dataset.terminals, timeouts=dataset.timeouts, infos=dict(dataset.infos),
        metadata={}, source=dataset.source))
  out = parts[0] if num_copies == 1 else OfflineDataset.concatenate(parts, source=dataset.source)
  out.metadata = {"method": "s4rl", "std": float(std), "num_copies": int(num_copies),
                  "seed": int(seed), "base": dataset.source}
  out.source = f"s4rl({dataset.source})"
  return out
