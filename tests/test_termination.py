"""The jittable termination rules equal gymnasium's `terminated` on random rollouts."""

import jax
import numpy as np
import pytest

from jaxaug import envs
from jaxaug.envs.termination import termination_fn


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5"])
def test_termination_rule_matches_the_environment(env_id):
  env = envs.make_env(env_id)
  rng = np.random.default_rng(0)
  rule = jax.jit(termination_fn(env_id))
  next_obs, terminated = [], []
  obs, _ = env.reset(seed=0)
  for t in range(3000):
    scale = 1.0 if t % 2 else 0.3  # some gentle, some violent actions
    obs, _, term, trunc, _ = env.step(scale * rng.uniform(-1, 1, env.action_space.shape))
    next_obs.append(obs)
    terminated.append(term)
    if term or trunc:
      obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
  pred = np.asarray(rule(np.asarray(next_obs, np.float32)))
  terminated = np.asarray(terminated)
  np.testing.assert_array_equal(pred, terminated)
  if env_id in ("Hopper-v5", "Walker2d-v5"):
    assert terminated.sum() >= 20  # the rollouts really exercise the rule
  if env_id == "HalfCheetah-v5":
    assert not terminated.any()


def test_unknown_environment_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown environment"):
    termination_fn("Humanoid-v5")


def test_atradiff_terminal_fn_from_config():
  import ml_collections
  from jaxaug.augment.atradiff.diffuser import terminal_fn_from_config
  c = ml_collections.ConfigDict({"terminal_fn": "env"})
  assert terminal_fn_from_config(c, "hopper") is termination_fn("Hopper-v5")
  c.terminal_fn = "none"
  assert terminal_fn_from_config(c, "hopper") is None
  assert terminal_fn_from_config(ml_collections.ConfigDict(), "hopper") is None  # old configs
  c.terminal_fn = "oracle"
  with pytest.raises(ValueError, match="config.atradiff.terminal_fn must be 'env' or 'none'"):
    terminal_fn_from_config(c, "hopper")
