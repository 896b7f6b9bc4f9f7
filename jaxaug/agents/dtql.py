"""DTQL: "Diffusion Policies Creating a Trust Region for Offline RL" (Chen et al., NeurIPS 2024).

Two policies (paper Sec. 2):
  * a diffusion behaviour-cloning policy mu_theta(a | s), trained with the EDM loss on dataset
    actions (Sec. 2.2, Eq. 3; sigma_data 0.5, sigma in [0.002, 80], truncated log-logistic
    training noise, denoised action clipped to +-max_action, loss ((D(a_sigma) - a) / c_out)^2);
  * a one-step policy pi_phi(a | s) (tanh-Gaussian, or an implicit generator a = G(z, s)),
    trained with the *diffusion trust-region loss* (Sec. 2.3, Eq. 4): the same diffusion loss
    evaluated at a ~ pi_phi(s) with fresh sigma / noise, gradients flowing into phi through a
    and never into theta. Policy loss (Eq. 5): alpha * L_TR - E[min Q(s, pi(s))]
    (+ gamma_ent * NLL of dataset actions, DTQL's antmaze entropy surrogate).
Critics (Sec. 4, as IQL): twin Q with LayerNorm and a value net; V fits the tau-expectile of
min Q(s, a_data); Q regresses onto r + gamma * V(s').

One `update` runs, in the official order, critic -> diffusion BC -> policy -> Polyak, so the
generic loop (jaxaug.train.loop) makes all three data-parallel at once. The optional
pre-training phase (`pretrain_steps`, BC + critic only) is a `lax.cond` on the state's step
counter. `act` is one forward pass, optionally with the max-Q trick over `num_candidates`.

The defaults are the official code's behaviour (the code that produced the paper's numbers),
including its quirks; jaxaug's fixes are switches, off by default and on in the `+fixes`
presets of configs/dtql.py (docs/methods/dtql.md lists them):
  * `faithful_denoiser=True`: no activation between the first two denoiser layers (official);
  * `target_value=False`: Q targets bootstrap from the online V (official), not a Polyak target;
  * `polyak_during_pretrain=False`: the target critic stays at its initial copy during
    pre-training (official) and starts moving with the main phase;
  * `policy_init="official"`: orthogonal init with gain 1 on every policy layer, zero biases,
    one output layer for mean and log-std;
  * `critic_layer_norm_epsilon=1e-5`: torch.nn.LayerNorm's epsilon (flax's default is 1e-6).
The critic learning rate is its own field; the official code always uses 3e-4 for it.
"""

from __future__ import annotations

import functools
import math
import types
from typing import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training.train_state import TrainState

from jaxaug.agents import common
from jaxaug.data.dataset import Transitions
from jaxaug.diffusion import edm, samplers
from jaxaug.nets.mlp import (CriticEnsemble, MLP, StateValue, TanhGaussianPolicy, mish, polyak,
                             tanh_gaussian)
from jaxaug.types import EnvSpec

POLICIES = ("tanh_gaussian", "implicit")
POLICY_INITS = ("official", "small_head")
SELECTIONS = ("softmax", "argmax")
ENTROPY_TERMS = ("nll", "entropy")


