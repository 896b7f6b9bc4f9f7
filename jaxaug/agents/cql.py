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

import dataclasses
from typing import Sequence

import distrax
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxaug.agents import common
from jaxaug.data.dataset import Transitions
from jaxaug.nets.mlp import MLP, polyak, tanh_gaussian
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


@dataclasses.dataclass(frozen=True)
class Hparams:
  obs_dim: int
  act_dim: int
  max_action: float
  policy_lr: float
  critic_lr: float
  alpha_lr: float
  hidden_dims: tuple[int, ...]
  discount: float
  tau: float
  orthogonal_init: bool
  auto_entropy: bool
  alpha_multiplier: float
  target_entropy: float
  backup_entropy: bool
  policy_log_std_multiplier: float
  policy_log_std_offset: float
  bc_steps: int
  cql_alpha: float
  num_sampled_actions: int
  importance_sampling: bool
  cql_temperature: float
  lagrange: bool
  target_action_gap: float
  max_target_backup: bool
  clip_diff_min: float
  clip_diff_max: float


class CQLState(flax.struct.PyTreeNode):
  actor_params: dict
  critic_params: dict
  target_critic_params: dict
  log_alpha: jax.Array  # SAC temperature (log)
  log_alpha_prime: jax.Array  # Lagrange multiplier of the CQL term (log)
  actor_opt_state: optax.OptState
  critic_opt_state: optax.OptState
  alpha_opt_state: optax.OptState
  alpha_prime_opt_state: optax.OptState
  step: jax.Array
  hp: Hparams = flax.struct.field(pytree_node=False)


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


def sequential_orthogonal(scale: float) -> nn.initializers.Initializer:
  """flax's orthogonal initializer whose batched (vmapped) form is a loop over members.

  The twin critics are one `nn.vmap`ed module, so a plain orthogonal init becomes one batched
  LAPACK QR; jaxlib 0.10.x's XLA:CPU can deadlock on that on small machines. Under vmap this
  initializer draws each member with its own key, one after the other (lax.map), which gives
  the same values as the batched QR without ever emitting it.
  """
  base = nn.initializers.orthogonal(scale)

  def init(key, shape, dtype=jnp.float32):
    return jax.custom_batching.sequential_vmap(lambda k: base(k, shape, dtype))(key)

  return init


class _QMLP(nn.Module):
  """ReLU MLP with a scalar output: orthogonal init (gain sqrt 2 hidden, 1e-2 output, zero
  biases) as CORL's `init_module_weights`, or flax's default init."""

  hidden_dims: Sequence[int]
  orthogonal_init: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = {"kernel_init": sequential_orthogonal(np.sqrt(2.0))} if self.orthogonal_init else {}
    for h in self.hidden_dims:
      x = nn.relu(nn.Dense(h, **hidden)(x))
    out = {"kernel_init": sequential_orthogonal(1e-2)} if self.orthogonal_init else {}
    return nn.Dense(1, **out)(x)


class QNetwork(nn.Module):
  """Q(s, a) MLP with orthogonal init (gain sqrt 2) and a 1e-2-gain output layer (CORL)."""

  hidden_dims: Sequence[int]
  orthogonal_init: bool = True

  @nn.compact
  def __call__(self, obs: jax.Array, actions: jax.Array) -> jax.Array:
    x = jnp.concatenate([obs, actions], axis=-1)
    # Named MLP_0 so the parameter tree is the one of the earlier jaxaug.nets.mlp.MLP version.
    return _QMLP(self.hidden_dims, self.orthogonal_init, name="MLP_0")(x)[..., 0]


class TwinQ(nn.Module):
  hidden_dims: Sequence[int]
  orthogonal_init: bool = True

  @nn.compact
  def __call__(self, obs: jax.Array, actions: jax.Array) -> jax.Array:
    ensemble = nn.vmap(QNetwork, variable_axes={"params": 0}, split_rngs={"params": True},
                       in_axes=None, out_axes=0, axis_size=2)
    return ensemble(self.hidden_dims, self.orthogonal_init)(obs, actions)  # (2, ...)


def actor_net(hp: Hparams) -> CQLPolicy:
  return CQLPolicy(hp.act_dim, hp.hidden_dims, hp.max_action, hp.policy_log_std_multiplier,
                   hp.policy_log_std_offset)


