"""GTA: Generative Trajectory Augmentation (Lee et al., NeurIPS 2024).

Stage A (GTA Sec. 4.1): a return-conditioned EDM diffusion model over windows of H rows
[s, a, r~] (jaxaug.data.windows), MixerUnet denoiser, condition dropout 0.25 in training.
Stage B (Sec. 4.2): draw real windows (uniformly, or reweighted, Sec. 4.4 / App. A.3), noise them
partially to sigma_k with k = int(N (1 - noising_ratio)), and denoise the remaining steps with
classifier-free guidance on the *amplified* return (Eq. 11):
    y' = return_multiplier * y  if y > 0,   (2 - return_multiplier) * y  if y <= 0.
Stage C: the output is an OfflineDataset of generated transitions for any offline RL agent,
concatenated with the real data (GTA's way).

Reweighted drawing of the source windows (`config.gta.reweight`):
  * 'return_bins' (dense rewards): `reweight_probabilities`, the official formula;
  * 'success_episodes' (maze datasets): an episode is drawn by weight, then a window uniformly
    inside it. The official code means to give successful episodes `success_weight` and the
    others 1, but assigns the weights in an order that gives every episode the same weight
    (`success_episode_probabilities`); `gta.fix_success_weighting` applies the intended weights.

Where jaxaug differs from the official code, and the switch that controls it, is listed in
docs/methods/gta.md.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxaug.augment import chunks
from jaxaug.data import windows
from jaxaug.data.dataset import OfflineDataset
from jaxaug.diffusion import samplers
from jaxaug.diffusion import train as dtrain


def amplify_returns(y: jax.Array, return_multiplier: float) -> jax.Array:
  """GTA Eq. 11: push the condition up by alpha (down-weighting negatives by 2 - alpha)."""
  return jnp.where(y > 0, y * return_multiplier, y * (2.0 - return_multiplier))


def reweight_probabilities(returns: np.ndarray, num_bins: int = 50, smoothing: float = 1e-3,
                           temperature: float = 5.0, clip: float = 5.0) -> np.ndarray:
  """Per-window sampling weights from window returns (GTA App. A.3, after DDOM).

  The returns are split into `num_bins` equal-width bins with frequencies h_b (fractions).
  Bin b gets mass p_b propto exp(u_b / temperature) * h_b / (h_b + smoothing), u_b its upper
  edge (high-return bins favoured, near-empty bins damped); a window in bin b gets weight
  p_b / h_b (so that bins, not windows, are drawn with p), clipped to [0, clip]. The 1e-7
  guards are the official code's. Returns the weights normalised to sum 1.
  """
  y = np.asarray(returns, np.float64)
  if y.ndim != 1 or len(y) == 0:
    raise ValueError(f"reweighting needs a non-empty 1-D array of window returns, got {y.shape}")
  if isinstance(num_bins, bool) or int(num_bins) != num_bins or num_bins < 1:
    raise ValueError(f"config.gta.reweight_bins must be a positive integer, got {num_bins!r}")
  num_bins = int(num_bins)
  counts, edges = np.histogram(y, bins=num_bins)
  h = counts / counts.sum()
  logits = edges[1:] / temperature
  soft = np.exp(logits - logits.max())  # the max shift cancels in the normalisation below
  soft = soft / soft.sum()
  p = soft * h / (h + smoothing)
  p = p / (p.sum() + 1e-7)
  b = np.minimum(np.digitize(y, edges[1:]), num_bins - 1)
  w = np.clip(p[b] / (h[b] + 1e-7), 0.0, clip)
  return w / w.sum()


def success_episode_probabilities(window_episode: np.ndarray, episode_returns: np.ndarray,
                                  success_weight: float, fixed: bool = False) -> np.ndarray:
  """Per-window probabilities of GTA's sparse-reward reweighting (App. B.2).

  An episode is successful when its return is > 0. An episode is drawn with probability
  proportional to its weight, then one of its windows uniformly. With `fixed`, successful
  episodes weigh `success_weight` and the others 1 (the paper). Without (the official code),
  the weights are assigned as `w[w == 0] = 1; w[w > 0] = success_weight`: the second step also
  catches the episodes just set to 1, so every episode with a non-negative return ends up with
  the same weight.
  """
  ep = np.asarray(window_episode, np.int64)
  ret = np.asarray(episode_returns, np.float64).copy()
  if success_weight <= 0:
    raise ValueError(f"config.gta.success_weight must be > 0, got {success_weight}")
  if fixed:
    w = np.where(ret > 0, float(success_weight), 1.0)
  else:
    w = ret
    w[w == 0] = 1.0
    w[w > 0] = float(success_weight)
    # Episodes with a negative return keep it as a weight in the official code (a negative
    # weight fails there); no maze dataset has one.
    if (w < 0).any():
      raise ValueError("success_episodes reweighting: an episode has a negative return; the "
                       "official weights are undefined (set gta.fix_success_weighting=True)")
  windows_per_episode = np.bincount(ep, minlength=len(w))
  p = w[ep] / windows_per_episode[ep]
  return p / p.sum()


REWEIGHT_MODES = ("none", "return_bins", "success_episodes")


def window_probabilities(data: windows.WindowData, config) -> np.ndarray | None:
  """The source-window distribution of `config.gta.reweight` (None = uniform)."""
  g = config.gta
  mode = g.reweight
  if mode not in REWEIGHT_MODES:
    raise ValueError(f"config.gta.reweight: expected one of {REWEIGHT_MODES}, got {mode!r}")
  if mode == "return_bins":
    return reweight_probabilities(np.asarray(data.returns), num_bins=g.reweight_bins,
                                  smoothing=float(g.reweight_smoothing),
                                  temperature=float(g.reweight_temperature),
                                  clip=float(g.reweight_clip))
  if mode == "success_episodes":
    return success_episode_probabilities(np.asarray(data.window_episode),
                                         np.asarray(data.episode_returns),
                                         float(g.success_weight), bool(g.fix_success_weighting))
  return None


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
  noising_ratio: float = 0.5
  return_multiplier: float = 1.3
  guidance_scale: float = 2.0
  sampler: samplers.SamplerConfig = samplers.SamplerConfig()
  windows_per_chunk: int = 1000
  # False (official): terminals copied from the source window, generated rewards kept as they
  # are (a terminal transition keeps the penalty). True: both decoded from the reward code.
  decode_terminals: bool = False


def terminal_penalty(config) -> float:
  """The penalty GTA adds to terminal rewards: `gta.terminal_penalty`, or 0 when
  `gta.terminals_are_failures` is False (a dataset whose terminals end a demonstration or
  complete the task, like D4RL Kitchen's). Configs saved before the switch read True."""
  g = config.gta
  return float(g.terminal_penalty) if bool(g.get("terminals_are_failures", True)) else 0.0


def generation_config(config) -> GenerationConfig:
  g = config.gta
  return GenerationConfig(
      noising_ratio=float(g.noising_ratio), return_multiplier=float(g.return_multiplier),
      guidance_scale=float(g.guidance_scale),
      sampler=samplers.sampler_config(config),
      windows_per_chunk=int(config.windows_per_chunk),
      decode_terminals=bool(g.decode_terminals) and terminal_penalty(config) != 0.0)


def prepare(dataset: OfflineDataset, config) -> windows.WindowData:
  """Windows, terminal encoding, normaliser and return conditions of a dataset."""
  g = config.gta
  return windows.build_windows(dataset, horizon=int(g.horizon),
                               terminal_penalty=terminal_penalty(config),
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
  x = samplers.from_partial_noise(dtrain.denoiser(state, ema=True), k_gen, b["x"],
                                  gen.noising_ratio, gen.sampler, cond=cond,
                                  guidance_scale=gen.guidance_scale)
  src_term = None if gen.decode_terminals else windows.source_terminals(data, idx)
  out = windows.decode(data, x, b["lengths"], src_term)
  out["source_index"] = data.starts[idx]
  out["condition"] = cond[:, 0]
  return out


# Module-level jit: repeated augment() calls with the same settings reuse the compiled program.
_generate_jit = jax.jit(generate_windows, static_argnames=("gen", "batch_size", "mesh"))


def make_chunk_fn(state, data, gen: GenerationConfig, reweight: np.ndarray | None = None, mesh=None
                  ) -> Callable[[jax.Array], dict[str, np.ndarray]]:
  """chunk_fn(key) -> host arrays of the valid transitions of `windows_per_chunk` windows."""
  log_probs = None
  if reweight is not None:
    w = np.asarray(reweight)
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
  probs = window_probabilities(data, config)
  reweight = {"mode": g.reweight}
  if g.reweight == "return_bins":
    reweight.update(num_bins=int(g.reweight_bins), smoothing=float(g.reweight_smoothing),
                    temperature=float(g.reweight_temperature), clip=float(g.reweight_clip))
  elif g.reweight == "success_episodes":
    reweight.update(success_weight=float(g.success_weight),
                    fixed=bool(g.fix_success_weighting))
  made = {
      "method": "gta", "noising_ratio": gen.noising_ratio,
      "return_multiplier": gen.return_multiplier, "guidance_scale": gen.guidance_scale,
      "sampler": dataclasses.asdict(gen.sampler), "windows_per_chunk": gen.windows_per_chunk,
      "horizon": int(g.horizon), "terminal_penalty": terminal_penalty(config),
      "discount": float(g.discount), "return_scale": float(g.return_scale),
      "short_episodes": g.short_episodes, "reweight": reweight,
      "decode_terminals": gen.decode_terminals,
      "num_transitions": int(num_transitions), **(fingerprint_extra or {})}
  t0 = time.time()
  arrays = chunks.generate_in_chunks(make_chunk_fn(state, data, gen, probs, mesh), key,
                                     num_transitions, chunk_dir, made, log, max_chunks)
  meta = dict(made, generated_transitions=int(len(arrays["rewards"])),
              generated_terminals=int(arrays["terminals"].sum()),
              wall_seconds=round(time.time() - t0, 3),
              sampler_evaluations_per_window=samplers.num_evaluations(
                  gen.sampler, gen.noising_ratio, gen.guidance_scale))
  return chunks.to_dataset(arrays, meta, source="gta")
