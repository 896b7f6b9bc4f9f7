"""TD3+BC: "A Minimalist Approach to Offline Reinforcement Learning" (Fujimoto & Gu, 2021).

TD3 (clipped double-Q, target policy smoothing, delayed policy updates) with one change to
the actor loss (Sec. 4, Eq. 3): maximise lambda * Q(s, pi(s)) - (pi(s) - a)^2 with
lambda = alpha / mean|Q(s, pi(s))|. Defaults are CORL's (which match the paper's Table 6).
State normalisation (Sec. 4) is done by the data layer (`config.normalize_obs`).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
from flax.training.train_state import TrainState

from jaxaug.agents import common
from jaxaug.data.dataset import Transitions
from jaxaug.nets.mlp import CriticEnsemble, DeterministicPolicy, polyak
from jaxaug.types import EnvSpec


# ----------------------------------------------------------------------------- config
def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.actor_lr = 3e-4
  c.critic_lr = 3e-4
  c.hidden_dims = (256, 256)
  c.discount = 0.99
  c.tau = 0.005  # Polyak rate of the target networks
  c.alpha = 2.5  # weight of the Q term relative to BC (paper's alpha)
  c.policy_noise = 0.2  # target policy smoothing std, in units of max_action
  c.noise_clip = 0.5  # clip of the smoothing noise, in units of max_action
  c.policy_delay = 2  # actor and targets are updated every `policy_delay` critic updates
  c.exploration_noise = 0.1  # std of act(..., deterministic=False), in units of max_action
  return c


class TD3BCState(flax.struct.PyTreeNode):
  actor: TrainState
  critic: TrainState
  target_actor_params: dict
  target_critic_params: dict
  last_actor_metrics: dict  # actor metrics of the latest delayed update, reported in between
  hp: common.Hyper

  @property
  def step(self) -> jax.Array:
    """Number of updates done (one critic step each)."""
    return self.critic.step


# ----------------------------------------------------------------------------- networks
def actor_net(hp: common.Hyper) -> DeterministicPolicy:
  return DeterministicPolicy(hp.act_dim, hp.hidden_dims, hp.max_action)


def critic_net(hp: common.Hyper, num_critics: int = 2) -> CriticEnsemble:
  return CriticEnsemble(num_critics=num_critics, hidden_dims=hp.hidden_dims)


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> TD3BCState:
  hp = common.hyper_from_config(config, get_config(), spec, "td3bc")
  config = config if config is not None else get_config()
  if hp.policy_delay < 1:
    raise ValueError(f"config.agent.policy_delay must be >= 1, got {hp.policy_delay}")
  k_actor, k_critic = jax.random.split(key)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  actor_def, critic_def = actor_net(hp), critic_net(hp)
  actor = TrainState.create(apply_fn=common.apply_fn(actor_def), params=actor_def.init(k_actor, obs),
                            tx=common.adam(config.get("actor_lr", get_config().actor_lr)))
  critic = TrainState.create(apply_fn=common.apply_fn(critic_def),
                             params=critic_def.init(k_critic, obs, act),
                             tx=common.adam(config.get("critic_lr", get_config().critic_lr)))
  zero = jnp.zeros((), jnp.float32)
  return TD3BCState(
      actor=actor, critic=critic, target_actor_params=common.copy_tree(actor.params),
      target_critic_params=common.copy_tree(critic.params),
      last_actor_metrics={"actor_loss": zero, "bc_loss": zero, "lambda": zero}, hp=hp)


# ----------------------------------------------------------------------------- losses
def critic_loss(critic_params, state: TD3BCState, batch: Transitions, key: jax.Array):
  """Clipped double-Q TD error with target policy smoothing (TD3, Sec. 5)."""
  hp = state.hp
  noise = jnp.clip(jax.random.normal(key, batch.actions.shape) * hp.policy_noise * hp.max_action,
                   -hp.noise_clip * hp.max_action, hp.noise_clip * hp.max_action)
  next_actions = state.actor.apply_fn(state.target_actor_params, batch.next_observations)
  next_actions = jnp.clip(next_actions + noise, -hp.max_action, hp.max_action)
  next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations,
                                 next_actions).min(axis=0)
  target = common.td_target(batch.rewards, batch.masks, hp.discount, next_q)
  q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)  # (2, B)
  loss = jnp.mean(jnp.square(q - target), axis=1).sum()  # sum of the two critics' MSEs
  return loss, {"critic_loss": loss, "q": q.mean(), "target_q": target.mean()}


def actor_loss(actor_params, critic_params, hp: common.Hyper, batch: Transitions):
  """-lambda * Q1(s, pi(s)) + MSE(pi(s), a), lambda = alpha / mean|Q| (paper Eq. 3)."""
  pi = actor_net(hp).apply(actor_params, batch.observations)
  # Only Q1 enters the actor loss: slice it out of the ensemble rather than run both critics.
  q1_params = jax.tree.map(lambda x: x[:1], critic_params)
  q = critic_net(hp, num_critics=1).apply(q1_params, batch.observations, pi)[0]
  lmbda = jax.lax.stop_gradient(hp.alpha / jnp.mean(jnp.abs(q)))
  bc = common.mse(pi, batch.actions)
  loss = -lmbda * q.mean() + bc
  return loss, {"actor_loss": loss, "bc_loss": bc, "lambda": lmbda}


# ----------------------------------------------------------------------------- update
def update(state: TD3BCState, batch: Transitions, key: jax.Array):
  hp = state.hp
  grads, info = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, key)
  state = state.replace(critic=state.critic.apply_gradients(grads=grads))

  def actor_and_targets(s: TD3BCState) -> TD3BCState:
    # Delayed policy update (TD3 Sec. 5.2): actor on the fresh critic, then both targets.
    g, actor_info = jax.grad(actor_loss, has_aux=True)(s.actor.params, s.critic.params, hp,
                                                       batch)
    actor = s.actor.apply_gradients(grads=g)
    return s.replace(
        actor=actor,
        target_actor_params=polyak(s.target_actor_params, actor.params, hp.tau),
        target_critic_params=polyak(s.target_critic_params, s.critic.params, hp.tau),
        last_actor_metrics=actor_info)

  # lax.cond skips the actor's work on odd steps; under vmap it becomes a select, still exact.
  state = jax.lax.cond(state.step % hp.policy_delay == 0, actor_and_targets, lambda s: s, state)
  return state, {**info, **state.last_actor_metrics}


# ----------------------------------------------------------------------------- act
def act(state: TD3BCState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  hp = state.hp
  actions = state.actor.apply_fn(state.actor.params, observations)
  if not deterministic:
    noise = jax.random.normal(key, actions.shape) * hp.exploration_noise * hp.max_action
    actions = jnp.clip(actions + noise, -hp.max_action, hp.max_action)
  return actions
