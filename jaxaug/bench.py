"""Benchmark helpers shared by experiments/bench_*.py: peak matmul FLOP/s and timing."""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxaug.utils import atomic_write_text


def block(tree):
  return jax.tree.map(lambda x: x.block_until_ready() if isinstance(x, jax.Array) else x, tree)


def time_fn(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
  """Median wall time of fn() (results blocked on), after warmup calls (compilation)."""
  for _ in range(warmup):
    block(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - t0)
  times.sort()
  return times[len(times) // 2]


def peak_matmul_flops(n: int = 4096, repeats: int = 5) -> float:
  """Measured fp32 FLOP/s of a jitted n x n matmul on the default device."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  t = time_fn(lambda: f(a, b), repeats=repeats)
  return 2.0 * n ** 3 / t


def compiled_flops(jitted, *args) -> float:
  """XLA's FLOP count for one call of a jitted function (0 if unavailable)."""
  try:
    cost = jitted.lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    return float(cost.get("flops", 0.0))
  except Exception:  # pylint: disable=broad-except
    return 0.0


def machine_info() -> dict:
  return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
          "jax": jax.__version__, "cpu_count": os.cpu_count(), "platform": platform.platform()}


def write_json(path: str, payload: dict) -> None:
  atomic_write_text(path, json.dumps(payload, indent=2))
