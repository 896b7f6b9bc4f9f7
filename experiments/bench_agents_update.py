r"""Time one agent update at a given batch size: jit + lax.scan of K updates, per-update time.

  python experiments/bench_agents_update.py --agents=td3bc,iql,cql,mcq --batch_size=256

Reports wall-clock and process CPU time per update (median over repeats). On a shared machine
the CPU time is the steadier figure; the wall time is what a training run sees. Data: 100k
random Hopper-shaped transitions (obs 11, act 3) on device, sampled inside the scan as in
training.
"""

import statistics
import time

import jax
import numpy as np
from absl import app, flags

from jaxaug import agents
from jaxaug.data.dataset import Transitions, sample_transitions
from jaxaug.types import EnvSpec

_AGENTS = flags.DEFINE_list("agents", ["td3bc", "iql"], "Agents to time.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Batch size.")
_K = flags.DEFINE_integer("updates", 100, "Updates per jitted lax.scan call.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed calls (median reported).")


def make_data(n=100_000, obs_dim=11, act_dim=3) -> Transitions:
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
  return jax.device_put(Transitions(
      obs, np.tanh(rng.normal(size=(n, act_dim))).astype(np.float32),
      rng.normal(size=n).astype(np.float32), rng.normal(size=(n, obs_dim)).astype(np.float32),
      (rng.uniform(size=n) < 0.01).astype(np.float32), np.zeros(n, np.float32)))


def main(argv):
  del argv
  data = make_data()
  spec = EnvSpec(11, 3)
  for name in _AGENTS.value:
    agent = agents.get_agent(name)
    state = agent.init(jax.random.PRNGKey(0), spec, agent.get_config())

    @jax.jit
    def run(state, rng, data):
      def body(carry, _):
        state, rng = carry
        rng, k_batch, k_update = jax.random.split(rng, 3)
        batch = sample_transitions(data, k_batch, _BATCH.value)
        state, metrics = agent.update(state, batch, k_update)
        return (state, rng), metrics
      (state, rng), metrics = jax.lax.scan(body, (state, rng), None, length=_K.value)
      return state, rng, metrics

    rng = jax.random.PRNGKey(1)
    t0 = time.perf_counter()
    state, rng, m = run(state, rng, data)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(_REPEATS.value):
      w0, c0 = time.perf_counter(), time.process_time()
      state, rng, m = run(state, rng, data)
      jax.block_until_ready((state, m))
      walls.append((time.perf_counter() - w0) / _K.value)
      cpus.append((time.process_time() - c0) / _K.value)
    print(f"{name:6s} batch={_BATCH.value} wall {1e3 * statistics.median(walls):7.3f} ms/update "
          f"(min {1e3 * min(walls):.3f}), cpu {1e3 * statistics.median(cpus):7.3f} ms/update, "
          f"first call (compile + {_K.value} updates) {compile_s:.1f} s", flush=True)


if __name__ == "__main__":
  app.run(main)