# ----------------------------------------------------------------------------- config
def get_config() -> ml_collections.ConfigDict:
  """DTQL's gym defaults (official main.py / agents/dtql.py)."""
  c = ml_collections.ConfigDict()
  c.lr = 3e-4  # diffusion BC and one-step policy (per-dataset in the paper)
  c.critic_lr = 3e-4  # the official code always uses 3e-4 for the critic
  c.lr_decay = False  # cosine decay to 0 of all three learning rates after pre-training
  # Length of the cosine decay (official: num_epochs * 1000, the main phase). configs/dtql.py
  # ties it to num_steps - pretrain_steps lazily; an explicit value overrides that.
  c.lr_decay_steps = 1_000_000
  c.pretrain_steps = 0  # BC + critic only for this many first steps (official: 50k)
  c.discount = 0.99
  c.tau = 0.005  # Polyak rate of the target critic
  c.expectile = 0.7  # 0.9 for AntMaze
  c.trust_region_weight = 1.0  # paper's alpha (Eq. 5)
  c.gamma_ent = 0.0  # weight of the entropy / log-likelihood term (paper's gamma; 1 on AntMaze)
  c.entropy_term = "nll"  # nll: -log pi(a_data|s) (official) | entropy: log pi(a_pi|s) (SAC-like)
  # Official: Q target r + gamma V(s') from the online V. True (jaxaug fix): from the Polyak
  # target V, the usual way to stabilise a bootstrapped target.
  c.target_value = False
  # Official: the target critic does not move during pre-training (it is only used for acting,
  # after it). True (jaxaug fix): Polyak updates from step 0; needed by target_value=True.
  c.polyak_during_pretrain = False
  # Diffusion BC policy (EDM, Karras et al. 2022, with DTQL's settings).
  c.sigma_data = 0.5
  c.sigma_min = 0.002
  c.sigma_max = 80.0
  c.sigma_scale = 0.5  # log-logistic scale of the training noise (loc = ln sigma_data)
  c.clip_denoised = True  # clip D(x, sigma) to +-max_action inside the loss (official)
  c.denoiser_hidden_dim = 256
  c.denoiser_num_layers = 4  # hidden Dense layers of the denoiser MLP
  c.time_embed_dim = 16
  # Official: no activation between the first two denoiser layers (their MLP omits it, so the
  # two layers compose to one linear map). False (jaxaug fix): Mish after every hidden layer.
  c.faithful_denoiser = True
  # One-step policy.
  c.policy = "tanh_gaussian"  # tanh_gaussian | implicit (a = G(z, s), z ~ N(0, generation_sigma^2))
  c.policy_hidden_dims = (256, 256, 256)
  c.log_std_min = -5.0
  c.log_std_max = 2.0
  c.generation_sigma = 2.5  # scale of the implicit generator's input noise (official toy default)
  # official: orthogonal gain 1 on every layer, zero biases, one 2*act output layer (mean,
  # log-std). small_head (jaxaug's former init): hidden gain sqrt(2) (the ReLU gain), separate
  # mean / log-std heads with gain 1e-2, so the initial policy is ~state-independent, std ~1.
  c.policy_init = "official"
  # Critics.
  c.critic_hidden_dims = (256, 256, 256)
  c.critic_layer_norm_epsilon = 1e-5  # torch.nn.LayerNorm's default, as the official critics
  # Acting: the paper's max-Q trick (Sec. 4): N candidates from pi, scored by min target Q.
  c.num_candidates = 1024  # 1 = plain one-step policy
  c.candidate_selection = "softmax"  # softmax: sample from softmax(Q / temperature) | argmax
  c.candidate_temperature = 1.0
  return c


class DTQLState(flax.struct.PyTreeNode):
  bc: TrainState  # diffusion behaviour-cloning policy (denoiser)
  policy: TrainState  # one-step policy (steps only after pre-training)
  # Twin Q and V, params {"q": ..., "v": ...}, under one Adam as in the official code; apply
  # with q_net(hp) / v_net(hp) (apply_fn unused).
  critic: TrainState
  target_critic_params: dict
  hp: common.Hyper

  @property
  def step(self) -> jax.Array:
    """Number of updates done (the critics step on every update; it drives pre-training)."""
    return self.critic.step


# Floats that stay static (structure, not values a sweep varies in one program):
#   * the EDM noise distribution and preconditioning (sigma_data, sigma_min, sigma_max,
#     sigma_scale) enter Python math (log-logistic bounds) and the sampler's static config;
#   * log_std_min / log_std_max and critic_layer_norm_epsilon are network-module attributes
#     (baked into the TrainStates' static apply_fn);
#   * gamma_ent == 0 removes the entropy term from the traced loss (Python control flow).
STATIC = ("sigma_data", "sigma_min", "sigma_max", "sigma_scale", "log_std_min", "log_std_max",
          "critic_layer_norm_epsilon", "gamma_ent")
# The float leaves acting reads (`act_params` carries them, so that a cached acting function
# never closes over one state's values).
ACT_LEAVES = ("candidate_temperature", "generation_sigma")


