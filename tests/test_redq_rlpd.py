"""REDQ and RLPD: reference defaults (golden), critic learning on a fixed batch, symmetric
sampling."""

import os

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug.configs_io import load_config_file

from jaxaug.agents import get_agent, redq, rlpd, sac
from jaxaug.train.online_state import LoopData, LoopState, OnlineFns
from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.types import EnvSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = EnvSpec(obs_dim=5, act_dim=2, max_action=1.0)


def _load_config(name, preset):
  return load_config_file(f"{name}:{preset}")


def _transitions(n, key, reward_marker=None):
  k = jax.random.split(key, 4)
  obs = jax.random.normal(k[0], (n, SPEC.obs_dim))
  act = jax.random.uniform(k[1], (n, SPEC.act_dim), minval=-1, maxval=1)
  rew = (jnp.full((n,), reward_marker, jnp.float32) if reward_marker is not None
         else obs[:, 0] + act[:, 0])
  return Transitions(observations=obs, actions=act, rewards=rew,
                     next_observations=jax.random.normal(k[2], (n, SPEC.obs_dim)),
                     terminals=jnp.zeros((n,)), timeouts=jnp.zeros((n,)))


def test_registry_and_paper_defaults():
  assert get_agent("redq") is redq and get_agent("rlpd") is rlpd
  c = redq.get_config()
  assert (c.num_critics, c.num_min_critics, c.actor_q_reduction, c.backup_entropy) == (
      10, 2, "mean", True)
  assert (c.temperature_loss, c.actor_uses_updated_critic, c.kernel_init) == (
      "log_alpha", False, "xavier_uniform")
  c = rlpd.get_config()
  # Reference: backup_entropy=True (its default, used for locomotion), actor mean over all Qs.
  assert (c.num_critics, c.num_min_critics, c.critic_layer_norm, c.backup_entropy,
          c.actor_q_reduction) == (10, 2, True, True, "mean")
  assert (c.temperature_loss, c.actor_uses_updated_critic, c.kernel_init) == (
      "alpha", True, "xavier_uniform")
  s = jax.eval_shape(lambda k: rlpd.init(k, SPEC, c), jax.random.key(0))  # shapes only
  # Float hyperparameters are leaves (abstract here), the rest static.
  assert s.hp.target_entropy.shape == () and s.hp.backup_entropy
  assert float(sac.hyper(SPEC, c, "rlpd", rlpd.get_config()).target_entropy) == -1.0  # -|A|/2
  leaves = jax.tree_util.tree_flatten_with_path(s.critic.params)[0]
  assert any("LayerNorm" in jax.tree_util.keystr(p) for p, _ in leaves)
  assert all(leaf.shape[0] == 10 for leaf in jax.tree.leaves(s.critic.params))  # ensemble axis
  for name in ("redq", "rlpd"):
    for preset in ("tiny", "hopper", "halfcheetah", "walker2d"):
      cfg = _load_config(name, preset)
      assert cfg.agent_name == name and cfg.utd_ratio == (2 if preset == "tiny" else 20)
      if preset != "tiny":
        assert (cfg.agent.num_critics, cfg.agent.num_min_critics, cfg.batch_size,
                cfg.start_steps) == (10, 2, 256, 5000)


ENV_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5",
           "ant": "Ant-v5"}


@pytest.mark.parametrize("env,target,epochs", [("hopper", -1.0, 125), ("halfcheetah", -3.0, 400),
                                               ("walker2d", -3.0, 300), ("ant", -4.0, 300)])
