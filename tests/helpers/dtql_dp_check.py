"""Run in a subprocess with 4 fake CPU devices: DTQL data-parallel == single-device training.

Small networks, and a pre-training phase that ends mid-run so both branches of the lax.cond
run. Prints one JSON line with the max abs difference of the final states.
"""
import json

import jax
import numpy as np

from jaxaug.agents import dtql
from jaxaug.data.dataset import sample_transitions
from jaxaug.train import mesh as mesh_lib
from jaxaug.train.loop import LoopConfig, run_training
from jaxaug.types import EnvSpec
from tests.helpers.dp_check import random_data


def main():
  assert len(jax.devices()) == 4, jax.devices()
  data = random_data()
  spec = EnvSpec(11, 3)
  cfg = dtql.get_config()
  cfg.denoiser_hidden_dim = 32
  cfg.policy_hidden_dims = (32, 32)
  cfg.critic_hidden_dims = (32, 32)
  cfg.pretrain_steps = 10
  cfg.lr_decay = True
  cfg.lr_decay_steps = 10
  loop = LoopConfig(num_steps=20, batch_size=64, updates_per_dispatch=10, log_every=10)
  init_fn = lambda k: dtql.init(k, spec, cfg)
  states = []
  for devices in (jax.devices(), jax.devices()[:1]):
    state, _ = run_training(cfg=loop, workdir=None, init_fn=init_fn, update_fn=dtql.update,
                            sample_fn=sample_transitions, data=data,
                            mesh=mesh_lib.make_data_mesh(devices))
    states.append(jax.device_get(state))
  leaves = list(zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])))
  diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b)))) for a, b in leaves
             if np.asarray(a).size)
  init = jax.device_get(jax.jit(init_fn)(jax.random.split(jax.random.key(0))[0]))
  policy_changed = not all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(states[1].policy.params), jax.tree.leaves(init.policy.params)))
  print(json.dumps({"max_abs_diff": diff, "step": int(states[1].step),
                    "policy_changed": policy_changed}))


if __name__ == "__main__":
  main()