# ----------------------------------------------------------------------------- networks
def sinusoidal_embedding(x: jax.Array, dim: int) -> jax.Array:
  """Transformer-style sin/cos features of a scalar per sample: (B,) -> (B, dim)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) / max(half - 1, 1) * jnp.arange(half, dtype=jnp.float32))
  arg = x[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class DTQLDenoiser(nn.Module):
  """DTQL's raw denoiser F(c_in a_sigma, c_noise, s) (official diffusion/mlps.py layout).

  Input [x_in, s, emb(c_noise)] with emb = sinusoidal(dim) -> 2 dim -> Mish -> dim, then
  `num_layers` Dense(hidden) layers with Mish and a linear output. The official network has no
  activation between its first two Dense layers (`faithful=True` reproduces that).
  """

  act_dim: int
  hidden_dim: int = 256
  num_layers: int = 4
  time_embed_dim: int = 16
  faithful: bool = True

  @nn.compact
  def __call__(self, x_in: jax.Array, c_noise: jax.Array, obs: jax.Array) -> jax.Array:
    emb = sinusoidal_embedding(c_noise, self.time_embed_dim)
    emb = nn.Dense(self.time_embed_dim)(mish(nn.Dense(2 * self.time_embed_dim)(emb)))
    h = jnp.concatenate([x_in, obs, emb], axis=-1)
    for i in range(self.num_layers):
      h = nn.Dense(self.hidden_dim)(h)
      if not (self.faithful and i == 0):
        h = mish(h)
    return nn.Dense(self.act_dim)(h)


class OfficialGaussianActor(nn.Module):
  """The official DiagGaussianActorTanhAction: a ReLU MLP whose last layer outputs [mean,
  log_std] (2 * act_dim), every Dense orthogonally initialised with gain 1, biases zero;
  log_std clipped to [log_std_min, log_std_max]; a = max_action * tanh(N(mean, std^2))."""

  act_dim: int
  hidden_dims: Sequence[int] = (256, 256, 256)
  max_action: float = 1.0
  log_std_min: float = -5.0
  log_std_max: float = 2.0

  @nn.compact
  def __call__(self, obs: jax.Array):
    init = dict(kernel_init=nn.initializers.orthogonal(1.0), bias_init=nn.initializers.zeros)
    x = obs
    for h in self.hidden_dims:
      x = nn.relu(nn.Dense(h, **init)(x))
    mean, log_std = jnp.split(nn.Dense(2 * self.act_dim, **init)(x), 2, axis=-1)
    log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
    return tanh_gaussian(mean, jnp.exp(log_std), self.max_action)


class ImplicitPolicy(nn.Module):
  """One-step implicit generator a = max_action tanh(G([z, s])); the caller draws
  z ~ N(0, generation_sigma^2) (`sample_policy`)."""

  act_dim: int
  hidden_dims: Sequence[int] = (256, 256, 256)
  max_action: float = 1.0

  @nn.compact
  def __call__(self, obs: jax.Array, z: jax.Array) -> jax.Array:
    x = MLP(self.hidden_dims, self.act_dim, "mish")(jnp.concatenate([z, obs], axis=-1))
    return self.max_action * jnp.tanh(x)


def denoiser_net(hp: common.Hyper) -> DTQLDenoiser:
  return DTQLDenoiser(hp.act_dim, hp.denoiser_hidden_dim, hp.denoiser_num_layers,
                      hp.time_embed_dim, hp.faithful_denoiser)


def policy_net(hp: common.Hyper) -> nn.Module:
  if hp.policy == "implicit":
    return ImplicitPolicy(hp.act_dim, hp.policy_hidden_dims, hp.max_action)
  if hp.policy_init == "official":
    return OfficialGaussianActor(hp.act_dim, hp.policy_hidden_dims, hp.max_action,
                                 hp.log_std_min, hp.log_std_max)
  # small_head: hidden layers orthogonal sqrt(2), mean / log-std heads orthogonal 1e-2.
  return TanhGaussianPolicy(hp.act_dim, hp.policy_hidden_dims, hp.max_action, hp.log_std_min,
                            hp.log_std_max, orthogonal_init=True)


def q_net(hp: common.Hyper) -> CriticEnsemble:
  return CriticEnsemble(num_critics=2, hidden_dims=hp.critic_hidden_dims, activation="mish",
                        layer_norm=True, layer_norm_epsilon=hp.critic_layer_norm_epsilon)


def v_net(hp: common.Hyper) -> StateValue:
  return StateValue(hp.critic_hidden_dims, activation="mish")


def make_denoiser(bc_params, hp: common.Hyper) -> edm.Denoiser:
  """EDM-preconditioned D(a, sigma, s), clipped to +-max_action when `clip_denoised` (DTQL)."""
  net = denoiser_net(hp)
  raw = lambda x_in, c_noise, cond, use_cond: net.apply(bc_params, x_in, c_noise, cond)
  d = edm.precondition(raw, hp.sigma_data)
  if not hp.clip_denoised:
    return d
  return lambda x, sigma, cond=None, use_cond=None: jnp.clip(d(x, sigma, cond, use_cond),
                                                             -hp.max_action, hp.max_action)


def sigma_fn(hp: common.Hyper) -> edm.SigmaFn:
  """DTQL's training noise: ln sigma ~ Logistic(ln sigma_data, 0.5) truncated to the range."""
  return edm.make_sigma_fn("truncated_loglogistic", loc=math.log(hp.sigma_data),
                           scale=hp.sigma_scale, sigma_min=hp.sigma_min, sigma_max=hp.sigma_max)


