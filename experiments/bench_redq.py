"""REDQ's per-env-step update cost (UTD 20 critic steps of N = 10 critics + one actor step).

Times `sac.update_utd` on a fixed batch of utd_ratio x 256 transitions, with the TD target
evaluating only the M = 2 sampled target critics (jaxaug's default) and, for comparison, with all
N target critics evaluated and then indexed (what a straightforward port of REDQ does).

  python experiments/bench_redq.py --hidden=256,128 --out=/tmp/bench_redq.json
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags
import jax
import jax.numpy as jnp

from jaxaug import envs
from jaxaug.agents import redq, sac
from jaxaug.data.dataset import Transitions

_ENV = flags.DEFINE_string("env", "hopper", "environment (for the obs/action sizes)")
_HIDDEN = flags.DEFINE_list("hidden", ["256", "128"], "hidden widths to time (2 layers each)")
_UTD = flags.DEFINE_integer("utd_ratio", redq.UTD_RATIO, "critic steps per env step")
_REPEATS = flags.DEFINE_integer("repeats", 10, "timed env steps per measurement")
_OUT = flags.DEFINE_string("out", "", "write the figures here as JSON too")


def _time(fn, state, batch, key, repeats):
  s, _ = fn(state, batch, key)  # compile
  jax.block_until_ready(s)
  best = float("inf")
  for r in range(3):  # best of 3: the first timed rounds still include warm-up on XLA:CPU
    t = time.perf_counter()
    s = state
    for i in range(repeats):
      s, _ = fn(s, batch, jax.random.fold_in(key, 100 * r + i))
    jax.block_until_ready(s)
    best = min(best, (time.perf_counter() - t) / repeats)
  return best * 1e3


def main(argv):
  del argv
  spec = envs.env_spec(_ENV.value)
  utd = _UTD.value
  n = 256 * utd
  k = jax.random.split(jax.random.key(1), 5)
  batch = Transitions(
      observations=jax.random.normal(k[0], (n, spec.obs_dim)),
      actions=jax.random.uniform(k[1], (n, spec.act_dim), minval=-1, maxval=1),
      rewards=jax.random.normal(k[2], (n,)), next_observations=jax.random.normal(k[3], (n, spec.obs_dim)),
      terminals=jnp.zeros((n,)), timeouts=jnp.zeros((n,)))
  fn = jax.jit(lambda s, b, key: sac.update_utd(s, b, key, utd))
  out = {"env": spec.env_id, "utd_ratio": utd, "batch_size": 256, "devices": str(jax.devices()),
         "results": []}
  for width in _HIDDEN.value:
    config = redq.get_config()
    config.hidden_dims = (int(width), int(width))
    state = sac.init(jax.random.key(0), spec, config)
    subset_ms = _time(fn, state, batch, k[4], _REPEATS.value)
    full_ms = _time(fn, state.replace(subset_apply_fn=None), batch, k[4], _REPEATS.value)
    row = {"hidden": [int(width)] * 2, "num_critics": config.num_critics,
           "num_min_critics": config.num_min_critics, "ms_per_env_step_subset_target": subset_ms,
           "ms_per_env_step_all_target": full_ms, "speedup": full_ms / subset_ms}
    out["results"].append(row)
    print(json.dumps(row), flush=True)
  if _OUT.value:
    with open(_OUT.value + ".tmp", "w") as f:
      json.dump(out, f, indent=1)
    os.replace(_OUT.value + ".tmp", _OUT.value)


if __name__ == "__main__":
  app.run(main)
