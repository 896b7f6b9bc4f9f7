"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications", Alg. 1).

Twin critics (an ensemble of `num_critics`, min over `num_min_critics` of them for the target),
a tanh-Gaussian actor through distrax, and a learned temperature with target entropy -|A|
(Sec. 5). Pure functions over a `SACState`; the pieces (critic/actor/temperature losses,
`update_critic`, `update_actor`, `update_temperature`) are separate so that REDQ (10 critics,
random subset of 2 in the target, UTD 20) and RLPD (LayerNorm critics) reuse them.

`update` does one gradient step of each part (SAC's UTD 1). `update_utd` takes a batch of
`utd_ratio * B` transitions, does `utd_ratio` critic steps on consecutive minibatches in a
`lax.scan` and one actor and temperature step on the last minibatch (REDQ/RLPD's schedule; with
utd_ratio=1 it equals `update`).

Three details differ between the reference implementations and are config fields, so that each
agent's defaults follow the code behind its paper (docs/methods/{sac,redq,rlpd}.md):
  * `kernel_init`: every reference initialises its Dense kernels Glorot/Xavier-uniform (flax's
    own default, LeCun-normal, is kept as an option);
  * `temperature_loss`: "log_alpha" differentiates log(alpha) * (H - target) (softlearning and
    the REDQ code base), "alpha" differentiates alpha * (H - target) (RLPD's code); the gradient
    with respect to log(alpha) differs by the factor alpha;
  * `actor_uses_updated_critic`: whether the actor step sees the critic after the last critic
    step of this update (RLPD's code) or before it (SAC's and REDQ's code compute the actor and
    critic losses of one step from the same parameters).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training.train_state import TrainState

from jaxaug.agents import common
from jaxaug.data.dataset import Transitions
from jaxaug.nets.mlp import CriticEnsemble, TanhGaussianPolicy, polyak
from jaxaug.types import EnvSpec


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.actor_lr = 3e-4
  c.critic_lr = 3e-4
  c.temperature_lr = 3e-4
  c.hidden_dims = (256, 256)
  c.discount = 0.99  # gamma
  c.tau = 0.005  # target smoothing coefficient
  c.init_temperature = 1.0  # alpha at initialisation
  # None -> -|A| (SAC paper, Sec. 5 / App. D heuristic).
  c.target_entropy = ml_collections.config_dict.placeholder(float)
  c.num_critics = 2
  c.num_min_critics = 2  # critics the target minimises over (REDQ: random 2 of 10)
  c.backup_entropy = True  # include -alpha log pi(a'|s') in the TD target
  c.critic_layer_norm = False  # RLPD
  # LayerNorm epsilon of the critics (with critic_layer_norm): flax's default 1e-6, which is what
  # RLPD's flax critics use (a torch.nn.LayerNorm mirror would need 1e-5).
  c.critic_layer_norm_epsilon = 1e-6
  c.actor_q_reduction = "min"  # "min" (SAC) or "mean" (REDQ) over the ensemble in the actor loss
  # Dense kernels: "xavier_uniform" as in every reference (softlearning, REDQ, RLPD), or
  # "lecun_normal" (flax's default; what jaxaug used before the references were checked).
  c.kernel_init = "xavier_uniform"
  # "log_alpha" (softlearning / REDQ code: loss log(alpha) (H - target)) or "alpha" (RLPD code:
  # alpha (H - target)).
  c.temperature_loss = "log_alpha"
  # False: the actor loss uses the critic from before the last critic step of the update, as the
  # SAC and REDQ code do; True: after it, as RLPD's code does.
  c.actor_uses_updated_critic = False
  return c


KERNEL_INITS = ("xavier_uniform", "lecun_normal")
TEMPERATURE_LOSSES = ("log_alpha", "alpha")


@dataclasses.dataclass(frozen=True)
class SACHyper:
  """Static hyperparameters (hashable; part of the jit cache key)."""

  discount: float
  tau: float
  target_entropy: float
  num_critics: int
  num_min_critics: int
  backup_entropy: bool
  actor_q_reduction: str
  temperature_loss: str = "alpha"
  actor_uses_updated_critic: bool = True


class Temperature(flax.linen.Module):
  init_value: float = 1.0

  @flax.linen.compact
  def __call__(self) -> jax.Array:
    log_temp = self.param("log_temp", lambda _: jnp.full((), jnp.log(self.init_value)))
    return jnp.exp(log_temp)


class SACState(flax.struct.PyTreeNode):
  actor: TrainState
  critic: TrainState
  target_critic_params: Any
  temperature: TrainState
  step: jax.Array
  hyper: SACHyper = flax.struct.field(pytree_node=False)
  # Applies an ensemble of `num_min_critics` members (same parameter names, leading axis M):
  # the TD target evaluates only the M target critics it minimises over, not all N (REDQ/RLPD:
  # 2 of 10, so 8 of 10 target forward passes are skipped). None when M == N.
  subset_apply_fn: Any = flax.struct.field(pytree_node=False, default=None)


def xavier_uniform_kernels(params, key: jax.Array):
  """Every Dense kernel redrawn from U(-b, b), b = sqrt(6 / (fan_in + fan_out)).

  Kernels are the leaves named 'kernel'; the last two axes are (fan_in, fan_out), leading axes
  (a critic ensemble's) are independent draws. Biases stay as flax made them (zeros), as in
  the references.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))
  out = []
  for (path, leaf), k in zip(leaves, keys):
    name = getattr(path[-1], "key", None)
    if name == "kernel" and leaf.ndim >= 2:
      fan_in, fan_out = leaf.shape[-2], leaf.shape[-1]
      bound = (6.0 / (fan_in + fan_out)) ** 0.5
      leaf = jax.random.uniform(k, leaf.shape, leaf.dtype, -bound, bound)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out)


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict) -> SACState:
  common.check_ranges(dict(config.items()), "sac")  # lr, discount, tau, hidden_dims ranges
  # Configs saved before these fields existed (older workdirs) get jaxaug's earlier behaviour.
  kernel_init = config.get("kernel_init", "lecun_normal")
  temperature_loss_kind = config.get("temperature_loss", "alpha")
  actor_uses_updated_critic = bool(config.get("actor_uses_updated_critic", True))
  ln_eps = float(config.get("critic_layer_norm_epsilon", 1e-6))
  if kernel_init not in KERNEL_INITS:
    raise ValueError(f"agent.kernel_init must be one of {KERNEL_INITS}, got {kernel_init!r}")
  if temperature_loss_kind not in TEMPERATURE_LOSSES:
    raise ValueError(f"agent.temperature_loss must be one of {TEMPERATURE_LOSSES}, got "
                     f"{temperature_loss_kind!r}")
  if not ln_eps > 0:
    raise ValueError(f"agent.critic_layer_norm_epsilon must be positive, got {ln_eps}")
  if config.actor_q_reduction not in ("min", "mean"):
    raise ValueError(f"agent.actor_q_reduction must be 'min' or 'mean', "
                     f"got {config.actor_q_reduction!r}")
  if not 1 <= config.num_min_critics <= config.num_critics:
    raise ValueError(f"agent.num_min_critics must be in [1, num_critics={config.num_critics}], "
                     f"got {config.num_min_critics}")
  k_actor, k_critic, k_temp, k_xavier = jax.random.split(key, 4)
  obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
  act = jnp.zeros((1, spec.act_dim), jnp.float32)
  hidden = tuple(config.hidden_dims)
  actor_def = TanhGaussianPolicy(spec.act_dim, hidden, max_action=spec.max_action)
  critic_def = CriticEnsemble(config.num_critics, hidden, layer_norm=config.critic_layer_norm,
                              layer_norm_epsilon=ln_eps)
  temp_def = Temperature(config.init_temperature)
  actor_params = actor_def.init(k_actor, obs)
  critic_params = critic_def.init(k_critic, obs, act)
  if kernel_init == "xavier_uniform":
    k_xa, k_xc = jax.random.split(k_xavier)
    actor_params = xavier_uniform_kernels(actor_params, k_xa)
    critic_params = xavier_uniform_kernels(critic_params, k_xc)
  actor = TrainState.create(apply_fn=actor_def.apply, params=actor_params,
                            tx=optax.adam(config.actor_lr))
  critic = TrainState.create(apply_fn=critic_def.apply, params=critic_params,
                             tx=optax.adam(config.critic_lr))
  temperature = TrainState.create(apply_fn=temp_def.apply, params=temp_def.init(k_temp),
                                  tx=optax.adam(config.temperature_lr))
  target_entropy = config.target_entropy
  if target_entropy is None:
    target_entropy = -float(spec.act_dim)
  hyper = SACHyper(discount=float(config.discount), tau=float(config.tau),
                   target_entropy=float(target_entropy), num_critics=int(config.num_critics),
                   num_min_critics=int(config.num_min_critics),
                   backup_entropy=bool(config.backup_entropy),
                   actor_q_reduction=str(config.actor_q_reduction),
                   temperature_loss=str(temperature_loss_kind),
                   actor_uses_updated_critic=actor_uses_updated_critic)
  # A separate copy: the online loop donates the state, and one buffer cannot be donated twice.
  target_params = jax.tree.map(lambda x: jnp.array(x, copy=True), critic_params)
  subset_apply_fn = None
  if hyper.num_min_critics < hyper.num_critics:
    subset_apply_fn = CriticEnsemble(hyper.num_min_critics, hidden,
                                     layer_norm=config.critic_layer_norm,
                                     layer_norm_epsilon=ln_eps).apply
  return SACState(actor=actor, critic=critic, target_critic_params=target_params,
                  temperature=temperature, step=jnp.zeros((), jnp.int32), hyper=hyper,
                  subset_apply_fn=subset_apply_fn)


# ----------------------------------------------------------------------------------- losses

def critic_loss(critic_params, state: SACState, batch: Transitions, key: jax.Array):
  """0.5 E[(Q_i(s,a) - y)^2] summed over critics; y = r + gamma m (min Q'(s',a') - alpha logp)."""
  h = state.hyper
  k_act, k_subset = jax.random.split(key)
  dist = state.actor.apply_fn(state.actor.params, batch.next_observations)
  next_actions, next_log_probs = dist.sample_and_log_prob(seed=k_act)
  if h.num_min_critics < h.num_critics:  # REDQ: min over a random subset
    idx = jax.random.choice(k_subset, h.num_critics, (h.num_min_critics,), replace=False)
    # Gather the M members' parameters and evaluate only them; equal to evaluating all N and
    # indexing the output (tests/test_redq_rlpd.py), at M/N of the target's forward cost.
    if state.subset_apply_fn is not None:
      subset = jax.tree.map(lambda p: p[idx], state.target_critic_params)
      next_q = state.subset_apply_fn(subset, batch.next_observations, next_actions)  # (M, B)
    else:  # a state built without it (e.g. by hand): evaluate all N, then index
      next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations,
                                     next_actions)[idx]
  else:
    next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations,
                                   next_actions)  # (num_critics, B)
  next_q = next_q.min(axis=0)
  if h.backup_entropy:
    alpha = state.temperature.apply_fn(state.temperature.params)
    next_q = next_q - alpha * next_log_probs
  target = batch.rewards + h.discount * batch.masks * next_q
  target = jax.lax.stop_gradient(target)
  q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
  loss = 0.5 * ((q - target[None]) ** 2).mean(axis=1).sum()
  return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_q_mean": target.mean()}


def actor_loss(actor_params, state: SACState, batch: Transitions, key: jax.Array):
  """E[alpha log pi(a|s) - Q(s, a)], a ~ pi(.|s) reparameterised."""
  dist = state.actor.apply_fn(actor_params, batch.observations)
  actions, log_probs = dist.sample_and_log_prob(seed=key)
  q = state.critic.apply_fn(state.critic.params, batch.observations, actions)
  q = q.min(axis=0) if state.hyper.actor_q_reduction == "min" else q.mean(axis=0)
  alpha = state.temperature.apply_fn(state.temperature.params)
  loss = (alpha * log_probs - q).mean()
  return loss, {"actor_loss": loss, "entropy": -log_probs.mean()}


def temperature_loss(temp_params, state: SACState, entropy: jax.Array):
  """c (H(pi) - target_entropy) with c = log(alpha) or alpha (`hyper.temperature_loss`).

  Either way alpha grows when the entropy falls below the target; the gradient with respect to
  the parameter log(alpha) is (H - target) for "log_alpha" and alpha (H - target) for "alpha".
  """
  alpha = state.temperature.apply_fn(temp_params)
  gap = jax.lax.stop_gradient(entropy) - state.hyper.target_entropy
  if state.hyper.temperature_loss == "log_alpha":
    loss = temp_params["params"]["log_temp"] * gap
  else:
    loss = alpha * gap
  return loss, {"temperature": alpha, "temperature_loss": loss}


# ----------------------------------------------------------------------------------- updates

def update_critic(state: SACState, batch: Transitions, key: jax.Array):
  grads, info = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, key)
  critic = state.critic.apply_gradients(grads=grads)
  target = polyak(state.target_critic_params, critic.params, state.hyper.tau)
  return state.replace(critic=critic, target_critic_params=target), info


