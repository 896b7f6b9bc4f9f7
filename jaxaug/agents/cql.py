"""CQL: "Conservative Q-Learning for Offline Reinforcement Learning" (Kumar et al., 2020).

SAC with a conservative critic regulariser (CQL(H), Sec. 3.2, Eq. 4): each critic also
minimises cql_alpha * (logsumexp_a Q(s, a) - Q(s, a_data)), the logsumexp estimated from
`num_sampled_actions` uniform actions and as many policy actions at s and at s', with
importance weights (Appendix F). Optional Lagrange version (Eq. 5) tunes the weight so that
the gap meets `target_action_gap`. Defaults and structure follow CORL's `cql.py` (a port of
young-geng/CQL): 3x256 networks, orthogonal critic init, policy lr 3e-5, no entropy in the
backup, automatic entropy tuning towards -|A|. All losses use the pre-update parameters.
"""

from __future__ import annotations

import functools
from typing import Sequence

import distrax
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.training.train_state import TrainState

from jaxaug.agents import common
from jaxaug.data.dataset import Transitions
from jaxaug.nets.mlp import MLP, CriticEnsemble, polyak, tanh_gaussian
from jaxaug.types import EnvSpec


# ----------------------------------------------------------------------------- config
def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.policy_lr = 3e-5
  c.critic_lr = 3e-4
  c.alpha_lr = ml_collections.config_dict.placeholder(float)  # None = policy_lr (CORL)
  c.hidden_dims = (256, 256, 256)
  c.discount = 0.99
  c.tau = 5e-3
  c.orthogonal_init = True  # critics (CORL leaves the policy at default init)
  # SAC entropy
  c.auto_entropy = True
  c.alpha_multiplier = 1.0
  c.target_entropy = ml_collections.config_dict.placeholder(float)  # None = -|A|
  c.backup_entropy = False
  c.policy_log_std_multiplier = 1.0  # learnable scale and offset of the policy's log-std
  c.policy_log_std_offset = -1.0
  c.bc_steps = 0  # behaviour-cloning warm-up steps for the policy (AntMaze)
  # CQL regulariser
  c.cql_alpha = 10.0  # min-Q weight (CQL's alpha): 10 for locomotion in CORL, 5 in the paper
  c.num_sampled_actions = 10
  c.importance_sampling = True
  c.cql_temperature = 1.0
  c.lagrange = False
  c.target_action_gap = -1.0  # Lagrange threshold tau (only with lagrange=True)
  c.max_target_backup = False
  c.clip_diff_min = -np.inf
  c.clip_diff_max = np.inf
  return c


class CQLState(flax.struct.PyTreeNode):
  actor: TrainState
  critic: TrainState  # twin Q
  target_critic_params: dict
  temperature: TrainState  # params {"log_alpha": log of the SAC temperature}
  lagrange: TrainState  # params {"log_alpha_prime": log of the CQL Lagrange multiplier}
  hp: common.Hyper

  @property
  def step(self) -> jax.Array:
    """Number of updates done (the critics step once per update)."""
    return self.critic.step


# Floats that are static: the policy's log-std scale and offset are the initial values of its
# learnable scalars (module attributes, baked into the actor TrainState's static apply_fn).
STATIC = ("policy_log_std_multiplier", "policy_log_std_offset")


# ----------------------------------------------------------------------------- networks
class CQLPolicy(nn.Module):
  """Tanh-Gaussian whose log-std is `multiplier * raw + offset` with learnable scalars (CORL)."""

  act_dim: int
  hidden_dims: Sequence[int]
  max_action: float = 1.0
  log_std_multiplier: float = 1.0
  log_std_offset: float = -1.0

  @nn.compact
  def __call__(self, obs: jax.Array) -> distrax.Distribution:
    x = MLP(self.hidden_dims, None)(obs)
    # Last layer: xavier-uniform with gain 1e-2 (variance scale = gain^2), zero bias.
    out = nn.Dense(2 * self.act_dim, kernel_init=nn.initializers.variance_scaling(
        1e-4, "fan_avg", "uniform"))(x)
    mean, raw_log_std = jnp.split(out, 2, axis=-1)
    mult = self.param("log_std_multiplier", nn.initializers.constant(self.log_std_multiplier), ())
    offset = self.param("log_std_offset", nn.initializers.constant(self.log_std_offset), ())
    log_std = jnp.clip(mult * raw_log_std + offset, -20.0, 2.0)
    return tanh_gaussian(mean, jnp.exp(log_std), self.max_action)


def actor_net(hp: common.Hyper) -> CQLPolicy:
  return CQLPolicy(hp.act_dim, hp.hidden_dims, hp.max_action, hp.policy_log_std_multiplier,
                   hp.policy_log_std_offset)


