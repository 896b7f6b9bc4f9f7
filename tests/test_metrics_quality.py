"""Tests of the MuJoCo state oracle and the data-quality metrics (dynamic MSE, oracle reward,
novelty) against gymnasium itself and against brute force."""

import functools

import gymnasium as gym
import numpy as np
import pytest

from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.normalize import NormStats
from jaxaug.envs.oracle import StateOracle, random_transitions
from jaxaug.metrics import quality

ENVS = ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5"]


@functools.lru_cache(maxsize=None)
def _data(env_id, n=300, scale=0.3, seed=1):
  return random_transitions(env_id, n, seed=seed, action_scale=scale)


@pytest.mark.parametrize("env_id", ENVS)
def test_dynamic_mse_is_zero_on_real_transitions(env_id):
  obs, act, _, nxt, _, qpos, qvel = _data(env_id)
  stats = NormStats.fit(obs)
  out = quality.dynamic_mse(env_id, obs, act, nxt, obs_stats=stats)
  assert out["n_valid"] + out["n_masked"] == len(obs)
  assert out["n_valid"] > 0.8 * len(obs)
  assert out["mse"] < 1e-12 and out["sse"] < 1e-10
  # With the true simulator states (a dataset's infos) nothing is masked.
  out = quality.dynamic_mse(env_id, obs, act, nxt, obs_stats=stats, qpos=qpos, qvel=qvel)
  assert out["n_masked"] == 0 and out["mse"] < 1e-12
  # A perturbed next state is detected, on the scale of the original std.
  bad = nxt.copy()
  bad[:, 0] += stats.std[0]
  out = quality.dynamic_mse(env_id, obs, act, bad, obs_stats=stats, qpos=qpos, qvel=qvel)
  np.testing.assert_allclose(out["mse"], 1.0 / obs.shape[1], rtol=1e-6)


def test_walker_clipped_velocities_are_masked_and_counted():
  obs, act, _, nxt, _, qpos, qvel = _data("Walker2d-v5", n=400, scale=1.0)
  at_bound = (np.abs(obs[:, 8:]) >= 10.0).any(axis=1)
  assert at_bound.sum() > 50  # REFERENCE: most rows with full random actions
  out = quality.dynamic_mse("Walker2d-v5", obs, act, nxt, return_per_row=True)
  assert out["n_clipped"] == at_bound.sum() == out["n_masked"]
  assert np.isnan(out["per_row"][at_bound]).all()
  assert np.isfinite(out["per_row"][~at_bound]).all() and out["mse"] < 1e-12
  rewards = quality.oracle_reward("Walker2d-v5", obs, act)
  assert np.isnan(rewards[at_bound]).all() and np.isfinite(rewards[~at_bound]).all()


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"])
def test_oracle_reward_and_termination_equal_gymnasium(env_id):
  obs, act, rew, _, term, _, _ = _data(env_id)
  step = StateOracle(env_id).step(obs, act)
  v = step.valid
  np.testing.assert_allclose(step.rewards[v], rew[v], atol=1e-9, rtol=0)
  np.testing.assert_array_equal(step.terminals[v], term[v])
  np.testing.assert_allclose(quality.oracle_reward(env_id, obs, act)[v], rew[v], atol=1e-9)


def test_ant_reward_equals_gymnasium_after_set_state():
  obs, act, _, _, _, qpos, qvel = _data("Ant-v5", n=150, scale=1.0)
  step = StateOracle("Ant-v5").step(obs, act)
  env = gym.make("Ant-v5", include_cfrc_ext_in_observation=False).unwrapped
  env.reset(seed=0)
  contact = []
  for i in range(len(obs)):
    q = qpos[i].copy()
    q[:2] = 0.0
    env.set_state(q, qvel[i])
    env.data.qacc_warmstart[:] = 0.0
    o, r, t, _, info = env.step(act[i])
    assert abs(r - step.rewards[i]) < 1e-9 and t == step.terminals[i]
    np.testing.assert_allclose(o, step.next_observations[i], atol=1e-9)
    contact.append(info["reward_contact"])
  assert np.min(contact) < 0  # the contact cost term is exercised
  np.testing.assert_allclose(step.reward_terms["reward_contact"], contact, atol=1e-12)


