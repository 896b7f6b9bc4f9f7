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

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training.train_state import TrainState

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


class IQLState(flax.struct.PyTreeNode):
  actor: TrainState
  critic: TrainState  # twin Q
  value: TrainState  # V
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
def actor_net(hp: common.Hyper):
  if hp.actor == "gaussian":
    return GaussianPolicy(hp.act_dim, hp.hidden_dims, hp.max_action, hp.log_std_min,
                          hp.log_std_max, dropout_rate=hp.actor_dropout)
  return DeterministicPolicy(hp.act_dim, hp.hidden_dims, hp.max_action,
                             dropout_rate=hp.actor_dropout)


def critic_net(hp: common.Hyper) -> CriticEnsemble:
  return CriticEnsemble(num_critics=2, hidden_dims=hp.hidden_dims)


def value_net(hp: common.Hyper) -> StateValue:
  return StateValue(hp.hidden_dims)


def actor_tx(config: ml_collections.ConfigDict, hp: common.Hyper) -> optax.GradientTransformation:
  """Adam on the actor, cosine-decayed over actor_lr_decay_steps (CORL) or constant; the base
  learning rate is a leaf of the optimiser state either way."""
  lr = config.get("actor_lr", get_config().actor_lr)
  if hp.actor_lr_schedule == "cosine":
    steps = hp.actor_lr_decay_steps
    return common.scheduled_adam(lr, optax.cosine_decay_schedule, steps)
  return common.adam(lr)


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> IQLState:
  hp = common.hyper_from_config(config, get_config(), spec, "iql", static=STATIC)
  config = config if config is not None else get_config()
  if hp.actor not in ACTORS:
    raise ValueError(f"config.agent.actor must be one of {ACTORS}, got {hp.actor!r}")
  if hp.actor_lr_schedule not in ACTOR_LR_SCHEDULES:
    raise ValueError(f"config.agent.actor_lr_schedule must be one of {ACTOR_LR_SCHEDULES}, "
                     f"got {hp.actor_lr_schedule!r}")
  k_actor, k_critic, k_value = jax.random.split(key, 3)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  actor_def, critic_def, value_def = actor_net(hp), critic_net(hp), value_net(hp)
  lr = lambda name: config.get(name, get_config()[name])
  actor = TrainState.create(apply_fn=common.apply_fn(actor_def), params=actor_def.init(k_actor, obs),
                            tx=actor_tx(config, hp))
  critic = TrainState.create(apply_fn=common.apply_fn(critic_def),
                             params=critic_def.init(k_critic, obs, act),
                             tx=common.adam(lr("critic_lr")))
  value = TrainState.create(apply_fn=common.apply_fn(value_def), params=value_def.init(k_value, obs),
                            tx=common.adam(lr("value_lr")))
  return IQLState(actor=actor, critic=critic, value=value,
                  target_critic_params=common.copy_tree(critic.params), hp=hp)


# ----------------------------------------------------------------------------- losses
def value_loss(value_params, state: IQLState, batch: Transitions):
  """V fits the `expectile` of the target twin-Q minimum over dataset actions (Eq. 5)."""
  hp = state.hp
  q = state.critic.apply_fn(state.target_critic_params, batch.observations,
                            batch.actions).min(0)
  v = state.value.apply_fn(value_params, batch.observations)
  adv = jax.lax.stop_gradient(q) - v
  loss = common.expectile_loss(adv, hp.expectile)
  return loss, {"value_loss": loss, "v": v.mean(), "advantage": jax.lax.stop_gradient(adv)}


def critic_loss(critic_params, state: IQLState, batch: Transitions):
  hp = state.hp
  next_v = state.value.apply_fn(state.value.params, batch.next_observations)
  target = common.td_target(batch.rewards, batch.masks, hp.discount, next_v)
  q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)  # (2, B)
  loss = jnp.mean(jnp.square(q - target))  # mean of the two critics' MSEs (CORL)
  return loss, {"critic_loss": loss, "q": q.mean()}


def actor_loss(actor_params, hp: common.Hyper, batch: Transitions, advantage: jax.Array,
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
  """All three losses at the pre-update parameters, then one step of each network."""
  hp = state.hp
  g_v, v_info = jax.grad(value_loss, has_aux=True)(state.value.params, state, batch)
  g_q, q_info = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch)
  advantage = v_info.pop("advantage")
  g_pi, pi_info = jax.grad(actor_loss, has_aux=True)(state.actor.params, hp, batch, advantage,
                                                     key)
  critic = state.critic.apply_gradients(grads=g_q)
  state = state.replace(
      actor=state.actor.apply_gradients(grads=g_pi), critic=critic,
      value=state.value.apply_gradients(grads=g_v),
      target_critic_params=polyak(state.target_critic_params, critic.params, hp.tau))
  return state, {**v_info, **q_info, **pi_info}


# ----------------------------------------------------------------------------- act
def act(state: IQLState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  hp = state.hp
  out = state.actor.apply_fn(state.actor.params, observations)
  if hp.actor == "deterministic":
    return out
  actions = out.mode() if deterministic else out.sample(seed=key)
  return jnp.clip(actions, -hp.max_action, hp.max_action)