def _schedule(lr, decay_steps: int, offset: int) -> optax.Schedule:
  """Constant for the first `offset` optimiser steps, then cosine to 0 over decay_steps."""
  cos = optax.cosine_decay_schedule(lr, decay_steps)
  if offset <= 0:
    return cos
  return optax.join_schedules([optax.constant_schedule(lr), cos], [offset])


def _tx(lr: float, hp: common.Hyper, offset: int) -> optax.GradientTransformation:
  """Adam with the base learning rate a leaf of its state, decayed when `lr_decay`."""
  if not hp.lr_decay:
    return common.adam(lr)
  return common.scheduled_adam(lr, _schedule, int(hp.lr_decay_steps), int(offset))


# The BC and critic optimisers also step during pre-training; the policy optimiser does not
# (its step count starts at 0 when the policy phase starts), so only the former get an offset.
def bc_tx(lr: float, hp: common.Hyper) -> optax.GradientTransformation:
  return _tx(lr, hp, hp.pretrain_steps)


def critic_tx(lr: float, hp: common.Hyper) -> optax.GradientTransformation:
  return _tx(lr, hp, hp.pretrain_steps)


def policy_tx(lr: float, hp: common.Hyper) -> optax.GradientTransformation:
  return _tx(lr, hp, 0)


def _validate(hp) -> None:
  """Checks on the configured values (a namespace or Hyper with concrete values: run it on the
  config, since `init` may be traced, where the leaves of `hp` are tracers)."""
  def bad(field, expected, got):
    raise ValueError(f"config.agent.{field} must be {expected} (dtql), got {got!r}")
  if hp.policy not in POLICIES:
    bad("policy", f"one of {POLICIES}", hp.policy)
  if hp.policy_init not in POLICY_INITS:
    bad("policy_init", f"one of {POLICY_INITS}", hp.policy_init)
  if hp.candidate_selection not in SELECTIONS:
    bad("candidate_selection", f"one of {SELECTIONS}", hp.candidate_selection)
  if hp.entropy_term not in ENTROPY_TERMS:
    bad("entropy_term", f"one of {ENTROPY_TERMS}", hp.entropy_term)
  if hp.policy == "implicit" and hp.gamma_ent != 0.0:
    bad("gamma_ent", "0 with the implicit policy (it has no density)", hp.gamma_ent)
  if not 0.0 < hp.expectile < 1.0:
    bad("expectile", "in (0, 1)", hp.expectile)
  if not 0.0 < hp.sigma_min < hp.sigma_max:
    bad("sigma_min/sigma_max", "0 < sigma_min < sigma_max", (hp.sigma_min, hp.sigma_max))
  if hp.sigma_data <= 0:
    bad("sigma_data", "positive", hp.sigma_data)
  if hp.num_candidates < 1:
    bad("num_candidates", ">= 1", hp.num_candidates)
  if hp.candidate_temperature <= 0:
    bad("candidate_temperature", "positive", hp.candidate_temperature)
  if hp.pretrain_steps < 0:
    bad("pretrain_steps", ">= 0", hp.pretrain_steps)
  if hp.time_embed_dim < 4 or hp.time_embed_dim % 2:
    bad("time_embed_dim", "an even number >= 4", hp.time_embed_dim)
  if hp.lr_decay and hp.lr_decay_steps < 1:
    bad("lr_decay_steps", ">= 1 with lr_decay (num_steps - pretrain_steps in the presets)",
        hp.lr_decay_steps)
  if hp.critic_layer_norm_epsilon <= 0:
    bad("critic_layer_norm_epsilon", "positive", hp.critic_layer_norm_epsilon)
  if hp.target_value and hp.pretrain_steps > 0 and not hp.polyak_during_pretrain:
    bad("polyak_during_pretrain", "True when target_value=True and pretrain_steps > 0 (a frozen "
        "target V would bootstrap pre-training from its random initialisation)",
        hp.polyak_during_pretrain)