def test_backends_are_bit_identical():
  obs, act, *_ = _data("Hopper-v5")
  outs = [StateOracle("Hopper-v5", backend=b, chunk=128).step(obs, act)
          for b in ("batch", "rollout", "loop")]
  for o in outs[1:]:
    np.testing.assert_array_equal(o.next_observations, outs[0].next_observations)
    np.testing.assert_array_equal(o.rewards, outs[0].rewards)


@pytest.mark.parametrize("backend", ["batch", "rollout", "loop"])
def test_nonfinite_and_unstable_rows_are_masked(backend):
  obs, act, *_ = _data("HalfCheetah-v5")
  obs, act = obs[:20].copy(), act[:20].copy()
  obs[3, 0] = np.nan
  obs[5, 10] = 1e12  # MuJoCo flags the state as unstable (and would reset it)
  step = StateOracle("HalfCheetah-v5", backend=backend).step(obs, act)
  assert step.nonfinite[3] and step.unstable[5]
  assert not step.valid[[3, 5]].any() and step.valid.sum() == 18
  assert np.isnan(step.rewards[[3, 5]]).all()


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="observations"):
    StateOracle("Hopper-v5").step(np.zeros((4, 12)), np.zeros((4, 3)))
  with pytest.raises(ValueError, match="actions"):
    StateOracle("Hopper-v5").step(np.zeros((4, 11)), np.zeros((3, 3)))
  with pytest.raises(ValueError, match="loop"):
    StateOracle("Ant-v5", backend="batch")


def test_novelty_of_a_dataset_against_itself_is_exactly_zero():
  obs, act, rew, nxt, term, *_ = _data("HalfCheetah-v5")
  ds = OfflineDataset(obs, act, rew, nxt, term, np.zeros_like(rew))
  out = quality.novelty(ds, ds, chunk=64, data_chunk=100)
  assert out == {"state": 0.0, "action": 0.0, "state_action": 0.0}


def test_novelty_hand_made_example():
  original = {"observations": np.array([[0.0, 0.0], [3.0, 4.0]]),
              "actions": np.array([[0.0], [1.0]])}
  generated = {"observations": np.array([[0.0, 1.0], [3.0, 0.0], [6.0, 8.0]]),
               "actions": np.array([[0.5], [2.0], [1.0]])}
  out = quality.novelty(generated, original, chunk=2, data_chunk=1)
  # states: 1 (to (0,0)), 3 (to (0,0)), 5 (to (3,4)); actions: 0.5, 1, 0
  np.testing.assert_allclose(out["state"], (1 + 3 + 5) / 3, rtol=1e-6)
  np.testing.assert_allclose(out["action"], 1.5 / 3, rtol=1e-6)
  # state-actions: (0,1,.5)->(0,0,0): sqrt(1.25); (3,0,2)->(0,0,0): sqrt(13), (3,4,1): sqrt(17)
  # -> sqrt(13); (6,8,1)->(3,4,1): 5
  np.testing.assert_allclose(out["state_action"], (np.sqrt(1.25) + np.sqrt(13) + 5) / 3,
                             rtol=1e-6)


