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

from typing import Sequence

import distrax
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
from flax.training.train_state import TrainState

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


class MCQState(flax.struct.PyTreeNode):
  actor: TrainState
  critic: TrainState  # twin Q
  vae: TrainState  # CVAE behaviour model
  temperature: TrainState  # params {"log_alpha": log of the SAC temperature}
  target_critic_params: dict
  hp: common.Hyper

  @property
  def step(self) -> jax.Array:
    """Number of updates done (every network steps once per update)."""
    return self.critic.step


# Floats that are attributes of the actor module (baked into its TrainState's static apply_fn),
# so they are static like the network sizes.
STATIC = ("actor_dropout", "log_std_min", "log_std_max")


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


def actor_net(hp: common.Hyper) -> MCQPolicy:
  return MCQPolicy(hp.act_dim, hp.hidden_dims, hp.max_action, hp.actor_dropout, hp.log_std_min,
                   hp.log_std_max)


def critic_net(hp: common.Hyper) -> CriticEnsemble:
  return CriticEnsemble(num_critics=2, hidden_dims=hp.hidden_dims)


def vae_net(hp: common.Hyper) -> ConditionalVAE:
  return ConditionalVAE(hp.act_dim, hp.vae_latent_dim, hp.vae_hidden_dims, hp.max_action)


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> MCQState:
  config = config if config is not None else get_config()
  hp = common.hyper_from_config(
      config, get_config(), spec, "mcq", static=STATIC,
      derived={"target_entropy": (-float(spec.act_dim) if config.get("target_entropy") is None
                                  else float(config.target_entropy)),
               "vae_latent_dim": (2 * spec.act_dim if config.get("vae_latent_dim") is None
                                  else int(config.vae_latent_dim))})
  lmbda = config.get("lmbda", get_config().lmbda)
  if not 0.0 <= lmbda <= 1.0:
    raise ValueError(f"config.agent.lmbda must be in [0, 1], got {lmbda}")
  lr = lambda name: config.get(name, get_config()[name])
  k_actor, k_critic, k_vae, k_noise = jax.random.split(key, 4)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  actor_def, critic_def, vae_def = actor_net(hp), critic_net(hp), vae_net(hp)
  actor = TrainState.create(apply_fn=common.apply_fn(actor_def), params=actor_def.init(k_actor, obs),
                            tx=common.adam(lr("actor_lr")))
  critic = TrainState.create(apply_fn=common.apply_fn(critic_def),
                             params=critic_def.init(k_critic, obs, act),
                             tx=common.adam(lr("critic_lr")))
  vae = TrainState.create(apply_fn=common.apply_fn(vae_def), params=vae_def.init(k_vae, obs, act, k_noise),
                          tx=common.adam(lr("vae_lr")))
  temperature = TrainState.create(apply_fn=None,
                                  params={"log_alpha": jnp.zeros((), jnp.float32)},
                                  tx=common.adam(lr("alpha_lr")))
  return MCQState(actor=actor, critic=critic, vae=vae, temperature=temperature,
                  target_critic_params=common.copy_tree(critic.params), hp=hp)


# ----------------------------------------------------------------------------- losses
def sac_alpha(state: MCQState) -> jax.Array:
  if state.hp.auto_alpha:  # OfflineRL-Kit clamps alpha to [0, 1]
    return jnp.clip(jnp.exp(state.temperature.params["log_alpha"]), 0.0, 1.0)
  return jnp.asarray(state.hp.alpha, jnp.float32)


def sample_policy(hp: common.Hyper, actor_params, obs: jax.Array, key: jax.Array):
  """Reparameterised action and log-prob, actor in training mode (dropout on)."""
  k_drop, k_sample = jax.random.split(key)
  dist = actor_net(hp).apply(actor_params, obs, train=True, rngs={"dropout": k_drop})
  return dist.sample_and_log_prob(seed=k_sample)


def behaviour_loss(vae_params, hp: common.Hyper, batch: Transitions, key: jax.Array):
  recon, mean, std = vae_net(hp).apply(vae_params, batch.observations, batch.actions, key)
  return vae_loss(recon, batch.actions, mean, std, hp.vae_kl_weight)