def config_values(config: ml_collections.ConfigDict | None) -> types.SimpleNamespace:
  """The agent config with defaults filled in, as plain Python values (for checks)."""
  given = dict(config.items()) if config is not None else {}
  return types.SimpleNamespace(**{**dict(get_config().items()), **given})


def init(key: jax.Array, spec: EnvSpec, config: ml_collections.ConfigDict | None = None
         ) -> DTQLState:
  hp = common.hyper_from_config(config, get_config(), spec, "dtql", static=STATIC)
  values = config_values(config)
  _validate(values)
  k_bc, k_pi, k_q, k_v = jax.random.split(key, 4)
  obs = jnp.zeros((1, hp.obs_dim), jnp.float32)
  act = jnp.zeros((1, hp.act_dim), jnp.float32)
  bc_def, policy_def = denoiser_net(hp), policy_net(hp)
  bc_params = bc_def.init(k_bc, act, jnp.zeros((1,), jnp.float32), obs)
  if hp.policy == "implicit":
    policy_params = policy_def.init(k_pi, obs, act)
  else:
    policy_params = policy_def.init(k_pi, obs)
  critic_params = {"q": q_net(hp).init(k_q, obs, act), "v": v_net(hp).init(k_v, obs)}
  return DTQLState(
      bc=TrainState.create(apply_fn=common.apply_fn(bc_def), params=bc_params, tx=bc_tx(values.lr, hp)),
      policy=TrainState.create(apply_fn=common.apply_fn(policy_def), params=policy_params,
                               tx=policy_tx(values.lr, hp)),
      critic=TrainState.create(apply_fn=None, params=critic_params,
                               tx=critic_tx(values.critic_lr, hp)),
      target_critic_params=common.copy_tree(critic_params), hp=hp)


# ----------------------------------------------------------------------------- policy sampling
def sample_policy(policy_params, hp: common.Hyper, obs: jax.Array, key: jax.Array,
                  with_log_prob: bool = False):
  """Reparameterised a ~ pi_phi(.|s) (differentiable in phi); optionally with log pi(a|s)."""
  if hp.policy == "implicit":
    z = hp.generation_sigma * jax.random.normal(key, obs.shape[:-1] + (hp.act_dim,))
    a = policy_net(hp).apply(policy_params, obs, z)
    return (a, None) if with_log_prob else a
  dist = policy_net(hp).apply(policy_params, obs)
  if with_log_prob:
    return dist.sample_and_log_prob(seed=key)
  return dist.sample(seed=key)


def policy_mode(policy_params, hp: common.Hyper, obs: jax.Array) -> jax.Array:
  """The deterministic action: tanh(mean) for the Gaussian, G(z=0, s) for the implicit policy."""
  if hp.policy == "implicit":
    return policy_net(hp).apply(policy_params, obs, jnp.zeros(obs.shape[:-1] + (hp.act_dim,)))
  dist = policy_net(hp).apply(policy_params, obs)
  return hp.max_action * jnp.tanh(dist.distribution.loc)


def data_nll(policy_params, hp: common.Hyper, obs: jax.Array, actions: jax.Array) -> jax.Array:
  """DTQL's entropy surrogate: -log N(atanh(a / (max_a + 1e-3)); mu, sigma), no tanh Jacobian."""
  dist = policy_net(hp).apply(policy_params, obs)
  pre_tanh = jnp.arctanh(actions / (hp.max_action + 1e-3))
  return -dist.distribution.log_prob(pre_tanh)


# ----------------------------------------------------------------------------- losses
def diffusion_loss(bc_params, hp: common.Hyper, actions: jax.Array, obs: jax.Array,
                   key: jax.Array, per_sample: bool = False):
  """DTQL's EDM loss (Eq. 3): mean ((clip(D(a + sigma n, sigma, s)) - a) / c_out)^2.

  With lambda(sigma) = 1 / c_out^2, `edm.edm_loss` on the clipped denoiser is exactly this form.
  """
  return edm.edm_loss(make_denoiser(bc_params, hp), actions, key, cond=obs,
                      sigma_fn=sigma_fn(hp), sigma_data=hp.sigma_data,
                      return_per_sample=per_sample)


def trust_region_loss(actions: jax.Array, bc_params, hp: common.Hyper, obs: jax.Array,
                      key: jax.Array, per_sample: bool = False):
  """Diffusion trust-region loss (Eq. 4): the BC diffusion loss at the policy's actions.

  The diffusion parameters are frozen (stop_gradient): the loss moves the actions (and through
  them the one-step policy) towards high-density regions of the behaviour policy, never the
  behaviour model towards the actions.
  """
  return diffusion_loss(jax.lax.stop_gradient(bc_params), hp, actions, obs, key, per_sample)


