"""SynthER (Lu et al., NeurIPS 2023): unconditional transition-level EDM diffusion.

Rows x = [s, a, r, s', done] (D = 2 obs + act + 2). Every column except `done` is z-scored
(eps 1e-5) over the dataset; `done` stays 0/1 and generated values are thresholded at 0.5.
Denoiser: the residual MLP (jaxaug.nets.denoisers.ResidualMLP); EDM settings as GTA's (sigma_data
1, log-normal training noise, 128-step Heun with churn). Offline RL trains on the generated data
only (SynthER's way).
"""

from __future__ import annotations

import dataclasses
import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxaug.augment import chunks
from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.normalize import NormStats
from jaxaug.diffusion import samplers
from jaxaug.diffusion import train as dtrain


@dataclasses.dataclass(frozen=True)
class RowSpec:
  obs_dim: int
  act_dim: int

  @property
  def row_dim(self) -> int:
    return 2 * self.obs_dim + self.act_dim + 2


class RowData(flax.struct.PyTreeNode):
  rows: jax.Array  # (N, D) normalised rows; the done column is raw 0/1
  mean: jax.Array  # (D,) with 0 for done
  std: jax.Array  # (D,) with 1 for done
  spec: RowSpec = flax.struct.field(pytree_node=False)


def training_batch_size(config, num_transitions: int) -> int:
  """SynthER's batch rule: `synther.large_batch_size` (1024) on datasets of at least
  `synther.large_dataset_transitions` (800k) transitions, else `batch_size` (256).
  large_batch_size = 0 always uses `batch_size`."""
  big = int(config.synther.get("large_batch_size", 0))
  if big < 0:
    raise ValueError(f"config.synther.large_batch_size must be >= 0, got {big}")
  if big and num_transitions >= int(config.synther.large_dataset_transitions):
    return big
  return int(config.batch_size)


def raw_rows(dataset: OfflineDataset) -> np.ndarray:
  return np.concatenate([dataset.observations, dataset.actions, dataset.rewards[:, None],
                         dataset.next_observations, dataset.terminals[:, None]], axis=1)


def prepare(dataset: OfflineDataset, config) -> RowData:
  if len(dataset) == 0:
    raise ValueError(f"{dataset.source}: empty dataset")
  rows = raw_rows(dataset).astype(np.float64)
  stats = NormStats.fit(rows, float(config.synther.normalizer_eps), dtype=np.float64)
  mean, std = stats.mean, stats.std
  mean[-1], std[-1] = 0.0, 1.0  # done is not normalised
  z = ((rows - mean) / std).astype(np.float32)
  return RowData(rows=jnp.asarray(z), mean=jnp.asarray(mean, jnp.float32),
                 std=jnp.asarray(std, jnp.float32),
                 spec=RowSpec(dataset.obs_dim, dataset.act_dim))


def sample_batch(data: RowData, key: jax.Array, batch_size: int) -> dict:
  idx = jax.random.randint(key, (batch_size,), 0, data.rows.shape[0])
  return {"x": data.rows[idx]}


def decode(data: RowData, x: jax.Array, threshold: float = 0.5) -> dict:
  sp = data.spec
  raw = x * data.std + data.mean
  o, a = sp.obs_dim, sp.act_dim
  return {
      "observations": raw[:, :o], "actions": raw[:, o:o + a], "rewards": raw[:, o + a],
      "next_observations": raw[:, o + a + 1:2 * o + a + 1],
      "terminals": (raw[:, -1] > threshold).astype(x.dtype),
      "timeouts": jnp.zeros_like(raw[:, -1]),
  }


def generate_rows(state: dtrain.DiffusionState, data: RowData, key: jax.Array,
                  scfg: samplers.SamplerConfig, num: int, threshold: float = 0.5, mesh=None) -> dict:
  """`num` unconditional samples, decoded (jittable; all but state/data/key static)."""
  x0 = jnp.zeros((num, data.spec.row_dim), jnp.float32)
  if mesh is not None and mesh.devices.size > 1:
    # Shard the chain's starting point over 'data'; the whole chain follows it.
    x0 = jax.lax.with_sharding_constraint(
        x0, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
  # noising_ratio 1 from zeros = a full chain from sigma_max noise (as heun_sample).
  x = samplers.from_partial_noise(dtrain.denoiser(state, ema=True), key, x0, 1.0, scfg)
  return decode(data, x, threshold)


_generate_jit = jax.jit(generate_rows,
                        static_argnames=("scfg", "num", "threshold", "mesh"))


def sampler_config(config) -> samplers.SamplerConfig:
  s = config.sampler
  return samplers.SamplerConfig(
      num_steps=int(s.num_steps), sigma_min=float(s.sigma_min), sigma_max=float(s.sigma_max),
      rho=float(s.rho), s_churn=float(s.s_churn), s_tmin=float(s.s_tmin), s_tmax=float(s.s_tmax),
      s_noise=float(s.s_noise))


def augment(state: dtrain.DiffusionState, data: RowData, config, key: jax.Array,
            num_transitions: int, chunk_dir: str | None = None, mesh=None, log=print,
            fingerprint_extra: dict | None = None, max_chunks: int | None = None
            ) -> OfflineDataset:
  """`num_transitions` SynthER transitions (no episode structure: timeouts are all 0)."""
  scfg = sampler_config(config)
  n = int(config.samples_per_chunk)
  if mesh is not None and n % mesh.devices.size:
    raise ValueError(f"config.samples_per_chunk={n} must be divisible by the number of devices "
                     f"({mesh.devices.size})")
  threshold = float(config.synther.terminal_threshold)
  made = {"method": "synther", "sampler": dataclasses.asdict(scfg), "samples_per_chunk": n,
          "terminal_threshold": threshold, "num_transitions": int(num_transitions),
          **(fingerprint_extra or {})}
  t0 = time.time()
  arrays = chunks.generate_in_chunks(
      lambda k: jax.device_get(_generate_jit(state, data, k, scfg, n, threshold, mesh)), key,
                                     num_transitions, chunk_dir, made, log, max_chunks)
  # Rows are independent samples: no episode continuity for the loader to check.
  meta = dict(made, episodic=False, generated_transitions=int(len(arrays["rewards"])),
              generated_terminals=int(arrays["terminals"].sum()),
              wall_seconds=round(time.time() - t0, 3))
  return chunks.to_dataset(arrays, meta, source="synther")
