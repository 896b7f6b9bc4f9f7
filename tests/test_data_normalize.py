"""Observation statistics, reward transforms and their JSON files."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug.data import (NormStats, OfflineDataset, RewardTransform, fit_reward_transform,
                         load_stats, normalize_dataset, save_stats, transform_rewards)


def dataset(returns_per_episode=((1.0, 2.0), (10.0,), (-3.0, 0.0, 1.0))):
  rng = np.random.default_rng(0)
  rewards = np.concatenate([np.asarray(r, np.float32) for r in returns_per_episode])
  n = len(rewards)
  term = np.zeros(n, np.float32)
  term[np.cumsum([len(r) for r in returns_per_episode]) - 1] = 1
  obs = rng.normal(3.0, 2.0, (n, 4)).astype(np.float32)
  return OfflineDataset(observations=obs, actions=np.zeros((n, 1)), rewards=rewards,
                        next_observations=obs + 1, terminals=term, timeouts=np.zeros(n))


def test_norm_stats_fit_and_inverse():
  x = np.random.default_rng(1).normal(5.0, 3.0, (1000, 3)).astype(np.float32)
  x[:, 2] = 7.0  # constant column: std is eps, no division by zero
  s = NormStats.fit(x, eps=1e-3)
  np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(s.std, x.std(0) + 1e-3, rtol=1e-5)
  z = s.normalize(x)
  np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-3)
  np.testing.assert_allclose(z[:, 2], 0, atol=1e-4)
  np.testing.assert_allclose(s.denormalize(z), x, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="non-empty"):
    NormStats.fit(np.zeros((0, 3)))


def test_norm_stats_in_jit_and_dict_round_trip():
  x = jnp.arange(12.0).reshape(4, 3)
  s = NormStats.fit(x)
  assert isinstance(s.mean, jax.Array)
  f = jax.jit(lambda st, v: st.denormalize(st.normalize(v)))
  np.testing.assert_allclose(f(s, x), x, rtol=1e-5, atol=1e-5)
  d = json.loads(json.dumps(s.to_dict()))
  s2 = NormStats.from_dict(d)
  np.testing.assert_allclose(s2.mean, s.mean)
  np.testing.assert_allclose(s2.std, s.std)
  with pytest.raises(ValueError, match="'std' must be positive"):
    NormStats.from_dict({"mean": [0.0], "std": [0.0]})
  with pytest.raises(ValueError, match="'mean' and 'std'"):
    NormStats.from_dict({"mean": [0.0]})


def test_normalize_dataset():
  ds = dataset()
  s = NormStats.fit(ds.observations)
  out = normalize_dataset(ds, s)
  np.testing.assert_allclose(out.observations, (ds.observations - s.mean) / s.std, rtol=1e-6)
  np.testing.assert_allclose(out.next_observations, (ds.next_observations - s.mean) / s.std,
                             rtol=1e-6)
  np.testing.assert_array_equal(out.rewards, ds.rewards)
  assert not np.allclose(ds.observations, out.observations)  # the input is left alone
  with pytest.raises(ValueError, match="dim"):
    normalize_dataset(ds, NormStats.identity(5))


def test_reward_transforms():
  ds = dataset()  # episode returns 3, 10, -2
  loco = fit_reward_transform(ds, "locomotion")
  assert loco.scale == pytest.approx(1000.0 / 12.0) and loco.shift == 0.0
  np.testing.assert_allclose(transform_rewards(ds, loco).rewards, ds.rewards * 1000 / 12,
                             rtol=1e-6)
  ant = fit_reward_transform(ds, "antmaze")
  np.testing.assert_allclose(ant.apply(ds.rewards), ds.rewards - 1.0)
  np.testing.assert_allclose(ant.invert(ant.apply(ds.rewards)), ds.rewards)
  none = fit_reward_transform(ds, "none")
  np.testing.assert_array_equal(none.apply(ds.rewards), ds.rewards)
  with pytest.raises(ValueError, match="'none', 'locomotion', 'antmaze'|none, locomotion"):
    fit_reward_transform(ds, "mujoco")
  with pytest.raises(ValueError, match="return range"):
    fit_reward_transform(dataset(((1.0,), (1.0,))), "locomotion")
  # Jittable as a pytree.
  r = jax.jit(lambda t, x: t.apply(x))(loco, jnp.ones(3))
  np.testing.assert_allclose(r, 1000 / 12, rtol=1e-6)


def test_stats_file_round_trip(tmp_path):
  s = NormStats.fit(dataset().observations)
  rt = RewardTransform(scale=2.5, shift=-1.0)
  path = tmp_path / "ckpt" / "norm_stats.json"
  save_stats(path, s, rt)
  assert os.listdir(tmp_path / "ckpt") == ["norm_stats.json"]  # no temporary left behind
  s2, rt2 = load_stats(path)
  np.testing.assert_allclose(s2.mean, s.mean, rtol=1e-6)
  np.testing.assert_allclose(s2.std, s.std, rtol=1e-6)
  assert rt2 == rt
  save_stats(path, None)
  s3, rt3 = load_stats(path)
  assert s3 is None and rt3 == RewardTransform(1.0, 0.0)


def test_stats_file_errors(tmp_path):
  path = tmp_path / "s.json"
  with pytest.raises(ValueError, match="not found"):
    load_stats(path)
  path.write_text("{broken")
  with pytest.raises(ValueError, match=str(path)):
    load_stats(path)
  path.write_text(json.dumps({"obs": {"mean": [0.0, 1.0], "std": [1.0]}, "reward": {}}))
  with pytest.raises(ValueError, match="field 'obs'"):
    load_stats(path)
  path.write_text(json.dumps({"obs": None, "reward": {"scale": "x", "shift": 0}}))
  with pytest.raises(ValueError, match="field 'reward'"):
    load_stats(path)
