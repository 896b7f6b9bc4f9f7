"""Classifier-free guidance (Ho & Salimans, 2022).

    D_w(x, sigma, c) = D_u + w (D_c - D_u),   D_c = D(x, sigma, c), D_u = D(x, sigma, null)

Guidance is applied to the denoised estimate, which is equivalent to guiding the score because
both are affine in D with the same coefficients.

The samplers (`jaxaug.diffusion.samplers`, argument `guidance_scale`) implement both guidance
modes: GTA's official one (guided Euler stage, conditional Heun correction) and jaxaug's
(`SamplerConfig.guide_correction=True`: the guided estimate in both stages). `cfg` below is the
second as a plain denoiser wrapper, for code that guides outside the samplers. It runs the
conditional and unconditional passes as ONE network call on a batch of 2B, and `w` is static:
w == 1 needs only the conditional pass and w == 0 only the unconditional one, so the other pass
is not traced at all.
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