def update_actor(state: SACState, batch: Transitions, key: jax.Array):
  grads, info = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, key)
  return state.replace(actor=state.actor.apply_gradients(grads=grads)), info


def update_temperature(state: SACState, entropy: jax.Array):
  grads, info = jax.grad(temperature_loss, has_aux=True)(state.temperature.params, state,
                                                         entropy)
  return state.replace(temperature=state.temperature.apply_gradients(grads=grads)), info


def _last_critic_then_actor(state: SACState, batch: Transitions, k_critic: jax.Array,
                            k_actor: jax.Array):
  """The last critic step and the actor/temperature step of an update, on one minibatch.

  The actor loss reads the critic after this critic step when `actor_uses_updated_critic`,
  else the critic from before it (SAC / REDQ code). The temperature step uses the entropy
  of the actor loss, i.e. of the policy before its step, in both.
  """
  before = state
  state, critic_info = update_critic(state, batch, k_critic)
  source = state if state.hyper.actor_uses_updated_critic else before
  updated, actor_info = update_actor(source, batch, k_actor)
  state = state.replace(actor=updated.actor)
  state, temp_info = update_temperature(state, actor_info["entropy"])
  state = state.replace(step=state.step + 1)
  return state, critic_info, {**actor_info, **temp_info}


def update(state: SACState, batch: Transitions, key: jax.Array):
  """One SAC step: critic (and target), actor, then temperature (Alg. 1)."""
  k_critic, k_actor = jax.random.split(key)
  state, critic_info, info = _last_critic_then_actor(state, batch, k_critic, k_actor)
  return state, {**critic_info, **info}


