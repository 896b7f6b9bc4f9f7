"""DTQL: trust-region gradients, critic learning, pre-training phase, acting, the 2-D toy
(one-step policy inside the trust region, on the best mode), data parallel == single device;
golden tests that the defaults and paper presets are the official code's behaviour (denoiser
layout, V bootstrap, frozen targets during pre-training, policy init, LayerNorm epsilon) and that
the `+fixes` presets flip exactly the documented switches; preset datasets, schedules, and
evaluation of environment suites jaxaug lacks."""

import dataclasses
import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dtql as dtql_configs
from jaxaug import agents
from jaxaug.agents import dtql
from jaxaug.data.dataset import OfflineDataset, Transitions, sample_transitions
from jaxaug.train.loop import LoopConfig, run_training
from jaxaug.types import EnvSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = EnvSpec(obs_dim=5, act_dim=2, max_action=1.0)


def small_config(**overrides):
  c = dtql.get_config()
  c.denoiser_hidden_dim = 32
  c.policy_hidden_dims = (32, 32)
  c.critic_hidden_dims = (32, 32)
  c.num_candidates = 1
  for k, v in overrides.items():
    c[k] = v
  return c


def bandit_data(n=1024, seed=0):
  """Deterministic rewards r = s_0 - |a|^2, so the critic has something learnable."""
  rng = np.random.default_rng(seed)
  obs = rng.normal(size=(n, SPEC.obs_dim)).astype(np.float32)
  act = np.tanh(rng.normal(size=(n, SPEC.act_dim))).astype(np.float32)
  rew = (obs[:, 0] - np.sum(act**2, axis=1)).astype(np.float32)
  nxt = rng.normal(size=obs.shape).astype(np.float32)
  return Transitions(obs, act, rew, nxt, (rng.random(n) < 0.5).astype(np.float32),
                     np.zeros(n, np.float32))


def _norm(tree):
  return float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))


def _equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _mish(x):
  return x * np.tanh(np.logaddexp(0.0, x))


def test_registered_and_rejects_bad_config():
  assert agents.get_agent("dtql") is dtql
  with pytest.raises(ValueError, match="config.agent.policy"):
    dtql.init(jax.random.key(0), SPEC, small_config(policy="gaussian"))
  with pytest.raises(ValueError, match="config.agent.gamma_ent"):
    dtql.init(jax.random.key(0), SPEC, small_config(policy="implicit", gamma_ent=1.0))
  with pytest.raises(ValueError, match="unknown field"):
    dtql.init(jax.random.key(0), SPEC, small_config(trust_region_wieght=1.0))


@pytest.mark.parametrize("policy", ["tanh_gaussian", "implicit"])
def test_trust_region_gradient_reaches_policy_not_diffusion(policy):
  state = dtql.init(jax.random.key(0), SPEC, small_config(policy=policy))
  hp = state.hp
  batch = bandit_data(64)

  def tr_only(policy_params, bc_params):
    a = dtql.sample_policy(policy_params, hp, batch.observations, jax.random.key(1))
    return dtql.trust_region_loss(a, bc_params, hp, batch.observations, jax.random.key(2))

  g_pi, g_bc = jax.jit(jax.grad(tr_only, argnums=(0, 1)))(state.policy.params, state.bc.params)
  assert _norm(g_pi) > 1e-4
  assert _norm(g_bc) == 0.0
  # The full policy loss (trust region + Q) leaves the diffusion model and critics alone too.
  g = jax.jit(jax.grad(
      lambda p, b, c: dtql.policy_loss(p, b, c, hp, batch, jax.random.key(3))[0],
      argnums=(0, 1, 2)))(state.policy.params, state.bc.params, state.critic.params)
  assert _norm(g[0]) > 1e-4 and _norm(g[1]) == 0.0 and _norm(g[2]) == 0.0
  # ... while the BC loss itself does train the diffusion model.
  g_bc_loss = jax.jit(lambda b: jax.grad(dtql.diffusion_loss)(
      b, hp, batch.actions, batch.observations, jax.random.key(4)))(state.bc.params)
  assert _norm(g_bc_loss) > 1e-4


