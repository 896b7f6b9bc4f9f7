"""The length estimator (ATraDiff Sec. 4.1): predicts from a state the trajectory length needed,
which is then rounded UP to the nearest preset generator length.

Needed length of a start state = rows a window must hold to reach the episode's end: the
remaining transitions T_rem plus the final state, T_rem + 1. Targets are clipped at
max(lengths) + 1 (anything longer only needs "the longest generator"), and the network is a
small MLP regressor on normalised states trained with MSE on the offline data.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxaug.nets.mlp import MLP


class EstimatorState(flax.struct.PyTreeNode):
  params: dict
  opt_state: optax.OptState
  net: nn.Module = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  max_target: float = flax.struct.field(pytree_node=False)  # max(lengths) + 1


def round_up_to_preset(pred: jax.Array, lengths: tuple[int, ...]) -> jax.Array:
  """Index into sorted `lengths` of the smallest preset >= pred (the largest when none is)."""
  presets = jnp.asarray(sorted(lengths), jnp.float32)
  idx = jnp.sum(presets[None, :] < jnp.asarray(pred, jnp.float32)[..., None], axis=-1)
  return jnp.minimum(idx, len(lengths) - 1).astype(jnp.int32)


def init_estimator(key: jax.Array, cond_dim: int, lengths: tuple[int, ...],
                   hidden_dims=(256, 256), learning_rate: float = 1e-3) -> EstimatorState:
  net = MLP(tuple(hidden_dims), 1)
  params = net.init(key, jnp.zeros((1, cond_dim), jnp.float32))
  tx = optax.adam(learning_rate)
  return EstimatorState(params=params, opt_state=tx.init(params), net=net, tx=tx,
                        max_target=float(max(lengths) + 1))


def predict(state: EstimatorState, cond: jax.Array) -> jax.Array:
  """Predicted needed length (rows), (B,) float, in [1, max(lengths) + 1]."""
  out = state.net.apply(state.params, cond)[..., 0]
  # Regress in units of max_target so the output scale is O(1).
  return jnp.clip(out * state.max_target, 1.0, state.max_target)


def needed_length(remaining: jax.Array, max_target: float) -> jax.Array:
  """Training target: remaining transitions + 1 (the final state), clipped."""
  return jnp.minimum(remaining.astype(jnp.float32) + 1.0, max_target)


def update(state: EstimatorState, cond: jax.Array, remaining: jax.Array):
  target = needed_length(remaining, state.max_target) / state.max_target

  def loss_fn(params):
    out = state.net.apply(params, cond)[..., 0]
    return jnp.mean(jnp.square(out - target))

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  return state.replace(params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state), loss
