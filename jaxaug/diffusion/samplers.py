"""EDM samplers as pure functions under `lax.scan` (Karras et al., 2022, Algorithm 2).

All samplers take a denoiser `D(x, sigma, cond=None, use_cond=None)` (see `edm.precondition`).
Step counts, churn settings and the guidance scale shape the program, so they must be Python
numbers (static under jit).

Conventions (SynthER / GTA official samplers; docs/methods/edm.md):
  * sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < N, sigma_N = 0;
  * churn gamma_i = min(S_churn/N, sqrt(2)-1) when S_tmin <= sigma_i <= S_tmax, else 0, where N
    is the length of the *full* schedule, also when starting part-way (partial noising);
  * Heun's second-order correction on every step except the last (sigma_N = 0), which is Euler:
    2N - 1 denoiser evaluations for a full chain.

Classifier-free guidance (`guidance_scale=w`, with `cond`) has two modes, chosen by
`SamplerConfig.guide_correction`:
  * False (GTA's official sampler): the Euler stage uses D_u + w (D_c - D_u) (conditional and
    unconditional passes in one 2B-batch call, also at w = 1); the Heun correction uses D_c alone
    (D_u when w = 0). 3 evaluations per Heun step, 3n - 1 for n steps (191 at n = 64).
  * True (jaxaug): the guided estimate in both stages (`guidance.cfg`); 2 (2n - 1) evaluations,
    half that at w in {0, 1} where one pass is skipped.
`SamplerConfig.cond_dropout` > 0 drops the condition of each conditional pass with that
probability, row by row (GTA's official network keeps its training-time condition dropout on
while sampling).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxaug.diffusion import guidance
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
  # Guidance in both Heun stages (jaxaug) instead of the Euler stage only (official GTA).
  guide_correction: bool = False
  # Probability that a conditional pass drops its condition (official GTA: the training dropout).
  cond_dropout: float = 0.0

  def __post_init__(self):
    if self.num_steps < 1:
      raise ValueError(f"SamplerConfig.num_steps must be >= 1, got {self.num_steps}")
    if not 0 < self.sigma_min < self.sigma_max:
      raise ValueError(f"SamplerConfig needs 0 < sigma_min < sigma_max, got "
                       f"{self.sigma_min}, {self.sigma_max}")
    if not 0.0 <= self.cond_dropout < 1.0:
      raise ValueError(f"SamplerConfig.cond_dropout must be in [0, 1), got {self.cond_dropout}")

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


# A stage function f(x, sigma (B,), key) -> denoised estimate; the key draws condition dropout.
Stage = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _stages(denoiser: Denoiser, cfg: SamplerConfig, cond: Any,
            guidance_scale: float | None) -> tuple[Stage, Stage]:
  """The denoised estimates used by the Euler stage and by the Heun correction."""
  p = cfg.cond_dropout if cond is not None else 0.0

  def keep(key, b, dtype):  # use_cond of a conditional pass
    if p > 0.0:
      return guidance.drop_condition(key, b, p).astype(dtype)
    return jnp.ones((b,), dtype)

  if guidance_scale is None:
    def plain(x, s, key):
      return denoiser(x, s, cond, None if p == 0.0 else keep(key, x.shape[0], x.dtype))
    return plain, plain

  w = float(guidance_scale)
  if cond is None:
    raise ValueError("classifier-free guidance (guidance_scale set) needs a condition `cond`")

  def conditional(x, s, key):
    return denoiser(x, s, cond, keep(key, x.shape[0], x.dtype))

  def unconditional(x, s, key):
    del key
    return denoiser(x, s, cond, jnp.zeros((x.shape[0],), x.dtype))

  def guided_both_passes(x, s, key):  # one 2B-batch call, computed for every w
    b = x.shape[0]
    use = jnp.concatenate([keep(key, b, x.dtype), jnp.zeros((b,), x.dtype)])
    both = denoiser(jnp.concatenate([x, x]), jnp.concatenate([s, s]),
                    jax.tree.map(lambda c: jnp.concatenate([c, c]), cond), use)
    d_c, d_u = both[:b], both[b:]
    return d_u + w * (d_c - d_u)

  if not cfg.guide_correction:
    # Official GTA: guidance on the Euler stage only; the correction's pass is conditional
    # (unconditional at w = 0).
    return guided_both_passes, (unconditional if w == 0.0 else conditional)

  # jaxaug: the guided estimate in both stages; w in {0, 1} needs a single pass.
  if w == 1.0:
    return conditional, conditional
  if w == 0.0:
    return unconditional, unconditional
  return guided_both_passes, guided_both_passes


def sample_from(denoiser: Denoiser, key: jax.Array, x: jax.Array, start: int,
                cfg: SamplerConfig = SamplerConfig(), cond: Any = None,
                guidance_scale: float | None = None) -> jax.Array:
  """Run schedule steps start..N-1 from x (already at noise level sigma_start)."""
  sigmas = edm_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
  n = cfg.num_steps - start
  if n <= 0:
    return x
  cur = sigmas[start:cfg.num_steps]
  nxt = sigmas[start + 1:cfg.num_steps + 1]
  gam = _gammas(cur, cfg)
  keys = jax.random.split(key, n)
  first, second = _stages(denoiser, cfg, cond, guidance_scale)

  def d_of(stage, xx, s, k):
    return (xx - stage(xx, jnp.full((xx.shape[0],), s, xx.dtype), k)) / s

  def churn(x, s, g, k):
    # sqrt(s_hat^2 - s^2) written as s sqrt(g (2 + g)): exactly 0 at g = 0 (the difference of
    # squares is not, once XLA fuses it into a multiply-add).
    eps = jax.random.normal(k, x.shape, x.dtype) * cfg.s_noise
    return x + s * jnp.sqrt(g * (2.0 + g)) * eps, s * (1.0 + g)

  def heun_step(x, inp):
    s, s_next, g, k = inp
    x_hat, s_hat = churn(x, s, g, k)
    d = d_of(first, x_hat, s_hat, jax.random.fold_in(k, 1))
    x_eul = x_hat + (s_next - s_hat) * d
    d2 = d_of(second, x_eul, s_next, jax.random.fold_in(k, 2))
    return x_hat + (s_next - s_hat) * 0.5 * (d + d2), None

  if n > 1:
    x, _ = jax.lax.scan(heun_step, x, (cur[:-1], nxt[:-1], gam[:-1], keys[:-1]))
  # Last step to sigma = 0: Euler (the Heun correction would divide by zero).
  x_hat, s_hat = churn(x, cur[-1], gam[-1], keys[-1])
  return x_hat + (nxt[-1] - s_hat) * d_of(first, x_hat, s_hat, jax.random.fold_in(keys[-1], 1))


def heun_sample(denoiser: Denoiser, key: jax.Array, shape: tuple[int, ...],
                cfg: SamplerConfig = SamplerConfig(), cond: Any = None,
                guidance_scale: float | None = None) -> jax.Array:
  """Sample from pure noise (sigma_max) with Heun + churn; 2N - 1 denoiser evaluations."""
  k0, k1 = jax.random.split(key)
  x = jax.random.normal(k0, shape) * cfg.sigma_max
  return sample_from(denoiser, k1, x, 0, cfg, cond, guidance_scale)


def deterministic_sample(denoiser: Denoiser, key: jax.Array, shape: tuple[int, ...],
                         cfg: SamplerConfig = SamplerConfig(), cond: Any = None,
                         guidance_scale: float | None = None) -> jax.Array:
  """Heun without churn: only the initial noise (and condition dropout, if any) is random."""
  return heun_sample(denoiser, key, shape, cfg.deterministic(), cond, guidance_scale)


def from_partial_noise(denoiser: Denoiser, key: jax.Array, x_real: jax.Array,
                       noising_ratio: float, cfg: SamplerConfig = SamplerConfig(),
                       cond: Any = None, guidance_scale: float | None = None) -> jax.Array:
  """GTA's partial noising and denoising (GTA Sec. 4.2, Eqs. 12-13).

  k = int(N (1 - mu)); x_k = x_real + sigma_k eps; then the remaining N - k steps of the schedule
  (mu = 0.5, N = 128: sigma_k = 2.43, 64 steps). mu = 1 starts from pure noise sigma_max eps,
  without x_real, as the official sampler does; a mu small enough that k = N returns x_real
  unchanged.
  """
  k = partial_start_index(cfg.num_steps, noising_ratio)
  sigmas = edm_sigmas(cfg.num_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
  k0, k1 = jax.random.split(key)
  eps = jax.random.normal(k0, x_real.shape, x_real.dtype)
  x = sigmas[0] * eps if noising_ratio == 1.0 else x_real + sigmas[k] * eps
  return sample_from(denoiser, k1, x, k, cfg, cond, guidance_scale)


def num_evaluations(cfg: SamplerConfig, noising_ratio: float = 1.0,
                    guidance_scale: float | None = None) -> int:
  """Denoiser evaluations per item of one chain, counting each guided pass.

  Without guidance 2n - 1 for n steps. With guidance (see the module docstring): 3n - 1 in the
  official mode; 2 (2n - 1) with guide_correction (2n - 1 at w in {0, 1}).
  """
  n = cfg.num_steps - partial_start_index(cfg.num_steps, noising_ratio)
  if n <= 0:
    return 0
  if guidance_scale is None:
    return 2 * n - 1
  if not cfg.guide_correction:
    return 3 * n - 1
  return (2 * n - 1) * (1 if float(guidance_scale) in (0.0, 1.0) else 2)


def sampler_config(config) -> SamplerConfig:
  """The SamplerConfig of a generator config (configs/gta.py, configs/synther.py).

  Reads `config.sampler` (schedule, churn, `guide_correction`, `no_sampling_dropout`) and
  `config.diffusion.cond_dropout`: unless `sampler.no_sampling_dropout`, conditional passes keep
  the training condition dropout, as the official GTA network does.
  """
  s = config.sampler
  no_drop = bool(s.get("no_sampling_dropout", True))
  return SamplerConfig(
      num_steps=int(s.num_steps), sigma_min=float(s.sigma_min), sigma_max=float(s.sigma_max),
      rho=float(s.rho), s_churn=float(s.s_churn), s_tmin=float(s.s_tmin),
      s_tmax=float(s.s_tmax), s_noise=float(s.s_noise),
      guide_correction=bool(s.get("guide_correction", False)),
      cond_dropout=0.0 if no_drop else float(config.diffusion.cond_dropout))