def test_critic_loss_falls_and_pretraining_freezes_policy():
  data = jax.tree.map(jnp.asarray, bandit_data())
  state = dtql.init(jax.random.key(0), SPEC, small_config(pretrain_steps=150, critic_lr=3e-3))
  probe = sample_transitions(data, jax.random.key(99), 512)
  loss0 = float(dtql.critic_loss(state.critic.params, state.target_critic_params, state.hp,
                                 probe)[0])
  policy0 = state.policy.params

  @functools.partial(jax.jit, static_argnums=2)
  def run(state, key, n):
    def body(s, k):
      k_s, k_u = jax.random.split(k)
      return dtql.update(s, sample_transitions(data, k_s, 128), k_u)
    return jax.lax.scan(body, state, jax.random.split(key, n))

  target0 = state.target_critic_params
  state, m = run(state, jax.random.key(1), 150)  # one compile for both phases
  assert np.all(np.asarray(m["pretraining"]) == 1.0)
  assert _equal(state.policy.params, policy0)
  # Official: the target critic does not move during pre-training ...
  assert _equal(state.target_critic_params, target0)
  assert not _equal(state.critic.params, target0)
  state, m = run(state, jax.random.key(2), 150)
  assert np.all(np.asarray(m["pretraining"]) == 0.0)
  assert int(state.step) == 300
  assert not _equal(state.policy.params, policy0)
  # ... and Polyak-averages from the first main-phase step on.
  assert not _equal(state.target_critic_params, target0)
  loss1 = float(dtql.critic_loss(state.critic.params, state.target_critic_params, state.hp,
                                 probe)[0])
  assert loss1 < 0.5 * loss0, (loss0, loss1)
  assert np.all(np.isfinite(np.asarray(m["policy_loss"])))


def test_act_shapes_and_max_q_trick():
  state = dtql.init(jax.random.key(0), SPEC, small_config(num_candidates=64,
                                                         candidate_selection="argmax"))
  obs = jnp.asarray(bandit_data(8).observations)
  a = jax.jit(dtql.act)(state, obs, jax.random.key(1))
  assert a.shape == (8, 2) and np.all(np.abs(a) <= 1.0)
  assert jax.jit(dtql.act)(state, obs[0], jax.random.key(1)).shape == (2,)
  # argmax selection returns the candidate with the highest min target Q.
  hp = state.hp
  obs_rep = jnp.repeat(obs[:1], 64, axis=0)
  k_cand, _ = jax.random.split(jax.random.key(1))

  @jax.jit
  def candidates(s):
    c = dtql.sample_policy(s.policy.params, hp, obs_rep, k_cand)
    return c, dtql.q_net(hp).apply(s.target_critic_params["q"], obs_rep, c).min(0)

  cand, q = candidates(state)
  np.testing.assert_allclose(a[0], jnp.clip(cand[jnp.argmax(q)], -1, 1), atol=1e-6)
  # The diffusion BC policy sampler (benchmark baseline) gives bounded actions.
  b = jax.jit(dtql.sample_diffusion_policy, static_argnums=3)(state, obs, jax.random.key(2),
                                                              3)
  assert b.shape == (8, 2) and np.all(np.abs(b) <= 1.0)


def _stack(states):
  """States that differ only in float hyperparameters (and seed) stacked on a leading axis: the
  same leaves (shapes, dtypes), so one vmapped program trains them all."""
  flat = [jax.tree.flatten(s) for s in states]
  assert len({len(leaves) for leaves, _ in flat}) == 1
  for a, b in zip(flat[0][0], flat[1][0]):
    assert np.shape(a) == np.shape(b) and jnp.result_type(a) == jnp.result_type(b)
  leaves = [jnp.stack(xs) for xs in zip(*(leaves for leaves, _ in flat))]
  return jax.tree.unflatten(flat[0][1], leaves)


