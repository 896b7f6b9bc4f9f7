"""Trajectory windows for the trajectory-level generators of GTA and ATraDiff (one module).

A window is a run of rows of D = obs_dim + act_dim + 1 features [s_t, a_t, r_t] over consecutive
transitions of one episode. Where the window runs past the episode's last transition, its rows
hold the final state s' (the next observation of that transition) with the action and reward
entries of a "zero" row, so every window is a fixed-size array. The two methods differ only in
options (`WindowSpec`):

  GTA (Sec. 4.1, App. A.1; `build_windows` defaults)      ATraDiff (Sec. 4.1; `atradiff_windows`)
  ------------------------------------------------------  ----------------------------------------
  horizon H rows = H - 1 transitions + the final state    windows of any length k <= horizon
  row (`final_state_row`), e.g. 31 + 1 for H = 32         (the longest generator's k), k
                                                          transitions, no reserved final row
  windows that fit inside an episode (stride 1); short    a window at every transition
  episodes `skip`ped or `pad`ded (one window from the     (`every_start`); the tail past the
  start, `n` = episode length)                            episode end repeats the final state: the
                                                          paper's "k copies of the last frame"
  terminal penalty: r~ = r - 100 on true terminals (no    no terminal encoding (penalty 0)
  binary channel, App. A.1; 0 on maze datasets)
  condition: scaled discounted return-to-go (`returns`)   condition: normalised first state (+ one
                                                          hot task id, `make_condition`)
  rows stored raw, normalised after gathering; the        rows stored normalised (on the host);
  final-state rows' action/reward set to 0 after          the final-state rows' action/reward are
  normalisation (they are masked out of the loss)         normalised zeros
  row normaliser: one z-score over [s, a, r] rows of      states (+ every episode's final state),
  the transitions, float64, eps 1e-5                      actions, rewards fitted apart, float32,
                                                          eps 1e-3

Storage: the device holds the transitions' rows (N, D), their next observations and terminal
flags, and per window its first transition and the transitions left to its episode's end;
windows are gathered inside jit (`gather`) and never materialised (GTA's official code builds
every window eagerly, H times the dataset's memory; ATraDiff's k = 25 windows of 1M Hopper
transitions would take 1.5 GB). Windows cut from the online replay ring (ATraDiff's adaptation)
are assembled by the same `assemble`.

GTA's decoding has two modes (`decode`):
  * official (`source_terminals=...`): terminal flags copied from the real window the sample was
    made from, the generated reward kept as generated (a terminal keeps its ~-100);
  * decoded (`source_terminals=None`): the flag is read from the generated reward
    (r~ < penalty / 2) and the penalty is added back, so the output holds true rewards.

GTA's condition is the discounted (gamma 0.99) return-to-go from the window's first transition
to the end of its episode, on encoded rewards (penalty included), times `return_scale` (0.01) so
that it is O(1) for the embedding MLP.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.normalize import NormStats

SHORT_EPISODE_MODES = ("pad", "skip")
CONDITIONS = ("return", "first_state")


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  obs_dim: int
  act_dim: int
  horizon: int = 32  # rows of the longest window
  terminal_penalty: float = -100.0  # added to the reward of true terminals (0: none)
  final_state_row: bool = True  # GTA: the last row is reserved for the final state
  every_start: bool = False  # ATraDiff: a window at every transition (tails padded)
  condition: str = "return"  # 'return' (GTA) or 'first_state' (ATraDiff)
  prenormalized: bool = False  # rows stored normalised (ATraDiff) or raw (GTA)

  @property
  def row_dim(self) -> int:
    return self.obs_dim + self.act_dim + 1

  @property
  def transitions(self) -> int:
    """Most transitions in a window of `horizon` rows."""
    return self.horizon - int(self.final_state_row)


class WindowData(flax.struct.PyTreeNode):
  """Device-resident transition rows + per-window start, remaining transitions and condition."""

  rows: jax.Array  # (N, D) [s, a, r~] of every transition (raw, or normalised if prenormalized)
  next_observations: jax.Array  # (N, obs_dim) in the rows' units
  terminals: jax.Array  # (N,) 0/1 true terminal flags of the real data
  starts: jax.Array  # (W,) int32 index of the window's first transition
  remaining: jax.Array  # (W,) int32 transitions from the window's start to its episode's end
  window_episode: jax.Array  # (W,) int32 index (among kept episodes) of the window's episode
  tail: jax.Array  # (act_dim + 1,) action/reward entries of the final-state rows (rows' units)
  mean: jax.Array  # (D,) row normaliser
  std: jax.Array  # (D,)
  returns: jax.Array | None = None  # (W,) 'return': scaled discounted return-to-go
  episode_returns: jax.Array | None = None  # (E,) 'return': the same from each episode's start
  task_ids: jax.Array | None = None  # (W,) int32 'first_state': task id (0 without tasks)
  spec: WindowSpec = flax.struct.field(pytree_node=False, default=None)

  @property
  def num_windows(self) -> int:
    return int(self.starts.shape[0])

  @property
  def lengths(self) -> jax.Array:
    """(W,) valid transitions of each full-horizon window (H - 1 unless padded)."""
    return jnp.minimum(self.remaining, self.spec.transitions)

  @property
  def rewards(self) -> jax.Array:
    """(N,) the rows' reward column: the terminal penalty included, in the rows' units."""
    return self.rows[:, -1]

  @property
  def pad(self) -> int:
    """Rows of the longest window (ATraDiff's name: copies of the last frame appended)."""
    return self.spec.horizon

  @property
  def stats(self) -> NormStats:
    return NormStats(mean=self.mean, std=self.std)


# ----------------------------------------------------------------------- host-side preparation

def discounted_returns_to_go(rewards: np.ndarray, episode_starts: np.ndarray,
                             episode_ends: np.ndarray, discount: float) -> np.ndarray:
  """G_t = r_t + gamma G_{t+1} within each episode (float64 on the host)."""
  r = np.asarray(rewards, np.float64)
  out = np.zeros_like(r)
  for s, e in zip(episode_starts, episode_ends):
    g = 0.0
    seg = r[s:e + 1]
    res = np.empty_like(seg)
    for i in range(len(seg) - 1, -1, -1):
      g = seg[i] + discount * g
      res[i] = g
    out[s:e + 1] = res
  return out


def transition_rows(dataset: OfflineDataset) -> np.ndarray:
  """(N, D) raw rows [s, a, r] of the dataset's transitions."""
  return np.concatenate([dataset.observations, dataset.actions, dataset.rewards[:, None]], axis=1)


def fit_row_stats(dataset: OfflineDataset, eps: float = 1e-5, final_states: bool = False,
                  dtype=np.float64) -> NormStats:
  """Per-dimension z-score of the rows [s, a, r] (float32 stats, std including eps).

  GTA (defaults): one fit over the transitions' rows in float64, eps 1e-5. ATraDiff
  (`final_states=True`, float32, eps 1e-3): the states also include every episode's final next
  state (it appears in the windows), so states, actions and rewards are fitted as separate blocks.
  """
  if final_states:
    states = np.concatenate([dataset.observations, dataset.next_observations[dataset.episode_ends]])
    blocks = [states, dataset.actions, dataset.rewards[:, None]]
  else:
    blocks = [transition_rows(dataset)]
  return NormStats.concat([NormStats.fit(b, eps, dtype) for b in blocks]).astype(np.float32)


def fit_row_normalizer(dataset: OfflineDataset, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
  """GTA's row normaliser as (mean, std) arrays."""
  stats = fit_row_stats(dataset, eps)
  return stats.mean, stats.std


def _window_starts(dataset: OfflineDataset, n: int, every_start: bool, short_episodes: str):
  """Per kept episode: window starts, and the kept episodes' first transitions."""
  starts, episode, first = [], [], []
  for s, e in zip(dataset.episode_starts, dataset.episode_ends):
    length = e - s + 1
    if every_start:
      st = np.arange(s, e + 1)
    elif length >= n:
      st = np.arange(s, e - n + 2)
    elif short_episodes == "pad":
      st = np.array([s])
    else:
      continue  # skip: the official GTA loader drops episodes shorter than the window
    starts.append(st)
    episode.append(np.full(st.shape, len(first)))
    first.append(s)
  return starts, episode, np.asarray(first, np.int64)


def build_windows(dataset: OfflineDataset, horizon: int = 32, terminal_penalty: float = -100.0,
                  discount: float = 0.99, return_scale: float = 0.01,
                  short_episodes: str = "skip", *, final_state_row: bool = True,
                  every_start: bool = False, condition: str = "return",
                  stats: NormStats | None = None, prenormalized: bool = False,
                  task_ids: np.ndarray | None = None) -> WindowData:
  """Windows of a dataset (see the module doc); the defaults are GTA's.

  `stats` defaults to `fit_row_stats(dataset)` (GTA's). `task_ids` (N,) per transition, for the
  'first_state' condition (default all 0).
  """
  min_horizon = 1 + int(final_state_row)
  if horizon < min_horizon:
    raise ValueError(f"window horizon must be >= {min_horizon}, got {horizon}")
  if short_episodes not in SHORT_EPISODE_MODES:
    raise ValueError(f"short_episodes: expected one of {SHORT_EPISODE_MODES}, got "
                     f"{short_episodes!r}")
  if condition not in CONDITIONS:
    raise ValueError(f"window condition: expected one of {CONDITIONS}, got {condition!r}")
  if len(dataset) == 0:
    raise ValueError(f"{dataset.source}: empty dataset, no windows")
  spec = WindowSpec(dataset.obs_dim, dataset.act_dim, int(horizon), float(terminal_penalty),
                    final_state_row=final_state_row, every_start=every_start, condition=condition,
                    prenormalized=prenormalized)
  n = spec.transitions
  starts, episode, ep_first = _window_starts(dataset, n, every_start, short_episodes)
  if not starts:
    raise ValueError(f"{dataset.source}: no episode has >= {n} transitions (horizon {horizon}); "
                     "use short_episodes='pad' or a smaller horizon")
  starts = np.concatenate(starts).astype(np.int32)
  episode = np.concatenate(episode).astype(np.int32)
  ends = np.zeros((len(dataset),), np.int64)
  for s, e in zip(dataset.episode_starts, dataset.episode_ends):
    ends[s:e + 1] = e
  remaining = (ends[starts] - starts + 1).astype(np.int32)

  # GTA's terminal encoding, in float64 as its return-to-go (non-terminal rewards unchanged).
  enc_r = np.where(dataset.terminals > 0, dataset.rewards.astype(np.float64) + terminal_penalty,
                   dataset.rewards)
  rows = np.concatenate([dataset.observations, dataset.actions, enc_r[:, None]], axis=1)
  rows = rows.astype(np.float32)
  nxt = np.asarray(dataset.next_observations, np.float32)
  tail = np.zeros((dataset.act_dim + 1,), np.float32)
  stats = fit_row_stats(dataset) if stats is None else stats
  mean, std = np.asarray(stats.mean, np.float32), np.asarray(stats.std, np.float32)
  if mean.shape != (spec.row_dim,) or std.shape != (spec.row_dim,):
    raise ValueError(f"{dataset.source}: row stats have shapes {mean.shape}/{std.shape}, rows "
                     f"have {spec.row_dim} features")
  if prenormalized:
    rows = (rows - mean) / std
    nxt = (nxt - mean[:spec.obs_dim]) / std[:spec.obs_dim]
    tail = (tail - mean[spec.obs_dim:]) / std[spec.obs_dim:]

  extra = {}
  if condition == "return":
    rtg = discounted_returns_to_go(enc_r, dataset.episode_starts, dataset.episode_ends, discount)
    extra["returns"] = jnp.asarray((rtg[starts] * return_scale).astype(np.float32))
    extra["episode_returns"] = jnp.asarray((rtg[ep_first] * return_scale).astype(np.float32))
  else:
    if task_ids is None:
      task_ids = np.zeros((len(dataset),), np.int32)
    task_ids = np.asarray(task_ids, np.int32).reshape(-1)
    if task_ids.shape[0] != len(dataset):
      raise ValueError(f"task_ids has {task_ids.shape[0]} entries, dataset {dataset.source} has "
                       f"{len(dataset)} transitions")
    extra["task_ids"] = jnp.asarray(task_ids[starts])
  return WindowData(
      rows=jnp.asarray(rows), next_observations=jnp.asarray(nxt),
      terminals=jnp.asarray((dataset.terminals > 0).astype(np.float32)),
      starts=jnp.asarray(starts), remaining=jnp.asarray(remaining),
      window_episode=jnp.asarray(episode), tail=jnp.asarray(tail),
      mean=jnp.asarray(mean), std=jnp.asarray(std), spec=spec, **extra)


def atradiff_windows(dataset: OfflineDataset, stats: NormStats, max_length: int,
                     task_ids: np.ndarray | None = None) -> WindowData:
  """ATraDiff's options: a window of up to `max_length` rows at every transition, normalised
  rows, no terminal encoding, first-state condition."""
  if max_length < 1:
    raise ValueError(f"atradiff: window padding must be >= 1, got {max_length}")
  return build_windows(dataset, horizon=max_length, terminal_penalty=0.0, final_state_row=False,
                       every_start=True, condition="first_state", stats=stats,
                       prenormalized=True, task_ids=task_ids)


# ----------------------------------------------------------------------- gathering (jittable)

def assemble(rows: jax.Array, valid: jax.Array, final_row: jax.Array) -> jax.Array:
  """Windows (B, L, D) from gathered rows (B, L, D): rows where `valid` (B, L), the final-state
  row `final_row` (B, D) elsewhere."""
  return jnp.where(valid[..., None], rows, final_row[:, None, :])


def gather(data: WindowData, idx: jax.Array, num_rows: int,
           max_transitions: int) -> tuple[jax.Array, jax.Array]:
  """Windows (B, num_rows, D) of windows `idx` (B,), in the rows' units, with at most
  `max_transitions` transitions each, and their valid transitions (B,)."""
  start = data.starts[idx]
  valid_n = jnp.minimum(data.remaining[idx], max_transitions)
  t = jnp.arange(num_rows)
  # Positions past the last valid transition are clamped to it (replaced by the final row).
  pos = start[:, None] + jnp.minimum(t[None, :], valid_n[:, None] - 1)
  last = start + valid_n - 1
  final = jnp.concatenate([data.next_observations[last],
                           jnp.broadcast_to(data.tail, (idx.shape[0], data.tail.shape[0]))],
                          axis=-1)
  return assemble(data.rows[pos], t[None, :] < valid_n[:, None], final), valid_n


def draw(data: WindowData, key: jax.Array, batch_size: int) -> jax.Array:
  """Uniform window indices (with replacement)."""
  return jax.random.randint(key, (batch_size,), 0, data.starts.shape[0])


# ----------------------------------------------------------------------- ATraDiff's windows

def make_condition(states_norm: jax.Array, task_ids: jax.Array | None,
                   num_tasks: int) -> jax.Array:
  """ATraDiff's condition: normalised first state, then a one-hot task id if num_tasks > 0."""
  if num_tasks <= 0:
    return states_norm
  onehot = jax.nn.one_hot(task_ids, num_tasks, dtype=states_norm.dtype)
  return jnp.concatenate([states_norm, onehot], axis=-1)


def first_states(data: WindowData, idx: jax.Array) -> jax.Array:
  """(B, obs_dim) first states of windows `idx`, in the rows' units."""
  return data.rows[data.starts[idx], :data.spec.obs_dim]


def gather_windows(data: WindowData, idx: jax.Array, length: int) -> jax.Array:
  """ATraDiff: windows (B, length, D) of `length` transitions (the final state repeated past
  the episode's end) starting at windows `idx` (B,)."""
  if length > data.spec.horizon:
    raise ValueError(f"atradiff: window length {length} exceeds the padding {data.spec.horizon}")
  return gather(data, idx, length, length)[0]


def sample_window_batch(data: WindowData, key: jax.Array, batch_size: int, length: int,
                        obs_dim: int, num_tasks: int) -> dict:
  """ATraDiff: a diffusion batch {'x': (B, length * D), 'cond': (B, cond_dim)} of uniform
  windows."""
  index = draw(data, key, batch_size)
  w = gather_windows(data, index, length)
  cond = make_condition(w[:, 0, :obs_dim], data.task_ids[index], num_tasks)
  return {"x": w.reshape(batch_size, -1), "cond": cond}


# ----------------------------------------------------------------------- GTA's windows

def gather_raw(data: WindowData, idx: jax.Array) -> tuple[jax.Array, jax.Array]:
  """GTA: raw (unnormalised, encoded) windows (B, H, D) and their valid lengths (B,)."""
  return gather(data, idx, data.spec.horizon, data.spec.transitions)


def loss_mask(spec: WindowSpec, lengths: jax.Array) -> jax.Array:
  """(B, H, D) mask: valid transition rows fully, the final-state row on its state entries."""
  r = jnp.arange(spec.horizon)[None, :, None]
  l = lengths[:, None, None]
  is_obs = (jnp.arange(spec.row_dim) < spec.obs_dim)[None, None, :]
  return ((r < l) | ((r == l) & is_obs)).astype(jnp.float32)


def normalize(data: WindowData, x_raw: jax.Array, lengths: jax.Array) -> jax.Array:
  sp = data.spec
  z = (x_raw - data.mean) / data.std
  # Rows at/after the final-state row carry no action or reward: zero them after normalisation.
  r = jnp.arange(sp.horizon)[None, :, None]
  not_state = (jnp.arange(sp.row_dim) >= sp.obs_dim)[None, None, :]
  return jnp.where((r >= lengths[:, None, None]) & not_state, 0.0, z)


def encode(data: WindowData, idx: jax.Array) -> dict:
  """GTA: a training / augmentation batch: normalised windows, loss mask, condition, lengths."""
  if data.spec.condition != "return" or data.spec.prenormalized:
    raise ValueError("windows.encode needs GTA's windows (return condition, raw rows); got "
                     f"condition {data.spec.condition!r}, prenormalized {data.spec.prenormalized}")
  x_raw, lengths = gather_raw(data, idx)
  return {"x": normalize(data, x_raw, lengths), "mask": loss_mask(data.spec, lengths),
          "cond": data.returns[idx][:, None], "lengths": lengths}


def sample_batch(data: WindowData, key: jax.Array, batch_size: int) -> dict:
  """GTA: uniform windows (with replacement) for diffusion training; jittable."""
  b = encode(data, draw(data, key, batch_size))
  return {"x": b["x"], "mask": b["mask"], "cond": b["cond"]}


def source_terminals(data: WindowData, idx: jax.Array) -> jax.Array:
  """(B, H-1) true terminal flags of the real windows `idx` (0 on padded positions)."""
  n = data.spec.transitions
  t = jnp.arange(n)
  pos = data.starts[idx][:, None] + jnp.minimum(t[None, :], data.lengths[idx][:, None] - 1)
  return jnp.where(t[None, :] < data.lengths[idx][:, None], data.terminals[pos], 0.0)


def decode(data: WindowData, x: jax.Array, lengths: jax.Array,
           source_terminals: jax.Array | None = None) -> dict:
  """Normalised windows (B, H, D) -> transitions (B, H-1, ...) and a validity mask (B, H-1).

  next_observations are the states shifted by one row. With `source_terminals` (B, H-1) given
  (the official code), terminals are those flags and rewards stay as generated (encoded);
  without, terminals come from the reward code (r~ < penalty / 2) and the rewards are decoded
  back to true rewards.
  """
  sp = data.spec
  raw = x * data.std + data.mean
  n = sp.transitions
  obs = raw[:, :, :sp.obs_dim]
  r_enc = raw[:, :n, sp.obs_dim + sp.act_dim]
  valid = jnp.arange(n)[None, :] < lengths[:, None]
  if source_terminals is not None:
    return {
        "observations": obs[:, :n],
        "actions": raw[:, :n, sp.obs_dim:sp.obs_dim + sp.act_dim],
        "rewards": r_enc,
        "next_observations": obs[:, 1:],
        "terminals": source_terminals.astype(x.dtype),
        "valid": valid,
    }
  if sp.terminal_penalty != 0:
    term = (r_enc < sp.terminal_penalty / 2).astype(x.dtype) if sp.terminal_penalty < 0 else \
        (r_enc > sp.terminal_penalty / 2).astype(x.dtype)
  else:
    term = jnp.zeros_like(r_enc)
  # Row `length` holds the final next state of padded windows; rows are never read past it.
  return {
      "observations": obs[:, :n],
      "actions": raw[:, :n, sp.obs_dim:sp.obs_dim + sp.act_dim],
      "rewards": r_enc - sp.terminal_penalty * term,
      "next_observations": obs[:, 1:],
      "terminals": term,
      "valid": valid,
  }


def flatten_valid(decoded: dict) -> dict[str, np.ndarray]:
  """Host-side: keep the valid transitions of decoded windows, in window order.

  Adds `timeouts` = 1 on each window's last valid transition that is not terminal, so every
  window is its own (pseudo-)episode in the resulting dataset.
  """
  d = {k: np.asarray(v) for k, v in decoded.items()}
  valid = d.pop("valid").astype(bool)
  last = np.zeros_like(valid)
  n_valid = valid.sum(1)
  rows = np.nonzero(n_valid)[0]
  last[rows, n_valid[rows] - 1] = True
  timeouts = (last & (d["terminals"] < 0.5)).astype(np.float32)
  out = {k: v[valid] for k, v in d.items()}
  out["timeouts"] = timeouts[valid]
  return out
