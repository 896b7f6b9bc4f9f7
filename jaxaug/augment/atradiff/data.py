"""ATraDiff training data (Sec. 4.1): the ATraDiff options of `jaxaug.data.windows`.

A trajectory of T transitions is the row sequence

    (s_1, a_1, r_1), ..., (s_T, a_T, r_T), (s_{T+1}, 0, 0), then k copies of (s_{T+1}, 0, 0)

("append k additional frames identical to the last frame"), and a generator of length k is
trained on the windows of k consecutive rows starting at every transition 1..T ("sub-trajectories
from every start position"). Windows that reach the end of the episode therefore end in
near-duplicate states, which is what the pruner (`pruner.py`) detects after generation.

The windows are those of the shared module (`windows.atradiff_windows`): the dataset's
normalised rows are stored once with one window per transition, and a window of any length
k <= max_length is gathered on device (`gather_windows`), its rows past the episode's end
filled with the final state; no window set is materialised (k = 25 windows of 1M Hopper
transitions would take 1.5 GB). `padded_rows` builds the padded row sequence above on the host,
the reference the gathered windows equal.

Row layout: [s (obs_dim), a (act_dim), r (1)], z-scored per dimension with statistics fitted on
the real (unpadded) rows (`fit_row_stats`, eps 1e-3). The condition of a window is its first
state s_1 (normalised), optionally followed by a one-hot task id.
"""

from __future__ import annotations

import numpy as np

from jaxaug.data import windows
from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.normalize import NormStats
from jaxaug.data.windows import (WindowData, first_states, gather_windows,  # noqa: F401
                                 make_condition, sample_window_batch)


def row_dim(obs_dim: int, act_dim: int) -> int:
  return obs_dim + act_dim + 1


def fit_row_stats(ds: OfflineDataset, eps: float = 1e-3) -> NormStats:
  """Per-dimension z-score of [s, a, r] over the real rows (states: observations and the last
  next_observation of each episode), float32."""
  return windows.fit_row_stats(ds, eps, final_states=True, dtype=np.float32)


def build_window_data(ds: OfflineDataset, stats: NormStats, max_length: int,
                      task_ids: np.ndarray | None = None) -> WindowData:
  """Device `WindowData` for windows of up to `max_length` rows, one per transition."""
  return windows.atradiff_windows(ds, stats, max_length, task_ids)


def padded_rows(ds: OfflineDataset, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Host reference: raw padded rows (R, D), window starts (N,) and remaining transitions (N,).

  Episode e with T_e transitions contributes T_e + 1 + pad rows; the window of transition n is
  rows[starts[n]:starts[n] + k].
  """
  if pad < 1:
    raise ValueError(f"atradiff: window padding must be >= 1, got {pad}")
  ends = ds.episode_ends
  begins = ds.episode_starts
  lengths = ends - begins + 1
  rows = np.zeros((int((lengths + 1 + pad).sum()), row_dim(ds.obs_dim, ds.act_dim)), np.float32)
  starts = np.zeros((len(ds),), np.int64)
  remaining = np.zeros((len(ds),), np.int64)
  real = windows.transition_rows(ds)
  o = 0
  for b, e, t in zip(begins, ends, lengths):
    rows[o:o + t] = real[b:e + 1]
    # The final state and its `pad` copies: zero action, zero reward.
    rows[o + t:o + t + 1 + pad, :ds.obs_dim] = ds.next_observations[e]
    starts[b:e + 1] = o + np.arange(t)
    remaining[b:e + 1] = t - np.arange(t)
    o += t + 1 + pad
  return rows, starts, remaining
