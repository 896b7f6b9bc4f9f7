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

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
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
  # None -> -target_entropy_scale * |A| (SAC paper, Sec. 5 / App. D heuristic: scale 1; RLPD's
  # code: 0.5).
  c.target_entropy = ml_collections.config_dict.placeholder(float)
  c.target_entropy_scale = 1.0
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


class Temperature(flax.linen.Module):
  init_value: float = 1.0

  @flax.linen.compact
  def __call__(self) -> jax.Array:
    log_temp = self.param("log_temp", lambda _: jnp.full((), jnp.log(self.init_value)))
    return jnp.exp(log_temp)


class SACState(flax.struct.PyTreeNode):
  """One TrainState per trained network (jaxaug.agents.common), the target critics and `hp`."""

  actor: TrainState
  critic: TrainState
  target_critic_params: Any
  temperature: TrainState
  hp: common.Hyper
  # Applies an ensemble of `num_min_critics` members (same parameter names, leading axis M):
  # the TD target evaluates only the M target critics it minimises over, not all N (REDQ/RLPD:
  # 2 of 10, so 8 of 10 target forward passes are skipped). None when M == N.
  subset_apply_fn: Any = flax.struct.field(pytree_node=False, default=None)

  @property
  def step(self) -> jax.Array:
    """Number of updates done: the actor takes exactly one step per `update` / `update_utd`."""
    return self.actor.step


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


# Configs saved before these fields existed (older workdirs) keep jaxaug's earlier behaviour
# (the current defaults follow the reference code; docs/methods/sac.md).
LEGACY_DEFAULTS = {"kernel_init": "lecun_normal", "temperature_loss": "alpha",
                   "actor_uses_updated_critic": True}


def hyper(spec: EnvSpec, config: ml_collections.ConfigDict | None = None,
          agent_name: str = "sac", defaults: ml_collections.ConfigDict | None = None
          ) -> common.Hyper:
  """SAC's `Hyper`, checked. REDQ and RLPD are SAC configurations: they pass their name (for
  error messages) and their `get_config()` as `defaults` (what a missing key takes, apart from
  `LEGACY_DEFAULTS`)."""
  defaults = defaults if defaults is not None else get_config()
  config = config if config is not None else defaults
  defaults = ml_collections.ConfigDict(defaults.to_dict())
  defaults.update(LEGACY_DEFAULTS)
  target_entropy = config.get("target_entropy")
  if target_entropy is None:
    target_entropy = -float(config.get("target_entropy_scale",
                                       defaults.target_entropy_scale)) * spec.act_dim
  hp = common.hyper_from_config(
      config, defaults, spec, agent_name,
      # The LayerNorm epsilon is an attribute of the critic module (part of the program).
      static=("critic_layer_norm_epsilon",),
      derived={"target_entropy": float(target_entropy)})
  if hp.kernel_init not in KERNEL_INITS:
    raise ValueError(f"agent.kernel_init must be one of {KERNEL_INITS}, got {hp.kernel_init!r}")
  if hp.temperature_loss not in TEMPERATURE_LOSSES:
    raise ValueError(f"agent.temperature_loss must be one of {TEMPERATURE_LOSSES}, got "
                     f"{hp.temperature_loss!r}")
  if not hp.critic_layer_norm_epsilon > 0:
    raise ValueError(f"agent.critic_layer_norm_epsilon must be positive, got "
                     f"{hp.critic_layer_norm_epsilon}")
  if hp.actor_q_reduction not in ("min", "mean"):
    raise ValueError(f"agent.actor_q_reduction must be 'min' or 'mean', "
                     f"got {hp.actor_q_reduction!r}")
  if not 1 <= hp.num_min_critics <= hp.num_critics:
    raise ValueError(f"agent.num_min_critics must be in [1, num_critics={hp.num_critics}], "
                     f"got {hp.num_min_critics}")
  # From the config, not hp: init may run under jit, where hp's leaves are tracers.
  init_temperature = config.get("init_temperature", defaults.init_temperature)
  if not float(init_temperature) > 0:
    raise ValueError(f"agent.init_temperature must be positive, got {init_temperature}")
  return hp