def critic_net(hp: Hparams) -> TwinQ:
  return TwinQ(hp.hidden_dims, hp.orthogonal_init)


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> CQLState:
  config = config if config is not None else get_config()
  hp = common.hparams_from_config(
      Hparams, config, spec, "cql",
      target_entropy=(-float(spec.act_dim) if config.get("target_entropy") is None
                      else float(config.target_entropy)),
      alpha_lr=(float(config.policy_lr) if config.get("alpha_lr") is None
                else float(config.alpha_lr)))
  if hp.num_sampled_actions < 1:
    raise ValueError(f"config.agent.num_sampled_actions must be >= 1, got "
                     f"{hp.num_sampled_actions}")
  k_actor, k_critic = jax.random.split(key)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  actor_params = actor_net(hp).init(k_actor, obs)
  critic_params = critic_net(hp).init(k_critic, obs, act)
  log_alpha = jnp.zeros((), jnp.float32)
  log_alpha_prime = jnp.ones((), jnp.float32)  # CORL: Scalar(1.0)
  return CQLState(
      actor_params=actor_params, critic_params=critic_params,
      target_critic_params=jax.tree.map(jnp.copy, critic_params),
      log_alpha=log_alpha, log_alpha_prime=log_alpha_prime,
      actor_opt_state=optax.adam(hp.policy_lr).init(actor_params),
      critic_opt_state=optax.adam(hp.critic_lr).init(critic_params),
      alpha_opt_state=optax.adam(hp.alpha_lr).init(log_alpha),
      alpha_prime_opt_state=optax.adam(hp.critic_lr).init(log_alpha_prime),
      step=jnp.zeros((), jnp.int32), hp=hp)


# ----------------------------------------------------------------------------- losses
def sac_alpha(state: CQLState) -> jax.Array:
  hp = state.hp
  if hp.auto_entropy:
    return jnp.exp(state.log_alpha) * hp.alpha_multiplier
  return jnp.asarray(hp.alpha_multiplier, jnp.float32)


def repeat_obs(obs: jax.Array, n: int) -> jax.Array:
  """(B, D) -> (B, n, D): each observation repeated for n sampled actions."""
  return jnp.broadcast_to(obs[:, None, :], (obs.shape[0], n, obs.shape[-1]))


def actor_loss(actor_params, state: CQLState, batch: Transitions, key: jax.Array):
  """SAC policy loss alpha * log pi - min Q (or BC log-likelihood during bc_steps)."""
  hp = state.hp
  dist = actor_net(hp).apply(actor_params, batch.observations)
  actions, log_pi = dist.sample_and_log_prob(seed=key)
  alpha = jax.lax.stop_gradient(sac_alpha(state))
  q = critic_net(hp).apply(state.critic_params, batch.observations, actions).min(0)
  loss = jnp.mean(alpha * log_pi - q)
  if hp.bc_steps > 0:
    clipped = jnp.clip(batch.actions, -hp.max_action * (1 - 1e-6), hp.max_action * (1 - 1e-6))
    bc_loss = jnp.mean(alpha * log_pi - dist.log_prob(clipped))
    loss = jnp.where(state.step < hp.bc_steps, bc_loss, loss)
  return loss, {"actor_loss": loss, "log_pi": log_pi}


def alpha_loss(log_alpha, log_pi: jax.Array, target_entropy: float):
  """Automatic entropy tuning (SAC v2): drive E[-log pi] towards target_entropy."""
  return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_pi + target_entropy))


