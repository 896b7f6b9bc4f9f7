"""SAC: losses move the right way, temperature adapts, UTD/REDQ pieces, online loop + resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import sac as sac_configs
from jaxaug.agents import sac
from jaxaug.data.dataset import Transitions
from jaxaug.train import online
from jaxaug.train.logging import read_metrics
from jaxaug.types import EnvSpec

SPEC = EnvSpec(obs_dim=5, act_dim=2, max_action=1.0)


def _config(**kw):
  c = sac.get_config()
  c.hidden_dims = (32, 32)
  c.update(kw)
  return c


def _batch(key, n=64):
  k1, k2, k3 = jax.random.split(key, 3)
  obs = jax.random.normal(k1, (n, SPEC.obs_dim))
  act = jax.random.uniform(k2, (n, SPEC.act_dim), minval=-1, maxval=1)
  return Transitions(observations=obs, actions=act, rewards=obs[:, 0] + act[:, 0],
                     next_observations=jax.random.normal(k3, (n, SPEC.obs_dim)),
                     terminals=jnp.zeros(n), timeouts=jnp.zeros(n))


def test_update_reduces_critic_loss_on_fixed_batch():
  state = sac.init(jax.random.key(0), SPEC, _config())
  batch = _batch(jax.random.key(1))
  update = sac.update_jit
  losses = []
  for i in range(100):
    state, m = update(state, batch, jax.random.key(i))
    losses.append(float(m["critic_loss"]))
  assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
  assert int(state.step) == 100 and int(state.critic.step) == 100
  assert all(np.isfinite(losses))


@pytest.mark.parametrize("target_entropy,direction", [(10.0, 1), (-20.0, -1)])
def test_temperature_adapts(target_entropy, direction):
  # Entropy below target -> alpha grows; above target -> alpha shrinks (SAC Sec. 5).
  state = sac.init(jax.random.key(0), SPEC,
                   _config(target_entropy=target_entropy, temperature_lr=1e-2))
  batch = _batch(jax.random.key(1))
  alpha0 = float(state.temperature.apply_fn(state.temperature.params))
  for i in range(20):
    state, m = sac.update_jit(state, batch, jax.random.key(i))
  alpha = float(m["temperature"])
  assert alpha0 == pytest.approx(1.0)
  assert direction * (alpha - alpha0) > 0.01


def test_default_target_entropy_and_act():
  state = sac.init(jax.random.key(0), SPEC, _config())
  assert state.hyper.target_entropy == -2.0
  obs = jnp.ones((7, SPEC.obs_dim))
  a_det = sac.act_jit(state, obs, jax.random.key(0))
  a1 = sac.act_jit(state, obs, jax.random.key(1), deterministic=False)
  a2 = sac.act_jit(state, obs, jax.random.key(2), deterministic=False)
  assert a_det.shape == (7, 2) and np.all(np.abs(a1) <= 1.0)
  np.testing.assert_allclose(a_det, sac.act_jit(state, obs, jax.random.key(9)))
  assert not np.allclose(a1, a2)


def test_utd_and_redq_pieces():
  batch = _batch(jax.random.key(1), 64)
  state = sac.init(jax.random.key(0), SPEC, _config())
  s1, _ = sac.update_jit(state, batch, jax.random.key(3))
  s2, _ = jax.jit(sac.update_utd, static_argnums=3)(state, batch, jax.random.key(3), 1)
  jax.tree.map(np.testing.assert_array_equal, s1, s2)
  s4, _ = jax.jit(sac.update_utd, static_argnums=3)(state, batch, jax.random.key(3), 4)
  assert int(s4.critic.step) == 4 and int(s4.actor.step) == 1
  redq = sac.init(jax.random.key(0), SPEC, _config(num_critics=5, num_min_critics=2,
                                                   actor_q_reduction="mean"))
  r, m = sac.update_jit(redq, batch, jax.random.key(0))
  assert r.critic.params["params"]["VmapStateActionValue_0"]["MLP_0"]["Dense_0"][
      "kernel"].shape[0] == 5
  assert np.isfinite(float(m["critic_loss"]))
  with pytest.raises(ValueError, match="num_min_critics"):
    sac.init(jax.random.key(0), SPEC, _config(num_min_critics=3))


def _tiny(steps):
  c = sac_configs.get_config("tiny")
  c.num_env_steps = steps
  c.start_steps = 100
  c.eval_every = 200
  c.checkpoint_every = 0
  c.log_every = 50
  c.replay_capacity = 500
  c.record_infos = True
  return c


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state)]


def test_online_training_runs_and_resumes_exactly(tmp_path):
  # Uninterrupted: 300 env steps. Interrupted: 170 steps (a checkpoint in mid-episode), then a
  # second call with the same workdir going on to 300. Same agent, buffer, infos and metrics.
  straight = online.train_online(_tiny(300), str(tmp_path / "a"))
  assert straight["steps"] == 300 and straight["episodes"] > 0
  metrics = read_metrics(str(tmp_path / "a"))
  assert any("train/critic_loss" in m for m in metrics)
  evals = [m for m in metrics if "eval/return" in m]
  assert [m["step"] for m in evals] == [200, 300]
  assert all(np.isfinite(m["eval/normalized_score"]) for m in evals)
  assert os.path.exists(tmp_path / "a" / "config.json")

  first = online.train_online(_tiny(170), str(tmp_path / "b"))
  assert first["steps"] == 170
  second = online.train_online(_tiny(300), str(tmp_path / "b"))
  assert second["steps"] == 300 and second["episodes"] == straight["episodes"]
  assert second["last_eval"] == straight["last_eval"]
  ra = online.load_run(str(tmp_path / "a"), _tiny(300))
  rb = online.load_run(str(tmp_path / "b"), _tiny(300))
  pick = lambda r: (r["agent"], r["buffer"], jax.random.key_data(r["key"]), r["infos"])
  for x, y in zip(_leaves(pick(ra)), _leaves(pick(rb))):
    np.testing.assert_array_equal(x, y)
  # The same metrics, but for the end-of-run log and evaluation the first call made at 170.
  mb = [m for m in read_metrics(str(tmp_path / "b")) if m["step"] != 170]
  strip = lambda ms: [{k: v for k, v in m.items() if "per_s" not in k} for m in ms]
  assert strip(mb) == strip(metrics)
  # qpos/qvel logged per replay row agree with the observations (Hopper: qpos[1:], qvel).
  n = 300
  obs = np.asarray(ra["buffer"].data.observations[:n])
  np.testing.assert_allclose(obs[:, :5], ra["infos"]["qpos"][:n, 1:], atol=1e-6)
  np.testing.assert_allclose(obs[:, 5:], np.clip(ra["infos"]["qvel"][:n], -10, 10), atol=1e-5)
  with open(tmp_path / "a" / "summary.json") as f:
    assert json.load(f)["steps"] == 300
