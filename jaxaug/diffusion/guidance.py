"""Classifier-free guidance (Ho & Salimans, 2022) as a wrapper on the denoiser.

    D_w(x, sigma, c) = D_u + w (D_c - D_u),   D_c = D(x, sigma, c), D_u = D(x, sigma, null)

Guidance is applied to the denoised estimate, which is equivalent to guiding the score because
both are affine in D with the same coefficients. The conditional and unconditional passes run as
ONE network call on a batch of 2B (concatenated along the batch axis), so a sampler pays one
dispatch per evaluation. `w` is static: w == 1 needs only the conditional pass and w == 0 only
the unconditional one, so the other pass is not traced at all.

Differences from the official GTA code (on purpose, REFERENCE.md "Known bugs"):
  * the guided estimate is used in BOTH Heun stages (the official sampler guides the Euler
    stage only and corrects with D_c, so its effective guidance is neither w nor 1);
  * no condition dropout while sampling: dropout is a training-time device only (the official
    code keeps it on, silently making ~25% of guided samples unconditional).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxaug.diffusion.edm import Denoiser


def cfg(denoiser: Denoiser, guidance_scale: float) -> Denoiser:
  """A denoiser D(x, sigma, cond) applying classifier-free guidance with weight w (static)."""
  w = float(guidance_scale)

  def guided(x: jax.Array, sigma: jax.Array, cond: Any = None,
             use_cond: jax.Array | None = None) -> jax.Array:
    del use_cond  # guidance decides which passes are conditional
    b = x.shape[0]
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), (b,))
    if w == 1.0:
      return denoiser(x, sigma, cond, jnp.ones((b,), x.dtype))
    if w == 0.0:
      return denoiser(x, sigma, cond, jnp.zeros((b,), x.dtype))
    both = denoiser(
        jnp.concatenate([x, x], axis=0), jnp.concatenate([sigma, sigma], axis=0),
        jax.tree.map(lambda c: jnp.concatenate([c, c], axis=0), cond),
        jnp.concatenate([jnp.ones((b,), x.dtype), jnp.zeros((b,), x.dtype)]))
    d_c, d_u = both[:b], both[b:]
    return d_u + w * (d_c - d_u)

  return guided


def drop_condition(key: jax.Array, batch_size: int, dropout: float) -> jax.Array:
  """Training-time condition dropout: a (B,) {0,1} vector, 0 with probability `dropout`."""
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"condition dropout must be in [0, 1), got {dropout}")
  return jax.random.bernoulli(key, 1.0 - dropout, (batch_size,)).astype(jnp.float32)
