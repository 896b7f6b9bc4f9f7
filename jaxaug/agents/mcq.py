"""MCQ: "Mildly Conservative Q-Learning for Offline RL" (Lyu et al., NeurIPS 2022).

SAC whose critics are also trained on the policy's (possibly out-of-distribution) actions,
with pseudo targets from the behaviour policy (Sec. 4, Eq. 9-10): for s in the batch's states
and next states, y_ood(s) = min_j max_{a ~ mu(s)} Q'_j(s, a) over `num_sampled_actions`
actions from a CVAE behaviour model mu. The critic loss is
lmbda * TD(in-distribution) + (1 - lmbda) * MSE(Q(s, pi(s)), y_ood).
Defaults and update order follow OfflineRL-Kit's `run_mcq.py`: CVAE step, critic step (with the
fresh CVAE), actor step on the fresh critics, temperature step, Polyak targets. Like both
references, the presets (configs/mcq.py) train on raw states; state normalisation is the
`normalize_obs` switch of the `+fixes` presets (docs/methods/mcq.md).
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
import optax

from jaxaug.agents import common
from jaxaug.data.dataset import Transitions
from jaxaug.nets.mlp import MLP, CriticEnsemble, polyak, tanh_gaussian
from jaxaug.nets.vae import ConditionalVAE, vae_loss
from jaxaug.types import EnvSpec


# ----------------------------------------------------------------------------- config
def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.actor_lr = 3e-4
  c.critic_lr = 3e-4
  c.alpha_lr = 3e-4
  c.vae_lr = 1e-3
  c.hidden_dims = (400, 400)
  c.vae_hidden_dims = (750, 750)
  c.vae_latent_dim = ml_collections.config_dict.placeholder(int)  # None = 2 * |A|
  c.vae_kl_weight = 1.0  # OfflineRL-Kit: recon + KL (BCQ used 0.5)
  c.discount = 0.99
  c.tau = 0.005
  c.lmbda = 0.9  # weight of the in-distribution TD loss (paper's lambda)
  c.num_sampled_actions = 10
  c.auto_alpha = True
  c.alpha = 0.2  # fixed SAC temperature when auto_alpha is False
  c.target_entropy = ml_collections.config_dict.placeholder(float)  # None = -|A|
  c.actor_dropout = 0.1  # OfflineRL-Kit's MCQ actor backbone
  c.log_std_min = -5.0
  c.log_std_max = 2.0
  return c


@dataclasses.dataclass(frozen=True)
class Hparams:
  obs_dim: int
  act_dim: int
  max_action: float
  actor_lr: float
  critic_lr: float
  alpha_lr: float
  vae_lr: float
  hidden_dims: tuple[int, ...]
  vae_hidden_dims: tuple[int, ...]
  vae_latent_dim: int
  vae_kl_weight: float
  discount: float
  tau: float
  lmbda: float
  num_sampled_actions: int
  auto_alpha: bool
  alpha: float
  target_entropy: float
  actor_dropout: float
  log_std_min: float
  log_std_max: float


class MCQState(flax.struct.PyTreeNode):
  actor_params: dict
  critic_params: dict
  target_critic_params: dict
  vae_params: dict
  log_alpha: jax.Array
  actor_opt_state: optax.OptState
  critic_opt_state: optax.OptState
  vae_opt_state: optax.OptState
  alpha_opt_state: optax.OptState
  hp: Hparams = flax.struct.field(pytree_node=False)


# ----------------------------------------------------------------------------- networks
class MCQPolicy(nn.Module):
  """Tanh-Gaussian with state-dependent std (log-std clipped to [-5, 2]) and dropout."""

  act_dim: int
  hidden_dims: Sequence[int]
  max_action: float = 1.0
  dropout_rate: float = 0.0
  log_std_min: float = -5.0
  log_std_max: float = 2.0

  @nn.compact
  def __call__(self, obs: jax.Array, train: bool = False) -> distrax.Distribution:
    h = MLP(self.hidden_dims, None, dropout_rate=self.dropout_rate)(obs, train=train)
    mean = nn.Dense(self.act_dim)(h)
    log_std = jnp.clip(nn.Dense(self.act_dim)(h), self.log_std_min, self.log_std_max)
    return tanh_gaussian(mean, jnp.exp(log_std), self.max_action)


def actor_net(hp: Hparams) -> MCQPolicy:
  return MCQPolicy(hp.act_dim, hp.hidden_dims, hp.max_action, hp.actor_dropout, hp.log_std_min,
                   hp.log_std_max)


def critic_net(hp: Hparams) -> CriticEnsemble:
  return CriticEnsemble(num_critics=2, hidden_dims=hp.hidden_dims)


def vae_net(hp: Hparams) -> ConditionalVAE:
  return ConditionalVAE(hp.act_dim, hp.vae_latent_dim, hp.vae_hidden_dims, hp.max_action)


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> MCQState:
  config = config if config is not None else get_config()
  hp = common.hparams_from_config(
      Hparams, config, spec, "mcq",
      target_entropy=(-float(spec.act_dim) if config.get("target_entropy") is None
                      else float(config.target_entropy)),
      vae_latent_dim=(2 * spec.act_dim if config.get("vae_latent_dim") is None
                      else int(config.vae_latent_dim)))
  if not 0.0 <= hp.lmbda <= 1.0:
    raise ValueError(f"config.agent.lmbda must be in [0, 1], got {hp.lmbda}")
  k_actor, k_critic, k_vae, k_noise = jax.random.split(key, 4)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  actor_params = actor_net(hp).init(k_actor, obs)
  critic_params = critic_net(hp).init(k_critic, obs, act)
  vae_params = vae_net(hp).init(k_vae, obs, act, k_noise)
  log_alpha = jnp.zeros((), jnp.float32)
  return MCQState(
      actor_params=actor_params, critic_params=critic_params,
      target_critic_params=jax.tree.map(jnp.copy, critic_params), vae_params=vae_params,
      log_alpha=log_alpha,
      actor_opt_state=optax.adam(hp.actor_lr).init(actor_params),
      critic_opt_state=optax.adam(hp.critic_lr).init(critic_params),
      vae_opt_state=optax.adam(hp.vae_lr).init(vae_params),
      alpha_opt_state=optax.adam(hp.alpha_lr).init(log_alpha), hp=hp)


# ----------------------------------------------------------------------------- losses
def sac_alpha(state: MCQState) -> jax.Array:
  if state.hp.auto_alpha:
    return jnp.clip(jnp.exp(state.log_alpha), 0.0, 1.0)  # OfflineRL-Kit clamps alpha to [0, 1]
  return jnp.asarray(state.hp.alpha, jnp.float32)


def sample_policy(hp: Hparams, actor_params, obs: jax.Array, key: jax.Array):
  """Reparameterised action and log-prob, actor in training mode (dropout on)."""
  k_drop, k_sample = jax.random.split(key)
  dist = actor_net(hp).apply(actor_params, obs, train=True, rngs={"dropout": k_drop})
  return dist.sample_and_log_prob(seed=k_sample)


def behaviour_loss(vae_params, hp: Hparams, batch: Transitions, key: jax.Array):
  recon, mean, std = vae_net(hp).apply(vae_params, batch.observations, batch.actions, key)
  return vae_loss(recon, batch.actions, mean, std, hp.vae_kl_weight)


def ood_targets(state: MCQState, states: jax.Array, key: jax.Array) -> jax.Array:
  """Pseudo targets (Eq. 9): min over critics of the max over CVAE actions of Q_target."""
  hp = state.hp
  n = hp.num_sampled_actions
  states_n = jnp.broadcast_to(states[:, None, :], (states.shape[0], n, states.shape[-1]))
  actions = vae_net(hp).apply(state.vae_params, states_n, key, method=ConditionalVAE.sample)
  q = critic_net(hp).apply(state.target_critic_params, states_n, actions)  # (2, S, n)
  return jax.lax.stop_gradient(q.max(axis=-1).min(axis=0))


def critic_loss(critic_params, state: MCQState, batch: Transitions, key: jax.Array):
  hp = state.hp
  k_next, k_vae, k_ood = jax.random.split(key, 3)
  alpha = sac_alpha(state)
  next_a, next_log_pi = sample_policy(hp, state.actor_params, batch.next_observations, k_next)
  next_q = critic_net(hp).apply(state.target_critic_params, batch.next_observations,
                                next_a).min(0) - alpha * next_log_pi
  target_in = common.td_target(batch.rewards, batch.masks, hp.discount, next_q)
  q_in = critic_net(hp).apply(critic_params, batch.observations, batch.actions)  # (2, B)
  loss_in = jnp.mean(jnp.square(q_in - target_in), axis=-1)  # (2,)

  states = jnp.concatenate([batch.observations, batch.next_observations], axis=0)
  target_ood = ood_targets(state, states, k_vae)
  ood_a, _ = sample_policy(hp, state.actor_params, states, k_ood)
  q_ood = critic_net(hp).apply(critic_params, states, jax.lax.stop_gradient(ood_a))
  loss_ood = jnp.mean(jnp.square(q_ood - target_ood), axis=-1)
  loss = jnp.sum(hp.lmbda * loss_in + (1.0 - hp.lmbda) * loss_ood)
  return loss, {"critic_loss": loss, "critic_loss_in": loss_in.mean(),
                "critic_loss_ood": loss_ood.mean(), "q": q_in.mean(), "q_ood": q_ood.mean(),
                "target_ood": target_ood.mean()}


def actor_loss(actor_params, state: MCQState, batch: Transitions, key: jax.Array):
  hp = state.hp
  actions, log_pi = sample_policy(hp, actor_params, batch.observations, key)
  q = critic_net(hp).apply(state.critic_params, batch.observations, actions).min(0)
  loss = jnp.mean(jax.lax.stop_gradient(sac_alpha(state)) * log_pi - q)
  return loss, {"actor_loss": loss, "log_pi": log_pi}


def alpha_loss(log_alpha, log_pi: jax.Array, target_entropy: float):
  return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_pi + target_entropy))


# ----------------------------------------------------------------------------- update
def update(state: MCQState, batch: Transitions, key: jax.Array):
  hp = state.hp
  k_vae, k_critic, k_actor = jax.random.split(key, 3)
  # 1. behaviour model
  g, vae_info = jax.grad(behaviour_loss, has_aux=True)(state.vae_params, hp, batch, k_vae)
  vae_params, vae_opt_state = common.apply_updates(
      optax.adam(hp.vae_lr), g, state.vae_opt_state, state.vae_params)
  state = state.replace(vae_params=vae_params, vae_opt_state=vae_opt_state)
  # 2. critics (pseudo targets from the fresh behaviour model)
  g, q_info = jax.grad(critic_loss, has_aux=True)(state.critic_params, state, batch, k_critic)
  critic_params, critic_opt_state = common.apply_updates(
      optax.adam(hp.critic_lr), g, state.critic_opt_state, state.critic_params)
  state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)
  # 3. actor on the fresh critics, 4. temperature
  g, pi_info = jax.grad(actor_loss, has_aux=True)(state.actor_params, state, batch, k_actor)
  log_pi = pi_info.pop("log_pi")
  actor_params, actor_opt_state = common.apply_updates(
      optax.adam(hp.actor_lr), g, state.actor_opt_state, state.actor_params)
  log_alpha, alpha_opt_state = state.log_alpha, state.alpha_opt_state
  if hp.auto_alpha:
    g = jax.grad(alpha_loss)(state.log_alpha, log_pi, hp.target_entropy)
    log_alpha, alpha_opt_state = common.apply_updates(
        optax.adam(hp.alpha_lr), g, state.alpha_opt_state, state.log_alpha)
  metrics = {**vae_info, **q_info, **pi_info, "alpha": sac_alpha(state),
             "entropy": -log_pi.mean()}
  # 5. targets
  state = state.replace(
      actor_params=actor_params, actor_opt_state=actor_opt_state, log_alpha=log_alpha,
      alpha_opt_state=alpha_opt_state,
      target_critic_params=polyak(state.target_critic_params, critic_params, hp.tau))
  return state, metrics


# ----------------------------------------------------------------------------- act
def act(state: MCQState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  dist = actor_net(state.hp).apply(state.actor_params, observations)  # dropout off
  if deterministic:
    return dist.bijector.forward(dist.distribution.mode())
  return dist.sample(seed=key)
