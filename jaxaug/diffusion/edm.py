"""EDM (Karras et al., 2022) preconditioning, training-noise distributions and loss.

Functions, not classes. A *raw network* is any function

    raw_net(x_in, c_noise, cond, use_cond) -> F(x)      # x_in, F: (B, ...) ; c_noise: (B,)

and `precondition` wraps it into the *denoiser*

    D(x, sigma, cond=None, use_cond=None) = c_skip x + c_out F(c_in x, c_noise, cond, use_cond)

(EDM Table 1, "Ours" column). `use_cond` is a (B,) {0,1} vector: 0 swaps the condition for
the network's null embedding (classifier-free guidance); None means "all conditional".

A *sigma function* has the signature `sigma_fn(key, shape) -> sigma` and draws training noise
levels; `lognormal` (EDM / SynthER / GTA) and `truncated_loglogistic` (DTQL) are provided.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

RawNet = Callable[..., jax.Array]
Denoiser = Callable[..., jax.Array]
SigmaFn = Callable[[jax.Array, tuple[int, ...]], jax.Array]

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0


# --- Preconditioning (EDM Table 1) -------------------------------------------------------------

def c_skip(sigma: jax.Array, sigma_data: float) -> jax.Array:
  return sigma_data**2 / (sigma**2 + sigma_data**2)


def c_out(sigma: jax.Array, sigma_data: float) -> jax.Array:
  return sigma * sigma_data / jnp.sqrt(sigma**2 + sigma_data**2)


def c_in(sigma: jax.Array, sigma_data: float) -> jax.Array:
  return 1.0 / jnp.sqrt(sigma**2 + sigma_data**2)


def c_noise(sigma: jax.Array) -> jax.Array:
  return jnp.log(sigma) / 4.0


def loss_weight(sigma: jax.Array, sigma_data: float) -> jax.Array:
  """EDM's lambda(sigma) = 1 / c_out^2 = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
  return (sigma**2 + sigma_data**2) / (sigma * sigma_data)**2


def _expand(v: jax.Array, x: jax.Array) -> jax.Array:
  """Broadcast a per-sample (B,) (or scalar) value against x of shape (B, ...)."""
  v = jnp.asarray(v, x.dtype)
  if v.ndim == 0:
    v = jnp.full((x.shape[0],), v, x.dtype)
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def precondition(raw_net_fn: RawNet, sigma_data: float = 1.0) -> Denoiser:
  """Wrap a raw network into the EDM denoiser D(x, sigma, cond=None, use_cond=None)."""
  if sigma_data <= 0:
    raise ValueError(f"precondition: sigma_data must be positive, got {sigma_data}")

  def denoiser(x: jax.Array, sigma: jax.Array, cond: Any = None,
               use_cond: jax.Array | None = None) -> jax.Array:
    s = _expand(sigma, x)
    s_flat = s.reshape(x.shape[0])
    f = raw_net_fn(c_in(s, sigma_data) * x, c_noise(s_flat), cond, use_cond)
    return c_skip(s, sigma_data) * x + c_out(s, sigma_data) * f

  return denoiser


# --- Training noise distributions ----------------------------------------------------------------

def lognormal(key: jax.Array, shape: tuple[int, ...], p_mean: float = -1.2,
              p_std: float = 1.2) -> jax.Array:
  """ln sigma ~ N(P_mean, P_std^2) (EDM Sec. 5, used by SynthER and GTA)."""
  return jnp.exp(p_mean + p_std * jax.random.normal(key, shape))


def truncated_loglogistic(key: jax.Array, shape: tuple[int, ...], loc: float = math.log(0.5),
                          scale: float = 0.5, sigma_min: float = SIGMA_MIN,
                          sigma_max: float = SIGMA_MAX) -> jax.Array:
  """ln sigma ~ Logistic(loc, scale) truncated to [sigma_min, sigma_max] (DTQL).

  Inverse-CDF sampling: u ~ U[F(sigma_min), F(sigma_max)], ln sigma = loc + scale logit(u).
  logit is evaluated as log(u) - log1p(-u), which keeps float32 accurate near both ends (DTQL
  uses float64 for the same reason); the result is clipped to the range against rounding.
  """
  f_lo = jax.nn.sigmoid((math.log(sigma_min) - loc) / scale)
  f_hi = jax.nn.sigmoid((math.log(sigma_max) - loc) / scale)
  u = jax.random.uniform(key, shape, minval=f_lo, maxval=f_hi)
  log_sigma = loc + scale * (jnp.log(u) - jnp.log1p(-u))
  return jnp.clip(jnp.exp(log_sigma), sigma_min, sigma_max)


SIGMA_FNS: dict[str, Callable[..., jax.Array]] = {
    "lognormal": lognormal, "truncated_loglogistic": truncated_loglogistic}


def make_sigma_fn(name: str = "lognormal", **kwargs) -> SigmaFn:
  """A sigma function by name with its parameters bound (e.g. p_mean=-1.2, p_std=1.2)."""
  if name not in SIGMA_FNS:
    raise ValueError(f"unknown training noise distribution {name!r}; expected one of "
                     f"{sorted(SIGMA_FNS)}")
  return functools.partial(SIGMA_FNS[name], **kwargs)


# --- Loss (EDM Eq. 2 with lambda = 1/c_out^2) -------------------------------------------------------

def edm_loss(denoiser: Denoiser, x0: jax.Array, key: jax.Array, cond: Any = None,
             mask: jax.Array | None = None, sigma_fn: SigmaFn = lognormal,
             sigma_data: float = 1.0, use_cond: jax.Array | None = None,
             return_per_sample: bool = False, mask_mean_counted: bool = False):
  """Weighted denoising loss: lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2.

  Averaged over data dimensions, then over the batch (SynthER / GTA). `mask` (broadcastable to
  x0, 1 = counted) zeroes the error of the entries it leaves out, e.g. GTA's unused action/reward
  entries of its last row; the average still runs over all entries, as in the official GTA code,
  unless `mask_mean_counted` (then over the counted entries only).
  """
  k_sigma, k_noise = jax.random.split(key)
  sigma = sigma_fn(k_sigma, (x0.shape[0],))
  noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
  s = _expand(sigma, x0)
  d = denoiser(x0 + s * noise, sigma, cond, use_cond)
  err = loss_weight(s, sigma_data) * jnp.square(d - x0)
  axes = tuple(range(1, x0.ndim))
  if mask is None:
    per_sample = jnp.mean(err, axis=axes)
  else:
    m = jnp.broadcast_to(jnp.asarray(mask, x0.dtype), x0.shape)
    if mask_mean_counted:
      per_sample = jnp.sum(err * m, axis=axes) / jnp.maximum(jnp.sum(m, axis=axes), 1.0)
    else:
      per_sample = jnp.mean(err * m, axis=axes)
  loss = jnp.mean(per_sample)
  if return_per_sample:
    return loss, per_sample
  return loss
