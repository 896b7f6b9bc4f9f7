"""GTA: Generative Trajectory Augmentation (Lee et al., NeurIPS 2024).

Stage A (GTA Sec. 4.1): a return-conditioned EDM diffusion model over windows of H rows
[s, a, r~] (jaxaug.data.windows), MixerUnet denoiser, condition dropout 0.25 in training.
Stage B (Sec. 4.2): draw real windows (uniformly, or reweighted towards high returns, Sec. 4.4 /
App. A.3), noise them partially to sigma_k with k = int(N (1 - noising_ratio)), and denoise the
remaining steps with classifier-free guidance on the *amplified* return (Eq. 11):
    y' = return_multiplier * y  if y > 0,   (2 - return_multiplier) * y  if y <= 0.
Stage C: the output is an OfflineDataset of generated transitions (decoded terminals and true
rewards) for any offline RL agent, concatenated with the real data (GTA's way).

Deviations from the official code, on purpose (REFERENCE.md "Known bugs"): no condition dropout
while sampling; guidance applied in both Heun stages; true rewards in the output; short episodes
padded (configurable); reweighting works.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxaug.augment import chunks
from jaxaug.data import windows
from jaxaug.data.dataset import OfflineDataset
from jaxaug.diffusion import guidance, samplers
from jaxaug.diffusion import train as dtrain


def amplify_returns(y: jax.Array, return_multiplier: float) -> jax.Array:
  """GTA Eq. 11: push the condition up by alpha (down-weighting negatives by 2 - alpha)."""
  return jnp.where(y > 0, y * return_multiplier, y * (2.0 - return_multiplier))


def reweight_probabilities(returns: np.ndarray, num_bins: int = 50, smoothing: float = 1e-3,
                           temperature: float = 5.0, clip: float = 5.0) -> np.ndarray:
  """Per-window sampling weights (GTA App. A.3, from DDOM).

  Window returns are split into `num_bins` equal-width bins with frequencies h_b (fractions).
  Bin b gets mass p_b propto softmax(u_b / temperature) * h_b / (h_b + smoothing), u_b its upper
  edge (high-return bins favoured, near-empty bins damped); a window in bin b gets weight
  p_b / h_b (so that the bins, not the windows, are drawn with p), clipped to [0, clip].
  Returns weights normalised to sum 1.
  """
  y = np.asarray(returns, np.float64)
  if y.ndim != 1 or len(y) == 0:
    raise ValueError(f"reweighting needs a non-empty 1-D array of window returns, got {y.shape}")
  if int(num_bins) != num_bins or num_bins < 1:
    raise ValueError(f"reweight num_bins must be a positive integer, got {num_bins}")
  num_bins = int(num_bins)
  counts, edges = np.histogram(y, bins=num_bins)
  h = counts / counts.sum()
  logits = edges[1:] / temperature
  soft = np.exp(logits - logits.max())
  p = soft * h / (h + smoothing)
  p = p / p.sum()
  b = np.clip(np.digitize(y, edges[1:-1]), 0, num_bins - 1)
  w = np.clip(p[b] / np.maximum(h[b], 1e-12), 0.0, clip)
  return w / w.sum()


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
  noising_ratio: float = 0.5
  return_multiplier: float = 1.3
  guidance_scale: float = 2.0
  sampler: samplers.SamplerConfig = samplers.SamplerConfig()
  windows_per_chunk: int = 1000


def generation_config(config) -> GenerationConfig:
  g = config.gta
  s = config.sampler
  return GenerationConfig(
      noising_ratio=float(g.noising_ratio), return_multiplier=float(g.return_multiplier),
      guidance_scale=float(g.guidance_scale),
      sampler=samplers.SamplerConfig(
          num_steps=int(s.num_steps), sigma_min=float(s.sigma_min), sigma_max=float(s.sigma_max),
          rho=float(s.rho), s_churn=float(s.s_churn), s_tmin=float(s.s_tmin),
          s_tmax=float(s.s_tmax), s_noise=float(s.s_noise)),
      windows_per_chunk=int(config.windows_per_chunk))


def prepare(dataset: OfflineDataset, config) -> windows.WindowData:
  """Windows, terminal encoding, normaliser and return conditions of a dataset."""
  g = config.gta
  return windows.build_windows(dataset, horizon=int(g.horizon),
                               terminal_penalty=float(g.terminal_penalty),
                               discount=float(g.discount), return_scale=float(g.return_scale),
                               short_episodes=g.short_episodes)


def sample_batch(data: windows.WindowData, key: jax.Array, batch_size: int) -> dict:
  return windows.sample_batch(data, key, batch_size)


def generate_windows(state: dtrain.DiffusionState, data: windows.WindowData, key: jax.Array,
                     log_probs: jax.Array | None, gen: GenerationConfig, batch_size: int,
                     mesh=None) -> dict:
  """One batch of augmented windows, decoded (jittable; gen and batch_size static)."""
  k_idx, k_gen = jax.random.split(key)
  if log_probs is None:
    idx = jax.random.randint(k_idx, (batch_size,), 0, data.starts.shape[0])
  else:
    idx = jax.random.categorical(k_idx, log_probs, shape=(batch_size,))
  if mesh is not None and mesh.devices.size > 1:
    idx = jax.lax.with_sharding_constraint(idx, NamedSharding(mesh, P("data")))
  b = windows.encode(data, idx)
  cond = amplify_returns(b["cond"], gen.return_multiplier)
  den = guidance.cfg(dtrain.denoiser(state, ema=True), gen.guidance_scale)
  x = samplers.from_partial_noise(den, k_gen, b["x"], gen.noising_ratio, gen.sampler, cond=cond)
  out = windows.decode(data, x, b["lengths"])
  out["source_index"] = data.starts[idx]
  out["condition"] = cond[:, 0]
  return out


# Module-level jit: repeated augment() calls with the same settings reuse the compiled program.
_generate_jit = jax.jit(generate_windows, static_argnames=("gen", "batch_size", "mesh"))


def make_chunk_fn(state, data, gen: GenerationConfig, reweight: dict | None = None, mesh=None
                  ) -> Callable[[jax.Array], dict[str, np.ndarray]]:
  """chunk_fn(key) -> host arrays of the valid transitions of `windows_per_chunk` windows."""
  log_probs = None
  if reweight is not None:
    w = reweight_probabilities(np.asarray(data.returns), **reweight)
    with np.errstate(divide="ignore"):
      log_probs = jnp.asarray(np.log(w), jnp.float32)
  if mesh is not None and gen.windows_per_chunk % mesh.devices.size:
    raise ValueError(f"config.windows_per_chunk={gen.windows_per_chunk} must be divisible by the "
                     f"number of devices ({mesh.devices.size})")

  def chunk_fn(key):
    out = jax.device_get(_generate_jit(state, data, key, log_probs, gen, gen.windows_per_chunk,
                                       mesh))
    n = data.spec.transitions
    src = np.repeat(np.asarray(out.pop("source_index"))[:, None], n, 1) + np.arange(n)
    cond = np.repeat(np.asarray(out.pop("condition"))[:, None], n, 1)
    valid = np.asarray(out["valid"]).astype(bool)
    flat = windows.flatten_valid(out)
    flat["source_index"] = src[valid].astype(np.int64)
    flat["condition"] = cond[valid].astype(np.float32)
    return flat

  return chunk_fn


def augment(state, data: windows.WindowData, config, key: jax.Array, num_transitions: int,
            chunk_dir: str | None = None, mesh=None, log=print, fingerprint_extra: dict | None = None,
            max_chunks: int | None = None) -> OfflineDataset:
  """GTA Stage B: `num_transitions` generated transitions as an OfflineDataset.

  infos: `source_index` (index of the real transition each generated one was made from) and
  `condition` (the amplified return condition of its window).
  """
  gen = generation_config(config)
  g = config.gta
  reweight = None
  if g.reweight:
    reweight = dict(num_bins=int(g.reweight_bins), smoothing=float(g.reweight_smoothing),
                    temperature=float(g.reweight_temperature), clip=float(g.reweight_clip))
  made = {
      "method": "gta", "noising_ratio": gen.noising_ratio,
      "return_multiplier": gen.return_multiplier, "guidance_scale": gen.guidance_scale,
      "sampler": dataclasses.asdict(gen.sampler), "windows_per_chunk": gen.windows_per_chunk,
      "horizon": int(g.horizon), "terminal_penalty": float(g.terminal_penalty),
      "discount": float(g.discount), "return_scale": float(g.return_scale),
      "short_episodes": g.short_episodes, "reweight": reweight,
      "num_transitions": int(num_transitions), **(fingerprint_extra or {})}
  t0 = time.time()
  arrays = chunks.generate_in_chunks(make_chunk_fn(state, data, gen, reweight, mesh), key,
                                     num_transitions, chunk_dir, made, log, max_chunks)
  meta = dict(made, generated_transitions=int(len(arrays["rewards"])),
              generated_terminals=int(arrays["terminals"].sum()),
              wall_seconds=round(time.time() - t0, 3),
              sampler_evaluations_per_window=samplers.num_evaluations(gen.sampler,
                                                                      gen.noising_ratio)
              * (1 if gen.guidance_scale in (0.0, 1.0) else 2))
  return chunks.to_dataset(arrays, meta, source="gta")
