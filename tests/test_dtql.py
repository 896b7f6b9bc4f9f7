"""DTQL: trust-region gradients, critic learning, pre-training phase, acting, the 2-D toy
(one-step policy inside the trust region, on the best mode), data parallel == single device."""

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
from jaxaug.data.dataset import Transitions, sample_transitions
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

  g_pi, g_bc = jax.jit(jax.grad(tr_only, argnums=(0, 1)))(state.policy_params, state.bc_params)
  assert _norm(g_pi) > 1e-4
  assert _norm(g_bc) == 0.0
  # The full policy loss (trust region + Q) leaves the diffusion model and critics alone too.
  g = jax.jit(jax.grad(
      lambda p, b, c: dtql.policy_loss(p, b, c, hp, batch, jax.random.key(3))[0],
      argnums=(0, 1, 2)))(state.policy_params, state.bc_params, state.critic_params)
  assert _norm(g[0]) > 1e-4 and _norm(g[1]) == 0.0 and _norm(g[2]) == 0.0
  # ... while the BC loss itself does train the diffusion model.
  g_bc_loss = jax.jit(lambda b: jax.grad(dtql.diffusion_loss)(
      b, hp, batch.actions, batch.observations, jax.random.key(4)))(state.bc_params)
  assert _norm(g_bc_loss) > 1e-4


def test_critic_loss_falls_and_pretraining_freezes_policy():
  data = jax.tree.map(jnp.asarray, bandit_data())
  state = dtql.init(jax.random.key(0), SPEC, small_config(pretrain_steps=150, critic_lr=3e-3))
  probe = sample_transitions(data, jax.random.key(99), 512)
  loss0 = float(dtql.critic_loss(state.critic_params, state.target_critic_params, state.hp,
                                 probe)[0])
  policy0 = state.policy_params

  @functools.partial(jax.jit, static_argnums=2)
  def run(state, key, n):
    def body(s, k):
      k_s, k_u = jax.random.split(k)
      return dtql.update(s, sample_transitions(data, k_s, 128), k_u)
    return jax.lax.scan(body, state, jax.random.split(key, n))

  state, m = run(state, jax.random.key(1), 150)  # one compile for both phases
  assert np.all(np.asarray(m["pretraining"]) == 1.0)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.policy_params),
                                                  jax.tree.leaves(policy0)))
  state, m = run(state, jax.random.key(2), 150)
  assert np.all(np.asarray(m["pretraining"]) == 0.0)
  assert int(state.step) == 300
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.policy_params),
                                                      jax.tree.leaves(policy0)))
  loss1 = float(dtql.critic_loss(state.critic_params, state.target_critic_params, state.hp,
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
    c = dtql.sample_policy(s.policy_params, hp, obs_rep, k_cand)
    return c, dtql.q_net(hp).apply(s.target_critic_params["q"], obs_rep, c).min(0)

  cand, q = candidates(state)
  np.testing.assert_allclose(a[0], jnp.clip(cand[jnp.argmax(q)], -1, 1), atol=1e-6)
  # The diffusion BC policy sampler (benchmark baseline) gives bounded actions.
  b = jax.jit(dtql.sample_diffusion_policy, static_argnums=3)(state, obs, jax.random.key(2),
                                                              3)
  assert b.shape == (8, 2) and np.all(np.abs(b) <= 1.0)


def test_faithful_denoiser_layout_differs_only_in_activation():
  fixed = dtql.init(jax.random.key(0), SPEC, small_config())
  faithful = dtql.init(jax.random.key(0), SPEC, small_config(faithful_denoiser=True))
  assert jax.tree.structure(fixed.bc_params) == jax.tree.structure(faithful.bc_params)
  x = jnp.ones((4, 2))
  out = lambda s: dtql.denoiser_net(s.hp).apply(fixed.bc_params, x, jnp.zeros(4), jnp.ones((4, 5)))
  assert not np.allclose(out(fixed), out(faithful))


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
  with pytest.raises(ValueError, match="configs/dtql.py"):
    dtql_configs.get_config("hopper-random")


def test_toy_policy_in_trust_region_on_best_mode():
  from experiments import dtql_toy
  task = dtql_toy.ToyTask()
  cfg = dtql_toy.toy_agent_config()
  cfg.denoiser_hidden_dim = 64
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
  assert np.all(tr_ood > 1.1 * tr_policy), (tr_ood, tr_policy)
  assert tr_ood[0] > 1.5 * tr_policy, (tr_ood, tr_policy)


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
  loss_fn = lambda p: dtql.policy_loss(p, state.bc_params, state.critic_params, state.hp, batch,
                                       jax.random.key(1))
  (loss, info), g = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(state.policy_params)
  assert np.isfinite(float(loss)) and float(info["entropy_term"]) != 0.0
  assert np.isfinite(_norm(g)) and _norm(g) > 0
