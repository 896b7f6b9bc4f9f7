"""ATraDiff's routed generation round (`diffuser.generate_into`): each queued start state is
sampled only by the generator its estimated length selects, in fixed-size chunks, and the kept
transitions are appended to the synthetic buffer. Checked against the unrouted `synthesize`
(same rows when the keys and the batch line up), against a chunk-by-chunk reference built from
the shared pieces, and for its bookkeeping (routing, chunk count, count = 0, one compilation)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug.augment.atradiff import diffuser as adiff
from jaxaug.augment.atradiff import length as alength
from jaxaug.configs_io import load_config_file
from jaxaug.data import replay
from jaxaug.data.dataset import OfflineDataset, Transitions

LENGTHS = (3, 5, 8)
Q = 12
STATIC = ("bucket_size", "terminal_fn", "max_action", "clip_actions")
GEN = jax.jit(adiff.generate_into, static_argnames=STATIC)
SYN = jax.jit(adiff.synthesize, static_argnames=("terminal_fn", "max_action", "clip_actions"))


def _dataset(obs_dim=3, act_dim=2, seed=0):
  rng = np.random.default_rng(seed)
  n = 120
  obs = rng.normal(size=(n, obs_dim)).cumsum(0)
  nxt = np.concatenate([obs[1:], obs[-1:] + 1], 0)
  timeouts = (np.arange(n) % 20 == 19).astype(np.float32)  # episodes of 20 steps
  return OfflineDataset(obs, rng.uniform(-1, 1, (n, act_dim)), rng.normal(size=n), nxt,
                        np.zeros(n, np.float32), timeouts)


def _with_estimator(d, slope, offset):
  """d with a linear length estimator: predicted length = slope * cond[:, 0] + offset (then
  clipped to [1, max(k) + 1] by `predict`), so routing is known without training."""
  est = alength.init_estimator(jax.random.key(0), d.spec.cond_dim, d.spec.lengths, (), 1e-3)
  kernel = np.zeros((d.spec.cond_dim, 1), np.float32)
  kernel[0, 0] = slope / est.max_target
  params = {"params": {"Dense_0": {"kernel": jnp.asarray(kernel),
                                   "bias": jnp.asarray([offset / est.max_target], jnp.float32)}}}
  return d.replace(estimator=est.replace(params=params))


def _to_generator(d, j):
  """Every state routed to generator j (a constant prediction just below its length)."""
  return _with_estimator(d, 0.0, d.spec.lengths[j] - 0.5)


@pytest.fixture(scope="module")
def diffuser():
  c = load_config_file("atradiff:tiny").atradiff
  c.lengths = LENGTHS
  return adiff.train_diffuser(jax.random.key(0), _dataset(), c, train=False)  # untrained


def _starts(d, n=Q, seed=1):
  """Raw start states around the data: normalised first coordinate ~ N(0, 1)."""
  z = np.random.default_rng(seed).normal(size=(n, d.spec.obs_dim)).astype(np.float32)
  od = d.spec.obs_dim
  return jnp.asarray(z * np.asarray(d.stats.std[:od]) + np.asarray(d.stats.mean[:od]))


def _empty(d, capacity=2000):
  return replay.init_buffer(d.spec.obs_dim, d.spec.act_dim, capacity)


FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def _rows(buf, start=0, n=None):
  n = int(buf.size) if n is None else n
  return {f: np.asarray(getattr(buf.data, f))[start:start + n] for f in FIELDS}


def _prefill(d, n):
  """A buffer holding n arbitrary rows, so that a call does not start writing at row 0."""
  s = _starts(d, n=n, seed=99)
  z = jnp.zeros((n,))
  return replay.add(_empty(d), Transitions(observations=s, actions=jnp.ones((n, d.spec.act_dim)),
                                           rewards=z, next_observations=s, terminals=z,
                                           timeouts=z))


# The routed call runs the sampler inside a while_loop, the references outside one. On jax
# 0.10's XLA:CPU both compile to the same arithmetic (bitwise equal rows, asserted); other XLA
# versions may fuse the loop body differently (1-ulp differences seen with jax 0.12), so there
# the floats are compared to 1e-6 relative. Flags, lengths and counts are exact everywhere.
BITWISE = jax.__version__.startswith("0.10.")


def _assert_same_rows(got, want):
  for f in FIELDS:
    if BITWISE or f in ("terminals", "timeouts"):
      np.testing.assert_array_equal(got[f], want[f], err_msg=f)
    else:
      np.testing.assert_allclose(got[f], want[f], rtol=1e-6, atol=1e-6, err_msg=f)


def _first_dim_rule(threshold):
  return lambda s: s[..., 0] > threshold


TASKS = jnp.zeros((Q,), jnp.int32)


@pytest.mark.parametrize("j,inpaint", [(0, False), (2, True)])
def test_one_generator_one_chunk_writes_exactly_what_synthesize_keeps(diffuser, j, inpaint):
  """All states on generator j, one chunk holding the whole queue in order: the routed call
  samples the same noise (chunk_key(key, j, 0)) on the same batch as synthesize's generator j,
  so the rows written are bitwise those synthesize keeps (terminal rule and clipping on)."""
  import dataclasses
  d = _to_generator(diffuser, j)
  d = d.replace(spec=dataclasses.replace(d.spec, inpaint_first_state=inpaint))
  starts, valid, key = _starts(d), jnp.ones((Q,), bool), jax.random.key(3)
  plain, pmask, _ = SYN(d, key, starts, valid)
  pm = np.asarray(pmask)
  threshold = float(np.median(np.asarray(plain.next_observations)[pm, 0]))
  rule = _first_dim_rule(threshold)
  bound = float(np.median(np.abs(np.asarray(plain.actions)[pm])))
  kw = dict(terminal_fn=rule, max_action=bound)
  tr, mask, sinfo = SYN(d, key, starts, valid, TASKS, **kw)
  expected = replay.add_masked(_empty(d), tr, mask)
  buf, info = GEN(d, None, _empty(d), key, starts, jnp.int32(Q), TASKS, bucket_size=Q, **kw)
  np.testing.assert_array_equal(np.asarray(sinfo["generator"]), j)
  np.testing.assert_array_equal(np.asarray(info["generator"]), j)
  assert int(buf.size) == int(expected.size) == int(np.asarray(mask).sum()) >= Q
  _assert_same_rows(_rows(buf), _rows(expected))
  np.testing.assert_array_equal(np.asarray(info["length"]), np.asarray(sinfo["length"]))
  for name in ("out_of_range_rows", "out_of_range_entries"):
    assert int(info[name]) == int(sinfo[name]) > 0
  assert int(info["chunks"]) == 1 and int(info["trajectories"]) == Q
  assert 0 < _rows(buf)["terminals"].sum() < Q  # the rule ended some trajectories, not all


@functools.partial(jax.jit, static_argnums=1, static_argnames=("max_action",))
def _chunk(d, j, key, cond, starts, ok, max_action=None):
  """One chunk from the public pieces (jitted like the routed call, so floats match)."""
  w = adiff.sample_generator(d, j, key, cond)
  return adiff.finish_trajectories(d, w, adiff.kept_lengths(d, w), starts, ok,
                                   max_action=max_action)


def _reference(d, key, starts, count, b, **kw):
  """The documented write order built from the shared pieces, chunk by chunk."""
  choice = np.asarray(adiff.route(d, adiff.condition(d, starts)))
  cond = adiff.condition(d, starts)
  out, lengths = [], np.zeros(Q, np.int64)
  for j in range(len(d.spec.lengths)):
    members = [q for q in range(count) if choice[q] == j]
    for c in range(-(-len(members) // b)):
      idx = np.asarray((members[c * b:(c + 1) * b] + [0] * b)[:b])
      ok = jnp.arange(b) < len(members) - c * b
      tr, mask, info = _chunk(d, j, adiff.chunk_key(key, j, c), cond[idx], starts[idx], ok,
                              **kw)
      m = np.asarray(mask)
      out.append({f: np.asarray(getattr(tr, f))[m] for f in FIELDS})
      lengths[idx[np.asarray(ok)]] = np.asarray(info["length"])[np.asarray(ok)]
  return {f: np.concatenate([o[f] for o in out]) for f in out[0]}, lengths, choice


def test_mixed_routes_write_every_state_in_generator_then_queue_order(diffuser):
  d = _with_estimator(diffuser, 3.0, 5.0)  # normalised x0 < -0.67 -> k=3, < 0 -> 5, else 8
  starts, key, count, b = _starts(d, seed=5), jax.random.key(7), 10, 3
  pre = _prefill(d, 4)
  buf, info = GEN(d, None, pre, key, starts, jnp.int32(count), TASKS, bucket_size=b,
                  max_action=1.0)
  want, lengths, choice = _reference(d, key, starts, count, b, max_action=1.0)
  # routing is the estimator's, rounded up to a preset; slots past count are -1
  pred = alength.round_up_to_preset(alength.predict(d.estimator, adiff.condition(d, starts)),
                                    LENGTHS)
  np.testing.assert_array_equal(np.asarray(info["generator"]),
                                np.where(np.arange(Q) < count, np.asarray(pred), -1))
  n = np.bincount(choice[:count], minlength=3)
  assert (n > 0).all()  # a real mix
  assert int(info["chunks"]) == sum(-(-int(x) // b) for x in n) > 3
  length = np.asarray(info["length"])
  np.testing.assert_array_equal(length, lengths)
  assert (length[:count] > 0).all() and (length[count:] == 0).all()  # nothing dropped
  total = int(length.sum())
  assert int(info["transitions"]) == total == int(buf.size) - 4 == int(buf.ptr) - 4
  assert int(info["trajectories"]) == count
  got = _rows(buf, 4, total)
  _assert_same_rows(got, want)
  # order, checked directly: generator by generator, queue order within, each trajectory's
  # first row starts at its queue state and its last row carries the timeout
  order = [q for j in range(3) for q in range(count) if choice[q] == j]
  pos = 0
  for q in order:
    np.testing.assert_array_equal(got["observations"][pos], np.asarray(starts[q]))
    assert got["timeouts"][pos + length[q] - 1] == 1
    assert got["timeouts"][pos:pos + length[q] - 1].sum() == 0
    assert length[q] <= LENGTHS[choice[q]] - 1
    pos += length[q]
  # the rows before the call are untouched
  np.testing.assert_array_equal(_rows(buf, 0, 4)["observations"], _rows(pre, 0, 4)["observations"])


def test_count_zero_writes_nothing_and_full_queue_runs_several_chunks(diffuser):
  d = _to_generator(diffuser, 1)
  starts, key = _starts(d), jax.random.key(11)
  pre = _prefill(d, 5)
  buf, info = GEN(d, None, pre, key, starts, jnp.int32(0), TASKS, bucket_size=5)
  assert int(info["chunks"]) == 0 and int(info["transitions"]) == 0
  assert int(info["trajectories"]) == 0
  np.testing.assert_array_equal(np.asarray(info["generator"]), -1)
  assert int(buf.size) == 5 and int(buf.ptr) == 5
  for f in FIELDS:  # the whole ring, not only the filled rows
    np.testing.assert_array_equal(np.asarray(getattr(buf.data, f)),
                                  np.asarray(getattr(pre.data, f)), err_msg=f)
  # count = Qc, all on generator 1, bucket 5: chunks of 5, 5 and 2 states
  buf, info = GEN(d, None, pre, key, starts, jnp.int32(Q), TASKS, bucket_size=5)
  length = np.asarray(info["length"])
  assert int(info["chunks"]) == 3 and int(info["trajectories"]) == Q
  assert (length >= 1).all() and (length <= LENGTHS[1] - 1).all()
  assert int(buf.size) == 5 + length.sum() == 5 + int(info["transitions"])
  want, ref_len, _ = _reference(d, key, starts, Q, 5)
  np.testing.assert_array_equal(length, ref_len)
  _assert_same_rows(_rows(buf, 5, int(length.sum())), want)
  starts_rows = np.cumsum(np.concatenate([[0], length[:-1]]))
  np.testing.assert_array_equal(_rows(buf, 5, int(length.sum()))["observations"][starts_rows],
                                np.asarray(starts))


def test_compiles_once_for_every_count_and_uses_the_given_parameters(diffuser):
  d = _with_estimator(diffuser, 3.0, 5.0)
  traces = []

  def counted(*args, **kwargs):  # a wrapper of its own: newer jax shares jit caches per function
    traces.append(1)
    return adiff.generate_into(*args, **kwargs)

  fn = jax.jit(counted, static_argnames=STATIC)
  starts, key = _starts(d, seed=2), jax.random.key(4)
  ema = tuple(g.ema_params for g in d.generators)
  sizes = []
  for count in (0, 4, Q):
    buf, info = fn(d, ema, _empty(d), key, starts, jnp.int32(count), TASKS, bucket_size=4)
    sizes.append(int(buf.size))
  assert len(traces) == 1 and fn._cache_size() == 1
  assert sizes[0] == 0 < sizes[1] < sizes[2]
  # gen_params are what is sampled: the EMA params given explicitly = None; others differ
  same, _ = GEN(d, None, _empty(d), key, starts, jnp.int32(Q), TASKS, bucket_size=4)
  np.testing.assert_array_equal(np.asarray(same.data.observations),
                                np.asarray(buf.data.observations))
  other = jax.tree.map(lambda p: p * 0.5, ema)
  diff, _ = fn(d, other, _empty(d), key, starts, jnp.int32(Q), TASKS, bucket_size=4)
  assert not np.array_equal(np.asarray(diff.data.next_observations),
                            np.asarray(buf.data.next_observations))


def test_bad_arguments_name_the_argument(diffuser):
  starts = _starts(diffuser)
  with pytest.raises(ValueError, match="bucket_size"):
    adiff.generate_into(diffuser, None, _empty(diffuser), jax.random.key(0), starts,
                        jnp.int32(1), TASKS, bucket_size=0)
  with pytest.raises(ValueError, match="gen_params"):
    adiff.generate_into(diffuser, (diffuser.generators[0].ema_params,), _empty(diffuser),
                        jax.random.key(0), starts, jnp.int32(1), TASKS, bucket_size=4)


def test_vmapped_over_points_matches_each_point(diffuser):
  """A sweep vmaps the round over points (own buffer, key, queue, count, parameters; shared
  diffuser): the while_loops then run to the largest chunk count with finished points held."""
  d = _with_estimator(diffuser, 3.0, 5.0)
  ema = tuple(g.ema_params for g in d.generators)
  params = [ema, jax.tree.map(lambda p: p * 0.9, ema)]
  starts = [_starts(d, seed=21), _starts(d, seed=22)]
  counts, keys = [Q, 3], [jax.random.key(31), jax.random.key(32)]
  bufs = [_prefill(d, 2), _empty(d)]
  stack = lambda xs: jax.tree.map(lambda *x: jnp.stack(x), *xs)
  run = lambda p, s, k, q, n: adiff.generate_into(d, p, s, k, q, n, TASKS, bucket_size=4,
                                                  max_action=1.0)
  out, info = jax.jit(jax.vmap(run))(stack(params), stack(bufs), stack(keys), stack(starts),
                                     jnp.asarray(counts, jnp.int32))
  assert int(info["chunks"][0]) > int(info["chunks"][1]) > 0
  for i in range(2):
    one, one_info = GEN(d, params[i], bufs[i], keys[i], starts[i], jnp.int32(counts[i]), TASKS,
                        bucket_size=4, max_action=1.0)
    for name in ("length", "generator", "chunks", "transitions", "out_of_range_rows"):
      np.testing.assert_array_equal(np.asarray(info[name][i]), np.asarray(one_info[name]))
    got = jax.tree.map(lambda x: x[i], out)
    assert int(got.size) == int(one.size) and int(got.ptr) == int(one.ptr)
    n = int(one.size)
    want = _rows(one, 0, n)
    got_rows = _rows(got, 0, n)
    for f in FIELDS:  # batched matmuls may sum in another order
      np.testing.assert_allclose(got_rows[f], want[f], rtol=1e-5, atol=1e-5, err_msg=f)
