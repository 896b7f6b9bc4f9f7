"""Standard networks for the RL agents: MLPs, critic ensembles, distrax policies.

Every module is a plain `flax.linen` module; agents hold their parameters in one pytree and
call `module.apply`. Critic ensembles are `nn.vmap`ed over a leading ensemble axis so that
twin-Q (2), REDQ (10) and RLPD (10, LayerNorm) are the same code.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]


def mish(x: jax.Array) -> jax.Array:
  """Mish (Misra 2019): x * tanh(softplus(x))."""
  return x * jnp.tanh(jax.nn.softplus(x))


ACTIVATIONS: dict[str, Activation] = {
    "relu": nn.relu, "mish": mish, "gelu": nn.gelu,
    "silu": nn.silu, "tanh": jnp.tanh, "elu": nn.elu,
}


def get_activation(name: str) -> Activation:
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def sequential_orthogonal(scale: float) -> nn.initializers.Initializer:
  """flax's orthogonal initializer whose batched (vmapped) form is a loop over the batch.

  An `nn.vmap`ed ensemble (or vmapped seeds) would turn a plain orthogonal init into one
  batched LAPACK QR, on which jaxlib 0.10.x's XLA:CPU can deadlock on small machines. Under vmap
  this initializer draws each member with its own key, one after the other, which gives the
  same values as the batched QR without ever emitting it; unbatched it is the plain init.
  """
  base = nn.initializers.orthogonal(scale)

  def init(key, shape, dtype=jnp.float32):
    return jax.custom_batching.sequential_vmap(lambda k: base(k, shape, dtype))(key)

  return init


def default_init(scale: float = math.sqrt(2.0)):
  """Orthogonal init (gain sqrt 2 by default, the ReLU gain), safe under vmap."""
  return sequential_orthogonal(scale)


class MLP(nn.Module):
  """Hidden layers with activation (and optional LayerNorm / dropout); linear output layer."""

  hidden_dims: Sequence[int]
  out_dim: int | None = None
  activation: str = "relu"
  layer_norm: bool = False
  dropout_rate: float = 0.0
  orthogonal_init: bool = False
  final_scale: float = 1.0  # orthogonal scale of the output layer when orthogonal_init
  # flax's LayerNorm default; networks mirroring a PyTorch module pass torch's 1e-5.
  layer_norm_epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = get_activation(self.activation)
    kw = {"kernel_init": default_init()} if self.orthogonal_init else {}
    for h in self.hidden_dims:
      x = nn.Dense(h, **kw)(x)
      if self.dropout_rate > 0:
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      if self.layer_norm:
        x = nn.LayerNorm(epsilon=self.layer_norm_epsilon)(x)
      x = act(x)
    if self.out_dim is not None:
      kw = {"kernel_init": default_init(self.final_scale)} if self.orthogonal_init else {}
      x = nn.Dense(self.out_dim, **kw)(x)
    return x


class StateActionValue(nn.Module):
  """Q(s, a) -> scalar."""

  hidden_dims: Sequence[int] = (256, 256)
  activation: str = "relu"
  layer_norm: bool = False
  orthogonal_init: bool = False
  layer_norm_epsilon: float = 1e-6
  final_scale: float = 1.0  # orthogonal gain of the output layer (with orthogonal_init)

  @nn.compact
  def __call__(self, obs: jax.Array, actions: jax.Array) -> jax.Array:
    x = jnp.concatenate([obs, actions], axis=-1)
    return MLP(self.hidden_dims, 1, self.activation, self.layer_norm,
               orthogonal_init=self.orthogonal_init, final_scale=self.final_scale,
               layer_norm_epsilon=self.layer_norm_epsilon)(x)[..., 0]


class StateValue(nn.Module):
  """V(s) -> scalar."""

  hidden_dims: Sequence[int] = (256, 256)
  activation: str = "relu"
  layer_norm: bool = False
  orthogonal_init: bool = False

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    return MLP(self.hidden_dims, 1, self.activation, self.layer_norm,
               orthogonal_init=self.orthogonal_init)(obs)[..., 0]


class CriticEnsemble(nn.Module):
  """`num_critics` independent Q-networks; output shape (num_critics, ...batch).

  With `orthogonal_init`, hidden kernels get gain sqrt 2 and the output kernel `final_scale`
  (CQL/CORL: 1e-2), biases zero. `member_name` names the vmapped member module (default: flax's
  automatic name); the initial values depend on it, so an agent whose parameters were created
  under another name keeps its name (and with it its initial values and checkpoint layout).
  """

  num_critics: int = 2
  hidden_dims: Sequence[int] = (256, 256)
  activation: str = "relu"
  layer_norm: bool = False
  orthogonal_init: bool = False
  layer_norm_epsilon: float = 1e-6  # flax default; 1e-5 to mirror a torch.nn.LayerNorm
  final_scale: float = 1.0
  member_name: str | None = None

  @nn.compact
  def __call__(self, obs: jax.Array, actions: jax.Array) -> jax.Array:
    ensemble = nn.vmap(StateActionValue, variable_axes={"params": 0}, split_rngs={"params": True},
                       in_axes=None, out_axes=0, axis_size=self.num_critics)
    return ensemble(self.hidden_dims, self.activation, self.layer_norm,
                    self.orthogonal_init, self.layer_norm_epsilon, self.final_scale,
                    name=self.member_name)(obs, actions)


class DeterministicPolicy(nn.Module):
  """a = max_action * tanh(MLP(s)) (TD3, TD3+BC, IQL's deterministic actor)."""

  act_dim: int
  hidden_dims: Sequence[int] = (256, 256)
  max_action: float = 1.0
  activation: str = "relu"
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, obs: jax.Array, train: bool = False) -> jax.Array:
    x = MLP(self.hidden_dims, self.act_dim, self.activation, dropout_rate=self.dropout_rate)(
        obs, train=train)
    return self.max_action * jnp.tanh(x)