def test_redq_presets_use_mbpo_target_entropy(env, target, epochs):
  """Official REDQ code: target_entropy='mbpo' (not -|A|) and MBPO's epoch count, one test
  episode per 1000-step epoch; the value is in the config, so it shows and overrides."""
  cfg = _load_config("redq", env)
  assert cfg.env_id == ENV_IDS[env]
  assert cfg.agent.target_entropy == target
  assert (cfg.num_env_steps, cfg.eval_every, cfg.eval_episodes) == (epochs * 1000, 1000, 1)
  assert cfg.agent.actor_q_reduction == "mean" and cfg.agent.backup_entropy
  # The agent uses it: the state's target entropy is the config's, not -|A| of the env.
  from jaxaug import envs
  spec = envs.env_spec(cfg.env_id)
  assert target != -float(spec.act_dim)
  cfg.agent.hidden_dims = (8,)
  state = redq.init(jax.random.key(0), spec, cfg.agent)
  assert float(state.hp.target_entropy) == target
  cfg.agent.target_entropy = -0.5
  state = redq.init(jax.random.key(0), spec, cfg.agent)
  assert float(state.hp.target_entropy) == -0.5


def test_locked_configs_show_and_override_target_entropy_and_data_dir():
  """What `--config.agent.target_entropy=...` / `--config.data_dir=...` do: set an existing,
  typed field of the locked config (a missing field would be an error)."""
  c = _load_config("redq", "walker2d")
  c.lock()
  assert c.agent.target_entropy == -3.0
  c.agent.target_entropy = -6.0
  assert c.agent.target_entropy == -6.0
  c = _load_config("rlpd", "halfcheetah")
  c.lock()
  c.data_dir = "/data/d4rl"
  assert c.offline_dataset == "d4rl:/data/d4rl/halfcheetah-medium-replay-v2.hdf5"
  with pytest.raises(AttributeError):
    c.agent.target_entropy_typo = 1.0


@pytest.mark.parametrize("env,act_dim", [("hopper", 3), ("halfcheetah", 6), ("walker2d", 6)])
def test_rlpd_locomotion_presets_follow_the_reference(env, act_dim):
  """ikostrikov/rlpd on D4RL locomotion: entropy backup on (its default; off only in the
  AntMaze/Adroit commands), target entropy -|A|/2, 250k steps, 5000 start steps, 10 eval
  episodes every 5000 steps, the medium-replay v2 file under data_dir."""
  cfg = _load_config("rlpd", env)
  assert cfg.agent.backup_entropy is True
  assert cfg.agent.target_entropy == -act_dim / 2
  from jaxaug import envs
  assert envs.env_spec(cfg.env_id).act_dim == act_dim
  assert (cfg.num_env_steps, cfg.start_steps, cfg.eval_every, cfg.eval_episodes,
          cfg.offline_ratio) == (250_000, 5000, 5000, 10, 0.5)
  assert cfg.agent.critic_layer_norm and cfg.agent.critic_layer_norm_epsilon == 1e-6
  assert cfg.offline_dataset == f"d4rl:{cfg.data_dir}/{env}-medium-replay-v2.hdf5"
  cfg.data_dir = "/elsewhere"
  assert cfg.offline_dataset == f"d4rl:/elsewhere/{env}-medium-replay-v2.hdf5"
  cfg.offline_dataset = "minari:/x"  # still replaceable outright
  assert cfg.offline_dataset == "minari:/x"


def test_rlpd_tiny_runs_on_embedded_data():
  from jaxaug.data.loaders import load_dataset
  cfg = _load_config("rlpd", "tiny")
  assert cfg.offline_dataset == "embedded:hopper-medium-replay"
  ds = load_dataset(cfg.offline_dataset)
  assert len(ds) > 1000


