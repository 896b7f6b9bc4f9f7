"""Online SAC throughput on this machine: one SAC update alone, and env steps/s of the online
loop's per-step work (host env.step + replay write + sample/update/act dispatch).

  python experiments/bench_online.py --env=hopper --capacity=1000000 --steps=300
"""

from __future__ import annotations

import json
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxaug import envs
from jaxaug.agents import sac
from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.train import online

_ENV = flags.DEFINE_string("env", "hopper", "environment")
_CAPACITY = flags.DEFINE_integer("capacity", 1_000_000, "replay capacity")
_STEPS = flags.DEFINE_integer("steps", 300, "timed env steps per phase")
_UTD = flags.DEFINE_integer("utd_ratio", 1, "updates per env step")


def main(_):
  spec = envs.env_spec(_ENV.value)
  config = sac.get_config()
  state = sac.init(jax.random.key(0), spec, config)
  buf = replay.init_buffer(spec.obs_dim, spec.act_dim, _CAPACITY.value)
  key = jax.random.key(1)
  out = {"env": spec.env_id, "capacity": _CAPACITY.value, "utd_ratio": _UTD.value}

  k1, k2, k3 = jax.random.split(key, 3)
  batch = Transitions(
      observations=jax.random.normal(k1, (256, spec.obs_dim)),
      actions=jax.random.uniform(k2, (256, spec.act_dim), minval=-1, maxval=1),
      rewards=jax.random.normal(k3, (256,)),
      next_observations=jax.random.normal(k3, (256, spec.obs_dim)),
      terminals=jnp.zeros(256), timeouts=jnp.zeros(256))
  update = jax.jit(sac.update)
  s, _ = update(state, batch, key)
  jax.block_until_ready(s)
  t, c = time.perf_counter(), time.process_time()
  for i in range(50):  # from the same state each time: chained updates on one fixed batch
    s, _ = update(state, batch, jax.random.fold_in(key, i))  # overfit it (slow denormals)
  jax.block_until_ready(s)
  out["update_ms_wall"] = (time.perf_counter() - t) / 50 * 1e3
  out["update_ms_cpu"] = (time.process_time() - c) / 50 * 1e3

  step_fn, first = online.make_step_fn(sac, spec, 256, _UTD.value, replay.sample)
  env = envs.make_env(spec.env_id)
  obs, _ = env.reset(seed=0)
  key, action = first(state, key, jnp.asarray(obs, jnp.float32), True)

  def run(n, do_update):
    nonlocal state, buf, key, action, obs
    t = time.perf_counter()
    for _ in range(n):
      a = np.asarray(action)
      nxt, r, term, trunc, _ = env.step(a)
      acting = env.reset()[0] if (term or trunc) else nxt
      packed = online.pack_step(obs, a, r, nxt, term, trunc and not term, acting)
      state, buf, key, action, _ = step_fn(state, buf, key, packed, not do_update, None,
                                           do_update=do_update)
      obs = acting
    np.asarray(action)
    return n / (time.perf_counter() - t)

  run(10, False)
  out["collect_env_steps_per_s"] = run(5 * _STEPS.value, False)
  run(5, True)
  out["train_env_steps_per_s"] = run(_STEPS.value, True)
  print(json.dumps(out))


if __name__ == "__main__":
  app.run(main)
