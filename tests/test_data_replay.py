"""Device replay buffer and mixed sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug.data import Transitions, init_buffer, mixed_counts, replay, sample_mixed


def rows(start, n, obs_dim=2, act_dim=1):
  """Transitions whose reward is the row id, so we can see which rows were sampled."""
  # numpy leaves: building test data should not cost eager jax dispatches.
  ids = np.arange(start, start + n, dtype=np.float32)
  return Transitions(observations=np.tile(ids[:, None], (1, obs_dim)),
                     actions=np.tile(-ids[:, None], (1, act_dim)), rewards=ids,
                     next_observations=np.tile(ids[:, None] + 0.5, (1, obs_dim)),
                     terminals=np.zeros(n, np.float32), timeouts=np.zeros(n, np.float32))


add_jit = jax.jit(replay.add)
sample_jit = jax.jit(replay.sample, static_argnums=2)


def test_ring_wraparound():
  buf = init_buffer(2, 1, capacity=5)
  assert int(buf.size) == 0 and int(buf.ptr) == 0 and buf.data.observations.shape == (5, 2)
  buf = add_jit(buf, rows(1, 3))
  assert int(buf.size) == 3 and int(buf.ptr) == 3
  buf = add_jit(buf, rows(4, 4))  # 4, 5 fill the end; 6, 7 overwrite rows 0 and 1
  assert int(buf.size) == 5 and int(buf.ptr) == 2
  np.testing.assert_array_equal(buf.data.rewards, [6, 7, 3, 4, 5])
  np.testing.assert_array_equal(buf.data.observations[:, 0], [6, 7, 3, 4, 5])
  np.testing.assert_array_equal(buf.data.actions[:, 0], [-6, -7, -3, -4, -5])
  np.testing.assert_array_equal(buf.data.next_observations[:, 1], [6.5, 7.5, 3.5, 4.5, 5.5])
  buf = add_jit(buf, rows(10, 5))  # exactly one capacity
  np.testing.assert_array_equal(buf.data.rewards, [13, 14, 10, 11, 12])
  assert int(buf.ptr) == 2
  with pytest.raises(ValueError, match="capacity 5"):
    replay.add(buf, rows(0, 6))


def test_sample_only_filled_rows():
  buf = add_jit(init_buffer(2, 1, capacity=100), rows(1, 10))
  batch = sample_jit(buf, jax.random.key(0), 4096)
  r = np.asarray(batch.rewards)
  assert r.min() >= 1 and r.max() <= 10  # never an empty (zero) row
  assert set(r.tolist()) == set(range(1, 11))  # and every filled row is reachable
  np.testing.assert_array_equal(batch.observations[:, 0], r)  # rows stay whole


def test_jit_and_scan():
  add = jax.jit(replay.add, donate_argnums=0)
  sample = jax.jit(replay.sample, static_argnums=2)
  buf = init_buffer(2, 1, capacity=8)
  buf = add(buf, rows(0, 3))
  buf = add(buf, rows(3, 3))
  buf = add(buf, rows(6, 3))
  np.testing.assert_array_equal(buf.data.rewards, [8, 1, 2, 3, 4, 5, 6, 7])
  assert int(buf.size) == 8 and int(buf.ptr) == 1
  b = sample(buf, jax.random.key(1), 16)
  assert b.observations.shape == (16, 2)

  def body(buf, i):
    return replay.add(buf, rows(0, 2).replace(rewards=jnp.full((2,), i, jnp.float32))), None

  # Eager (unjitted) use works too.
  eager = replay.add(init_buffer(2, 1, capacity=3), rows(0, 2))
  assert int(eager.ptr) == 2

  buf, _ = jax.lax.scan(body, init_buffer(2, 1, capacity=5), jnp.arange(4.0))
  np.testing.assert_array_equal(buf.data.rewards, [2, 3, 3, 1, 2])
  assert int(buf.size) == 5 and int(buf.ptr) == 3


@pytest.mark.parametrize("ratios,batch,expected", [
    ((0.5, 0.5), 256, (128, 128)),
    ((0.75, 0.25), 10, (8, 2)),  # 7.5 / 2.5: the tie goes to the first source
    ((1 / 3, 1 / 3, 1 / 3), 10, (4, 3, 3)),
    ((0.0, 1.0), 7, (0, 7)),
    ((0.1, 0.2, 0.7), 1, (0, 0, 1)),
])
def test_mixed_counts(ratios, batch, expected):
  counts = mixed_counts(ratios, batch)
  assert counts == expected and sum(counts) == batch


def test_mixed_counts_rejects_bad_ratios():
  for bad in ((0.5, 0.6), (-0.5, 1.5), ()):
    with pytest.raises(ValueError, match="ratios"):
      mixed_counts(bad, 8)


def test_sample_mixed_exact_proportions_jitted():
  real = jax.tree.map(jnp.asarray, rows(0, 50))  # rewards 0..49
  synth = add_jit(init_buffer(2, 1, capacity=64), rows(1000, 20))  # rewards 1000..1019
  f = jax.jit(lambda k: sample_mixed([real, synth], (0.75, 0.25), k, 256))
  for seed in range(3):
    b = f(jax.random.key(seed))
    r = np.asarray(b.rewards)
    assert r.shape == (256,)
    assert (r < 50).sum() == 192 and ((r >= 1000) & (r < 1020)).sum() == 64
    assert (r[:192] < 50).all()  # source order without shuffle
  b = jax.jit(lambda k: sample_mixed([real, synth], (0.5, 0.5), k, 100, shuffle=True))(
      jax.random.key(0))
  r = np.asarray(b.rewards)
  assert (r < 50).sum() == 50 and not (r[:50] < 50).all()
  with pytest.raises(ValueError, match="2 sources but 1 ratios"):
    sample_mixed([real, synth], (1.0,), jax.random.key(0), 8)
