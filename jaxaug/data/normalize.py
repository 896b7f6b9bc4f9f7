"""Observation and reward normalisation, and their JSON files next to checkpoints.

State normalisation is the per-dimension z-score of TD3+BC/CORL: (s - mean) / (std + eps),
eps = 1e-3, fitted on the dataset's observations. Reward transforms are affine, r * scale +
shift:
  * 'none'        scale 1, shift 0;
  * 'locomotion'  CORL/IQL: scale 1000 / (max episode return - min episode return);
  * 'antmaze'     IQL/CQL/DTQL: r - 1 (shift -1).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.fileio import write_json_atomic

REWARD_MODES = ("none", "locomotion", "antmaze")


def _xp(x):
  return np if isinstance(x, np.ndarray) else jnp


class NormStats(flax.struct.PyTreeNode):
  """Per-dimension mean and std (std already includes eps); works on numpy and in jit."""

  mean: jax.Array
  std: jax.Array

  @classmethod
  def fit(cls, x, eps: float = 1e-3, dtype=np.float32) -> "NormStats":
    """Fits to rows of `x` (N, dim): mean and std + eps (CORL's TD3+BC convention), computed in
    `dtype` (float32; GTA's and SynthER's row normalisers fit numpy rows in float64)."""
    xp = _xp(x)
    x = xp.asarray(x, dtype=dtype)
    if x.ndim != 2 or x.shape[0] == 0:
      raise ValueError(f"NormStats.fit needs a non-empty (N, dim) array, got shape {x.shape}")
    return cls(mean=x.mean(axis=0), std=x.std(axis=0) + eps)

  @classmethod
  def concat(cls, parts: "list[NormStats]") -> "NormStats":
    """Stats of the column blocks `parts`, side by side (numpy)."""
    return cls(mean=np.concatenate([np.asarray(p.mean) for p in parts]),
               std=np.concatenate([np.asarray(p.std) for p in parts]))

  def astype(self, dtype) -> "NormStats":
    return NormStats(mean=self.mean.astype(dtype), std=self.std.astype(dtype))

  @classmethod
  def identity(cls, dim: int) -> "NormStats":
    return cls(mean=np.zeros((dim,), np.float32), std=np.ones((dim,), np.float32))

  def normalize(self, x):
    return (x - self.mean) / self.std

  def denormalize(self, x):
    return x * self.std + self.mean

  def to_dict(self) -> dict[str, list[float]]:
    return {"mean": np.asarray(self.mean, np.float64).tolist(),
            "std": np.asarray(self.std, np.float64).tolist()}

  @classmethod
  def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "NormStats":
    try:
      mean = np.asarray(d["mean"], np.float32)
      std = np.asarray(d["std"], np.float32)
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"{source}: NormStats needs lists 'mean' and 'std' ({e})") from e
    if mean.shape != std.shape or mean.ndim != 1:
      raise ValueError(f"{source}: 'mean' {mean.shape} and 'std' {std.shape} must be equal-length "
                       f"lists")
    if not (std > 0).all():
      raise ValueError(f"{source}: field 'std' must be positive")
    return cls(mean=mean, std=std)


def normalize_dataset(ds: OfflineDataset, obs_stats: NormStats) -> OfflineDataset:
  """A copy of `ds` with observations and next_observations normalised by `obs_stats`."""
  mean = np.asarray(obs_stats.mean, np.float32)
  std = np.asarray(obs_stats.std, np.float32)
  if mean.shape != (ds.obs_dim,):
    raise ValueError(f"{ds.source}: normalisation stats have dim {mean.shape}, observations "
                     f"have dim {ds.obs_dim}")
  out = ds.subset(np.arange(len(ds)))
  out.observations = (ds.observations - mean) / std
  out.next_observations = (ds.next_observations - mean) / std
  return out


class RewardTransform(flax.struct.PyTreeNode):
  """r -> r * scale + shift."""

  scale: float = 1.0
  shift: float = 0.0

  def apply(self, rewards):
    return rewards * self.scale + self.shift

  def invert(self, rewards):
    return (rewards - self.shift) / self.scale

  def to_dict(self) -> dict[str, float]:
    return {"scale": float(self.scale), "shift": float(self.shift)}

  @classmethod
  def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "RewardTransform":
    try:
      return cls(scale=float(d["scale"]), shift=float(d["shift"]))
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"{source}: RewardTransform needs numbers 'scale' and 'shift' ({e})") from e


def fit_reward_transform(ds: OfflineDataset, mode: str) -> RewardTransform:
  """The reward transform of `mode` ('none', 'locomotion', 'antmaze') fitted on `ds`."""
  if mode == "none":
    return RewardTransform(1.0, 0.0)
  if mode == "antmaze":
    return RewardTransform(1.0, -1.0)
  if mode == "locomotion":
    returns = ds.episode_returns()
    spread = float(returns.max() - returns.min()) if len(returns) else 0.0
    if not spread > 0:
      raise ValueError(f"{ds.source}: reward mode 'locomotion' needs episodes with different "
                       f"returns; got {len(returns)} episode(s) with return range {spread}")
    return RewardTransform(1000.0 / spread, 0.0)
  raise ValueError(f"reward mode '{mode}': expected one of {', '.join(REWARD_MODES)}")


def transform_rewards(ds: OfflineDataset, transform: RewardTransform) -> OfflineDataset:
  """A copy of `ds` with rewards transformed."""
  out = ds.subset(np.arange(len(ds)))
  out.rewards = np.asarray(transform.apply(ds.rewards), np.float32)
  return out


def save_stats(path: str | os.PathLike, obs_stats: NormStats | None,
               reward_transform: RewardTransform | None = None) -> None:
  """Writes {'obs': NormStats dict or null, 'reward': {'scale', 'shift'}} atomically as JSON."""
  write_json_atomic(path, {
      "obs": obs_stats.to_dict() if obs_stats is not None else None,
      "reward": (reward_transform or RewardTransform()).to_dict(),
  })


def load_stats(path: str | os.PathLike) -> tuple[NormStats | None, RewardTransform]:
  """Reads a file written by save_stats."""
  path = os.fspath(path)
  try:
    with open(path) as f:
      d = json.load(f)
  except FileNotFoundError as e:
    raise ValueError(f"{path}: normalisation stats file not found") from e
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(d, dict) or "reward" not in d:
    raise ValueError(f"{path}: expected an object with fields 'obs' and 'reward'")
  obs = d.get("obs")
  obs_stats = NormStats.from_dict(obs, source=f"{path}: field 'obs'") if obs is not None else None
  return obs_stats, RewardTransform.from_dict(d["reward"], source=f"{path}: field 'reward'")
