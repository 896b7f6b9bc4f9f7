"""Run in a subprocess with 4 fake CPU devices: data-parallel == single-device training.

Prints one JSON line per agent with the max abs parameter difference.
"""
import json
import sys

import jax
import numpy as np

from jaxaug import agents
from jaxaug.data.dataset import Transitions, sample_transitions
from jaxaug.train import mesh as mesh_lib
from jaxaug.train.loop import LoopConfig, run_training
from jaxaug.types import EnvSpec


def random_data(n=2048, obs_dim=11, act_dim=3, seed=0):
  rng = np.random.default_rng(seed)
  obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
  act = np.tanh(rng.normal(size=(n, act_dim))).astype(np.float32)
  return Transitions(obs, act, rng.normal(size=n).astype(np.float32),
                     (obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32),
                     (rng.random(n) < 0.02).astype(np.float32), np.zeros(n, np.float32))


def main(names):
  assert len(jax.devices()) == 4, jax.devices()
  data = random_data()
  spec = EnvSpec(11, 3)
  out = {}
  for name in names:
    agent = agents.get_agent(name)
    cfg = agent.get_config()
    loop = LoopConfig(num_steps=20, batch_size=64, updates_per_dispatch=10, log_every=10)
    results = []
    for devices in (jax.devices(), jax.devices()[:1]):
      state, _ = run_training(cfg=loop, workdir=None, init_fn=lambda k: agent.init(k, spec, cfg),
                              update_fn=agent.update, sample_fn=sample_transitions, data=data,
                              mesh=mesh_lib.make_data_mesh(devices))
      results.append(jax.device_get(state))
    n_devices_used = None
    leaves = [(np.asarray(a), np.asarray(b)) for a, b in
              zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]))]
    diff = max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in leaves if a.size)
    scale = max(float(np.max(np.abs(b))) for _, b in leaves if b.size)
    changed = any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
        jax.tree.leaves(results[0]),
        jax.tree.leaves(jax.device_get(jax.jit(lambda k: agent.init(k, spec, cfg))(
            jax.random.split(jax.random.key(0))[0])))))
    out[name] = {"max_abs_diff": diff, "scale": scale, "params_changed": bool(changed)}
  print(json.dumps(out))


if __name__ == "__main__":
  main(sys.argv[1:])