def critic_net(hp: common.Hyper, num_critics: int | None = None) -> CriticEnsemble:
  return CriticEnsemble(hp.num_critics if num_critics is None else num_critics, hp.hidden_dims,
                        layer_norm=hp.critic_layer_norm,
                        layer_norm_epsilon=float(hp.critic_layer_norm_epsilon))


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None, *,
         agent_name: str = "sac", defaults: ml_collections.ConfigDict | None = None
         ) -> SACState:
  """The state; `agent_name` and `defaults` as in `hyper` (REDQ / RLPD pass theirs)."""
  hp = hyper(spec, config, agent_name, defaults)
  defaults = defaults if defaults is not None else get_config()
  config = config if config is not None else defaults
  lr = lambda name: config.get(name, defaults[name])
  # Four keys as before (the temperature's parameter is set, not drawn, but the split is kept so
  # that the other networks' initial values do not change).
  k_actor, k_critic, _, k_xavier = jax.random.split(key, 4)
  obs = jnp.zeros((1, spec.obs_dim), jnp.float32)
  act = jnp.zeros((1, spec.act_dim), jnp.float32)
  actor_def = TanhGaussianPolicy(spec.act_dim, hp.hidden_dims, max_action=spec.max_action)
  critic_def = critic_net(hp)
  actor_params = actor_def.init(k_actor, obs)
  critic_params = critic_def.init(k_critic, obs, act)
  if hp.kernel_init == "xavier_uniform":
    k_xa, k_xc = jax.random.split(k_xavier)
    actor_params = xavier_uniform_kernels(actor_params, k_xa)
    critic_params = xavier_uniform_kernels(critic_params, k_xc)
  actor = TrainState.create(apply_fn=common.apply_fn(actor_def), params=actor_params,
                            tx=common.adam(lr("actor_lr")))
  critic = TrainState.create(apply_fn=common.apply_fn(critic_def), params=critic_params,
                             tx=common.adam(lr("critic_lr")))
  # log(alpha) from the leaf hp.init_temperature, so that it may differ along a sweep axis.
  temp_params = {"params": {"log_temp": jnp.log(hp.init_temperature)}}
  temperature = TrainState.create(apply_fn=common.apply_fn(Temperature()), params=temp_params,
                                  tx=common.adam(lr("temperature_lr")))
  subset_apply_fn = None
  if hp.num_min_critics < hp.num_critics:
    subset_apply_fn = common.apply_fn(critic_net(hp, hp.num_min_critics))
  # A separate copy of the target: the online loop donates the state, and one buffer cannot be
  # donated twice.
  return SACState(actor=actor, critic=critic,
                  target_critic_params=common.copy_tree(critic_params),
                  temperature=temperature, hp=hp, subset_apply_fn=subset_apply_fn)


# ----------------------------------------------------------------------------------- losses

def critic_loss(critic_params, state: SACState, batch: Transitions, key: jax.Array):
  """0.5 E[(Q_i(s,a) - y)^2] summed over critics; y = r + gamma m (min Q'(s',a') - alpha logp)."""
  h = state.hp
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
  q = q.min(axis=0) if state.hp.actor_q_reduction == "min" else q.mean(axis=0)
  alpha = state.temperature.apply_fn(state.temperature.params)
  loss = (alpha * log_probs - q).mean()
  return loss, {"actor_loss": loss, "entropy": -log_probs.mean()}


def temperature_loss(temp_params, state: SACState, entropy: jax.Array):
  """c (H(pi) - target_entropy) with c = log(alpha) or alpha (`hp.temperature_loss`).

  Either way alpha grows when the entropy falls below the target; the gradient with respect to
  the parameter log(alpha) is (H - target) for "log_alpha" and alpha (H - target) for "alpha".
  """
  alpha = state.temperature.apply_fn(temp_params)
  gap = jax.lax.stop_gradient(entropy) - state.hp.target_entropy
  if state.hp.temperature_loss == "log_alpha":
    loss = temp_params["params"]["log_temp"] * gap
  else:
    loss = alpha * gap
  return loss, {"temperature": alpha, "temperature_loss": loss}


# ----------------------------------------------------------------------------------- updates

def update_critic(state: SACState, batch: Transitions, key: jax.Array):
  grads, info = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, key)
  critic = state.critic.apply_gradients(grads=grads)
  target = polyak(state.target_critic_params, critic.params, state.hp.tau)
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
  source = state if state.hp.actor_uses_updated_critic else before
  updated, actor_info = update_actor(source, batch, k_actor)
  state = state.replace(actor=updated.actor)
  state, temp_info = update_temperature(state, actor_info["entropy"])
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


def td_error(state: SACState, batch: Transitions, key: jax.Array) -> jax.Array:
  """(B,) |r + gamma m min_i Q'_i(s', a') - mean_i Q_i(s, a)|, a' ~ pi(.|s'): the agent
  protocol's optional TD error (ATraDiff's importance indicator). The min runs over all target
  critics (not a random subset), so the value is deterministic given `key`."""
  dist = state.actor.apply_fn(state.actor.params, batch.next_observations)
  next_actions = dist.sample(seed=key)
  next_q = state.critic.apply_fn(state.target_critic_params, batch.next_observations,
                                 next_actions).min(axis=0)
  q = state.critic.apply_fn(state.critic.params, batch.observations, batch.actions).mean(axis=0)
  target = common.td_target(batch.rewards, batch.masks, state.hp.discount, next_q)
  return jnp.abs(target - q)


def policy_params(state: SACState):
  """The parameters that define the policy (what the dataset builder saves)."""
  return state.actor.params
