"""ATraDiff training data: padded trajectories and length-k windows (ATraDiff Sec. 4.1).

A trajectory of T transitions is the row sequence

    (s_1, a_1, r_1), ..., (s_T, a_T, r_T), (s_{T+1}, 0, 0), then k copies of (s_{T+1}, 0, 0)

("append k additional frames identical to the last frame"), and a generator of length k is
trained on the windows of k consecutive rows starting at every transition 1..T ("sub-trajectories
from every start position"). Windows that reach the end of the episode therefore end in
near-duplicate states, which is what the pruner (`pruner.py`) detects after generation.

Rows are stored once per dataset (`WindowData.rows`, padded per episode) with the start index of
every window, so windows are gathered on device (`gather_windows`) and never materialised: a
k = 25 window set of 1M Hopper transitions would otherwise take 1.5 GB.

Row layout: [s (obs_dim), a (act_dim), r (1)], z-scored per dimension with statistics fitted on
the real (unpadded) rows. The condition of a window is its first state s_1 (normalised),
optionally followed by a one-hot task id.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.normalize import NormStats


class WindowData(flax.struct.PyTreeNode):
  """Padded, normalised rows of a dataset and the start row of every window (device pytree)."""

  rows: jax.Array  # (R, D) normalised rows, episodes padded with `pad` copies of the last state
  starts: jax.Array  # (N,) int32: row index of transition n of the dataset
  remaining: jax.Array  # (N,) int32: transitions from n to the end of its episode (>= 1)
  task_ids: jax.Array  # (N,) int32 task id of transition n (0 without tasks)
  pad: int = flax.struct.field(pytree_node=False)  # copies appended per episode


def row_dim(obs_dim: int, act_dim: int) -> int:
  return obs_dim + act_dim + 1


def fit_row_stats(ds: OfflineDataset, eps: float = 1e-3) -> NormStats:
  """Per-dimension z-score of [s, a, r] over the real rows (states: observations and the last
  next_observation of each episode)."""
  ends = ds.episode_ends
  states = np.concatenate([ds.observations, ds.next_observations[ends]], axis=0)
  s = NormStats.fit(states, eps)
  a = NormStats.fit(ds.actions, eps)
  r = NormStats.fit(ds.rewards[:, None], eps)
  return NormStats(mean=np.concatenate([s.mean, a.mean, r.mean]).astype(np.float32),
                   std=np.concatenate([s.std, a.std, r.std]).astype(np.float32))


def padded_rows(ds: OfflineDataset, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Raw padded rows (R, D), window starts (N,) and remaining transitions (N,).

  Episode e with T_e transitions contributes T_e + 1 + pad rows; transition n of the dataset
  starts a window at row `starts[n]`.
  """
  if pad < 1:
    raise ValueError(f"atradiff: window padding must be >= 1, got {pad}")
  ends = ds.episode_ends
  begins = ds.episode_starts
  lengths = ends - begins + 1
  n_rows = int((lengths + 1 + pad).sum())
  d = row_dim(ds.obs_dim, ds.act_dim)
  rows = np.zeros((n_rows, d), np.float32)
  starts = np.zeros((len(ds),), np.int64)
  remaining = np.zeros((len(ds),), np.int64)
  o = 0
  for b, e, t in zip(begins, ends, lengths):
    rows[o:o + t, :ds.obs_dim] = ds.observations[b:e + 1]
    rows[o:o + t, ds.obs_dim:-1] = ds.actions[b:e + 1]
    rows[o:o + t, -1] = ds.rewards[b:e + 1]
    # The final state and its `pad` copies: zero action, zero reward.
    rows[o + t:o + t + 1 + pad, :ds.obs_dim] = ds.next_observations[e]
    starts[b:e + 1] = o + np.arange(t)
    remaining[b:e + 1] = t - np.arange(t)
    o += t + 1 + pad
  return rows, starts, remaining


def build_window_data(ds: OfflineDataset, stats: NormStats, max_length: int,
                      task_ids: np.ndarray | None = None) -> WindowData:
  """Device `WindowData` for windows of up to `max_length` rows (pad = max_length copies)."""
  rows, starts, remaining = padded_rows(ds, max_length)
  rows = (rows - np.asarray(stats.mean)) / np.asarray(stats.std)
  if task_ids is None:
    task_ids = np.zeros((len(ds),), np.int32)
  task_ids = np.asarray(task_ids, np.int32).reshape(-1)
  if task_ids.shape[0] != len(ds):
    raise ValueError(f"atradiff: task_ids has {task_ids.shape[0]} entries, dataset "
                     f"{ds.source} has {len(ds)} transitions")
  return WindowData(rows=jnp.asarray(rows, jnp.float32), starts=jnp.asarray(starts, jnp.int32),
                    remaining=jnp.asarray(remaining, jnp.int32),
                    task_ids=jnp.asarray(task_ids, jnp.int32), pad=int(max_length))


def make_condition(states_norm: jax.Array, task_ids: jax.Array | None,
                   num_tasks: int) -> jax.Array:
  """The generator condition: normalised first state, then a one-hot task id if num_tasks > 0."""
  if num_tasks <= 0:
    return states_norm
  onehot = jax.nn.one_hot(task_ids, num_tasks, dtype=states_norm.dtype)
  return jnp.concatenate([states_norm, onehot], axis=-1)


def gather_windows(data: WindowData, index: jax.Array, length: int) -> jax.Array:
  """Windows (B, length, D) starting at transitions `index` (B,)."""
  if length > data.pad:
    raise ValueError(f"atradiff: window length {length} exceeds the padding {data.pad}")
  rows = data.starts[index][:, None] + jnp.arange(length)[None, :]
  return data.rows[rows]


def sample_window_batch(data: WindowData, key: jax.Array, batch_size: int, length: int,
                        obs_dim: int, num_tasks: int) -> dict:
  """A diffusion batch {'x': (B, length * D), 'cond': (B, cond_dim)} of uniform windows."""
  index = jax.random.randint(key, (batch_size,), 0, data.starts.shape[0])
  w = gather_windows(data, index, length)
  cond = make_condition(w[:, 0, :obs_dim], data.task_ids[index], num_tasks)
  return {"x": w.reshape(batch_size, -1), "cond": cond}