def critic_net(hp: common.Hyper) -> CriticEnsemble:
  """Twin Q, ReLU; with orthogonal_init CORL's `init_module_weights` (gain sqrt 2 hidden, 1e-2
  output, zero biases). The member keeps the name of jaxaug's former CQL-only twin-Q module,
  so parameters (values and tree) are those of earlier runs and checkpoints."""
  return CriticEnsemble(num_critics=2, hidden_dims=hp.hidden_dims,
                        orthogonal_init=hp.orthogonal_init, final_scale=1e-2,
                        member_name="VmapQNetwork_0")


def _scalar_state(name: str, value: float, lr: float) -> TrainState:
  """A TrainState whose parameters are one float32 scalar {name: value} (no network)."""
  return TrainState.create(apply_fn=None, params={name: jnp.full((), value, jnp.float32)},
                           tx=common.adam(lr))


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> CQLState:
  config = config if config is not None else get_config()
  target_entropy = config.get("target_entropy")
  hp = common.hyper_from_config(
      config, get_config(), spec, "cql", static=STATIC,
      derived={"target_entropy": (-float(spec.act_dim) if target_entropy is None
                                  else float(target_entropy))})
  if hp.num_sampled_actions < 1:
    raise ValueError(f"config.agent.num_sampled_actions must be >= 1, got "
                     f"{hp.num_sampled_actions}")
  lr = lambda name: config.get(name, get_config()[name])
  alpha_lr = lr("policy_lr") if config.get("alpha_lr") is None else lr("alpha_lr")  # CORL
  k_actor, k_critic = jax.random.split(key)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  actor_def, critic_def = actor_net(hp), critic_net(hp)
  actor = TrainState.create(apply_fn=common.apply_fn(actor_def), params=actor_def.init(k_actor, obs),
                            tx=common.adam(lr("policy_lr")))
  critic = TrainState.create(apply_fn=common.apply_fn(critic_def),
                             params=critic_def.init(k_critic, obs, act),
                             tx=common.adam(lr("critic_lr")))
  return CQLState(
      actor=actor, critic=critic, target_critic_params=common.copy_tree(critic.params),
      temperature=_scalar_state("log_alpha", 0.0, alpha_lr),
      lagrange=_scalar_state("log_alpha_prime", 1.0, lr("critic_lr")),  # CORL: Scalar(1.0)
      hp=hp)


# ----------------------------------------------------------------------------- losses
def sac_alpha(state: CQLState) -> jax.Array:
  hp = state.hp
  if hp.auto_entropy:
    return jnp.exp(state.temperature.params["log_alpha"]) * hp.alpha_multiplier
  return jnp.asarray(hp.alpha_multiplier, jnp.float32)


def actor_loss(actor_params, state: CQLState, batch: Transitions, key: jax.Array):
  """SAC policy loss alpha * log pi - min Q (or BC log-likelihood during bc_steps)."""
  hp = state.hp
  dist = state.actor.apply_fn(actor_params, batch.observations)
  actions, log_pi = dist.sample_and_log_prob(seed=key)
  alpha = jax.lax.stop_gradient(sac_alpha(state))
  q = state.critic.apply_fn(state.critic.params, batch.observations, actions).min(0)
  loss = jnp.mean(alpha * log_pi - q)
  if hp.bc_steps > 0:
    clipped = jnp.clip(batch.actions, -hp.max_action * (1 - 1e-6), hp.max_action * (1 - 1e-6))
    bc_loss = jnp.mean(alpha * log_pi - dist.log_prob(clipped))
    loss = jnp.where(state.step < hp.bc_steps, bc_loss, loss)
  return loss, {"actor_loss": loss, "log_pi": log_pi}


def cql_penalty(q_pred, q_rand, q_cur, log_pi_cur, q_next, log_pi_next, act_dim: int,
                hp: common.Hyper):
  """logsumexp over sampled actions minus Q on data actions, per critic -> (num_critics,).

  q_pred: (2, B); q_rand, q_cur, q_next: (2, B, N); log-probs: (B, N).
  """
  if hp.importance_sampling:
    random_density = np.log(0.5 ** act_dim)  # uniform on [-1, 1]^|A|
    cat = jnp.concatenate([q_rand - random_density, q_next - log_pi_next, q_cur - log_pi_cur],
                          axis=-1)
  else:
    cat = jnp.concatenate([q_rand, q_pred[..., None], q_next, q_cur], axis=-1)
  ood = jax.nn.logsumexp(cat / hp.cql_temperature, axis=-1) * hp.cql_temperature
  return jnp.clip(ood - q_pred, hp.clip_diff_min, hp.clip_diff_max).mean(axis=-1)


