"""SAC: losses move the right way, temperature adapts, UTD/REDQ pieces, the reference details
(Glorot-uniform kernels, log-alpha temperature loss, actor step before the last critic step),
online loop + resume."""

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
  # The TD target moves (target critics, entropy term), so the loss has a floor; 300 steps on
  # one batch bring it well below its start from either initialisation.
  for kernel_init in ("xavier_uniform", "lecun_normal"):
    state = sac.init(jax.random.key(0), SPEC, _config(kernel_init=kernel_init))
    batch = _batch(jax.random.key(1))
    losses = []
    for i in range(300):
      state, m = sac.update_jit(state, batch, jax.random.key(i))
      losses.append(float(m["critic_loss"]))
    assert np.mean(losses[-10:]) < 0.35 * np.mean(losses[:10]), kernel_init
    assert int(state.step) == 300 and int(state.critic.step) == 300
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
  assert state.hp.target_entropy == -2.0
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


def _kernels(params):
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return [(jax.tree_util.keystr(p), np.asarray(x)) for p, x in leaves
          if getattr(p[-1], "key", None) == "kernel"]


def test_kernels_are_glorot_uniform_as_in_the_references():
  """softlearning, REDQ (xavier_uniform_, bias 0) and RLPD (xavier_uniform) all initialise
  Dense kernels Glorot-uniform: |w| <= b = sqrt(6 / (fan_in + fan_out)), variance b^2 / 3."""
  assert sac.get_config().kernel_init == "xavier_uniform"
  c = _config(hidden_dims=(64, 64), num_critics=3)
  state = sac.init(jax.random.key(0), SPEC, c)
  kernels = _kernels(state.actor.params) + _kernels(state.critic.params)
  assert len(kernels) == 4 + 3  # actor: 2 hidden, mean, log_std; critic: 2 hidden, value
  for name, w in kernels:
    bound = np.sqrt(6.0 / (w.shape[-2] + w.shape[-1]))
    assert np.abs(w).max() <= bound + 1e-7, name
    if w.size >= 3000:
      assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.15, name
  ens = state.critic.params["params"]["VmapStateActionValue_0"]["MLP_0"]["Dense_0"]["kernel"]
  assert not np.allclose(ens[0], ens[1])  # independent draws per ensemble member
  biases = [np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(state.critic.params)[0]
            if getattr(p[-1], "key", None) == "bias"]
  assert biases and all(np.all(b == 0) for b in biases)
  np.testing.assert_array_equal(ens, state.target_critic_params["params"][
      "VmapStateActionValue_0"]["MLP_0"]["Dense_0"]["kernel"])  # target starts as a copy
  # flax's LeCun-normal (jaxaug's earlier init) breaks the Glorot bound: the check can fail.
  lecun = sac.init(jax.random.key(0), SPEC, _config(hidden_dims=(64, 64), kernel_init="lecun_normal"))
  assert any(np.abs(w).max() > np.sqrt(6.0 / (w.shape[-2] + w.shape[-1]))
             for _, w in _kernels(lecun.critic.params))
  with pytest.raises(ValueError, match="agent.kernel_init"):
    sac.init(jax.random.key(0), SPEC, _config(kernel_init="he"))


@pytest.mark.parametrize("form,scale", [("log_alpha", False), ("alpha", True)])
def test_temperature_loss_gradient(form, scale):
  """d loss / d log(alpha) = (H - target) for the softlearning/REDQ loss, alpha (H - target) for
  RLPD's; SAC's default is the former."""
  assert sac.get_config().temperature_loss == "log_alpha"
  state = sac.init(jax.random.key(0), SPEC, _config(init_temperature=0.25, temperature_loss=form,
                                                    target_entropy=-2.0))
  entropy = jnp.float32(1.5)
  grads, _ = jax.grad(sac.temperature_loss, has_aux=True)(state.temperature.params, state, entropy)
  g = float(grads["params"]["log_temp"])
  expected = (1.5 + 2.0) * (0.25 if scale else 1.0)
  assert g == pytest.approx(expected, rel=1e-5)
  with pytest.raises(ValueError, match="agent.temperature_loss"):
    sac.init(jax.random.key(0), SPEC, _config(temperature_loss="alpha2"))


@pytest.mark.parametrize("utd,updated", [(1, False), (4, False), (4, True)])
def test_actor_step_reads_the_critic_before_or_after_the_last_critic_step(utd, updated):
  """SAC/REDQ code: the actor loss of a step uses the critics from before that step's (the
  last) critic update; RLPD code: after it."""
  # A large critic lr so that one critic step moves the actor's gradient visibly.
  c = _config(actor_uses_updated_critic=updated, critic_lr=0.05)
  state = sac.init(jax.random.key(0), SPEC, c)
  # A few steps first: Adam's first step is lr * sign(grad), blind to the critic's change.
  for i in range(3):
    state, _ = sac.update_jit(state, _batch(jax.random.key(10 + i), 16), jax.random.key(20 + i))
  batch = _batch(jax.random.key(1), 16 * utd)
  key = jax.random.key(2)
  new, _ = jax.jit(sac.update_utd, static_argnums=3)(state, batch, key, utd)
  mbs = jax.tree.map(lambda x: x.reshape((utd, 16) + x.shape[1:]), batch)
  if utd == 1:
    k_critic, k_actor = jax.random.split(key)
    critic_keys = [k_critic]
  else:
    keys = jax.random.split(key, utd + 1)
    critic_keys, k_actor = list(keys[:-1]), keys[-1]
  update_critic, update_actor = jax.jit(sac.update_critic), jax.jit(sac.update_actor)
  s = state
  for i in range(utd - 1):
    s, _ = update_critic(s, jax.tree.map(lambda x: x[i], mbs), critic_keys[i])
  last = jax.tree.map(lambda x: x[-1], mbs)
  after, _ = update_critic(s, last, critic_keys[-1])
  expect, _ = update_actor(after if updated else s, last, k_actor)
  other, _ = update_actor(s if updated else after, last, k_actor)
  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
  start = flat(state.actor.params)
  d_new, d_expect, d_other = (flat(t.actor.params) - start for t in (new, expect, other))
  scale = np.abs(d_expect).max()
  np.testing.assert_allclose(d_new, d_expect, atol=1e-3 * scale)
  assert np.abs(d_new - d_other).max() > 3e-2 * scale  # the two orders are distinguishable
  np.testing.assert_allclose(flat(new.critic.params), flat(after.critic.params), atol=1e-6)


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