def test_float_hyperparameters_are_leaves_and_vmap_like_seeds():
  """A sweep over float hyperparameters (trust-region weight, expectile, lr, candidate
  temperature) is one vmapped program whose points equal separate runs; structural fields are
  static (a change there changes the structure)."""
  configs = [small_config(pretrain_steps=1, lr_decay=True, lr_decay_steps=10),
             small_config(pretrain_steps=1, lr_decay=True, lr_decay_steps=10,
                          trust_region_weight=0.25, expectile=0.9, lr=1e-3, discount=0.9)]
  states = [dtql.init(jax.random.key(i), SPEC, c) for i, c in enumerate(configs)]
  assert {"trust_region_weight", "expectile", "discount", "tau"} <= set(states[0].hp.leaf_names)
  assert states[0].hp.static_key == states[1].hp.static_key
  assert float(dtql.common.learning_rate(states[1].policy)) == pytest.approx(1e-3)
  batch = jax.tree.map(jnp.asarray, bandit_data(64))
  keys = jnp.stack([jax.random.key(10), jax.random.key(11)])

  def run(state, key):
    def body(s, k):
      return dtql.update(s, batch, k)
    return jax.lax.scan(body, state, jax.random.split(key, 3))

  both, m_both = jax.jit(jax.vmap(run))(_stack(states), keys)
  for i, state in enumerate(states):
    single, m = jax.jit(run)(state, keys[i])
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(both)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b)[i], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["policy_loss"], m_both["policy_loss"][i], rtol=1e-5, atol=1e-6)
  # the two points really differ (different weights, learning rates and seeds)
  assert not np.allclose(m_both["policy_loss"][0], m_both["policy_loss"][1])
  other = dtql.init(jax.random.key(0), SPEC, small_config(policy_hidden_dims=(16, 16)))
  assert other.hp.static_key != states[0].hp.static_key


def test_make_act_fn_is_shared_across_float_hyperparameters():
  """make_act_fn caches on hp.static_key and reads the acting floats from act_params, so two
  states that differ only in candidate_temperature share one compiled function, and each gets
  its own temperature (never the first state's, baked in)."""
  cfg = lambda t: small_config(num_candidates=32, candidate_temperature=t)
  hot = dtql.init(jax.random.key(0), SPEC, cfg(100.0))
  cold = dtql.init(jax.random.key(0), SPEC, cfg(1e-3))
  fn = dtql.make_act_fn(hot.hp, False)
  assert dtql.make_act_fn(cold.hp, False) is fn
  obs = jnp.asarray(bandit_data(16).observations)
  key = jax.random.key(3)
  for state in (hot, cold):
    got = fn(dtql.act_params(state), obs, key, 1)
    ref = jax.jit(dtql.act, static_argnums=3)(state, obs, jax.random.fold_in(key, 1), False)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
  assert not np.allclose(fn(dtql.act_params(hot), obs, key, 1),
                         fn(dtql.act_params(cold), obs, key, 1))
  assert fn._cache_size() == 1


def test_faithful_denoiser_layout_differs_only_in_activation():
  official = dtql.init(jax.random.key(0), SPEC, small_config())
  fixed = dtql.init(jax.random.key(0), SPEC, small_config(faithful_denoiser=False))
  assert jax.tree.structure(fixed.bc.params) == jax.tree.structure(official.bc.params)
  x = jnp.ones((4, 2))
  out = lambda s: dtql.denoiser_net(s.hp).apply(official.bc.params, x, jnp.zeros(4),
                                                jnp.ones((4, 5)))
  assert not np.allclose(out(fixed), out(official))