def critic_loss(critic_params, state: CQLState, batch: Transitions, key: jax.Array):
  hp = state.hp
  n = hp.num_sampled_actions
  k_next, k_rand, k_cur, k_nextn = jax.random.split(key, 4)
  policy = functools.partial(state.actor.apply_fn, state.actor.params)
  critic = state.critic.apply_fn
  alpha = sac_alpha(state)
  obs_n = common.repeat_obs(batch.observations, n)
  next_obs_n = common.repeat_obs(batch.next_observations, n)

  # TD target from the target critics at policy actions in s' (no entropy unless backup_entropy).
  if hp.max_target_backup:
    next_a, next_log_pi = policy(next_obs_n).sample_and_log_prob(seed=k_next)  # (B, n, A)
    next_q = critic(state.target_critic_params, next_obs_n, next_a).min(0)
    idx = jnp.argmax(next_q, axis=-1)
    next_q = jnp.take_along_axis(next_q, idx[:, None], -1)[:, 0]
    next_log_pi = jnp.take_along_axis(next_log_pi, idx[:, None], -1)[:, 0]
  else:
    next_a, next_log_pi = policy(batch.next_observations).sample_and_log_prob(seed=k_next)
    next_q = critic(state.target_critic_params, batch.next_observations, next_a).min(0)
  if hp.backup_entropy:
    next_q = next_q - alpha * next_log_pi
  target = common.td_target(batch.rewards, batch.masks, hp.discount, next_q)
  q_pred = critic(critic_params, batch.observations, batch.actions)  # (2, B)
  td_loss = jnp.mean(jnp.square(q_pred - target), axis=-1)  # (2,)

  # Conservative term (Eq. 4): Q at uniform and policy actions (at s and at s'), all at s.
  b = batch.observations.shape[0]
  rand_a = jax.random.uniform(k_rand, (b, n, hp.act_dim), minval=-1.0, maxval=1.0)
  cur_a, cur_log_pi = policy(obs_n).sample_and_log_prob(seed=k_cur)
  nxt_a, nxt_log_pi = policy(next_obs_n).sample_and_log_prob(seed=k_nextn)
  cur_a, cur_log_pi, nxt_a, nxt_log_pi = jax.lax.stop_gradient(
      (cur_a, cur_log_pi, nxt_a, nxt_log_pi))
  q_rand = critic(critic_params, obs_n, rand_a)
  q_cur = critic(critic_params, obs_n, cur_a)
  q_next = critic(critic_params, obs_n, nxt_a)
  diff = cql_penalty(q_pred, q_rand, q_cur, cur_log_pi, q_next, nxt_log_pi, hp.act_dim, hp)

  if hp.lagrange:
    log_alpha_prime = jax.lax.stop_gradient(state.lagrange.params["log_alpha_prime"])
    alpha_prime = jnp.clip(jnp.exp(log_alpha_prime), 0.0, 1e6)
    min_q_loss = alpha_prime * hp.cql_alpha * (diff - hp.target_action_gap)
  else:
    alpha_prime = jnp.zeros(())
    min_q_loss = hp.cql_alpha * diff
  loss = td_loss.sum() + min_q_loss.sum()
  return loss, {"critic_loss": loss, "td_loss": td_loss.mean(), "cql_diff": diff.mean(),
                "q": q_pred.mean(), "q_rand": q_rand.mean(), "target_q": target.mean(),
                "alpha_prime": alpha_prime, "_diff": diff}


def alpha_prime_loss(log_alpha_prime, diff: jax.Array, hp: common.Hyper):
  """Lagrange dual (Eq. 5): raise alpha' while the CQL gap exceeds target_action_gap."""
  alpha_prime = jnp.clip(jnp.exp(log_alpha_prime), 0.0, 1e6)
  gap = jax.lax.stop_gradient(diff) - hp.target_action_gap
  return -0.5 * jnp.sum(alpha_prime * hp.cql_alpha * gap)


# ----------------------------------------------------------------------------- update
def update(state: CQLState, batch: Transitions, key: jax.Array):
  """Actor, critics, temperature and Lagrange multiplier, all from the pre-update state."""
  hp = state.hp
  k_actor, k_critic = jax.random.split(key)
  g_pi, pi_info = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, k_actor)
  log_pi = pi_info.pop("log_pi")
  g_q, q_info = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, k_critic)
  diff = q_info.pop("_diff")

  critic = state.critic.apply_gradients(grads=g_q)
  temperature, lagrange = state.temperature, state.lagrange
  if hp.auto_entropy:
    g = jax.grad(common.temperature_loss)(temperature.params["log_alpha"], log_pi,
                                          hp.target_entropy)
    temperature = temperature.apply_gradients(grads={"log_alpha": g})
  if hp.lagrange:
    g = jax.grad(alpha_prime_loss)(lagrange.params["log_alpha_prime"], diff, hp)
    lagrange = lagrange.apply_gradients(grads={"log_alpha_prime": g})

  metrics = {**pi_info, **q_info, "alpha": sac_alpha(state), "entropy": -log_pi.mean()}
  state = state.replace(
      actor=state.actor.apply_gradients(grads=g_pi), critic=critic,
      target_critic_params=polyak(state.target_critic_params, critic.params, hp.tau),
      temperature=temperature, lagrange=lagrange)
  return state, metrics


# ----------------------------------------------------------------------------- act
def act(state: CQLState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  dist = state.actor.apply_fn(state.actor.params, observations)
  if deterministic:
    return dist.bijector.forward(dist.distribution.mode())  # max_action * tanh(mean)
  return dist.sample(seed=key)