def test_hyperparameters_are_leaves_and_a_sweep_axis_vmaps():
  """Float hyperparameters (and the learning rates, in the optimisers) are leaves of the state:
  two states differing only in them stack and vmap; each vmapped row equals its own update."""
  from jaxaug.agents import common
  state = sac.init(jax.random.key(0), SPEC, _config())
  assert {"discount", "tau", "target_entropy", "init_temperature"} <= set(state.hp.leaf_names)
  assert {"num_critics", "hidden_dims", "critic_layer_norm_epsilon", "temperature_loss"}.isdisjoint(
      state.hp.leaf_names)
  assert float(common.learning_rate(state.critic)) == pytest.approx(3e-4)
  other = sac.init(jax.random.key(0), SPEC, _config(tau=0.5, discount=0.9, critic_lr=1e-2,
                                                    init_temperature=0.1))
  # Same program: same static hyperparameters and leaf shapes. (Two inits hold distinct bound
  # apply_fns, so a sweep stacks the leaves of each init into one template's tree.)
  assert other.hp.static_key == state.hp.static_key
  leaves = [jax.tree.leaves(state), jax.tree.leaves(other)]
  assert [(a.shape, a.dtype) for a in map(jnp.asarray, leaves[0])] == [
      (b.shape, b.dtype) for b in map(jnp.asarray, leaves[1])]
  both = jax.tree.unflatten(jax.tree.structure(state),
                            [jnp.stack([a, b]) for a, b in zip(*leaves)])
  batch, key = _batch(jax.random.key(1)), jax.random.key(2)
  stacked, _ = jax.jit(jax.vmap(sac.update, in_axes=(0, None, None)))(both, batch, key)
  for i, single in enumerate((state, other)):
    want, _ = sac.update_jit(single, batch, key)
    for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b), rtol=1e-5, atol=1e-6)
  t0 = jax.tree.leaves(stacked.target_critic_params)
  assert not np.allclose(np.asarray(t0[0])[0], np.asarray(t0[0])[1])  # the rows do differ
  assert float(stacked.temperature.params["params"]["log_temp"][1]) != float(
      stacked.temperature.params["params"]["log_temp"][0])


def test_configs_of_older_workdirs_keep_the_earlier_behaviour():
  """A config saved before kernel_init / temperature_loss / actor_uses_updated_critic existed
  gets jaxaug's earlier values (sac.LEGACY_DEFAULTS), not the current defaults; an unknown key
  is a ValueError naming it."""
  c = _config()
  for field in sac.LEGACY_DEFAULTS:
    del c[field]
  hp = sac.init(jax.random.key(0), SPEC, c).hp
  assert {k: getattr(hp, k) for k in sac.LEGACY_DEFAULTS} == sac.LEGACY_DEFAULTS
  hp = sac.init(jax.random.key(0), SPEC, _config()).hp
  assert (hp.kernel_init, hp.temperature_loss, hp.actor_uses_updated_critic) == (
      "xavier_uniform", "log_alpha", False)
  with pytest.raises(ValueError, match="typo_field"):
    sac.init(jax.random.key(0), SPEC, _config(typo_field=1))
  with pytest.raises(ValueError, match="init_temperature"):
    sac.init(jax.random.key(0), SPEC, _config(init_temperature=0.0))


def test_td_error_is_the_protocol_function():
  """sac.td_error: |r + gamma m min_i Q'_i(s', a') - mean_i Q_i(s, a)|, a' ~ pi(s'); an agent
  without td_error is refused with the config field that asked for it."""
  from jaxaug.agents import td3bc
  from jaxaug.types import td_error_fn
  state = sac.init(jax.random.key(0), SPEC, _config(discount=0.5))
  batch = _batch(jax.random.key(1), n=16)
  batch = batch.replace(terminals=jnp.asarray([1.0] * 8 + [0.0] * 8))
  td = np.asarray(jax.jit(sac.td_error)(state, batch, jax.random.key(2)))
  dist = state.actor.apply_fn(state.actor.params, batch.next_observations)
  a2 = dist.sample(seed=jax.random.key(2))
  nq = state.critic.apply_fn(state.target_critic_params, batch.next_observations, a2).min(0)
  q = state.critic.apply_fn(state.critic.params, batch.observations, batch.actions).mean(0)
  want = np.abs(np.asarray(batch.rewards + 0.5 * batch.masks * nq - q))
  np.testing.assert_allclose(td, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(td[:8], np.abs(np.asarray(batch.rewards - q)[:8]), rtol=1e-5,
                             atol=1e-6)  # terminal rows: no bootstrap
  assert td_error_fn(sac, "x") is sac.td_error
  with pytest.raises(ValueError, match="config.atradiff.importance.*td_error"):
    td_error_fn(td3bc, "config.atradiff.importance='td_error'")
