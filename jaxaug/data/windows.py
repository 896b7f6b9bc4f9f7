"""Subtrajectory windows for trajectory-level diffusion (GTA Sec. 4.1, App. A.1).

A window of horizon H is H rows of D = obs_dim + act_dim + 1 features:

    rows 0 .. n-1 : [s_t, a_t, r~_t]            n = H - 1 transitions (31 for H = 32)
    row  n        : [s'_{t+n-1}, 0, 0]          the last next state, so that all n full
                                                transitions can be recovered
    rows n+1 .. H-1 : copies of row n            padding, only in windows of short episodes

`r~` is the reward with GTA's terminal encoding: r - 100 on a transition that truly terminated
(`terminal_penalty`; no binary terminal channel, GTA App. A.1; 0 on maze datasets, where a
terminal means success). Decoding has two modes:
  * official (`decode(..., source_terminals=...)`): the terminal flags are copied from the real
    window the sample was made from, and the generated reward is kept as generated (so a terminal
    transition keeps its ~-100);
  * decoded (`source_terminals=None`): the flag is read from the generated reward
    (r~ < penalty / 2) and the penalty is added back, so the output holds true rewards.

Windows are stride 1 and lie inside one episode. Episodes with fewer than H - 1 transitions are
`skip`ped (default, as the official code) or `pad`ded: one window from the episode start with
n = episode length valid transitions; the padded rows are masked out of the loss and dropped on
decoding.

Nothing is materialised per window: the device holds the flat transition arrays plus one start
index per window, and windows are gathered inside jit (the official code builds every window
eagerly, which takes H times the dataset's memory).

Normalisation: per-dimension z-score of the raw rows [s, a, r] of all transitions, fitted before
the terminal penalty (GTA); the last row's action/reward entries are set to 0 after
normalisation (they are masked and ignored anyway).

Condition: the discounted (gamma 0.99) return-to-go from the window's first transition to the
end of its episode, computed on encoded rewards (penalty included), times `return_scale` (0.01)
so that it is O(1) for the embedding MLP (GTA's scaling).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxaug.data.dataset import OfflineDataset

SHORT_EPISODE_MODES = ("pad", "skip")


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  obs_dim: int
  act_dim: int
  horizon: int = 32
  terminal_penalty: float = -100.0

  @property
  def row_dim(self) -> int:
    return self.obs_dim + self.act_dim + 1

  @property
  def transitions(self) -> int:
    return self.horizon - 1


class WindowData(flax.struct.PyTreeNode):
  """Device-resident flat transitions + per-window start, length and condition."""

  observations: jax.Array  # (N, obs_dim)
  actions: jax.Array  # (N, act_dim)
  rewards: jax.Array  # (N,) encoded (penalty on terminal transitions)
  next_observations: jax.Array  # (N, obs_dim)
  terminals: jax.Array  # (N,) 0/1 true terminal flags of the real data
  starts: jax.Array  # (W,) int32 index of the window's first transition
  lengths: jax.Array  # (W,) int32 number of valid transitions (H - 1 unless padded)
  returns: jax.Array  # (W,) scaled discounted return-to-go from the window start
  window_episode: jax.Array  # (W,) int32 index (among kept episodes) of the window's episode
  episode_returns: jax.Array  # (E,) scaled discounted return of each kept episode (from its start)
  mean: jax.Array  # (D,) normaliser over raw rows [s, a, r]
  std: jax.Array  # (D,)
  spec: WindowSpec = flax.struct.field(pytree_node=False)

  @property
  def num_windows(self) -> int:
    return int(self.starts.shape[0])


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


def fit_row_normalizer(dataset: OfflineDataset, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
  rows = np.concatenate([dataset.observations, dataset.actions, dataset.rewards[:, None]], axis=1)
  rows = rows.astype(np.float64)
  return rows.mean(0).astype(np.float32), (rows.std(0) + eps).astype(np.float32)


def build_windows(dataset: OfflineDataset, horizon: int = 32, terminal_penalty: float = -100.0,
                  discount: float = 0.99, return_scale: float = 0.01,
                  short_episodes: str = "skip") -> WindowData:
  """All stride-1 windows of `horizon - 1` transitions inside episodes (see module doc)."""
  if horizon < 2:
    raise ValueError(f"window horizon must be >= 2, got {horizon}")
  if short_episodes not in SHORT_EPISODE_MODES:
    raise ValueError(f"short_episodes: expected one of {SHORT_EPISODE_MODES}, got "
                     f"{short_episodes!r}")
  if len(dataset) == 0:
    raise ValueError(f"{dataset.source}: empty dataset, no windows")
  n = horizon - 1
  ep_s, ep_e = dataset.episode_starts, dataset.episode_ends
  enc_r = dataset.rewards + terminal_penalty * (dataset.terminals > 0)
  rtg = discounted_returns_to_go(enc_r, ep_s, ep_e, discount)
  starts, lengths, episode, ep_return = [], [], [], []
  for s, e in zip(ep_s, ep_e):
    length = e - s + 1
    if length >= n:
      st = np.arange(s, e - n + 2)
    elif short_episodes == "pad":
      st = np.array([s])
    else:
      continue  # skip: the official loader drops episodes shorter than the window
    starts.append(st)
    lengths.append(np.full(st.shape, min(length, n)))
    episode.append(np.full(st.shape, len(ep_return)))
    ep_return.append(rtg[s])
  if not starts:
    raise ValueError(f"{dataset.source}: no episode has >= {n} transitions (horizon {horizon}); "
                     "use short_episodes='pad' or a smaller horizon")
  starts = np.concatenate(starts).astype(np.int32)
  lengths = np.concatenate(lengths).astype(np.int32)
  episode = np.concatenate(episode).astype(np.int32)
  mean, std = fit_row_normalizer(dataset)
  return WindowData(
      observations=jnp.asarray(dataset.observations), actions=jnp.asarray(dataset.actions),
      rewards=jnp.asarray(enc_r.astype(np.float32)),
      next_observations=jnp.asarray(dataset.next_observations),
      terminals=jnp.asarray((dataset.terminals > 0).astype(np.float32)),
      starts=jnp.asarray(starts), lengths=jnp.asarray(lengths),
      returns=jnp.asarray((rtg[starts] * return_scale).astype(np.float32)),
      window_episode=jnp.asarray(episode),
      episode_returns=jnp.asarray((np.asarray(ep_return) * return_scale).astype(np.float32)),
      mean=jnp.asarray(mean), std=jnp.asarray(std),
      spec=WindowSpec(dataset.obs_dim, dataset.act_dim, horizon, float(terminal_penalty)))


def gather_raw(data: WindowData, idx: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Raw (unnormalised, encoded) windows (B, H, D) and their valid lengths (B,). Jittable."""
  sp = data.spec
  n = sp.transitions
  start = data.starts[idx]
  length = data.lengths[idx]
  t = jnp.arange(n)
  valid = t[None, :] < length[:, None]  # (B, n)
  # Clamp padded positions to the last valid transition (their rows are replaced below).
  pos = start[:, None] + jnp.minimum(t[None, :], length[:, None] - 1)
  rows = jnp.concatenate([data.observations[pos], data.actions[pos], data.rewards[pos][..., None]],
                         axis=-1)  # (B, n, D)
  last = start + length - 1
  final = jnp.concatenate([data.next_observations[last],
                           jnp.zeros((idx.shape[0], sp.act_dim + 1), rows.dtype)], axis=-1)
  x = jnp.concatenate([rows, jnp.zeros_like(rows[:, :1])], axis=1)  # (B, H, D)
  row_is_valid = jnp.concatenate([valid, jnp.zeros_like(valid[:, :1])], axis=1)
  return jnp.where(row_is_valid[..., None], x, final[:, None, :]), length


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
  """A training / augmentation batch: normalised windows, loss mask, condition, lengths."""
  x_raw, lengths = gather_raw(data, idx)
  return {"x": normalize(data, x_raw, lengths), "mask": loss_mask(data.spec, lengths),
          "cond": data.returns[idx][:, None], "lengths": lengths}


def sample_batch(data: WindowData, key: jax.Array, batch_size: int) -> dict:
  """Uniform windows (with replacement) for diffusion training; jittable."""
  idx = jax.random.randint(key, (batch_size,), 0, data.starts.shape[0])
  b = encode(data, idx)
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
