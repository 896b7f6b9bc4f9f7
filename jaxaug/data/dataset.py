"""The one dataset representation used everywhere in jaxaug.

`Transitions` is the device-side pytree (flat arrays with a leading transition axis), what
agents see as a batch and what is sampled inside jit. `OfflineDataset` is the host-side
container: the same arrays as numpy plus episode boundaries, optional simulator state
(infos/qpos, infos/qvel) and free-form metadata. Loaders produce an `OfflineDataset`; training
moves `dataset.transitions()` to the device once.

Conventions (D4RL's):
  * `terminals[i] = 1` when the episode truly ended at transition i (no bootstrapping);
  * `timeouts[i] = 1` when it was cut by a time limit (bootstrapping allowed);
  * an episode ends at i when terminals[i] or timeouts[i], and the last transition of the
    dataset always closes an episode (`episode_ends`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

TRANSITION_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals",
                     "timeouts")


class Transitions(flax.struct.PyTreeNode):
  """A batch (or a whole dataset) of transitions; every leaf has a leading axis N."""

  observations: jax.Array  # (N, obs_dim) float32
  actions: jax.Array  # (N, act_dim) float32
  rewards: jax.Array  # (N,) float32
  next_observations: jax.Array  # (N, obs_dim) float32
  terminals: jax.Array  # (N,) float32 in {0, 1}
  timeouts: jax.Array  # (N,) float32 in {0, 1}

  @property
  def size(self) -> int:
    return self.rewards.shape[0]

  @property
  def masks(self) -> jax.Array:
    """1 - terminal: the bootstrapping mask for TD targets."""
    return 1.0 - self.terminals


def sample_transitions(data: Transitions, key: jax.Array, batch_size: int) -> Transitions:
  """Uniformly sample `batch_size` transitions with replacement; pure, jittable."""
  idx = jax.random.randint(key, (batch_size,), 0, data.rewards.shape[0])
  return jax.tree.map(lambda x: x[idx], data)


def concatenate(parts: list[Transitions]) -> Transitions:
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)


@dataclasses.dataclass
class OfflineDataset:
  """Host-side dataset: numpy arrays + episode structure + optional infos and metadata."""

  observations: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  next_observations: np.ndarray
  terminals: np.ndarray
  timeouts: np.ndarray
  infos: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # e.g. qpos, qvel
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
  source: str = "<memory>"  # file or name it came from, used in error messages

  def __post_init__(self):
    self.observations = np.asarray(self.observations, np.float32)
    self.actions = np.asarray(self.actions, np.float32)
    self.rewards = np.asarray(self.rewards, np.float32).reshape(-1)
    self.next_observations = np.asarray(self.next_observations, np.float32)
    self.terminals = np.asarray(self.terminals, np.float32).reshape(-1)
    self.timeouts = np.asarray(self.timeouts, np.float32).reshape(-1)

  def __len__(self) -> int:
    return int(self.rewards.shape[0])

  @property
  def obs_dim(self) -> int:
    return int(self.observations.shape[1])

  @property
  def act_dim(self) -> int:
    return int(self.actions.shape[1])

  @property
  def episode_ends(self) -> np.ndarray:
    """Indices i where an episode ends (terminal, timeout, or the last transition)."""
    done = (self.terminals > 0) | (self.timeouts > 0)  # a fresh array
    if len(done):
      done[-1] = True
    return np.nonzero(done)[0]

  @property
  def episode_starts(self) -> np.ndarray:
    ends = self.episode_ends
    return np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if len(ends) else ends

  def episode_returns(self) -> np.ndarray:
    """Undiscounted return of each episode, in episode order."""
    ends = self.episode_ends
    csum = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
    return (csum[ends + 1] - csum[self.episode_starts]).astype(np.float64)

  def episode_lengths(self) -> np.ndarray:
    return self.episode_ends - self.episode_starts + 1

  def transitions(self) -> Transitions:
    """The dataset as a device pytree (committed to the default device)."""
    return Transitions(**{f: jnp.asarray(getattr(self, f)) for f in TRANSITION_FIELDS})

  def numpy_transitions(self) -> Transitions:
    return Transitions(**{f: getattr(self, f) for f in TRANSITION_FIELDS})

  def subset(self, idx: np.ndarray) -> "OfflineDataset":
    return OfflineDataset(
        **{f: getattr(self, f)[idx] for f in TRANSITION_FIELDS},
        infos={k: v[idx] for k, v in self.infos.items()},
        metadata=dict(self.metadata), source=self.source)

  @staticmethod
  def concatenate(parts: list["OfflineDataset"], source: str = "<concatenated>") -> "OfflineDataset":
    infos = {}
    keys = set.intersection(*(set(p.infos) for p in parts)) if parts else set()
    for k in sorted(keys):
      infos[k] = np.concatenate([p.infos[k] for p in parts])
    return OfflineDataset(
        **{f: np.concatenate([getattr(p, f) for p in parts]) for f in TRANSITION_FIELDS},
        infos=infos, metadata={"parts": [p.metadata for p in parts]}, source=source)