def critic_loss(critic_params, target_critic_params, hp: common.Hyper, batch: Transitions):
  """Expectile V loss + two Q MSEs, summed (official q_v_critic_loss)."""
  q_data = q_net(hp).apply(critic_params["q"], batch.observations, batch.actions)  # (2, B)
  v = v_net(hp).apply(critic_params["v"], batch.observations)
  value_loss = common.expectile_loss(jax.lax.stop_gradient(q_data.min(0)) - v, hp.expectile)
  v_params = target_critic_params["v"] if hp.target_value else critic_params["v"]
  next_v = v_net(hp).apply(v_params, batch.next_observations)
  target = common.td_target(batch.rewards, batch.masks, hp.discount, next_v)
  q_loss = jnp.sum(jnp.mean(jnp.square(q_data - target), axis=1))
  loss = value_loss + q_loss
  return loss, {"critic_loss": loss, "value_loss": value_loss, "q_loss": q_loss,
                "q": q_data.mean(), "v": v.mean()}


def policy_loss(policy_params, bc_params, critic_params, hp: common.Hyper, batch: Transitions,
                key: jax.Array):
  """Eq. 5: alpha * L_TR(pi(s)) - E[min Q(s, pi(s))] + gamma_ent * entropy term."""
  k_pi, k_tr = jax.random.split(key)
  obs = batch.observations
  need_logp = hp.gamma_ent != 0.0 and hp.entropy_term == "entropy"
  out = sample_policy(policy_params, hp, obs, k_pi, with_log_prob=need_logp)
  actions, log_prob = out if need_logp else (out, None)
  tr = trust_region_loss(actions, bc_params, hp, obs, k_tr)
  q = q_net(hp).apply(jax.lax.stop_gradient(critic_params["q"]), obs, actions).min(0)
  q_term = -jnp.mean(q)
  if hp.gamma_ent == 0.0:
    ent = jnp.zeros(())
  elif hp.entropy_term == "nll":
    ent = jnp.mean(data_nll(policy_params, hp, obs, batch.actions))
  else:
    ent = jnp.mean(log_prob)
  loss = hp.trust_region_weight * tr + q_term + hp.gamma_ent * ent
  return loss, {"policy_loss": loss, "trust_region_loss": tr, "policy_q": -q_term,
                "entropy_term": ent}


# ----------------------------------------------------------------------------- update
def update(state: DTQLState, batch: Transitions, key: jax.Array):
  """One DTQL step: critic -> diffusion BC -> one-step policy -> Polyak (official order)."""
  hp = state.hp
  k_bc, k_pi = jax.random.split(key)

  g_c, c_info = jax.grad(critic_loss, has_aux=True)(
      state.critic.params, state.target_critic_params, hp, batch)
  critic = state.critic.apply_gradients(grads=g_c)

  bc_value, g_bc = jax.value_and_grad(diffusion_loss)(
      state.bc.params, hp, batch.actions, batch.observations, k_bc)
  bc = state.bc.apply_gradients(grads=g_bc)

  def policy_step(policy: TrainState):
    g, info = jax.grad(policy_loss, has_aux=True)(
        policy.params, bc.params, critic.params, hp, batch, k_pi)
    return policy.apply_gradients(grads=g), info

  if hp.pretrain_steps > 0:
    info_shape = jax.eval_shape(policy_step, state.policy)[1]
    skip = lambda p: (p, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), info_shape))
    pretraining = state.step < hp.pretrain_steps
    policy, pi_info = jax.lax.cond(pretraining, skip, policy_step, state.policy)
  else:
    pretraining = jnp.zeros((), bool)
    policy, pi_info = policy_step(state.policy)

  target = polyak(state.target_critic_params, critic.params, hp.tau)
  if hp.pretrain_steps > 0 and not hp.polyak_during_pretrain:
    # Official: the target critic only starts moving with the main phase.
    target = jax.tree.map(lambda old, new: jnp.where(pretraining, old, new),
                          state.target_critic_params, target)
  state = state.replace(bc=bc, policy=policy, critic=critic, target_critic_params=target)
  metrics = {**c_info, "bc_loss": bc_value, **pi_info,
             "pretraining": pretraining.astype(jnp.float32)}
  return state, metrics