def update_utd(state: SACState, batch: Transitions, key: jax.Array, utd_ratio: int):
  """`utd_ratio` critic steps on consecutive minibatches, then one actor/temperature step.

  `batch` holds utd_ratio * B transitions (one sampling call upstream).
  """
  if utd_ratio == 1:
    return update(state, batch, key)
  n = batch.rewards.shape[0]
  if n % utd_ratio:
    raise ValueError(f"batch size {n} is not a multiple of utd_ratio={utd_ratio}")
  minibatches = jax.tree.map(lambda x: x.reshape((utd_ratio, n // utd_ratio) + x.shape[1:]),
                             batch)
  keys = jax.random.split(key, utd_ratio + 1)

  def body(s, inputs):
    mb, k = inputs
    return update_critic(s, mb, k)

  head = jax.tree.map(lambda x: x[:-1], minibatches)
  state, head_info = jax.lax.scan(body, state, (head, keys[:-2]))
  last = jax.tree.map(lambda x: x[-1], minibatches)
  state, last_info, info = _last_critic_then_actor(state, last, keys[-2], keys[-1])
  # Mean over all utd_ratio critic steps.
  critic_info = jax.tree.map(lambda h, l: (h.sum() + l) / utd_ratio, head_info, last_info)
  return state, {**critic_info, **info}


# ----------------------------------------------------------------------------------- acting

def act(state: SACState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  """tanh(mean) when deterministic, else a sample of the tanh-Gaussian."""
  dist = state.actor.apply_fn(state.actor.params, observations)
  if deterministic:
    return dist.bijector.forward(dist.distribution.mode())
  return dist.sample(seed=key)


act_jit = jax.jit(act, static_argnames=("deterministic",))
update_jit = jax.jit(update)


def policy_params(state: SACState):
  """The parameters that define the policy (what the dataset builder saves)."""
  return state.actor.params
