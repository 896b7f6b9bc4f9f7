"""Environment factory, name resolution, D4RL reference scores and vector-env evaluation."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug import envs


@pytest.mark.parametrize("env_id,obs_dim,act_dim", [
    ("Hopper-v5", 11, 3), ("HalfCheetah-v5", 17, 6), ("Walker2d-v5", 17, 6), ("Ant-v5", 27, 8)])
def test_spec_matches_gymnasium(env_id, obs_dim, act_dim):
  spec = envs.env_spec(env_id)
  assert (spec.obs_dim, spec.act_dim, spec.env_id) == (obs_dim, act_dim, env_id)
  env = envs.make_env(env_id, seed=0)
  obs, _ = env.reset(seed=0)
  assert env.observation_space.shape == (obs_dim,) and obs.shape == (obs_dim,)
  assert env.action_space.shape == (act_dim,)
  assert np.allclose(env.action_space.high, spec.max_action)
  env.close()


def test_name_resolution():
  for name in ("hopper", "Hopper-v5", "hopper-medium-v2", "hopper-medium-replay",
               "d4rl/hopper/expert-v2"):
    assert envs.resolve_env_id(name) == "Hopper-v5", name
  assert envs.resolve_env_id("halfcheetah-medium-expert-v2") == "HalfCheetah-v5"
  assert envs.resolve_env_id("walker2d-random-v2") == "Walker2d-v5"
  assert envs.resolve_env_id("ant-medium-v2") == "Ant-v5"
  for bad in ("", "humanoid", "pen-humanoid-v1", "kitchen-unknown-v0"):
    with pytest.raises(ValueError, match="environment|env id"):
      envs.resolve_env_id(bad)


def test_normalized_scores():
  refs = {"hopper": (-20.272305, 3234.3), "halfcheetah": (-280.178953, 12135.0),
          "walker2d": (1.629008, 4592.3), "ant": (-325.6, 3879.7)}
  for name, (lo, hi) in refs.items():
    assert envs.normalized_score(name, lo) == pytest.approx(0.0, abs=1e-9)
    assert envs.normalized_score(name, hi) == pytest.approx(100.0)
    mid = envs.normalized_score(name, np.array([lo, (lo + hi) / 2]))
    np.testing.assert_allclose(mid, [0.0, 50.0], atol=1e-9)
  assert envs.normalized_score("Hopper-v5", 1000.0) == pytest.approx(
      100 * (1000 + 20.272305) / (3234.3 + 20.272305))


def test_no_mujoco_log_file(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  env = envs.make_env("halfcheetah", seed=0)
  env.close()
  assert not os.path.exists(tmp_path / "MUJOCO_LOG.TXT")


class _Shift:
  """obs_stats stand-in: records that evaluation normalised the observations."""

  def __init__(self):
    self.calls = 0

  def normalize(self, x):
    self.calls += 1
    return x - 1000.0


def test_evaluate_sane_and_deterministic():
  act = jax.jit(lambda o: jnp.zeros((o.shape[0], 3)))
  a = envs.evaluate(act, "hopper", num_episodes=4, seed=3)
  b = envs.evaluate(act, "hopper", num_episodes=4, seed=3)
  assert a == b
  assert a["num_episodes"] == 4
  assert 1 <= a["length_mean"] <= 1000
  # Hopper pays ~1 per step alive: a zero-action episode is short and its return close to its
  # length; the normalised score follows from the return.
  assert 0.5 * a["length_mean"] < a["return_mean"] < 2.0 * a["length_mean"]
  assert a["normalized_score_mean"] == pytest.approx(
      envs.normalized_score("hopper", a["return_mean"]))
  assert a["return_min"] <= a["return_mean"] <= a["return_max"]
  stats = _Shift()
  seen = []
  envs.evaluate(lambda o: (seen.append(np.array(o)), np.zeros((o.shape[0], 3)))[1], "hopper",
                num_episodes=2, seed=3, obs_stats=stats)
  assert stats.calls >= 1 and seen[0].shape == (2, 11) and np.all(seen[0] < -900)


def test_evaluate_counts_first_episode_only():
  # A policy that falls quickly: every sub-env finishes early and restarts, but only its first
  # episode counts, so the lengths are those of single episodes.
  rng = np.random.default_rng(0)
  res = envs.evaluate(lambda o: rng.uniform(-1, 1, (o.shape[0], 3)), "hopper", 6, seed=0)
  assert res["length_mean"] < 200
  assert res["return_mean"] < 300