# ----------------------------------------------------------------------------- act
def _act_leaves(hp: common.Hyper) -> tuple[str, ...]:
  """The float leaves of `hp` that acting reads under its static settings."""
  names = []
  if hp.num_candidates > 1 and hp.candidate_selection == "softmax":
    names.append("candidate_temperature")
  if hp.policy == "implicit":
    names.append("generation_sigma")
  return tuple(names)


def act_params(state: DTQLState) -> dict:
  """Only what acting reads: the one-step policy, the target twin Q when the max-Q trick is on
  (num_candidates > 1), and under "hp" the float hyperparameters acting uses (candidate
  temperature, implicit generator's noise scale). Passing these few leaves to a jitted acting
  function instead of the whole training state (~160 leaves with the optimiser states) halves
  the per-call dispatch cost at batch 1 (docs/performance.md)."""
  hp = state.hp
  p = {"policy": state.policy.params}
  if hp.num_candidates > 1:
    p["q"] = state.target_critic_params["q"]
  names = _act_leaves(hp)
  if names:
    p["hp"] = {n: getattr(hp, n) for n in names}
  return p


def policy_params(state: DTQLState) -> dict:
  """The one-step policy's parameters (alias of `act_params`, the name acting callers use)."""
  return act_params(state)


def _acting_hyper(params: dict, hp: common.Hyper) -> common.Hyper:
  """`hp`'s static fields with only the float leaves carried by `params` (no other values)."""
  return common.Hyper(dict(params.get("hp", {})), dict(hp.static_key[1]))


def act_from_params(params: dict, hp: common.Hyper, obs: jax.Array, key: jax.Array,
                    deterministic: bool = True) -> jax.Array:
  """`act` on `act_params(state)`: (B, obs) -> clipped (B, act). Only the static fields of `hp`
  are read; the float hyperparameters come from `params["hp"]`."""
  hp = _acting_hyper(params, hp)
  n = hp.num_candidates
  if n == 1:
    if deterministic:
      a = policy_mode(params["policy"], hp, obs)
    else:
      a = sample_policy(params["policy"], hp, obs, key)
    return jnp.clip(a, -hp.max_action, hp.max_action)
  # Max-Q trick (paper Sec. 4, official sample_action): N candidates per state, scored by the
  # min of the target twin Q; pick by softmax sampling (paper) or argmax.
  k_cand, k_pick = jax.random.split(key)
  b = obs.shape[0]
  obs_rep = common.repeat_obs(obs, n, flat=True)  # (B * N, obs)
  cand = sample_policy(params["policy"], hp, obs_rep, k_cand)
  q = q_net(hp).apply(params["q"], obs_rep, cand).min(0).reshape(b, n)
  if hp.candidate_selection == "argmax":
    idx = jnp.argmax(q, axis=1)
  else:
    idx = jax.random.categorical(k_pick, q / hp.candidate_temperature, axis=1)
  a = jnp.take_along_axis(cand.reshape(b, n, -1), idx[:, None, None], axis=1)[:, 0]
  return jnp.clip(a, -hp.max_action, hp.max_action)


def act(state: DTQLState, observations: jax.Array, key: jax.Array,
        deterministic: bool = True) -> jax.Array:
  """One-step policy actions for (B, obs) or (obs,) observations.

  With num_candidates == 1, `deterministic` picks tanh(mean) instead of a sample. With
  num_candidates > 1 the candidates are policy samples and `candidate_selection` decides
  (softmax sampling is stochastic by design: it is how the paper evaluates). For a loop of
  small calls (evaluation, batch-1 acting) use `make_act_fn`, which takes only `act_params`.
  """
  single = observations.ndim == 1
  obs = observations[None] if single else observations
  a = act_from_params(act_params(state), state.hp, obs, key, deterministic)
  return a[0] if single else a


def make_act_fn(hp: common.Hyper, deterministic: bool = True):
  """A jitted `(params, obs, key, step=0) -> actions` for `params = act_params(state)`.

  `obs` is (B, obs_dim) or (obs_dim,); the key used is `fold_in(key, step)`, computed inside the
  jit, so a per-environment-step key costs nothing extra (an eager `fold_in` outside jit costs
  a separate dispatch, more than the policy itself at batch 1). Same actions as
  `act(state, obs, fold_in(key, step), deterministic)`. Cached per (hp.static_key,
  deterministic): states that differ only in float hyperparameters share one compiled
  function (their values travel in `params["hp"]`).
  """
  return _make_act_fn(hp.static_key, deterministic)


