"""TD3+BC: "A Minimalist Approach to Offline Reinforcement Learning" (Fujimoto & Gu, 2021).

TD3 (clipped double-Q, target policy smoothing, delayed policy updates) with one change to
the actor loss (Sec. 4, Eq. 3): maximise lambda * Q(s, pi(s)) - (pi(s) - a)^2 with
lambda = alpha / mean|Q(s, pi(s))|. Defaults are CORL's (which match the paper's Table 6).
State normalisation (Sec. 4) is done by the data layer (`config.normalize_obs`).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

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


@dataclasses.dataclass(frozen=True)
class Hparams:
  obs_dim: int
  act_dim: int
  max_action: float
  actor_lr: float
  critic_lr: float
  hidden_dims: tuple[int, ...]
  discount: float
  tau: float
  alpha: float
  policy_noise: float
  noise_clip: float
  policy_delay: int
  exploration_noise: float


class TD3BCState(flax.struct.PyTreeNode):
  actor_params: dict
  critic_params: dict
  target_actor_params: dict
  target_critic_params: dict
  actor_opt_state: optax.OptState
  critic_opt_state: optax.OptState
  step: jax.Array  # number of updates done (int32)
  last_actor_metrics: dict  # actor metrics of the latest delayed update, reported in between
  hp: Hparams = flax.struct.field(pytree_node=False)


# ----------------------------------------------------------------------------- networks
def actor_net(hp: Hparams) -> DeterministicPolicy:
  return DeterministicPolicy(hp.act_dim, hp.hidden_dims, hp.max_action)


def critic_net(hp: Hparams) -> CriticEnsemble:
  return CriticEnsemble(num_critics=2, hidden_dims=hp.hidden_dims)


def actor_tx(hp: Hparams) -> optax.GradientTransformation:
  return optax.adam(hp.actor_lr)


def critic_tx(hp: Hparams) -> optax.GradientTransformation:
  return optax.adam(hp.critic_lr)


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> TD3BCState:
  hp = common.hparams_from_config(Hparams, config if config is not None else get_config(),
                                  spec, "td3bc")
  if hp.policy_delay < 1:
    raise ValueError(f"config.agent.policy_delay must be >= 1, got {hp.policy_delay}")
  k_actor, k_critic = jax.random.split(key)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  actor_params = actor_net(hp).init(k_actor, obs)
  critic_params = critic_net(hp).init(k_critic, obs, act)
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # distinct buffers (safe to donate)
  return TD3BCState(
      actor_params=actor_params, critic_params=critic_params,
      target_actor_params=copy(actor_params), target_critic_params=copy(critic_params),
      actor_opt_state=actor_tx(hp).init(actor_params),
      critic_opt_state=critic_tx(hp).init(critic_params),
      step=jnp.zeros((), jnp.int32),
      last_actor_metrics={"actor_loss": jnp.zeros(()), "bc_loss": jnp.zeros(()),
                          "lambda": jnp.zeros(())},
      hp=hp)


# ----------------------------------------------------------------------------- losses
def critic_loss(critic_params, state: TD3BCState, batch: Transitions, key: jax.Array):
  """Clipped double-Q TD error with target policy smoothing (TD3, Sec. 5)."""
  hp = state.hp
  noise = jnp.clip(jax.random.normal(key, batch.actions.shape) * hp.policy_noise * hp.max_action,
                   -hp.noise_clip * hp.max_action, hp.noise_clip * hp.max_action)
  next_actions = actor_net(hp).apply(state.target_actor_params, batch.next_observations)
  next_actions = jnp.clip(next_actions + noise, -hp.max_action, hp.max_action)
  next_q = critic_net(hp).apply(state.target_critic_params, batch.next_observations,
                                next_actions).min(axis=0)
  target = common.td_target(batch.rewards, batch.masks, hp.discount, next_q)
  q = critic_net(hp).apply(critic_params, batch.observations, batch.actions)  # (2, B)
  loss = jnp.mean(jnp.square(q - target), axis=1).sum()  # sum of the two critics' MSEs
  return loss, {"critic_loss": loss, "q": q.mean(), "target_q": target.mean()}


def actor_loss(actor_params, critic_params, hp: Hparams, batch: Transitions):
  """-lambda * Q1(s, pi(s)) + MSE(pi(s), a), lambda = alpha / mean|Q| (paper Eq. 3)."""
  pi = actor_net(hp).apply(actor_params, batch.observations)
  # Only Q1 enters the actor loss: slice it out of the ensemble rather than run both critics.
  q1_params = jax.tree.map(lambda x: x[:1], critic_params)
  q = CriticEnsemble(num_critics=1, hidden_dims=hp.hidden_dims).apply(
      q1_params, batch.observations, pi)[0]
  lmbda = jax.lax.stop_gradient(hp.alpha / jnp.mean(jnp.abs(q)))
  bc = common.mse(pi, batch.actions)
  loss = -lmbda * q.mean() + bc
  return loss, {"actor_loss": loss, "bc_loss": bc, "lambda": lmbda}


# ----------------------------------------------------------------------------- update
def update(state: TD3BCState, batch: Transitions, key: jax.Array):
  hp = state.hp
  step = state.step + 1
  grads, info = jax.grad(critic_loss, has_aux=True)(state.critic_params, state, batch, key)
  critic_params, critic_opt_state = common.apply_updates(
      critic_tx(hp), grads, state.critic_opt_state, state.critic_params)
  state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state, step=step)

  def actor_and_targets(s: TD3BCState) -> TD3BCState:
    # Delayed policy update (TD3 Sec. 5.2): actor on the fresh critic, then both targets.
    g, actor_info = jax.grad(actor_loss, has_aux=True)(s.actor_params, s.critic_params, hp, batch)
    actor_params, actor_opt_state = common.apply_updates(
        actor_tx(hp), g, s.actor_opt_state, s.actor_params)
    return s.replace(
        actor_params=actor_params, actor_opt_state=actor_opt_state,
        target_actor_params=polyak(s.target_actor_params, actor_params, hp.tau),
        target_critic_params=polyak(s.target_critic_params, s.critic_params, hp.tau),
        last_actor_metrics=actor_info)

  # lax.cond skips the actor's work on odd steps; under vmap it becomes a select, still exact.
  state = jax.lax.cond(step % hp.policy_delay == 0, actor_and_targets, lambda s: s, state)
  return state, {**info, **state.last_actor_metrics}


# ----------------------------------------------------------------------------- act
def act(state: TD3BCState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  hp = state.hp
  actions = actor_net(hp).apply(state.actor_params, observations)
  if not deterministic:
    noise = jax.random.normal(key, actions.shape) * hp.exploration_noise * hp.max_action
    actions = jnp.clip(actions + noise, -hp.max_action, hp.max_action)
  return actions
