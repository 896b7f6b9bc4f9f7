"""IQL: "Offline Reinforcement Learning with Implicit Q-Learning" (Kostrikov et al., 2022).

Never queries Q on actions outside the dataset:
  * V(s) fits an upper expectile of Q_target(s, a) over dataset actions (Sec. 4.1, Eq. 5);
  * Q(s, a) regresses onto r + gamma * V(s') (Eq. 6);
  * the policy is extracted by advantage-weighted regression, weights
    exp(temperature * (Q_target(s, a) - V(s))) clipped at `exp_adv_max` (Sec. 4.3, Eq. 7).
All three losses are evaluated at the pre-update parameters, as in CORL and the official code.
Defaults are CORL's TrainConfig defaults (Gaussian actor, cosine-decayed actor learning rate);
CORL's per-dataset settings (actor type, tau, beta, expectile, rewards) are the presets of
configs/iql.py (docs/methods/iql.md).
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
from jaxaug.nets.mlp import CriticEnsemble, DeterministicPolicy, GaussianPolicy, StateValue, polyak
from jaxaug.types import EnvSpec

ACTORS = ("gaussian", "deterministic")
ACTOR_LR_SCHEDULES = ("cosine", "constant")


# ----------------------------------------------------------------------------- config
def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.actor_lr = 3e-4
  c.critic_lr = 3e-4
  c.value_lr = 3e-4
  c.hidden_dims = (256, 256)
  c.discount = 0.99
  c.tau = 0.005  # Polyak rate of the target Q
  c.expectile = 0.7  # paper's tau (0.9 for AntMaze)
  c.temperature = 3.0  # paper's beta, inverse temperature of the advantage weights
  c.exp_adv_max = 100.0  # clip of exp(beta * A)
  c.actor = "gaussian"  # gaussian (CORL's locomotion default) | deterministic
  c.actor_dropout = 0.0  # CORL: None (0) for locomotion, 0.1 for Adroit
  c.actor_lr_schedule = "cosine"  # CORL: CosineAnnealingLR(actor, max_timesteps)
  c.actor_lr_decay_steps = 1_000_000  # horizon of the cosine schedule (= num_steps)
  c.log_std_min = -20.0
  c.log_std_max = 2.0
  return c


@dataclasses.dataclass(frozen=True)
class Hparams:
  obs_dim: int
  act_dim: int
  max_action: float
  actor_lr: float
  critic_lr: float
  value_lr: float
  hidden_dims: tuple[int, ...]
  discount: float
  tau: float
  expectile: float
  temperature: float
  exp_adv_max: float
  actor: str
  actor_dropout: float
  actor_lr_schedule: str
  actor_lr_decay_steps: int
  log_std_min: float
  log_std_max: float


class IQLState(flax.struct.PyTreeNode):
  actor_params: dict
  critic_params: dict
  target_critic_params: dict
  value_params: dict
  actor_opt_state: optax.OptState
  critic_opt_state: optax.OptState
  value_opt_state: optax.OptState
  hp: Hparams = flax.struct.field(pytree_node=False)


# ----------------------------------------------------------------------------- networks
def actor_net(hp: Hparams):
  if hp.actor == "gaussian":
    return GaussianPolicy(hp.act_dim, hp.hidden_dims, hp.max_action, hp.log_std_min,
                          hp.log_std_max, dropout_rate=hp.actor_dropout)
  return DeterministicPolicy(hp.act_dim, hp.hidden_dims, hp.max_action,
                             dropout_rate=hp.actor_dropout)


def critic_net(hp: Hparams) -> CriticEnsemble:
  return CriticEnsemble(num_critics=2, hidden_dims=hp.hidden_dims)


def value_net(hp: Hparams) -> StateValue:
  return StateValue(hp.hidden_dims)


def actor_tx(hp: Hparams) -> optax.GradientTransformation:
  if hp.actor_lr_schedule == "cosine":
    return optax.adam(optax.cosine_decay_schedule(hp.actor_lr, hp.actor_lr_decay_steps))
  return optax.adam(hp.actor_lr)


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> IQLState:
  hp = common.hparams_from_config(Hparams, config if config is not None else get_config(),
                                  spec, "iql")
  if hp.actor not in ACTORS:
    raise ValueError(f"config.agent.actor must be one of {ACTORS}, got {hp.actor!r}")
  if hp.actor_lr_schedule not in ACTOR_LR_SCHEDULES:
    raise ValueError(f"config.agent.actor_lr_schedule must be one of {ACTOR_LR_SCHEDULES}, "
                     f"got {hp.actor_lr_schedule!r}")
  if not 0.0 < hp.expectile < 1.0:
    raise ValueError(f"config.agent.expectile must be in (0, 1), got {hp.expectile}")
  k_actor, k_critic, k_value = jax.random.split(key, 3)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  actor_params = actor_net(hp).init(k_actor, obs)
  critic_params = critic_net(hp).init(k_critic, obs, act)
  value_params = value_net(hp).init(k_value, obs)
  return IQLState(
      actor_params=actor_params, critic_params=critic_params,
      target_critic_params=jax.tree.map(jnp.copy, critic_params), value_params=value_params,
      actor_opt_state=actor_tx(hp).init(actor_params),
      critic_opt_state=optax.adam(hp.critic_lr).init(critic_params),
      value_opt_state=optax.adam(hp.value_lr).init(value_params),
      hp=hp)


# ----------------------------------------------------------------------------- losses
def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
  """Asymmetric L2 (Eq. 5): |expectile - 1(diff < 0)| * diff^2, averaged."""
  weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
  return jnp.mean(weight * jnp.square(diff))


def value_loss(value_params, state: IQLState, batch: Transitions):
  hp = state.hp
  q = critic_net(hp).apply(state.target_critic_params, batch.observations, batch.actions).min(0)
  v = value_net(hp).apply(value_params, batch.observations)
  adv = jax.lax.stop_gradient(q) - v
  loss = expectile_loss(adv, hp.expectile)
  return loss, {"value_loss": loss, "v": v.mean(), "advantage": jax.lax.stop_gradient(adv)}


def critic_loss(critic_params, state: IQLState, batch: Transitions):
  hp = state.hp
  next_v = value_net(hp).apply(state.value_params, batch.next_observations)
  target = common.td_target(batch.rewards, batch.masks, hp.discount, next_v)
  q = critic_net(hp).apply(critic_params, batch.observations, batch.actions)  # (2, B)
  loss = jnp.mean(jnp.square(q - target))  # mean of the two critics' MSEs (CORL)
  return loss, {"critic_loss": loss, "q": q.mean()}


def actor_loss(actor_params, hp: Hparams, batch: Transitions, advantage: jax.Array,
               key: jax.Array):
  """Advantage-weighted regression (Eq. 7) with exp(beta * A) clipped at exp_adv_max."""
  weights = jnp.minimum(jnp.exp(hp.temperature * advantage), hp.exp_adv_max)
  out = actor_net(hp).apply(actor_params, batch.observations, train=True,
                            rngs={"dropout": key})
  if hp.actor == "gaussian":
    bc = -out.log_prob(batch.actions)
  else:
    bc = jnp.sum(jnp.square(out - batch.actions), axis=-1)
  loss = jnp.mean(weights * bc)
  return loss, {"actor_loss": loss, "adv_weight": weights.mean()}


# ----------------------------------------------------------------------------- update
def update(state: IQLState, batch: Transitions, key: jax.Array):
  hp = state.hp
  g_v, v_info = jax.grad(value_loss, has_aux=True)(state.value_params, state, batch)
  g_q, q_info = jax.grad(critic_loss, has_aux=True)(state.critic_params, state, batch)
  advantage = v_info.pop("advantage")
  g_pi, pi_info = jax.grad(actor_loss, has_aux=True)(state.actor_params, hp, batch, advantage,
                                                     key)
  value_params, value_opt_state = common.apply_updates(
      optax.adam(hp.value_lr), g_v, state.value_opt_state, state.value_params)
  critic_params, critic_opt_state = common.apply_updates(
      optax.adam(hp.critic_lr), g_q, state.critic_opt_state, state.critic_params)
  actor_params, actor_opt_state = common.apply_updates(
      actor_tx(hp), g_pi, state.actor_opt_state, state.actor_params)
  state = state.replace(
      actor_params=actor_params, critic_params=critic_params, value_params=value_params,
      target_critic_params=polyak(state.target_critic_params, critic_params, hp.tau),
      actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
      value_opt_state=value_opt_state)
  return state, {**v_info, **q_info, **pi_info}


# ----------------------------------------------------------------------------- act
def act(state: IQLState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  hp = state.hp
  out = actor_net(hp).apply(state.actor_params, observations)
  if hp.actor == "deterministic":
    return out
  actions = out.mode() if deterministic else out.sample(seed=key)
  return jnp.clip(actions, -hp.max_action, hp.max_action)