def _layer_norm(x, scale, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def test_rlpd_critic_layer_norm_epsilon_is_flax_default():
  """The reference critic is flax `nn.LayerNorm()` (epsilon 1e-6) after each hidden Dense,
  before ReLU. Checked numerically on inputs small enough for the epsilon to matter (one hidden
  layer: a second LayerNorm would undo the first one's scale)."""
  c = rlpd.get_config()
  c.hidden_dims = (16,)
  c.num_critics = 2
  c.num_min_critics = 1
  state = rlpd.init(jax.random.key(0), SPEC, c)
  p = jax.tree.map(np.asarray, state.critic.params["params"]["VmapStateActionValue_0"]["MLP_0"])
  obs = 1e-3 * np.asarray(jax.random.normal(jax.random.key(1), (8, SPEC.obs_dim)), np.float64)
  act = 1e-3 * np.asarray(jax.random.normal(jax.random.key(2), (8, SPEC.act_dim)), np.float64)
  out = np.asarray(state.critic.apply_fn(state.critic.params, obs.astype(np.float32),
                                         act.astype(np.float32)))

  def manual(eps):
    qs = []
    for i in range(2):
      h = np.concatenate([obs, act], -1)
      h = h @ p["Dense_0"]["kernel"][i] + p["Dense_0"]["bias"][i]
      ln = p["LayerNorm_0"]
      h = np.maximum(_layer_norm(h, ln["scale"][i], ln["bias"][i], eps), 0)
      qs.append((h @ p["Dense_1"]["kernel"][i] + p["Dense_1"]["bias"][i])[:, 0])
    return np.stack(qs)

  np.testing.assert_allclose(out, manual(1e-6), rtol=2e-3, atol=1e-5)
  assert np.abs(out - manual(1e-5)).max() > 1e-2  # torch's epsilon would give other values


@pytest.mark.parametrize("agent", [redq, rlpd])
def test_target_evaluates_only_the_subset_and_equals_indexing_the_full_ensemble(agent):
  """The TD target gathers the M chosen target critics and evaluates only them; it must equal
  evaluating all N target critics and indexing the output with the same random subset."""
  c = agent.get_config()
  c.hidden_dims = (16, 16)
  state = agent.init(jax.random.key(4), SPEC, c)
  # Make the target critics differ from each other and from the online ones.
  state = state.replace(target_critic_params=jax.tree.map(
      lambda p: p + 0.1 * jax.random.normal(jax.random.key(5), p.shape), state.target_critic_params))
  batch = _transitions(32, jax.random.key(6))
  key = jax.random.key(7)
  _, info = sac.critic_loss(state.critic.params, state, batch, key)

  h = state.hp
  assert (h.num_critics, h.num_min_critics) == (10, 2) and state.subset_apply_fn is not None
  k_act, k_subset = jax.random.split(key)
  dist = state.actor.apply_fn(state.actor.params, batch.next_observations)
  next_actions, next_log_probs = dist.sample_and_log_prob(seed=k_act)
  full = state.critic.apply_fn(state.target_critic_params, batch.next_observations, next_actions)
  idx = jax.random.choice(k_subset, h.num_critics, (h.num_min_critics,), replace=False)
  assert len(set(np.asarray(idx).tolist())) == 2
  next_q = full[idx].min(axis=0)
  if h.backup_entropy:
    next_q = next_q - state.temperature.apply_fn(state.temperature.params) * next_log_probs
  expected = batch.rewards + h.discount * batch.masks * next_q
  np.testing.assert_allclose(float(info["target_q_mean"]), float(expected.mean()), rtol=1e-5)
  q = state.critic.apply_fn(state.critic.params, batch.observations, batch.actions)
  loss = 0.5 * ((q - expected[None]) ** 2).mean(axis=1).sum()  # sensitive to every element
  np.testing.assert_allclose(float(info["critic_loss"]), float(loss), rtol=1e-5)
  # The fallback without subset_apply_fn (all N evaluated, then indexed) gives the same loss.
  _, info_full = sac.critic_loss(state.critic.params, state.replace(subset_apply_fn=None), batch,
                                 key)
  np.testing.assert_allclose(float(info_full["critic_loss"]), float(info["critic_loss"]),
                             rtol=1e-5)
  # ...and the minimum over the subset is not the minimum over all ten (the test can fail).
  assert not np.allclose(np.asarray(full[idx].min(0)), np.asarray(full.min(0)))


@pytest.mark.parametrize("agent", [redq, rlpd])
def test_utd_updates_reduce_critic_loss_on_a_fixed_batch(agent):
  c = agent.get_config()
  c.hidden_dims = (32, 32)
  c.num_critics = 4
  state = jax.jit(lambda k: agent.init(k, SPEC, c))(jax.random.key(1))
  utd, b = 4, 64
  batch = _transitions(utd * b, jax.random.key(2))
  first = jax.tree.map(lambda x: x[:b], batch)
  eval_key = jax.random.key(3)
  critic_loss = jax.jit(lambda s: sac.critic_loss(s.critic.params, s, first, eval_key)[0])
  loss0 = float(critic_loss(state))
  step = jax.jit(lambda s, k: agent.update_utd(s, batch, k, utd))
  for i in range(40):
    state, metrics = step(state, jax.random.key(10 + i))
  loss1 = float(critic_loss(state))
  assert np.isfinite(loss1) and loss1 < 0.5 * loss0
  assert int(state.step) == 40 and np.isfinite(float(metrics["actor_loss"]))


def _loop_sampler(offline, real, syn, b, offline_ratio, rho=None):
  """The online loop's sampler (OnlineFns.sample): kk, n -> n rows."""
  atd = None if rho is None else types.SimpleNamespace(synthetic_ratio=rho)
  fns = OnlineFns(agent=rlpd, spec=SPEC, batch_size=b, offline_ratio=offline_ratio,
                  atradiff=atd)
  state = LoopState(agent=None, buffer=real, key=None, action=None,
                    aug=types.SimpleNamespace(synthetic=syn))
  return lambda kk, n: fns.sample(state, LoopData(offline=offline), kk, n)


def test_rlpd_batches_are_exactly_half_offline_in_every_minibatch():
  offline = _transitions(300, jax.random.key(0), reward_marker=1.0)
  online = replay.add(replay.init_buffer(5, 2, 500), _transitions(200, jax.random.key(1), 0.0))
  b, utd = 32, 5
  fn = _loop_sampler(offline, online, None, b, rlpd.OFFLINE_RATIO)
  batch = jax.jit(lambda k: fn(k, utd * b))(jax.random.key(2))
  marks = np.asarray(batch.rewards).reshape(utd, b)
  np.testing.assert_array_equal(marks.sum(axis=1), b // 2)
  one = jax.jit(_loop_sampler(offline, online, None, 33, 0.5), static_argnums=1)(
      jax.random.key(3), 33)
  assert int(np.asarray(one.rewards).sum()) in (16, 17)  # rounding of an odd batch


def test_rlpd_with_atradiff_keeps_the_offline_half_and_mixes_the_online_half():
  offline = _transitions(300, jax.random.key(0), reward_marker=2.0)
  real = replay.add(replay.init_buffer(5, 2, 500), _transitions(200, jax.random.key(1), 0.0))
  syn = replay.add(replay.init_buffer(5, 2, 500), _transitions(200, jax.random.key(2), 1.0))
  b, utd, rho = 64, 50, 0.3
  fn = _loop_sampler(offline, real, syn, b, 0.5, rho)
  batch = jax.jit(lambda k: fn(k, utd * b))(jax.random.key(3))
  marks = np.asarray(batch.rewards).reshape(utd, b)
  np.testing.assert_array_equal((marks == 2.0).sum(axis=1), b // 2)
  online = marks[:, b // 2:]
  assert abs(float((online == 1.0).mean()) - rho) < 0.03


def test_redq_rlpd_are_sac_configurations_with_their_own_fallbacks():
  """REDQ / RLPD init is SAC's init; a key an (older) config lacks takes the agent's own
  default, and an unknown key is an error naming the agent."""
  for agent, want in ((redq, (10, 2, "mean", -2.0)), (rlpd, (10, 2, "mean", -1.0))):
    c = agent.get_config()
    c.hidden_dims = (8,)
    for field in ("num_critics", "num_min_critics", "actor_q_reduction", "target_entropy_scale"):
      del c[field]
    hp = agent.init(jax.random.key(0), SPEC, c).hp
    assert (hp.num_critics, hp.num_min_critics, hp.actor_q_reduction,
            float(hp.target_entropy)) == want
    assert agent.update is sac.update and agent.td_error is sac.td_error
    c.nope = 1.0
    with pytest.raises(ValueError, match=f"{agent.__name__.split('.')[-1]}.*nope"):
      agent.init(jax.random.key(0), SPEC, c)