@functools.lru_cache(maxsize=None)
def _make_act_fn(static_key: tuple, deterministic: bool):
  hp = common.Hyper({}, dict(static_key[1]))  # static fields only: no value is baked in

  @jax.jit
  def fn(params, observations, key, step=0):
    single = observations.ndim == 1
    obs = observations[None] if single else observations
    a = act_from_params(params, hp, obs, jax.random.fold_in(key, step), deterministic)
    return a[0] if single else a

  return fn


def sample_diffusion_policy(state: DTQLState, observations: jax.Array, key: jax.Array,
                            num_steps: int = 50) -> jax.Array:
  """Sample the diffusion BC policy mu_theta(a|s) with `num_steps` deterministic Heun steps.

  DTQL never does this in training or acting; it is the multi-step baseline that one-step
  inference replaces (latency benchmark, toy plots). 2 num_steps - 1 denoiser evaluations.
  """
  hp = state.hp
  single = observations.ndim == 1
  obs = observations[None] if single else observations
  cfg = samplers.SamplerConfig(num_steps=num_steps, sigma_min=hp.sigma_min,
                               sigma_max=hp.sigma_max, s_churn=0.0)
  a = samplers.heun_sample(make_denoiser(state.bc.params, hp), key,
                           (obs.shape[0], hp.act_dim), cfg, cond=obs)
  a = jnp.clip(a, -hp.max_action, hp.max_action)
  return a[0] if single else a


def sigma_quantile(hp: common.Hyper, u: jax.Array) -> jax.Array:
  """Inverse CDF of the training-noise distribution (`sigma_fn`) at u in [0, 1]."""
  loc = math.log(hp.sigma_data)
  f_lo = jax.nn.sigmoid((math.log(hp.sigma_min) - loc) / hp.sigma_scale)
  f_hi = jax.nn.sigmoid((math.log(hp.sigma_max) - loc) / hp.sigma_scale)
  v = f_lo + (f_hi - f_lo) * u
  log_sigma = loc + hp.sigma_scale * (jnp.log(v) - jnp.log1p(-v))
  return jnp.clip(jnp.exp(log_sigma), hp.sigma_min, hp.sigma_max)


def trust_region_landscape(state: DTQLState, obs: jax.Array, actions: jax.Array, key: jax.Array,
                           num_draws: int = 4096, return_stderr: bool = False,
                           replicates: int = 16, chunk: int = 64):
  """Per-action trust-region loss, the expectation over (sigma, noise) estimated with
  `num_draws` draws: (B,), and with `return_stderr` also its standard error (B,).

  obs (B, obs_dim), actions (B, act_dim). Variance reduction, all unbiased: every action sees
  the same draws (common random numbers, so the landscape is smooth across actions); the draws
  form `replicates` independent groups, each stratifying sigma (one draw per equal-probability
  stratum of the training-noise distribution); the noise is antithetic (each draw averages +n
  and -n). The standard error is the spread of the replicate means / sqrt(replicates), which
  stays honest under stratification. Low values = inside the trust region (high behaviour
  density); used for the paper's Fig. 1-style landscape and in tests.
  """
  hp = state.hp
  if num_draws % replicates:
    raise ValueError(f"num_draws={num_draws} must be a multiple of replicates={replicates}")
  per = num_draws // replicates
  d = make_denoiser(state.bc.params, hp)
  k_u, k_n = jax.random.split(key)
  u = (jnp.arange(per)[None, :] + jax.random.uniform(k_u, (replicates, per))) / per
  sigmas = sigma_quantile(hp, u.reshape(-1))
  noises = jax.random.normal(k_n, (num_draws, hp.act_dim))

  def one(draw):
    sigma, noise = draw
    s = jnp.full((actions.shape[0],), sigma)

    def loss(n):
      den = d(actions + sigma * n, s, obs)
      return jnp.mean(edm.loss_weight(sigma, hp.sigma_data) * jnp.square(den - actions), axis=-1)

    return 0.5 * (loss(noise) + loss(-noise))

  per_draw = jax.lax.map(one, (sigmas, noises), batch_size=min(chunk, num_draws))  # (N, B)
  rep_means = per_draw.reshape(replicates, per, -1).mean(axis=1)  # (R, B)
  mean = rep_means.mean(axis=0)
  if not return_stderr:
    return mean
  return mean, jnp.std(rep_means, axis=0, ddof=1) / math.sqrt(replicates)
