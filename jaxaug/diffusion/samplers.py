"""EDM samplers as pure functions under `lax.scan` (Karras et al., 2022, Algorithm 2).

All samplers take a denoiser `D(x, sigma, cond=None, use_cond=None)` (see `edm.precondition`;
wrap it with `guidance.cfg` first for classifier-free guidance). Step counts and the churn
settings shape the program, so they must be Python numbers (static under jit).

Conventions (SynthER / GTA, REFERENCE.md "EDM settings"):
  * sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < N, sigma_N = 0;
  * churn gamma_i = min(S_churn/N, sqrt(2)-1) when S_tmin <= sigma_i <= S_tmax, else 0, where N
    is the length of the *full* schedule, also when starting part-way (partial noising);
  * Heun's second-order correction on every step except the last (sigma_N = 0), which is Euler:
    2N - 1 denoiser evaluations for a full chain.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxaug.diffusion.edm import SIGMA_MAX, SIGMA_MIN, Denoiser


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """EDM sampler settings (hashable, usable as a static argument)."""

  num_steps: int = 128
  sigma_min: float = SIGMA_MIN
  sigma_max: float = SIGMA_MAX
  rho: float = 7.0
  s_churn: float = 80.0
  s_tmin: float = 0.05
  s_tmax: float = 50.0
  s_noise: float = 1.003

  def __post_init__(self):
    if self.num_steps < 1:
      raise ValueError(f"SamplerConfig.num_steps must be >= 1, got {self.num_steps}")
    if not 0 < self.sigma_min < self.sigma_max:
      raise ValueError(f"SamplerConfig needs 0 < sigma_min < sigma_max, got "
                       f"{self.sigma_min}, {self.sigma_max}")

  def deterministic(self) -> "SamplerConfig":
    """The same schedule without churn (a deterministic probability-flow ODE solver)."""
    return dataclasses.replace(self, s_churn=0.0)


def edm_sigmas(num_steps: int = 128, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
               rho: float = 7.0) -> jax.Array:
  """The EDM noise schedule: num_steps decreasing levels from sigma_max to sigma_min, then 0."""
  i = jnp.arange(num_steps, dtype=jnp.float32)
  denom = max(num_steps - 1, 1)
  inv = 1.0 / rho
  s = (sigma_max**inv + i / denom * (sigma_min**inv - sigma_max**inv))**rho
  return jnp.concatenate([s, jnp.zeros((1,), jnp.float32)])


def partial_start_index(num_steps: int, noising_ratio: float) -> int:
  """GTA's k = int(N (1 - mu)): the schedule index a partially noised input starts from."""
  if not 0.0 <= noising_ratio <= 1.0:
    raise ValueError(f"noising_ratio must be in [0, 1], got {noising_ratio}")
  return int(num_steps * (1.0 - noising_ratio))


def _gammas(sigmas: jax.Array, cfg: SamplerConfig) -> jax.Array:
  g = min(cfg.s_churn / cfg.num_steps, math.sqrt(2.0) - 1.0)
  in_range = (sigmas >= cfg.s_tmin) & (sigmas <= cfg.s_tmax)
  return jnp.where(in_range, g, 0.0)


def _run_chain(denoiser: Denoiser, x: jax.Array, key: jax.Array, start: int,
               cfg: SamplerConfig, cond: Any) -> jax.Array:
  """Run schedule steps start..N-1 from x (already at noise level sigma_start)."""
  sigmas = edm_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
  n = cfg.num_steps - start
  if n <= 0:
    return x
  cur = sigmas[start:cfg.num_steps]
  nxt = sigmas[start + 1:cfg.num_steps + 1]
  gam = _gammas(cur, cfg)
  keys = jax.random.split(key, n)

  def d_of(xx, s):
    return (xx - denoiser(xx, jnp.full((xx.shape[0],), s, xx.dtype), cond)) / s

  def churn(x, s, g, k):
    s_hat = s * (1.0 + g)
    eps = jax.random.normal(k, x.shape, x.dtype) * cfg.s_noise
    return x + jnp.sqrt(jnp.maximum(s_hat**2 - s**2, 0.0)) * eps, s_hat

  def heun_step(x, inp):
    s, s_next, g, k = inp
    x_hat, s_hat = churn(x, s, g, k)
    d = d_of(x_hat, s_hat)
    x_eul = x_hat + (s_next - s_hat) * d
    d2 = d_of(x_eul, s_next)
    return x_hat + (s_next - s_hat) * 0.5 * (d + d2), None

  if n > 1:
    x, _ = jax.lax.scan(heun_step, x, (cur[:-1], nxt[:-1], gam[:-1], keys[:-1]))
  # Last step to sigma = 0: Euler (the Heun correction would divide by zero).
  x_hat, s_hat = churn(x, cur[-1], gam[-1], keys[-1])
  return x_hat + (nxt[-1] - s_hat) * d_of(x_hat, s_hat)


def heun_sample(denoiser: Denoiser, key: jax.Array, shape: tuple[int, ...],
                cfg: SamplerConfig = SamplerConfig(), cond: Any = None) -> jax.Array:
  """Sample from pure noise (sigma_max) with Heun + churn; 2N - 1 denoiser evaluations."""
  k0, k1 = jax.random.split(key)
  x = jax.random.normal(k0, shape) * cfg.sigma_max
  return _run_chain(denoiser, x, k1, 0, cfg, cond)


def deterministic_sample(denoiser: Denoiser, key: jax.Array, shape: tuple[int, ...],
                         cfg: SamplerConfig = SamplerConfig(), cond: Any = None) -> jax.Array:
  """Heun without churn: only the initial noise is random."""
  return heun_sample(denoiser, key, shape, cfg.deterministic(), cond)


def from_partial_noise(denoiser: Denoiser, key: jax.Array, x_real: jax.Array,
                       noising_ratio: float, cfg: SamplerConfig = SamplerConfig(),
                       cond: Any = None) -> jax.Array:
  """GTA's partial noising and denoising (GTA Sec. 4.2, Eqs. 12-13).

  k = int(N (1 - mu)); x_k = x_real + sigma_k eps; then the remaining N - k steps of the schedule
  (mu = 0.5, N = 128: sigma_k = 2.43, 64 steps). mu = 1 starts at sigma_max (plain sampling
  seeded with x_real); a mu small enough that k = N returns x_real unchanged.
  """
  k = partial_start_index(cfg.num_steps, noising_ratio)
  sigmas = edm_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
  k0, k1 = jax.random.split(key)
  x = x_real + sigmas[k] * jax.random.normal(k0, x_real.shape, x_real.dtype)
  return _run_chain(denoiser, x, k1, k, cfg, cond)


def num_evaluations(cfg: SamplerConfig, noising_ratio: float = 1.0) -> int:
  """Denoiser evaluations of one chain (before guidance doubling)."""
  n = cfg.num_steps - partial_start_index(cfg.num_steps, noising_ratio)
  return max(2 * n - 1, 0)