def ood_targets(state: MCQState, states: jax.Array, key: jax.Array) -> jax.Array:
  """Pseudo targets (Eq. 9): min over critics of the max over CVAE actions of Q_target."""
  hp = state.hp
  states_n = common.repeat_obs(states, hp.num_sampled_actions)
  actions = state.vae.apply_fn(state.vae.params, states_n, key, method=ConditionalVAE.sample)
  q = state.critic.apply_fn(state.target_critic_params, states_n, actions)  # (2, S, n)
  return jax.lax.stop_gradient(q.max(axis=-1).min(axis=0))


def critic_loss(critic_params, state: MCQState, batch: Transitions, key: jax.Array):
  hp = state.hp
  critic = state.critic.apply_fn
  k_next, k_vae, k_ood = jax.random.split(key, 3)
  alpha = sac_alpha(state)
  next_a, next_log_pi = sample_policy(hp, state.actor.params, batch.next_observations, k_next)
  next_q = critic(state.target_critic_params, batch.next_observations,
                  next_a).min(0) - alpha * next_log_pi
  target_in = common.td_target(batch.rewards, batch.masks, hp.discount, next_q)
  q_in = critic(critic_params, batch.observations, batch.actions)  # (2, B)
  loss_in = jnp.mean(jnp.square(q_in - target_in), axis=-1)  # (2,)

  states = jnp.concatenate([batch.observations, batch.next_observations], axis=0)
  target_ood = ood_targets(state, states, k_vae)
  ood_a, _ = sample_policy(hp, state.actor.params, states, k_ood)
  q_ood = critic(critic_params, states, jax.lax.stop_gradient(ood_a))
  loss_ood = jnp.mean(jnp.square(q_ood - target_ood), axis=-1)
  loss = jnp.sum(hp.lmbda * loss_in + (1.0 - hp.lmbda) * loss_ood)
  return loss, {"critic_loss": loss, "critic_loss_in": loss_in.mean(),
                "critic_loss_ood": loss_ood.mean(), "q": q_in.mean(), "q_ood": q_ood.mean(),
                "target_ood": target_ood.mean()}


def actor_loss(actor_params, state: MCQState, batch: Transitions, key: jax.Array):
  hp = state.hp
  actions, log_pi = sample_policy(hp, actor_params, batch.observations, key)
  q = state.critic.apply_fn(state.critic.params, batch.observations, actions).min(0)
  loss = jnp.mean(jax.lax.stop_gradient(sac_alpha(state)) * log_pi - q)
  return loss, {"actor_loss": loss, "log_pi": log_pi}


# ----------------------------------------------------------------------------- update
def update(state: MCQState, batch: Transitions, key: jax.Array):
  hp = state.hp
  k_vae, k_critic, k_actor = jax.random.split(key, 3)
  # 1. behaviour model
  g, vae_info = jax.grad(behaviour_loss, has_aux=True)(state.vae.params, hp, batch, k_vae)
  state = state.replace(vae=state.vae.apply_gradients(grads=g))
  # 2. critics (pseudo targets from the fresh behaviour model)
  g, q_info = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, k_critic)
  state = state.replace(critic=state.critic.apply_gradients(grads=g))
  # 3. actor on the fresh critics, 4. temperature
  g, pi_info = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, k_actor)
  log_pi = pi_info.pop("log_pi")
  actor = state.actor.apply_gradients(grads=g)
  temperature = state.temperature
  if hp.auto_alpha:
    g = jax.grad(common.temperature_loss)(temperature.params["log_alpha"], log_pi,
                                          hp.target_entropy)
    temperature = temperature.apply_gradients(grads={"log_alpha": g})
  metrics = {**vae_info, **q_info, **pi_info, "alpha": sac_alpha(state),
             "entropy": -log_pi.mean()}
  # 5. targets
  state = state.replace(
      actor=actor, temperature=temperature,
      target_critic_params=polyak(state.target_critic_params, state.critic.params, hp.tau))
  return state, metrics


# ----------------------------------------------------------------------------- act
def act(state: MCQState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  dist = state.actor.apply_fn(state.actor.params, observations)  # dropout off
  if deterministic:
    return dist.bijector.forward(dist.distribution.mode())
  return dist.sample(seed=key)