def tanh_gaussian(mean: jax.Array, std: jax.Array, max_action: float) -> distrax.Distribution:
  """max_action * tanh(N(mean, diag(std^2))), a distribution over the last axis."""
  base = distrax.MultivariateNormalDiag(mean, std)
  bijector = distrax.Chain([distrax.ScalarAffine(0.0, max_action), distrax.Tanh()])
  return distrax.Transformed(base, distrax.Block(bijector, 1))


class TanhGaussianPolicy(nn.Module):
  """Tanh-squashed diagonal Gaussian through distrax (SAC, CQL, REDQ, RLPD, DTQL, MCQ).

  Returns a `distrax.Distribution` over actions in [-max_action, max_action]. `log_std` is
  clipped to [log_std_min, log_std_max]; `temperature` scales the std at sampling time.
  """

  act_dim: int
  hidden_dims: Sequence[int] = (256, 256)
  max_action: float = 1.0
  log_std_min: float = -20.0
  log_std_max: float = 2.0
  activation: str = "relu"
  orthogonal_init: bool = False
  state_dependent_std: bool = True
  layer_norm: bool = False

  @nn.compact
  def __call__(self, obs: jax.Array, temperature: float = 1.0) -> distrax.Distribution:
    x = MLP(self.hidden_dims, None, self.activation, self.layer_norm,
            orthogonal_init=self.orthogonal_init)(obs)
    kw = {"kernel_init": default_init(1e-2)} if self.orthogonal_init else {}
    mean = nn.Dense(self.act_dim, **kw)(x)
    if self.state_dependent_std:
      log_std = nn.Dense(self.act_dim, **kw)(x)
    else:
      log_std = self.param("log_std", nn.initializers.zeros, (self.act_dim,))
      log_std = jnp.broadcast_to(log_std, mean.shape)
    log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
    return tanh_gaussian(mean, jnp.exp(log_std) * temperature, self.max_action)


class GaussianPolicy(nn.Module):
  """Untransformed diagonal Gaussian with tanh-bounded mean (IQL's Gaussian actor in CORL)."""

  act_dim: int
  hidden_dims: Sequence[int] = (256, 256)
  max_action: float = 1.0
  log_std_min: float = -20.0
  log_std_max: float = 2.0
  activation: str = "relu"
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, obs: jax.Array, temperature: float = 1.0,
               train: bool = False) -> distrax.Distribution:
    mean = MLP(self.hidden_dims, self.act_dim, self.activation,
               dropout_rate=self.dropout_rate)(obs, train=train)
    mean = self.max_action * jnp.tanh(mean)
    log_std = self.param("log_std", nn.initializers.zeros, (self.act_dim,))
    log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
    return distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(jnp.exp(log_std) * temperature,
                                                                 mean.shape))


def polyak(target, online, tau: float):
  """target <- (1 - tau) target + tau online."""
  return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