def test_chunked_novelty_equals_brute_force():
  rng = np.random.default_rng(0)
  y = (rng.standard_normal((2049, 23)) * 3 + 5).astype(np.float32)
  x = (rng.standard_normal((517, 23)) * 3 + 5).astype(np.float32)
  x[:10] = y[100:110]  # exact members: distance exactly 0
  brute = np.sqrt(((x[:, None].astype(np.float64) - y[None]) ** 2).sum(-1).min(1))
  for method in ("matmul", "direct"):
    d = quality.nearest_neighbour_distances(x, y, chunk=100, data_chunk=300, method=method)
    assert d.shape == (517,) and (d[:10] == 0).all()
    np.testing.assert_allclose(d, brute, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(quality.novelty(x, y, chunk=128, data_chunk=512), brute.mean(),
                             rtol=1e-5)


def test_quality_metrics_one_simulation():
  obs, act, rew, nxt, term, *_ = _data("Hopper-v5")
  out = quality.quality_metrics("Hopper-v5", obs, act, nxt, rewards=rew, terminals=term)
  assert out["reward_abs_err"] < 1e-9 and out["terminal_agreement"] == 1.0
  np.testing.assert_allclose(out["oracle_reward_mean"], rew.mean(), rtol=1e-9)
  assert out["mse"] < 1e-12


def test_quality_experiment_writes_table_json_and_plot(tmp_path):
  import json
  import subprocess
  import sys

  from jaxaug.data.loaders import save_npz
  obs, act, rew, nxt, term, qpos, qvel = _data("HalfCheetah-v5", n=400)
  timeouts = np.zeros(len(obs))
  timeouts[199::200] = 1.0  # random_transitions resets every 200 steps
  original = OfflineDataset(obs, act, rew, nxt, term, timeouts, infos={"qpos": qpos, "qvel": qvel},
                            metadata={"env_id": "HalfCheetah-v5"})
  rng = np.random.default_rng(0)
  noisy = OfflineDataset(obs + 0.05 * rng.standard_normal(obs.shape), act, rew, nxt, term,
                         timeouts, metadata={"env_id": "HalfCheetah-v5", "episodic": False})
  save_npz(original, tmp_path / "orig.npz")
  save_npz(noisy, tmp_path / "gen.npz")
  out = tmp_path / "q"
  root = __file__.rsplit("/tests/", 1)[0]
  res = subprocess.run(
      [sys.executable, f"{root}/experiments/quality.py", f"--original=npz:{tmp_path}/orig.npz",
       f"--generated=npz:{tmp_path}/gen.npz", "--names=noisy", f"--out={out}"],
      capture_output=True, text=True, timeout=120, cwd=root)
  assert res.returncode == 0, res.stderr[-2000:]
  assert "original" in res.stdout and "noisy" in res.stdout
  report = json.loads((out / "quality.json").read_text())
  orig_row, gen_row = report["rows"]
  assert orig_row["used_infos"] and orig_row["mse"] < 1e-10 and orig_row["n_masked"] == 0
  assert gen_row["mse"] > 1e-4 and 0 < gen_row["novelty_state"] < 1.0
  assert gen_row["novelty_action"] == 0.0
  assert (out / "rewards.png").stat().st_size > 10_000
  assert not list(out.glob("*.tmp*"))


def test_novelty_sharded_over_four_fake_devices_equals_brute_force():
  import subprocess
  import sys
  import textwrap

  code = textwrap.dedent("""
      import jax, numpy as np
      from jaxaug.metrics import quality
      assert jax.local_device_count() == 4
      rng = np.random.default_rng(0)
      y = rng.standard_normal((3001, 11)).astype(np.float32)
      x = rng.standard_normal((501, 11)).astype(np.float32)
      x[:5] = y[:5]
      d = quality.nearest_neighbour_distances(x, y, chunk=130, data_chunk=512)
      brute = np.sqrt(((x[:, None].astype(np.float64) - y[None]) ** 2).sum(-1).min(1))
      assert d.shape == (501,) and (d[:5] == 0).all()
      assert np.abs(d - brute).max() < 1e-5, np.abs(d - brute).max()
      print("OK")
  """)
  root = __file__.rsplit("/tests/", 1)[0]
  env = {**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": root}
  res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120, cwd=root)
  assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-2000:]
