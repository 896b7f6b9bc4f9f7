"""Online adaptation of the generators (ATraDiff Sec. 4.3).

The generators are periodically fine-tuned on real transitions from the online buffer D_o,
picked by an importance indicator (importance.py). Against catastrophic forgetting a frozen copy
of the original (offline-trained) generator is kept, and the fine-tuning loss adds a
distillation term that keeps the adapted denoiser close to the frozen one on offline windows:

    L = E_real[ w_i lambda(sigma) |D_theta(x + sigma n) - x|^2 ]
        + forgetting_weight * E_offline[ lambda(sigma) |D_theta(x + sigma n) - D_frozen(...)|^2 ]

What is fine-tuned are the parameters generation uses (the EMA parameters of the offline
learner), with their own Adam optimiser (`adapt_lr`): the offline learner's cosine schedule has
decayed to zero by then, and an EMA would hide a few hundred adaptation steps.

Real windows are cut from D_o's ring exactly like the offline windows (jaxaug.data.windows, the
same `assemble`): rows from the start row until the episode's end (terminal or timeout flag), then
the final next state with zero action and reward. A window that reaches the newest row before its episode ended is incomplete
and gets weight 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxaug.data import replay, windows
from jaxaug.diffusion import edm
from jaxaug.diffusion import train as dtrain


def real_windows(buf: replay.ReplayBuffer, rows: jax.Array, length: int):
  """Raw windows (B, length, D) starting at D_o rows, and completeness (B,) bool."""
  cap = buf.capacity
  d = buf.data
  j = jnp.arange(length)[None, :]
  r = (rows[:, None] + j) % cap  # (B, length)
  done = (d.terminals[r] > 0) | (d.timeouts[r] > 0)
  # first_end: first j whose transition ends the episode (length if none in the window)
  first_end = jnp.min(jnp.where(done, j, length), axis=1)
  # rows written after `rows` (the newest row is ptr - 1)
  age = (buf.ptr - 1 - rows) % cap
  age = jnp.where(buf.size < cap, jnp.minimum(age, buf.size - 1 - rows), age)
  complete = (jnp.minimum(first_end, length - 1) <= age) & (rows >= 0) & (rows < buf.size)
  end_row = (rows + jnp.minimum(first_end, length - 1)) % cap
  final = jnp.concatenate([d.next_observations[end_row],
                           jnp.zeros((rows.shape[0], d.actions.shape[-1] + 1), d.rewards.dtype)],
                          axis=-1)
  x = jnp.concatenate([d.observations[r], d.actions[r], d.rewards[r][..., None]], axis=-1)
  # rows after the episode's end hold the final state with zero action and reward
  return windows.assemble(x, j <= first_end[:, None], final), complete


def make_adapt_optimizer(learning_rate: float) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))


def adapt_loss(params, frozen_state: dtrain.DiffusionState, frozen_params, key,
               real_x, real_cond, real_w, anchor_x, anchor_cond, forgetting_weight: float):
  hp = frozen_state.hp
  k_real, k_sig, k_noise = jax.random.split(key, 3)
  den = dtrain.denoiser(frozen_state, params=params)
  _, per = edm.edm_loss(den, real_x, k_real, real_cond, sigma_fn=dtrain.sigma_fn(hp),
                        sigma_data=hp.sigma_data, return_per_sample=True)
  real_loss = jnp.sum(per * real_w) / jnp.maximum(jnp.sum(real_w), 1.0)
  frozen = dtrain.denoiser(frozen_state, params=frozen_params)
  sigma = dtrain.sigma_fn(hp)(k_sig, (anchor_x.shape[0],))
  s = sigma[:, None]
  noisy = anchor_x + s * jax.random.normal(k_noise, anchor_x.shape)
  target = jax.lax.stop_gradient(frozen(noisy, sigma, anchor_cond))
  distill = jnp.mean(edm.loss_weight(s, hp.sigma_data) * jnp.square(den(noisy, sigma, anchor_cond)
                                                                     - target))
  return real_loss + forgetting_weight * distill, (real_loss, distill)


def adapt_step(params, opt_state, tx, frozen_state, frozen_params, key, real_x, real_cond,
               real_w, anchor_x, anchor_cond, forgetting_weight: float):
  grads, (real_loss, distill) = jax.grad(adapt_loss, has_aux=True)(
      params, frozen_state, frozen_params, key, real_x, real_cond, real_w, anchor_x, anchor_cond,
      forgetting_weight)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, {"adapt/real_loss": real_loss,
                                                           "adapt/distill_loss": distill}


def window_batch(buf, stats, rows, weights, length: int, obs_dim: int, num_tasks: int,
                 task_id: int):
  """Normalised flat real windows + condition + weights (incomplete windows weigh 0)."""
  x, complete = real_windows(buf, rows, length)
  x = stats.normalize(x)
  b = rows.shape[0]
  cond = windows.make_condition(x[:, 0, :obs_dim], jnp.full((b,), task_id, jnp.int32), num_tasks)
  return x.reshape(b, -1), cond, weights * complete.astype(jnp.float32)
