r"""Offline agent update throughput: TD3+BC and IQL at batch 256, 1 seed and 8 vmapped seeds.

  python experiments/bench_offline.py --out=bench_offline.json

Prints updates/s, ms/update and the share of this machine's measured peak matmul FLOP/s
(peak measured in the same run; FLOPs per update from XLA's cost analysis).
"""

import numpy as np
from absl import app, flags

import jax

from jaxaug import agents
from jaxaug import bench
from jaxaug.data.dataset import Transitions, sample_transitions
from jaxaug.train.loop import make_dispatch, seed_init, seed_keys
from jaxaug.types import EnvSpec

_AGENTS = flags.DEFINE_list("agents", ["td3bc", "iql"], "Agents to benchmark.")
_SEEDS = flags.DEFINE_list("seeds", ["1", "8"], "Numbers of vmapped seeds.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Batch size per seed.")
_K = flags.DEFINE_integer("updates_per_dispatch", 100, "Updates per jitted dispatch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed dispatches (median).")
_OUT = flags.DEFINE_string("out", "bench_offline.json", "JSON output path.")


def make_data(n=100_000, obs_dim=17, act_dim=6):
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
  return Transitions(obs, np.tanh(rng.normal(size=(n, act_dim))).astype(np.float32),
                     rng.normal(size=n).astype(np.float32), obs, np.zeros(n, np.float32),
                     np.zeros(n, np.float32))


def make_update_call(agent_name, spec, data, batch_size, k, num_seeds=1, config=None):
  """A zero-argument call running one jitted dispatch of K updates (each seed's state carried
  between calls), and XLA's FLOPs per update (per dispatch / K; 0 if unavailable)."""
  agent = agents.get_agent(agent_name)
  cfg = config if config is not None else agent.get_config()
  init_keys, rng = seed_keys(0, num_seeds)
  init = seed_init(lambda kk: agent.init(kk, spec, cfg), num_seeds)
  state = jax.jit(init)(init_keys)
  dispatch = make_dispatch(agent.update, sample_transitions, batch_size, k, None, num_seeds)
  # XLA's cost analysis counts a scan body once whatever its length: count one update with a
  # K=1 dispatch.
  one = make_dispatch(agent.update, sample_transitions, batch_size, 1, None, num_seeds)
  flops = bench.compiled_flops(one, state, rng, data)
  carry = {"s": state, "r": rng}

  def run():
    carry["s"], carry["r"], m = dispatch(carry["s"], carry["r"], data)
    return m

  return run, flops


def main(argv):
  del argv
  peak = bench.peak_matmul_flops()
  print(f"peak matmul: {peak / 1e9:.1f} GFLOP/s ({jax.default_backend()})")
  data = jax.device_put(make_data())
  spec = EnvSpec(17, 6)
  rows = []
  for name in _AGENTS.value:
    for ns in map(int, _SEEDS.value):
      run, flops = make_update_call(name, spec, data, _BATCH.value, _K.value, ns)
      flops *= _K.value
      t = bench.time_fn(run, repeats=_REPEATS.value, warmup=2)
      per_update = t / _K.value
      row = {"agent": name, "num_seeds": ns, "batch_size": _BATCH.value,
             "ms_per_dispatch": 1e3 * t, "ms_per_update": 1e3 * per_update,
             "updates_per_s": _K.value / t, "seed_updates_per_s": ns * _K.value / t,
             "gflops_per_update": flops / _K.value / 1e9,
             "share_of_peak": (flops / t) / peak if flops else None}
      rows.append(row)
      print(f"{name:6s} seeds={ns:2d} {row['ms_per_update']:7.3f} ms/update "
            f"({row['updates_per_s']:8.1f} updates/s, {row['seed_updates_per_s']:8.1f} seed-updates/s)"
            + (f" {100 * row['share_of_peak']:.1f}% of peak" if flops else ""))
  bench.write_json(_OUT.value, {"peak_flops": peak, "machine": bench.machine_info(),
                                "results": rows})
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
