"""Chunked evaluation (jaxaug.envs.evaluation): `max_envs_in_memory` bounds the sub-envs alive at
once and leaves the result of a deterministic policy unchanged (episode i still seed + i)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxaug import envs
from jaxaug.envs import evaluation, suites
from jaxaug.envs.suites import compat


def _linear_policy(obs_dim: int, act_dim: int):
  """Row by row, so each row's actions do not depend on the batch size (a BLAS matmul may round
  differently for 5 rows than for 2, and the test compares exactly)."""
  w = np.random.default_rng(3).normal(size=(obs_dim, act_dim)) / np.sqrt(obs_dim)
  return lambda o: np.tanh((np.asarray(o, np.float64)[:, :, None] * w[None]).sum(1))


def _counting(monkeypatch):
  """Records the size of every vector env evaluate builds and the peak alive at once."""
  sizes, alive, peak = [], [0], [0]
  real = evaluation.make_vector_env

  def make(env_id, num, **kwargs):
    env = real(env_id, num, **kwargs)
    sizes.append(num)
    alive[0] += num
    peak[0] = max(peak[0], alive[0])
    close = env.close

    def counted_close(**kw):
      alive[0] -= num
      return close(**kw)

    env.close = counted_close
    return env

  monkeypatch.setattr(evaluation, "make_vector_env", make)
  return sizes, alive, peak


def test_chunked_equals_unchunked_hopper(monkeypatch):
  sizes, alive, peak = _counting(monkeypatch)
  policy = _linear_policy(11, 3)
  whole = envs.evaluate(policy, "hopper", 5, seed=7, max_envs_in_memory=None)
  assert sizes == [5]
  chunked = envs.evaluate(policy, "hopper", 5, seed=7, max_envs_in_memory=2)
  assert sizes == [5, 2, 2, 1]
  assert peak[0] == 5 and alive[0] == 0  # every chunk closed; never more than 2 in the chunked run
  assert chunked == whole
  # Episode i is seeded seed + i: the first 2 episodes alone match the chunked run's first chunk.
  first_two = envs.evaluate(policy, "hopper", 2, seed=7)
  assert first_two["num_episodes"] == 2
  assert chunked["return_max"] >= first_two["return_max"]
  # A different seed changes the result (the comparison above can fail).
  other = envs.evaluate(policy, "hopper", 5, seed=8, max_envs_in_memory=2)
  assert other["return_mean"] != whole["return_mean"]


def test_chunks_respect_the_cap(monkeypatch):
  sizes, alive, peak = _counting(monkeypatch)
  envs.evaluate(_linear_policy(11, 3), "hopper", 5, seed=0, max_envs_in_memory=2,
                max_steps=3)
  assert peak[0] == 2 and alive[0] == 0


def test_default_cap_per_suite():
  assert evaluation.default_max_envs("hopper-medium-v2") is None
  assert evaluation.default_max_envs("kitchen-mixed-v0") == 10
  assert evaluation.default_max_envs("kitchen-complete-v0") == 10
  assert evaluation.default_max_envs("antmaze-umaze-v2") is None
  assert evaluation.default_max_envs("Meta-World/push-v3") is None


@pytest.mark.parametrize("bad", [0, -2, True, "3x"])
def test_bad_cap_is_refused(bad):
  with pytest.raises(ValueError, match="max_envs_in_memory"):
    envs.evaluate(_linear_policy(11, 3), "hopper", 2, seed=0, max_envs_in_memory=bad)


def test_chunked_equals_unchunked_maze2d():
  if not suites.available("gymnasium_robotics"):
    pytest.skip(f"needs gymnasium_robotics (install: {compat.INSTALL_HINT})")
  policy = _linear_policy(4, 2)
  whole = envs.evaluate(policy, "maze2d-umaze-v1", 5, seed=3, max_envs_in_memory=None,
                        max_steps=60)
  chunked = envs.evaluate(policy, "maze2d-umaze-v1", 5, seed=3, max_envs_in_memory=2,
                          max_steps=60)
  assert chunked == whole


def test_groups_in_one_vector_env_equal_separate_evaluations():
  """evaluate_groups (a sweep's points in ONE vector env) gives each group what evaluate gives
  it alone: same reset seeds, its own rows of the batched policy call."""
  calls = []

  def policy(obs):
    calls.append(len(obs))
    return np.tanh(np.asarray(obs)[:, :3])

  together = envs.evaluate_groups(policy, "Hopper-v5", 3, [5, 100])
  assert set(calls) == {6}  # both groups' episodes stepped together
  for seed, res in zip((5, 100), together):
    assert res == envs.evaluate(policy, "Hopper-v5", 3, seed=seed)
  assert together[0] != together[1]
