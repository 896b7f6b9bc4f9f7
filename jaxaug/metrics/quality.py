"""Data-quality metrics of generated transitions (GTA paper, Sec. 5.1 and App. D).

* Dynamic MSE (App. D.1): set the simulator to each generated state, step it with the generated
  action, and compare the true next state with the generated one, both normalised with the
  per-dimension std of the ORIGINAL dataset's observations (`NormStats.fit`, std + 1e-3; the
  mean cancels in a difference). Every set compared against one original thus shares one
  scale. `mse` averages the squared normalised error over valid rows and dimensions; `sse`
  sums it over dimensions (the squared L2 norm) and averages over valid rows. Rows the oracle
  cannot rebuild (a velocity at the observation's clip bound), non-finite rows and rows where
  MuJoCo diverged are masked and counted, never silently dropped.
* Oracle reward (App. D.3): the environment's true reward for each generated (s, a), NaN for
  masked rows; its mean over valid rows is the optimality metric.
* Novelty (App. D.2): mean L2 distance from each generated state, action and state-action to
  its nearest neighbour in the original data, raw (unnormalised) by default. Brute force over
  all pairs in fixed-size chunks on device under jit (memory bounded by the chunk sizes).

The simulator side lives in `jaxaug.envs.oracle`.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxaug.envs.oracle import OracleStep, StateOracle, get_oracle
from jaxaug.train.mesh import batch_sharding, make_data_mesh, replicated_sharding

NOVELTY_KEYS = ("state", "action", "state_action")


def _std_of(obs_stats, obs: np.ndarray) -> np.ndarray:
  """Per-dimension std used to normalise states: from stats of the original data if given."""
  if obs_stats is None:
    # Fallback: the evaluated set's own std (NormStats convention). Pass the original's stats
    # when comparing several sets, so that they share one scale.
    return np.nanstd(obs, axis=0) + 1e-3
  if isinstance(obs_stats, Mapping):
    std = obs_stats["std"]
  elif hasattr(obs_stats, "std"):
    std = obs_stats.std
  else:  # a (mean, std) pair
    std = obs_stats[1]
  std = np.asarray(std, np.float64).reshape(-1)
  if std.shape != (obs.shape[1],) or not (std > 0).all():
    raise ValueError(f"obs_stats: std must be {obs.shape[1]} positive values, got shape "
                     f"{std.shape}")
  return std


def _oracle(env_id: str, oracle: StateOracle | None) -> StateOracle:
  return oracle if oracle is not None else get_oracle(env_id)


def oracle_step(env_id: str, obs, actions, qpos=None, qvel=None, *,
                oracle: StateOracle | None = None) -> OracleStep:
  """One simulation of all rows; the building block of the metrics below."""
  o = _oracle(env_id, oracle)
  if qpos is not None or qvel is not None:
    return o.step(actions=actions, qpos=qpos, qvel=qvel)
  return o.step(obs, actions)


def dynamic_mse(env_id: str, obs, actions, next_obs, obs_stats=None, qpos=None, qvel=None, *,
                oracle: StateOracle | None = None, step: OracleStep | None = None,
                return_per_row: bool = False) -> dict[str, Any]:
  """Dynamic MSE of transitions (obs, actions, next_obs) against the MuJoCo oracle.

  Args:
    env_id: environment name (see jaxaug.envs.registry.resolve_env_id).
    obs, actions, next_obs: (N, obs_dim), (N, act_dim), (N, obs_dim) generated transitions.
    obs_stats: stats of the ORIGINAL dataset's observations (NormStats, {'std': ...} or
      (mean, std)); None uses the std of `obs` itself (see module doc).
    qpos, qvel: the true simulator states, when the data carries them (infos/qpos, infos/qvel).
    oracle: a StateOracle to reuse (backend choice); step: a precomputed oracle answer.
    return_per_row: also return 'per_row' (N,) normalised squared errors, NaN where masked.

  Returns:
    dict(mse, sse, mse_raw, n_valid, n_masked, n_clipped, n_nonfinite, n_unstable).
  """
  obs = np.asarray(obs, np.float64)
  next_obs = np.asarray(next_obs, np.float64)
  if next_obs.shape != obs.shape:
    raise ValueError(f"next_obs: expected shape {obs.shape} like obs, got {next_obs.shape}")
  if step is None:
    step = oracle_step(env_id, obs, actions, qpos, qvel, oracle=oracle)
  valid = step.valid & np.isfinite(next_obs).all(axis=1)
  std = _std_of(obs_stats, obs)
  diff = step.next_observations - next_obs
  sq = np.square(diff / std)
  per_row = np.where(valid, sq.mean(axis=1), np.nan)
  n_valid = int(valid.sum())
  out = {
      "mse": float(sq[valid].mean()) if n_valid else float("nan"),
      "sse": float(sq[valid].sum(axis=1).mean()) if n_valid else float("nan"),
      "mse_raw": float(np.square(diff[valid]).mean()) if n_valid else float("nan"),
      "n_valid": n_valid,
      "n_masked": int(len(valid) - n_valid),
      "n_clipped": int(step.clipped.sum()),
      "n_nonfinite": int((step.nonfinite | ~np.isfinite(next_obs).all(axis=1)).sum()),
      "n_unstable": int(step.unstable.sum()),
  }
  if return_per_row:
    out["per_row"] = per_row
  return out


def oracle_reward(env_id: str, obs, actions, qpos=None, qvel=None, *,
                  oracle: StateOracle | None = None) -> np.ndarray:
  """The true reward of each (s, a) row, float64, NaN where the row is masked."""
  return oracle_step(env_id, obs, actions, qpos, qvel, oracle=oracle).rewards


def quality_metrics(env_id: str, obs, actions, next_obs, rewards=None, terminals=None,
                    obs_stats=None, qpos=None, qvel=None, *,
                    oracle: StateOracle | None = None) -> dict[str, Any]:
  """Dynamic MSE, oracle reward and reward/terminal agreement from ONE simulation."""
  step = oracle_step(env_id, obs, actions, qpos, qvel, oracle=oracle)
  out = dynamic_mse(env_id, obs, actions, next_obs, obs_stats, step=step)
  v = step.valid
  out["oracle_reward_mean"] = float(step.rewards[v].mean()) if v.any() else float("nan")
  if rewards is not None:
    rewards = np.asarray(rewards, np.float64).reshape(-1)
    out["reward_mean"] = float(rewards.mean())
    out["reward_mean_valid"] = float(rewards[v].mean()) if v.any() else float("nan")
    out["reward_abs_err"] = (float(np.abs(rewards[v] - step.rewards[v]).mean()) if v.any()
                             else float("nan"))
  if terminals is not None:
    terminals = np.asarray(terminals).reshape(-1) > 0.5
    out["terminal_agreement"] = (float((terminals[v] == step.terminals[v]).mean()) if v.any()
                                 else float("nan"))
    out["oracle_terminal_rate"] = float(step.terminals[v].mean()) if v.any() else float("nan")
  out["oracle_rewards"] = step.rewards
  return out


# ------------------------------------------------------------------------------------------
# Novelty: exact nearest-neighbour distances, chunked on device.


@functools.partial(jax.jit, static_argnames=("method",))
def _min_sq_dist_chunk(x, data, method: str = "matmul"):
  """Squared distance from each row of x (Bq, d) to its nearest row of data (C, Bd, d).

  'matmul' screens each data chunk with |x|^2 + |y|^2 - 2 x.y (float32 matmul at HIGHEST
  precision, on data centred by the caller), takes the chunk's argmin and recomputes that
  candidate's distance exactly as sum((x - y)^2). The value returned is therefore always an
  exact distance to a real data point (0 for a row present in data); it can exceed the true
  minimum only when another point of the same chunk lies within the screening rounding error
  (~1e-6 of |x|^2 + |y|^2) of the nearest one, by at most that much. 'direct' computes every
  pair as sum((x - y)^2): slower (no matmul), the reference the tests compare against.
  """
  xx = jnp.sum(x * x, axis=1)
  iota = jnp.arange(data.shape[1], dtype=jnp.float32)

  def body(best, y):
    if method == "direct":
      d2 = jnp.sum(jnp.square(x[:, None, :] - y[None, :, :]), axis=-1)
      return jnp.minimum(best, d2.min(axis=1)), None
    yy = jnp.sum(y * y, axis=1)
    approx = xx[:, None] + yy[None, :] - 2.0 * jnp.dot(x, y.T, precision=jax.lax.Precision.HIGHEST)
    # First index attaining the screened minimum. Not jnp.argmin: XLA:CPU lowers that variadic
    # reduce to scalar code, 5-10x slower than these two plain reductions.
    m = approx.min(axis=1, keepdims=True)
    j = jnp.min(jnp.where(approx <= m, iota[None, :], y.shape[0]), axis=1)
    j = jnp.minimum(j, y.shape[0] - 1).astype(jnp.int32)
    exact = jnp.sum(jnp.square(x - y[j]), axis=1)
    return jnp.minimum(best, exact), None

  best0 = jnp.full((x.shape[0],), jnp.inf, x.dtype)
  best, _ = jax.lax.scan(body, best0, data)
  return best


def nearest_neighbour_distances(queries, data, *, chunk: int = 256, data_chunk: int = 2048,
                                method: str = "matmul", mesh=None) -> np.ndarray:
  """L2 distance from each query row to its nearest row of `data` (exact brute force).

  Memory is bounded by chunk x data_chunk (the pair block) plus the data itself on device; the
  query rows stream through in chunks of `chunk`. See `_min_sq_dist_chunk` for the methods.
  The defaults keep the pair block (2 MiB) in CPU cache, measured fastest on CPU; on an
  accelerator use larger blocks (e.g. chunk=4096, data_chunk=16384).

  With several local devices (or a given 1-D `mesh`, e.g. jaxaug.train.mesh.make_data_mesh())
  each query chunk is sharded over the mesh and the data replicated: every device scans all
  data blocks for its share of the queries (chunk is rounded up to a multiple of the device
  count). Single-process only: the queries and data are host arrays of this process.
  """
  if method not in ("matmul", "direct"):
    raise ValueError(f"method must be 'matmul' or 'direct', got {method!r}")
  q = np.asarray(queries, np.float32)
  y = np.asarray(data, np.float32)
  if q.ndim != 2 or y.ndim != 2 or q.shape[1] != y.shape[1]:
    raise ValueError(f"queries {q.shape} and data {y.shape} must be (N, d) and (M, d)")
  if len(y) == 0:
    raise ValueError("nearest_neighbour_distances: data is empty")
  if not (np.isfinite(y).all()):
    raise ValueError("nearest_neighbour_distances: data has non-finite values")
  if len(q) == 0:
    return np.zeros((0,), np.float32)
  if not 1 <= data_chunk <= 1 << 24:  # indices within a block are float32 (exact below 2^24)
    raise ValueError(f"data_chunk must be in [1, 2^24], got {data_chunk}")
  if method == "direct":
    data_chunk = min(data_chunk, 1024)  # the (chunk, data_chunk, d) block is materialised
  # Centre on the data mean: smaller norms, smaller cancellation in the matmul screen.
  center = y.mean(axis=0)
  y = y - center
  q = q - center
  data_chunk = max(1, min(data_chunk, len(y)))
  n_blocks = -(-len(y) // data_chunk)
  pad = n_blocks * data_chunk - len(y)
  # Padding repeats a real row: it can never lower a minimum.
  y = np.concatenate([y, np.repeat(y[:1], pad, axis=0)]) if pad else y
  if mesh is None and jax.local_device_count() > 1:
    mesh = make_data_mesh(jax.local_devices())
  n_dev = 1 if mesh is None else mesh.devices.size
  chunk = max(1, min(chunk, len(q)))
  chunk = -(-chunk // n_dev) * n_dev
  y = y.reshape(n_blocks, data_chunk, -1)
  if mesh is None:
    y_dev, q_sharding = jax.device_put(y), None
  else:
    y_dev = jax.device_put(y, replicated_sharding(mesh))
    q_sharding = batch_sharding(mesh)
  outs = []
  for s in range(0, len(q), chunk):
    block = q[s:s + chunk]
    k = len(block)
    if k < chunk:
      block = np.concatenate([block, np.zeros((chunk - k, q.shape[1]), np.float32)])
    block = jax.device_put(block, q_sharding) if q_sharding is not None else jnp.asarray(block)
    outs.append((_min_sq_dist_chunk(block, y_dev, method=method), k))
  d2 = np.concatenate([np.asarray(o)[:k] for o, k in outs])
  return np.sqrt(np.maximum(d2, 0.0))


def _fields(data) -> tuple[np.ndarray, np.ndarray]:
  if isinstance(data, Mapping):
    return np.asarray(data["observations"]), np.asarray(data["actions"])
  if hasattr(data, "observations") and hasattr(data, "actions"):
    return np.asarray(data.observations), np.asarray(data.actions)
  raise ValueError("novelty: expected arrays, a dataset (OfflineDataset/Transitions) or a "
                   f"dict with 'observations' and 'actions', got {type(data).__name__}")


def novelty(generated, original, chunk: int = 256, *, data_chunk: int = 2048,
            method: str = "matmul", obs_stats=None):
  """Mean distance from generated rows to their nearest original row (GTA App. D.2).

  With two arrays (N, d) and (M, d): a float. With two datasets (OfflineDataset, Transitions
  or dicts of 'observations' and 'actions'): {'state', 'action', 'state_action'} novelty.
  `obs_stats` (stats of the original data) normalises states first; default raw, as in GTA's
  tables (whose action novelty is on the raw [-1, 1] scale).
  """
  if isinstance(generated, (np.ndarray, jax.Array)) and isinstance(original,
                                                                   (np.ndarray, jax.Array)):
    return float(nearest_neighbour_distances(generated, original, chunk=chunk,
                                             data_chunk=data_chunk, method=method).mean())
  g_obs, g_act = _fields(generated)
  o_obs, o_act = _fields(original)
  if obs_stats is not None:
    if isinstance(obs_stats, Mapping):
      mean = obs_stats["mean"]
    else:
      mean = obs_stats.mean if hasattr(obs_stats, "mean") else obs_stats[0]
    mean = np.asarray(mean, np.float64).reshape(-1)
    std = _std_of(obs_stats, o_obs)
    g_obs, o_obs = (g_obs - mean) / std, (o_obs - mean) / std
  pairs = {"state": (g_obs, o_obs), "action": (g_act, o_act),
           "state_action": (np.concatenate([g_obs, g_act], 1), np.concatenate([o_obs, o_act], 1))}
  return {k: float(nearest_neighbour_distances(g, o, chunk=chunk, data_chunk=data_chunk,
                                               method=method).mean())
          for k, (g, o) in pairs.items()}


# ------------------------------------------------------------------------------------------
# Whole datasets: one row of the quality table (experiments/quality.py).

TABLE_COLUMNS = (("oracle_reward_mean", "oracle r", "{:9.4f}"),
                 ("reward_mean", "data r", "{:9.4f}"), ("mse", "dyn MSE", "{:10.3e}"),
                 ("n_masked", "masked", "{:7d}"), ("novelty_state", "nov s", "{:7.4f}"),
                 ("novelty_action", "nov a", "{:7.4f}"),
                 ("novelty_state_action", "nov sa", "{:7.4f}"))


def dataset_quality(env_id: str, dataset, original, *, obs_stats=None, is_original: bool = False,
                    oracle: StateOracle | None = None, chunk: int = 256, data_chunk: int = 2048,
                    normalize_novelty: bool = False) -> tuple[dict[str, Any], np.ndarray]:
  """All metrics of one dataset against `original` (both OfflineDataset-like).

  `obs_stats` defaults to NormStats-style stats of the original. With `is_original`, the
  dataset's infos/qpos, infos/qvel are used when present and novelty is 0 by definition (every
  row is its own nearest neighbour); a generated set is always rebuilt from its observations
  (its infos, if any, may be copies that no longer describe its states). Returns the row
  (a JSON-able dict) and the oracle reward of each row.
  """
  import time  # pylint: disable=g-import-not-at-top
  if obs_stats is None:
    obs = np.asarray(original.observations, np.float64)
    obs_stats = (obs.mean(axis=0), obs.std(axis=0) + 1e-3)
  t0 = time.perf_counter()
  infos = getattr(dataset, "infos", {}) or {}
  qpos, qvel = (infos.get("qpos"), infos.get("qvel")) if is_original else (None, None)
  if qpos is None or qvel is None:
    qpos = qvel = None
  m = quality_metrics(env_id, dataset.observations, dataset.actions, dataset.next_observations,
                      rewards=dataset.rewards, terminals=dataset.terminals, obs_stats=obs_stats,
                      qpos=qpos, qvel=qvel, oracle=oracle)
  oracle_rewards = m.pop("oracle_rewards")
  t1 = time.perf_counter()
  if is_original:
    nov = {k: 0.0 for k in NOVELTY_KEYS}
  else:
    nov = novelty(dataset, original, chunk=chunk, data_chunk=data_chunk,
                  obs_stats=obs_stats if normalize_novelty else None)
  row = {"n": len(dataset.rewards), "used_infos": qpos is not None, **m,
         **{f"novelty_{k}": v for k, v in nov.items()},
         "seconds_oracle": t1 - t0, "seconds_novelty": time.perf_counter() - t1}
  return row, oracle_rewards


def format_quality_table(rows) -> str:
  """A fixed-width table of `dataset_quality` rows (each with a 'name')."""
  widths = [len(fmt.format(0)) for _, _, fmt in TABLE_COLUMNS]
  head = f"{'dataset':28s} {'n':>8s} " + " ".join(
      f"{title:>{w}s}" for (_, title, _), w in zip(TABLE_COLUMNS, widths))
  lines = [head, "-" * len(head)]
  for r in rows:
    cells = []
    for (key, _, fmt), w in zip(TABLE_COLUMNS, widths):
      v = r.get(key)
      cells.append("-".rjust(w) if v is None or (isinstance(v, float) and np.isnan(v))
                   else fmt.format(v))
    lines.append(f"{str(r.get('name', ''))[:28]:28s} {r['n']:8d} " + " ".join(cells))
  return "\n".join(lines)