def cql_penalty(q_pred, q_rand, q_cur, log_pi_cur, q_next, log_pi_next, act_dim: int,
                hp: Hparams):
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
  policy, critic = actor_net(hp), critic_net(hp)
  alpha = sac_alpha(state)

  # TD target from the target critics at policy actions in s' (no entropy unless backup_entropy).
  if hp.max_target_backup:
    dist = policy.apply(state.actor_params, repeat_obs(batch.next_observations, n))
    next_a, next_log_pi = dist.sample_and_log_prob(seed=k_next)  # (B, n, A), (B, n)
    next_q = critic.apply(state.target_critic_params, repeat_obs(batch.next_observations, n),
                          next_a).min(0)
    idx = jnp.argmax(next_q, axis=-1)
    next_q = jnp.take_along_axis(next_q, idx[:, None], -1)[:, 0]
    next_log_pi = jnp.take_along_axis(next_log_pi, idx[:, None], -1)[:, 0]
  else:
    dist = policy.apply(state.actor_params, batch.next_observations)
    next_a, next_log_pi = dist.sample_and_log_prob(seed=k_next)
    next_q = critic.apply(state.target_critic_params, batch.next_observations, next_a).min(0)
  if hp.backup_entropy:
    next_q = next_q - alpha * next_log_pi
  target = common.td_target(batch.rewards, batch.masks, hp.discount, next_q)
  q_pred = critic.apply(critic_params, batch.observations, batch.actions)  # (2, B)
  td_loss = jnp.mean(jnp.square(q_pred - target), axis=-1)  # (2,)

  # Conservative term (Eq. 4): Q at uniform and policy actions (at s and at s'), all at s.
  obs_n = repeat_obs(batch.observations, n)
  b = batch.observations.shape[0]
  rand_a = jax.random.uniform(k_rand, (b, n, hp.act_dim), minval=-1.0, maxval=1.0)
  cur_a, cur_log_pi = policy.apply(state.actor_params, obs_n).sample_and_log_prob(seed=k_cur)
  nxt_a, nxt_log_pi = policy.apply(
      state.actor_params, repeat_obs(batch.next_observations, n)).sample_and_log_prob(
          seed=k_nextn)
  cur_a, cur_log_pi, nxt_a, nxt_log_pi = jax.lax.stop_gradient(
      (cur_a, cur_log_pi, nxt_a, nxt_log_pi))
  q_rand = critic.apply(critic_params, obs_n, rand_a)
  q_cur = critic.apply(critic_params, obs_n, cur_a)
  q_next = critic.apply(critic_params, obs_n, nxt_a)
  diff = cql_penalty(q_pred, q_rand, q_cur, cur_log_pi, q_next, nxt_log_pi, hp.act_dim, hp)

  if hp.lagrange:
    alpha_prime = jnp.clip(jnp.exp(jax.lax.stop_gradient(state.log_alpha_prime)), 0.0, 1e6)
    min_q_loss = alpha_prime * hp.cql_alpha * (diff - hp.target_action_gap)
  else:
    alpha_prime = jnp.zeros(())
    min_q_loss = hp.cql_alpha * diff
  loss = td_loss.sum() + min_q_loss.sum()
  return loss, {"critic_loss": loss, "td_loss": td_loss.mean(), "cql_diff": diff.mean(),
                "q": q_pred.mean(), "q_rand": q_rand.mean(), "target_q": target.mean(),
                "alpha_prime": alpha_prime, "_diff": diff}


def alpha_prime_loss(log_alpha_prime, diff: jax.Array, hp: Hparams):
  """Lagrange dual (Eq. 5): raise alpha' while the CQL gap exceeds target_action_gap."""
  alpha_prime = jnp.clip(jnp.exp(log_alpha_prime), 0.0, 1e6)
  gap = jax.lax.stop_gradient(diff) - hp.target_action_gap
  return -0.5 * jnp.sum(alpha_prime * hp.cql_alpha * gap)


# ----------------------------------------------------------------------------- update
def update(state: CQLState, batch: Transitions, key: jax.Array):
  hp = state.hp
  k_actor, k_critic = jax.random.split(key)
  g_pi, pi_info = jax.grad(actor_loss, has_aux=True)(state.actor_params, state, batch, k_actor)
  log_pi = pi_info.pop("log_pi")
  g_q, q_info = jax.grad(critic_loss, has_aux=True)(state.critic_params, state, batch, k_critic)
  diff = q_info.pop("_diff")

  actor_params, actor_opt_state = common.apply_updates(
      optax.adam(hp.policy_lr), g_pi, state.actor_opt_state, state.actor_params)
  critic_params, critic_opt_state = common.apply_updates(
      optax.adam(hp.critic_lr), g_q, state.critic_opt_state, state.critic_params)
  log_alpha, alpha_opt_state = state.log_alpha, state.alpha_opt_state
  if hp.auto_entropy:
    g_a = jax.grad(alpha_loss)(state.log_alpha, log_pi, hp.target_entropy)
    log_alpha, alpha_opt_state = common.apply_updates(
        optax.adam(hp.alpha_lr), g_a, state.alpha_opt_state, state.log_alpha)
  log_alpha_prime, alpha_prime_opt_state = state.log_alpha_prime, state.alpha_prime_opt_state
  if hp.lagrange:
    g_ap = jax.grad(alpha_prime_loss)(state.log_alpha_prime, diff, hp)
    log_alpha_prime, alpha_prime_opt_state = common.apply_updates(
        optax.adam(hp.critic_lr), g_ap, state.alpha_prime_opt_state, state.log_alpha_prime)

  metrics = {**pi_info, **q_info, "alpha": sac_alpha(state), "entropy": -log_pi.mean()}
  state = state.replace(
      actor_params=actor_params, critic_params=critic_params,
      target_critic_params=polyak(state.target_critic_params, critic_params, hp.tau),
      log_alpha=log_alpha, log_alpha_prime=log_alpha_prime,
      actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
      alpha_opt_state=alpha_opt_state, alpha_prime_opt_state=alpha_prime_opt_state,
      step=state.step + 1)
  return state, metrics


# ----------------------------------------------------------------------------- act
def act(state: CQLState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  dist = actor_net(state.hp).apply(state.actor_params, observations)
  if deterministic:
    return dist.bijector.forward(dist.distribution.mode())  # max_action * tanh(mean)
  return dist.sample(seed=key)
