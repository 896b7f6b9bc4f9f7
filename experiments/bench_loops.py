r"""Loop patterns of jaxaug under XLA:CPU: cost per iteration as the loop or the buffer grows.

  python experiments/bench_loops.py --out=bench_loops.json

jaxlib 0.11.1 and later make a small dynamic-update-slice (an update under 256 bytes) inside a
loop body cost O(whole buffer) per iteration on CPU (upstream jax issue 40101). This benchmark
times the places where jaxaug writes small slices in or near loops, so the two toolchains can be
compared (`experiments/bench_toolchains.py` runs it under both):

- `upstream_idiom`: the issue's own example (a `fori_loop` that writes x[t + 1] of an n-long
  array), to tell whether the installed jaxlib has the regression at all.
- `scan_metrics`: the offline K-update dispatch shape: a `lax.scan` of K small updates that
  stacks a few scalar metrics per update (4-byte writes into a K-long output).
- `ring_write_loop`: one replay row (obs 11 + act 3 floats, 44-byte pieces) written per
  iteration of a `fori_loop` into a ring buffer of capacity C: the shape of a device-resident
  online loop (several env steps per dispatch).
- `replay_add_call`: `replay.add` of one row as its own jitted, donated call into a buffer of
  capacity C, which is what the host online loop does per env step today.

A per-iteration time that grows with K or C means the pattern is hit.
"""

import time

import numpy as np
from absl import app, flags

import jax
import jax.numpy as jnp

from jaxaug import bench
from jaxaug.data import replay
from jaxaug.data.dataset import Transitions

_NS = flags.DEFINE_list("ns", ["10000", "40000"], "array lengths for upstream_idiom")
_KS = flags.DEFINE_list("ks", ["100", "1000", "10000"], "scan lengths for scan_metrics")
_CAPS = flags.DEFINE_list("capacities", ["10000", "100000", "1000000"], "ring capacities")
_ITERS = flags.DEFINE_integer("iters", 1000, "loop iterations for the ring patterns")
_REPEATS = flags.DEFINE_integer("repeats", 5, "timed calls (median)")
_OUT = flags.DEFINE_string("out", "bench_loops.json", "JSON output path")


def _row(obs_dim=11, act_dim=3, i=0):
  x = jnp.full((1, obs_dim), float(i), jnp.float32)
  return Transitions(observations=x, actions=jnp.ones((1, act_dim), jnp.float32),
                     rewards=jnp.ones((1,), jnp.float32), next_observations=x,
                     terminals=jnp.zeros((1,), jnp.float32), timeouts=jnp.zeros((1,), jnp.float32))


def upstream_idiom(n: int) -> float:
  """Seconds per iteration of the issue's idiom: fori_loop writing x[t + 1] of an n-long array."""
  @jax.jit
  def run(x0):
    x = jnp.zeros(n, jnp.float32).at[0].set(x0)
    return jax.lax.fori_loop(0, n - 1, lambda t, x: x.at[t + 1].set(0.5 * x[t] + 1.0), x)
  return bench.time_fn(lambda: run(1.0), repeats=_REPEATS.value, warmup=1) / n


def scan_metrics(k: int) -> float:
  """Seconds per iteration of a K-step scan of a small MLP-like update stacking 3 metrics."""
  w = jnp.ones((64, 64), jnp.float32) * 0.01

  @jax.jit
  def run(w, x):
    def body(w, _):
      y = jnp.tanh(x @ w)
      g = x.T @ (y - 1.0) / x.shape[0]
      w = w - 1e-3 * g
      return w, {"loss": jnp.mean((y - 1.0) ** 2), "gnorm": jnp.linalg.norm(g), "w": w[0, 0]}
    return jax.lax.scan(body, w, None, length=k)

  x = jnp.ones((32, 64), jnp.float32)
  return bench.time_fn(lambda: run(w, x), repeats=_REPEATS.value, warmup=1) / k


def ring_write_loop(capacity: int, iters: int) -> float:
  """Seconds per iteration of a fori_loop writing one row per iteration into the ring."""
  buf = replay.init_buffer(11, 3, capacity)

  def body(i, b):
    row = _row()
    return replay.add(b, row.replace(rewards=row.rewards * i.astype(jnp.float32)))

  run = jax.jit(lambda b: jax.lax.fori_loop(0, iters, body, b), donate_argnums=0)
  holder = {"b": buf}

  def call():
    holder["b"] = run(holder["b"])
    return holder["b"].ptr
  return bench.time_fn(call, repeats=_REPEATS.value, warmup=1) / iters


def replay_add_call(capacity: int, iters: int) -> float:
  """Seconds per jitted, donated replay.add call of one row (host loop over calls)."""
  buf = replay.init_buffer(11, 3, capacity)
  add = jax.jit(replay.add, donate_argnums=0)
  row = _row()
  buf = add(buf, row)
  jax.block_until_ready(buf)
  n = max(iters // 5, 50)
  times = []
  for _ in range(_REPEATS.value):
    t = time.perf_counter()
    for _ in range(n):
      buf = add(buf, row)
    jax.block_until_ready(buf)
    times.append((time.perf_counter() - t) / n)
  return float(np.median(times))


def main(argv):
  del argv
  rows = []
  for n in map(int, _NS.value):
    s = upstream_idiom(n)
    rows.append({"pattern": "upstream_idiom", "n": n, "us_per_iter": 1e6 * s})
    print(f"upstream_idiom   n={n:7d}        {1e6 * s:9.3f} us/iteration", flush=True)
  for k in map(int, _KS.value):
    s = scan_metrics(k)
    rows.append({"pattern": "scan_metrics", "k": k, "us_per_iter": 1e6 * s})
    print(f"scan_metrics     K={k:7d}        {1e6 * s:9.2f} us/iteration", flush=True)
  for c in map(int, _CAPS.value):
    s = ring_write_loop(c, _ITERS.value)
    rows.append({"pattern": "ring_write_loop", "capacity": c, "us_per_iter": 1e6 * s})
    print(f"ring_write_loop  capacity={c:8d} {1e6 * s:9.2f} us/iteration", flush=True)
  for c in map(int, _CAPS.value):
    s = replay_add_call(c, _ITERS.value)
    rows.append({"pattern": "replay_add_call", "capacity": c, "us_per_iter": 1e6 * s})
    print(f"replay_add_call  capacity={c:8d} {1e6 * s:9.2f} us/call", flush=True)
  bench.write_json(_OUT.value, {"jax": jax.__version__, "machine": bench.machine_info(),
                                "results": rows})
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
