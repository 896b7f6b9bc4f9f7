r"""Throughput of the data-quality metrics: oracle/dynamic MSE rows/s and novelty pairs/s.

  python experiments/bench_quality.py --envs=Hopper-v5,HalfCheetah-v5 --rows=20000 \
      --novelty_queries=10000 --novelty_data=100000

Dynamic MSE is timed on real random-action transitions for each backend; novelty on Gaussian
data of the env's state-action width (cost depends only on sizes). Prints one JSON line each.
"""

import json
import time

from absl import app, flags
import numpy as np

from jaxaug.envs.oracle import StateOracle, random_transitions
from jaxaug.metrics import quality

_ENVS = flags.DEFINE_list("envs", ["Hopper-v5", "HalfCheetah-v5"], "Environments.")
_ROWS = flags.DEFINE_integer("rows", 20000, "Transitions for the dynamic-MSE timing.")
_BACKENDS = flags.DEFINE_list("backends", ["batch", "rollout", "loop"], "Oracle backends.")
_NTHREAD = flags.DEFINE_integer("nthread", 1, "Threads of the batched backends.")
_NQ = flags.DEFINE_integer("novelty_queries", 10000, "Generated rows for novelty (0: skip).")
_ND = flags.DEFINE_integer("novelty_data", 100000, "Original rows for novelty.")
_CHUNK = flags.DEFINE_integer("chunk", 256, "Novelty query chunk.")
_DATA_CHUNK = flags.DEFINE_integer("data_chunk", 2048, "Novelty data chunk.")
_DIM = flags.DEFINE_integer("dim", 0, "Novelty row width (0: the env's obs+act dims).")


def main(argv):
  del argv
  for env_id in _ENVS.value:
    obs, act, _, nxt, *_ = random_transitions(env_id, _ROWS.value, seed=0, action_scale=0.3)
    for backend in _BACKENDS.value:
      if env_id.startswith("Ant") and backend != "loop":
        continue
      oracle = StateOracle(env_id, backend=backend, nthread=_NTHREAD.value)
      quality.dynamic_mse(env_id, obs[:256], act[:256], nxt[:256], oracle=oracle)  # warm-up
      t0 = time.perf_counter()
      out = quality.dynamic_mse(env_id, obs, act, nxt, oracle=oracle)
      dt = time.perf_counter() - t0
      print(json.dumps({"bench": "dynamic_mse", "env": env_id, "backend": backend,
                        "nthread": _NTHREAD.value, "rows": len(obs), "seconds": round(dt, 3),
                        "rows_per_s": round(len(obs) / dt), "mse": out["mse"],
                        "n_masked": out["n_masked"]}))
    if _NQ.value:
      oracle = StateOracle(env_id, backend="loop")
      dim = _DIM.value or oracle.obs_dim + oracle.act_dim
      rng = np.random.default_rng(0)
      x = rng.standard_normal((_NQ.value, dim)).astype(np.float32)
      y = rng.standard_normal((_ND.value, dim)).astype(np.float32)
      quality.nearest_neighbour_distances(x[:_CHUNK.value], y, chunk=_CHUNK.value,
                                          data_chunk=_DATA_CHUNK.value)  # compile
      t0 = time.perf_counter()
      quality.nearest_neighbour_distances(x, y, chunk=_CHUNK.value, data_chunk=_DATA_CHUNK.value)
      dt = time.perf_counter() - t0
      pairs = _NQ.value * _ND.value
      print(json.dumps({"bench": "novelty", "env": env_id, "dim": dim, "queries": _NQ.value,
                        "data": _ND.value, "seconds": round(dt, 3),
                        "pairs_per_s": f"{pairs / dt:.3e}",
                        "est_100k_x_1M_s": round(1e11 / (pairs / dt), 1)}))


if __name__ == "__main__":
  app.run(main)