def _numpy_denoiser(params, x, c_noise, obs, dim, official):
  """The official ScoreNetwork in numpy: emb = Lin(Mish(Lin(sinusoidal))), then
  Lin, Lin, Mish, (Lin, Mish) x (L - 2), Lin when official (no Mish after the first Linear)."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)["params"]
  half = dim // 2
  freqs = np.exp(-np.log(10000.0) / (half - 1) * np.arange(half))
  arg = np.asarray(c_noise, np.float64)[:, None] * freqs[None]
  emb = np.concatenate([np.sin(arg), np.cos(arg)], -1)
  lin = lambda name, h: h @ p[name]["kernel"] + p[name]["bias"]
  emb = lin("Dense_0", _mish(lin("Dense_1", emb)))  # flax names the outer Dense first
  h = np.concatenate([x, obs, emb], -1)
  names = sorted((k for k in p if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
  hidden, out = names[2:-1], names[-1]
  for i, name in enumerate(hidden):
    h = lin(name, h)
    if not (official and i == 0):
      h = _mish(h)
  return lin(out, h)


def test_default_denoiser_is_the_official_layout():
  """Golden: the default (paper) denoiser has no activation between its first two layers."""
  assert dtql.get_config().faithful_denoiser is True
  state = dtql.init(jax.random.key(0), SPEC, small_config())
  rng = np.random.default_rng(0)
  x, obs = rng.normal(size=(6, 2)), rng.normal(size=(6, 5))
  c_noise = rng.normal(size=6)
  got = np.asarray(dtql.denoiser_net(state.hp).apply(
      state.bc.params, jnp.asarray(x, jnp.float32), jnp.asarray(c_noise, jnp.float32),
      jnp.asarray(obs, jnp.float32)))
  want = _numpy_denoiser(state.bc.params, x, c_noise, obs, state.hp.time_embed_dim, True)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  other = _numpy_denoiser(state.bc.params, x, c_noise, obs, state.hp.time_embed_dim, False)
  assert np.max(np.abs(other - want)) > 1e-3  # the test can tell the two layouts apart


def test_q_target_bootstraps_from_online_v_by_default():
  """Golden: the official Q target is r + gamma * mask * V_online(s'); target_value=True
  (a fix) uses the Polyak target V instead."""
  assert dtql.get_config().target_value is False
  state = dtql.init(jax.random.key(0), SPEC, small_config())
  batch = jax.tree.map(jnp.asarray, bandit_data(64))
  # A target critic that differs from the online one.
  target = jax.tree.map(lambda a: a + 0.3, state.critic.params)
  hp = state.hp

  def q_loss_for(v_params, hp):
    q = dtql.q_net(hp).apply(state.critic.params["q"], batch.observations, batch.actions)
    y = batch.rewards + hp.discount * batch.masks * dtql.v_net(hp).apply(
        v_params, batch.next_observations)
    return float(jnp.sum(jnp.mean(jnp.square(q - y), axis=1)))

  got = float(dtql.critic_loss(state.critic.params, target, hp, batch)[1]["q_loss"])
  np.testing.assert_allclose(got, q_loss_for(state.critic.params["v"], hp), rtol=1e-5)
  assert abs(got - q_loss_for(target["v"], hp)) > 1e-3 * got
  hp_fix = hp.replace(target_value=True)
  got_fix = float(dtql.critic_loss(state.critic.params, target, hp_fix, batch)[1]["q_loss"])
  np.testing.assert_allclose(got_fix, q_loss_for(target["v"], hp), rtol=1e-5)


def test_target_value_needs_polyak_during_pretraining():
  with pytest.raises(ValueError, match="config.agent.polyak_during_pretrain"):
    dtql.init(jax.random.key(0), SPEC, small_config(target_value=True, pretrain_steps=10))
  dtql.init(jax.random.key(0), SPEC, small_config(target_value=True, pretrain_steps=10,
                                                  polyak_during_pretrain=True))


def test_polyak_during_pretrain_switch_moves_targets():
  data = jax.tree.map(jnp.asarray, bandit_data(256))
  state = dtql.init(jax.random.key(0), SPEC, small_config(pretrain_steps=10,
                                                          polyak_during_pretrain=True))
  batch = sample_transitions(data, jax.random.key(1), 64)
  new, m = jax.jit(dtql.update)(state, batch, jax.random.key(2))
  assert float(m["pretraining"]) == 1.0
  want = jax.tree.map(lambda t, o: (1 - state.hp.tau) * t + state.hp.tau * o,
                      state.target_critic_params, new.critic.params)
  for a, b in zip(jax.tree.leaves(new.target_critic_params), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert not _equal(new.target_critic_params, state.target_critic_params)


def _dense_layers(tree):
  """Every {'kernel', 'bias'} dict of a flax param tree, in layer order."""
  out = []

  def visit(d):
    if isinstance(d, dict) and "kernel" in d:
      out.append(d)
      return
    if isinstance(d, dict):
      for k in sorted(d, key=lambda k: (k.rsplit("_", 1)[0], int(k.rsplit("_", 1)[1])
                                        if k.rsplit("_", 1)[-1].isdigit() else 0)):
        visit(d[k])

  visit(jax.device_get(tree))
  return out


def test_policy_init_is_official_orthogonal_gain_one():
  """Golden: official DiagGaussianActorTanhAction: 3 hidden ReLU layers + one 2*act output
  layer, every weight orthogonal with gain 1 (torch.nn.init.orthogonal_), biases zero."""
  assert dtql.get_config().policy_init == "official"
  spec = EnvSpec(obs_dim=11, act_dim=3)
  cfg = dtql.get_config()  # paper widths: 11 -> 256 -> 256 -> 256 -> 6
  state = jax.jit(lambda k: dtql.init(k, spec, cfg))(jax.random.key(0))
  layers = _dense_layers(state.policy.params)
  assert [tuple(l["kernel"].shape) for l in layers] == [(11, 256), (256, 256), (256, 256),
                                                        (256, 6)]
  for l in layers:
    k = np.asarray(l["kernel"], np.float64)
    gram = k @ k.T if k.shape[0] <= k.shape[1] else k.T @ k  # the smaller side is orthonormal
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-4)
    assert np.all(np.asarray(l["bias"]) == 0.0)
  # The former jaxaug init (a switch, on in +fixes presets) is different: small heads.
  small = jax.jit(lambda k: dtql.init(k, spec, dtql_configs.get_config(
      "hopper-medium-replay+fixes").agent))(jax.random.key(0))
  heads = [small.policy.params["params"][n]["kernel"] for n in ("Dense_0", "Dense_1")]
  assert [h.shape for h in heads] == [(256, 3)] * 2
  assert all(np.abs(np.asarray(h)).max() < 0.05 for h in heads)


def _numpy_layer_norm(x, scale, bias, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


def test_critic_layer_norm_epsilon_is_torchs():
  """Golden: DTQL's Q nets mirror torch.nn.LayerNorm (epsilon 1e-5, not flax's 1e-6). The first
  layer is scaled down so the pre-LayerNorm variance (~1e-6) makes the epsilon matter."""
  cfg = small_config()
  assert dtql.get_config().critic_layer_norm_epsilon == 1e-5
  state = dtql.init(jax.random.key(0), SPEC, cfg)
  q_params = jax.device_get(state.critic.params["q"])
  inner = q_params["params"]["VmapStateActionValue_0"]["MLP_0"]
  inner["Dense_0"]["kernel"] = inner["Dense_0"]["kernel"] * 1e-3
  rng = np.random.default_rng(0)
  obs, act = rng.normal(size=(8, 5)), rng.uniform(-1, 1, size=(8, 2))
  got = np.asarray(dtql.q_net(state.hp).apply(q_params, jnp.asarray(obs, jnp.float32),
                                              jnp.asarray(act, jnp.float32)))

  def numpy_q(eps):
    outs = []
    for e in range(2):
      h = np.concatenate([obs, act], -1)
      p = jax.tree.map(lambda a: np.asarray(a[e], np.float64), inner)
      for i in range(len(cfg.critic_hidden_dims)):
        h = h @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"]
        h = _mish(_numpy_layer_norm(h, p[f"LayerNorm_{i}"]["scale"], p[f"LayerNorm_{i}"]["bias"],
                                    eps))
      last = f"Dense_{len(cfg.critic_hidden_dims)}"
      outs.append((h @ p[last]["kernel"] + p[last]["bias"])[:, 0])
    return np.stack(outs)

  np.testing.assert_allclose(got, numpy_q(1e-5), rtol=1e-3, atol=1e-4)
  assert np.max(np.abs(numpy_q(1e-6) - numpy_q(1e-5))) > 1e-2  # epsilon matters here


def test_config_presets():
  c = dtql_configs.get_config("tiny")
  assert c.agent_name == "dtql" and c.num_steps == c.agent.pretrain_steps + c.agent.lr_decay_steps
  gym = dtql_configs.get_config("")
  assert gym.num_steps == 1_050_000 and gym.batch_size == 256 and not gym.normalize_obs
  alphas = {d: dtql_configs.get_config(d).agent.trust_region_weight for d in dtql_configs.DATASETS}
  assert [alphas[f"halfcheetah-{x}"] for x in ("medium", "medium-replay", "medium-expert")] == [
      1.0, 5.0, 50.0]
  assert [alphas[f"hopper-{x}"] for x in ("medium", "medium-replay", "medium-expert")] == [
      5.0, 5.0, 20.0]
  hm = dtql_configs.get_config("hopper-medium")
  assert hm.agent.lr == 1e-4 and hm.agent.lr_decay
  am = dtql_configs.get_config("antmaze-large-diverse")
  assert (am.agent.expectile, am.agent.gamma_ent, am.batch_size, am.reward_normalization) == (
      0.9, 1.0, 2048, "antmaze")
  assert am.num_steps == 50_000 + 300_000
  for bad in ("hopper-random", "tiny+fixes", "hopper-medium+fix"):
    with pytest.raises(ValueError, match="configs/dtql.py"):
      dtql_configs.get_config(bad)


def test_paper_presets_are_official_and_fixes_flip_only_the_switches():
  official = {"target_value": False, "polyak_during_pretrain": False, "faithful_denoiser": True,
              "policy_init": "official"}
  assert set(dtql_configs.FIXES) == set(official)
  for name in dtql_configs.DATASETS:
    paper = dtql_configs.get_config(name)
    fixed = dtql_configs.get_config(name + "+fixes")
    assert {k: paper.agent[k] for k in official} == official, name
    assert {k: fixed.agent[k] for k in official} == dtql_configs.FIXES, name
    assert paper.agent.critic_layer_norm_epsilon == 1e-5 and paper.agent.critic_lr == 3e-4
    p, f = paper.to_dict(), fixed.to_dict()
    for k in official:
      del p["agent"][k], f["agent"][k]
    assert p == f, name
  small, small_fix = dtql_configs.get_config("small"), dtql_configs.get_config("small+fixes")
  assert small.agent.target_value is False and small_fix.agent.target_value is True
  assert set(dtql_configs.PRESETS) >= {"tiny", "small", "small+fixes", "gym"} | {
      d + "+fixes" for d in dtql_configs.DATASETS}
  for name in dtql_configs.PRESETS:  # every preset builds an agent with valid settings
    c = dtql_configs.get_config(name)
    dtql.common.hyper_from_config(c.agent, dtql.get_config(), SPEC, "dtql", static=dtql.STATIC)
    dtql._validate(dtql.config_values(c.agent))


def test_preset_datasets_are_d4rl_files_under_data_dir():
  expected = {"hopper-medium-replay": ("hopper-medium-replay-v2", "Hopper-v5", 10),
              "walker2d-medium-expert": ("walker2d-medium-expert-v2", "Walker2d-v5", 10),
              "antmaze-umaze-diverse": ("antmaze-umaze-diverse-v2", "antmaze-umaze-diverse-v2",
                                        100),
              "pen-human": ("pen-human-v1", "pen-human-v1", 100),
              "pen-cloned": ("pen-cloned-v1", "pen-cloned-v1", 100),
              "kitchen-mixed": ("kitchen-mixed-v0", "kitchen-mixed-v0", 100)}
  for name, (file, env_id, episodes) in expected.items():
    c = dtql_configs.get_config(name)
    assert c.dataset == f"d4rl:{c.data_dir}/{file}.hdf5", c.dataset
    assert (c.env_id, c.eval_episodes) == (env_id, episodes), name
    c.lock()
    c.data_dir = "/data/d4rl"  # the command line's --config.data_dir moves the dataset
    assert c.dataset == f"d4rl:/data/d4rl/{file}.hdf5"
  for name in dtql_configs.DATASETS:
    assert not dtql_configs.get_config(name).dataset.startswith("embedded:"), name


def test_lr_decay_and_eval_offset_follow_the_schedule():
  c = dtql_configs.get_config("walker2d-medium")
  assert (c.agent.lr_decay_steps, c.eval_offset) == (1_000_000, 50_000)
  c.lock()  # as train_offline.py's config flag (lock_config=True)
  c.num_steps = 250_000
  assert c.agent.lr_decay_steps == 200_000
  c.agent.pretrain_steps = 10_000
  assert (c.agent.lr_decay_steps, c.eval_offset) == (240_000, 10_000)
  c.agent.lr_decay_steps = 123  # an explicit override wins
  c.num_steps = 300_000
  assert c.agent.lr_decay_steps == 123
  # The schedule reaches 0 exactly at the end of the run, constant before the main phase.
  c = dtql_configs.get_config("walker2d-medium")
  c.num_steps, c.agent.pretrain_steps = 3000, 1000
  hp = dtql.common.hyper_from_config(c.agent, dtql.get_config(), SPEC, "dtql",
                                     static=dtql.STATIC)
  lr = c.agent.lr
  sched = lambda t: float(dtql._schedule(lr, hp.lr_decay_steps, hp.pretrain_steps)(t))
  assert np.isclose(sched(0), lr) and np.isclose(sched(1000), lr)
  assert sched(3000) == 0.0 and 0.4 * lr < sched(2000) < 0.6 * lr
  # The optimisers follow it, from a base learning rate that is a leaf of their state.
  state = dtql.init(jax.random.key(0), SPEC, c.agent)
  assert float(dtql.common.learning_rate(state.bc)) == pytest.approx(lr)
  assert jax.tree.structure(state.bc.tx.init(state.bc.params)) == jax.tree.structure(
      state.bc.opt_state)


def _eval_steps(loop: LoopConfig) -> list[int]:
  """Steps at which run_training evaluates, with a no-op learner."""
  seen = []
  data = jnp.zeros((4, 1))
  run_training(cfg=loop, workdir=None, init_fn=lambda k: jnp.zeros(()),
               update_fn=lambda s, b, k: (s + 1, {"x": s}),
               sample_fn=lambda d, k, n: d[:n], data=data,
               eval_fn=lambda s, step: seen.append(step) or {})
  return seen


def test_evaluations_follow_the_official_schedule():
  """Official: evaluate every 50 epochs of the main phase, counted from the end of
  pre-training: 20 evaluations in a 1000-epoch run, none on the untrained policy."""
  c = dtql_configs.get_config("hopper-medium-replay")
  loop = LoopConfig.from_config(c)
  assert (loop.eval_offset, loop.eval_every, loop.num_steps) == (50_000, 50_000, 1_050_000)
  scale = 1000  # the same schedule in units of 1000 steps
  small = dataclasses.replace(loop, num_steps=loop.num_steps // scale, batch_size=2,
                              eval_every=loop.eval_every // scale,
                              eval_offset=loop.eval_offset // scale, updates_per_dispatch=10,
                              log_every=0, checkpoint_every=0)
  steps = _eval_steps(small)
  assert steps == [100 + 50 * i for i in range(20)], steps
  am = LoopConfig.from_config(dtql_configs.get_config("antmaze-large-diverse"))
  assert (am.num_steps - am.eval_offset) // am.eval_every == 6  # 300 epochs / 50
  with pytest.raises(ValueError, match="config.eval_offset"):
    dataclasses.replace(small, eval_offset=5).validate()


def _write_d4rl(path, obs_dim, act_dim, n=400, episode=100):
  rng = np.random.default_rng(0)
  obs = np.cumsum(rng.normal(size=(n + 1, obs_dim)), axis=0).astype(np.float32)
  timeouts = np.zeros(n, np.float32)
  timeouts[episode - 1::episode] = 1.0
  nxt = obs[1:].copy()
  from jaxaug.data import loaders
  ds = OfflineDataset(obs[:-1], np.tanh(rng.normal(size=(n, act_dim))), rng.random(n) < 0.1,
                      nxt, np.zeros(n), timeouts)
  loaders.save_d4rl_hdf5(ds, path)


def test_suite_preset_checks_the_layout_and_trains(tmp_path):
  from jaxaug.train.offline import train_offline
  _write_d4rl(tmp_path / "antmaze-umaze-v2.hdf5", obs_dim=27, act_dim=8)  # goal-less ant state
  c = dtql_configs.get_config("antmaze-umaze")
  c.data_dir = str(tmp_path)
  with pytest.raises(ValueError, match=r"27 dims.*antmaze-umaze expects the layout torso x, y"):
    train_offline(c, None)
  _write_d4rl(tmp_path / "antmaze-umaze-v2.hdf5", obs_dim=29, act_dim=8)
  tiny = dtql_configs.get_config("tiny")
  for k in ("denoiser_hidden_dim", "policy_hidden_dims", "critic_hidden_dims", "num_candidates"):
    c.agent[k] = tiny.agent[k]
  c.batch_size, c.updates_per_dispatch, c.log_every, c.checkpoint_every = 32, 10, 20, 0
  c.num_steps, c.agent.pretrain_steps, c.eval_episodes = 20, 10, 0
  out = train_offline(c, None)
  assert out["env_id"] == "antmaze-umaze" and out["num_steps"] == 20
  assert np.isfinite(out["train/policy_loss"]) and out["state"].hp.obs_dim == 29


def test_toy_policy_in_trust_region_on_best_mode():
  from experiments import dtql_toy
  task = dtql_toy.ToyTask()
  cfg = dtql_toy.toy_agent_config()
  # The toy's denoiser width (128, as the official toy): the official layout (no activation
  # between the first two layers) at 64 units does not separate neighbouring modes in 1500 steps.
  cfg.policy_hidden_dims = (32, 32)
  cfg.critic_hidden_dims = (32, 32)
  state, data = dtql_toy.train_toy(task, num_steps=1500, batch_size=128, agent_config=cfg)
  pol = dtql_toy.policy_samples(state, 512, jax.random.key(7))
  best = task.best_mode()
  dist = np.linalg.norm(pol - best, axis=1)
  assert np.mean(dist < 2.0) > 0.9, np.mean(dist < 2.0)  # concentrated on the best mode
  assert np.linalg.norm(pol.mean(0) - best) < 1.0
  key = jax.random.key(8)
  tr_policy = dtql_toy.tr_loss_at(state, pol, key).mean()
  data_best = np.asarray(data.actions)[np.linalg.norm(np.asarray(data.actions) - best, axis=1) < 1]
  tr_data = dtql_toy.tr_loss_at(state, data_best, key).mean()
  # Out of distribution: where the linear reward is higher still (box corner), and between modes.
  ood = np.array([[-12.0, 12.0], [-11.8, 11.5], [-7.5, 10.0], [-10.0, 7.5], [-7.5, 7.5]])
  tr_ood = dtql_toy.tr_loss_at(state, ood, key)
  assert tr_policy < 2.0 * tr_data, (tr_policy, tr_data)
  # The loss averages over all noise levels (large ones blur the modes), so the contrast is
  # moderate between neighbouring modes and large at the corner the Q-maximiser would chase.
  assert np.all(tr_ood > 1.1 * tr_data), (tr_ood, tr_data)
  assert tr_ood[0] > 1.3 * tr_policy, (tr_ood, tr_policy)
  # The landscape's ordering of the modes is a property of the model, not of the key: with
  # enough draws two keys agree up to statistical ties; 64 draws (the old figure) cannot tell.
  stable = dtql_toy.check_mode_ordering(state, task, 8192, max_rel_stderr=0.05)
  assert stable["consistent"] and stable["spearman"] > 0.95, stable
  assert not dtql_toy.check_mode_ordering(state, task, 64, max_rel_stderr=0.05)["consistent"]
  g = np.stack(np.meshgrid(np.linspace(-12, 12, 9), np.linspace(-12, 12, 9)), -1).reshape(-1, 2)
  l1, l2 = (dtql_toy.tr_loss_at(state, g, jax.random.key(k), 2048) for k in (5, 6))
  assert np.max(np.abs(np.log(l1 / l2))) < 0.15, np.max(np.abs(np.log(l1 / l2)))


def test_data_parallel_equals_single_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  out = subprocess.run([sys.executable, "-m", "tests.helpers.dtql_dp_check"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res["step"] == 20 and res["policy_changed"], res
  assert res["max_abs_diff"] < 1e-4, res


@pytest.mark.parametrize("entropy_term", ["nll", "entropy"])
def test_entropy_terms_are_finite_and_train_the_policy(entropy_term):
  state = dtql.init(jax.random.key(0), SPEC, small_config(gamma_ent=1.0,
                                                         entropy_term=entropy_term))
  batch = bandit_data(64)
  loss_fn = lambda p: dtql.policy_loss(p, state.bc.params, state.critic.params, state.hp, batch,
                                       jax.random.key(1))
  (loss, info), g = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(state.policy.params)
  assert np.isfinite(float(loss)) and float(info["entropy_term"]) != 0.0
  assert np.isfinite(_norm(g)) and _norm(g) > 0
