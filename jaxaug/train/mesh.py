"""The one data-parallel path: a 1-D `data` mesh over every device of every host.

Parameters and optimiser states are replicated (`P()`), batches are sharded over `data`
(`P('data')`). Steps are plain `jax.jit` functions with in/out shardings; XLA's partitioner
inserts the gradient all-reduce, so an agent written for one device and one global batch is
data-parallel unchanged and computes the same numbers (the loss is a mean over the *global*
batch). This sidesteps a shard_map pitfall: with check_vma=True the gradients of replicated (`P()`)
parameters arrive already summed over devices, so a further pmean makes them N times too large
(Adam hides it; SGD and gradient clipping do not). `shard_map` is used only where per-device
work needs it (generation in jaxaug.augment).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed(requested: bool = False) -> None:
  """Call jax.distributed.initialize() when asked for by flag or by JAXAUG_DISTRIBUTED=1.

  On TPU pods and SLURM/GKE clusters the coordinator address, process count and index are
  discovered automatically; otherwise set JAX_COORDINATOR_ADDRESS (host:port of process 0),
  JAX_NUM_PROCESSES and JAX_PROCESS_ID (jax itself reads only the first; the other two are
  passed on here). CPU processes use jax's default cross-process collectives (gloo).
  """
  if requested or os.environ.get("JAXAUG_DISTRIBUTED", "0") == "1":
    if not jax.distributed.is_initialized():
      kwargs = {}
      for env, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if os.environ.get(env, "") != "":
          try:
            kwargs[arg] = int(os.environ[env])
          except ValueError:
            raise ValueError(f"{env}={os.environ[env]!r}: expected an integer") from None
      jax.distributed.initialize(**kwargs)


def is_main_process() -> bool:
  return jax.process_index() == 0


def make_data_mesh(devices: list | None = None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh, name: str = "config.batch_size") -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"{name}={batch_size} must be divisible by the number of devices ({n}) "
                     "so the global batch can be sharded over the 'data' mesh axis")


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Place a host pytree (identical on every process) replicated on all mesh devices.

  Works multi-host: every process passes the same values and gets a global array.
  """
  sharding = replicated_sharding(mesh)

  def put(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.device_put(x, sharding)
    x = np.asarray(x) if not isinstance(x, jax.Array) else x
    if jax.process_count() == 1:
      return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

  return jax.tree.map(put, tree)


def shard_batch_constraint(tree: Any, mesh: Mesh) -> Any:
  """Inside jit: ask XLA to shard every leaf's leading axis over `data`."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


# ------------------------------------------------------------------------------------------
# Sweeps (jaxaug.train.sweep): a 2-D mesh (`sweep` x `data`). Learner states and loop keys carry
# a leading axis of P sweep points sharded over `sweep` (each device trains its share of the
# points); the dataset is replicated and each point's batch is sharded over `data`.

SWEEP_AXIS = "sweep"


def make_sweep_mesh(sweep_devices: int | None = None, devices: list | None = None) -> Mesh:
  """A (sweep, data) mesh over `devices` (default: every device of every process).

  `sweep_devices` devices along `sweep` (default: all of them, so `data` has size 1); the rest
  of the factor goes to `data`. A clear error when it does not divide the device count.
  """
  devices = list(devices if devices is not None else jax.devices())
  n = len(devices)
  s = n if sweep_devices is None or sweep_devices <= 0 else int(sweep_devices)
  if n % s:
    raise ValueError(f"sweep_devices={s} must divide the number of devices ({n})")
  return jax.make_mesh((s, n // s), (SWEEP_AXIS, DATA_AXIS),
                       axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def is_sweep_mesh(mesh: Mesh) -> bool:
  return SWEEP_AXIS in mesh.axis_names


def sweep_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis over `sweep`, the rest replicated (over `data`)."""
  return NamedSharding(mesh, P(SWEEP_AXIS))


def shard_sweep(tree: Any, mesh: Mesh) -> Any:
  """Place a host pytree whose leaves have a leading sweep axis (identical on every process)
  with that axis sharded over `sweep`. Works multi-host (each process fills its own shards).
  PRNG key arrays go through their key data."""
  sharding = sweep_sharding(mesh)

  def put(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      impl = jax.random.key_impl(x)
      raw = put(np.asarray(jax.random.key_data(x)))
      return jax.jit(lambda r: jax.random.wrap_key_data(r, impl=impl),
                     out_shardings=sharding)(raw)
    host = np.asarray(x)
    if jax.process_count() == 1:
      return jax.device_put(host, sharding)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

  return jax.tree.map(put, tree)


def gather_to_host(tree: Any, mesh: Mesh) -> Any:
  """Every leaf as a numpy array on every process (a sharded array of several hosts included)."""
  rep = replicated_sharding(mesh)
  full = jax.jit(lambda t: t, out_shardings=rep)(tree)
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)) if not (
      jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)) else x, full)
