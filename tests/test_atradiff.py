"""ATraDiff: data preparation, pruner, length rounding, modified buffer, importance buffers and
diffuser reuse (the online functions and runs: tests/test_atradiff_online.py)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug.configs_io import load_config_file

from jaxaug.augment.atradiff import buffer as abuffer
from jaxaug.augment.atradiff import data as adata
from jaxaug.augment.atradiff import importance as aimp
from jaxaug.augment.atradiff import length as alength
from jaxaug.augment.atradiff import pruner
from jaxaug.augment.atradiff.adapt import real_windows
from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.types import EnvSpec
from tests.helpers.atradiff_data import toy_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(preset="tiny"):
  return load_config_file(f"atradiff:{preset}")


_toy_dataset = toy_dataset


# ------------------------------------------------------------------------- data preparation

def test_padded_rows_and_windows_end_in_copies_of_the_last_state():
  ds = _toy_dataset((3, 5))
  rows, starts, remaining = adata.padded_rows(ds, pad=4)
  assert rows.shape == (3 + 1 + 4 + 5 + 1 + 4, 4)
  np.testing.assert_array_equal(starts, [0, 1, 2, 8, 9, 10, 11, 12])
  np.testing.assert_array_equal(remaining, [3, 2, 1, 5, 4, 3, 2, 1])
  # window of length 4 from the last transition of episode 0: s_3, then s_4 copied, a = r = 0
  w = rows[starts[2] + np.arange(4)]
  np.testing.assert_array_equal(w[0, :2], ds.observations[2])
  for j in (1, 2, 3):
    np.testing.assert_array_equal(w[j, :2], ds.next_observations[2])
    assert w[j, 2] == 0 and w[j, 3] == 0
  # a window inside episode 1 is the raw rows
  w = rows[starts[3] + np.arange(4)]
  np.testing.assert_array_equal(w[:, :2], ds.observations[3:7])
  np.testing.assert_array_equal(w[:, 3], ds.rewards[3:7])


def test_window_batch_condition_is_the_first_state_and_task_one_hot():
  ds = _toy_dataset((3, 5))
  stats = adata.fit_row_stats(ds)
  wd = adata.build_window_data(ds, stats, 6, task_ids=np.arange(len(ds)) % 3)
  b = adata.sample_window_batch(wd, jax.random.key(0), 16, 6, ds.obs_dim, num_tasks=3)
  assert b["x"].shape == (16, 6 * 4) and b["cond"].shape == (16, 2 + 3)
  x = np.asarray(b["x"]).reshape(16, 6, 4)
  np.testing.assert_allclose(np.asarray(b["cond"])[:, :2], x[:, 0, :2])
  np.testing.assert_allclose(np.asarray(b["cond"])[:, 2:].sum(1), 1.0)


# ------------------------------------------------------------------------- pruner

def _crafted(k, end, obs_dim=6, seed=0, noise=1e-3):
  """States s_1..s_end moving (random directions, step length 0.7-1.3 sqrt(obs_dim), i.e. a
  trajectory at roughly steady speed), then copies of s_end (+ tiny noise)."""
  rng = np.random.default_rng(seed)
  d = rng.normal(0, 1.0, (k, obs_dim))
  d *= (rng.uniform(0.7, 1.3, (k, 1)) * np.sqrt(obs_dim) / np.linalg.norm(d, axis=1,
                                                                           keepdims=True))
  s = np.cumsum(d, axis=0)
  s[end:] = s[end - 1] + rng.normal(0, noise, (k - end, obs_dim))
  return s


@pytest.mark.parametrize("k,ends", [(10, (2, 4, 7, 9)), (25, (3, 8, 14, 18, 24))])
def test_pruner_finds_known_ends_and_keeps_windows_without_one(k, ends):
  known = [_crafted(k, e, seed=10 * e + s) for e in ends for s in range(3)]
  no_end = [_crafted(k, k, seed=100 + s) for s in range(3)]
  static_start = []
  for s in range(3):  # standing still first, then moving: not an end
    x = _crafted(k, k, seed=200 + s)
    x[:3] = x[0]
    static_start.append(x)
  states = jnp.asarray(np.stack(known + no_end + static_start), jnp.float32)
  kept = np.asarray(jax.jit(pruner.prune_lengths)(states))
  # an end at state e keeps the e - 1 transitions s_1->s_2 ... s_{e-1}->s_e
  np.testing.assert_array_equal(kept[:len(known)], np.repeat(np.asarray(ends) - 1, 3))
  np.testing.assert_array_equal(kept[len(known):], k - 1)


def test_pruner_gap_definition_matches_prefix_suffix_means():
  sim = jnp.asarray([[0.2, 0.4, 0.9, 1.0]])  # k = 5
  gaps = np.asarray(pruner.split_gaps(sim))[0]
  assert np.isinf(gaps[0]) and np.isinf(gaps[4])
  np.testing.assert_allclose(gaps[1], np.mean([0.4, 0.9, 1.0]) - 0.2, rtol=1e-6)
  np.testing.assert_allclose(gaps[2], np.mean([0.9, 1.0]) - np.mean([0.2, 0.4]), rtol=1e-6)
  np.testing.assert_allclose(gaps[3], 1.0 - np.mean([0.2, 0.4, 0.9]), rtol=1e-6)


def test_inpainting_imposes_the_first_state_on_samples():
  from jaxaug.augment.atradiff.diffuser import _inpaint_first_state
  from jaxaug.diffusion import samplers
  first = jnp.asarray([[1.0, -2.0], [0.5, 3.0]])
  den = _inpaint_first_state(lambda x, sigma, cond=None, use_cond=None: 0.5 * x, first)
  x = jax.jit(lambda k: samplers.heun_sample(den, k, (2, 6), samplers.SamplerConfig(num_steps=4)))(
      jax.random.key(0))
  np.testing.assert_allclose(np.asarray(x)[:, :2], np.asarray(first), atol=1e-5)


def test_terminal_rule_ends_synthetic_trajectories_at_their_first_terminal():
  """synthesize(terminal_fn=...): each trajectory keeps the same transitions up to and including
  its first terminal one (stored with terminal = 1 and no timeout), and nothing after it."""
  from jaxaug.augment.atradiff import diffuser as adiff
  c = _config().atradiff
  ds = _toy_dataset(lengths=(12, 15, 9), terminal_last=False)
  d = adiff.train_diffuser(jax.random.key(0), ds, c, train=False)  # untrained: any states
  q = 16
  starts = jnp.asarray(np.random.default_rng(0).normal(size=(q, 2)), jnp.float32)
  valid = jnp.arange(q) < 13
  key = jax.random.key(1)
  base, base_mask, base_info = jax.jit(adiff.synthesize)(d, key, starts, valid)
  # Half of the trajectories reach the threshold within their stored part, half do not.
  stored = np.where(np.asarray(base_mask), np.asarray(base.next_observations)[:, 0], -np.inf)
  per_traj_max = stored.reshape(q, -1).max(axis=1)[:13]
  threshold = float(np.median(per_traj_max))
  rule = lambda s: s[..., 0] > threshold
  tr, mask, info = jax.jit(lambda *a: adiff.synthesize(*a, terminal_fn=rule))(
      d, key, starts, valid)
  kmax = d.spec.max_length
  base_mask, mask = (np.asarray(m).reshape(q, kmax - 1) for m in (base_mask, mask))
  term = np.asarray(tr.terminals).reshape(q, kmax - 1)
  tout = np.asarray(tr.timeouts).reshape(q, kmax - 1)
  hits = np.asarray(base.next_observations)[:, 0].reshape(q, kmax - 1) > threshold
  np.testing.assert_array_equal(np.asarray(tr.next_observations), np.asarray(base.next_observations))
  assert not np.asarray(base.terminals).any()  # no rule: never terminal (the paper's setting)
  n_terminal = 0
  for i in range(q):
    n_base = int(base_mask[i].sum())
    first = int(np.argmax(hits[i])) if hits[i].any() else kmax
    expected = min(n_base, first + 1)
    assert int(mask[i].sum()) == expected == int(np.asarray(info["length"])[i])
    assert mask[i, :expected].all()  # a prefix
    if first < n_base:  # ended by the rule
      assert term[i, first] == 1 and tout[i, first] == 0 and term[i].sum() == 1
      n_terminal += 1
    else:
      assert term[i].sum() == 0 and (n_base == 0 or tout[i, n_base - 1] == 1)
  assert 0 < n_terminal < 13  # the rule ended some trajectories and not others


# ------------------------------------------------------------------------- length estimator

def test_round_up_to_preset_lengths():
  presets = (5, 10, 15, 20, 25)
  pred = jnp.asarray([1.0, 5.0, 5.01, 9.99, 12.0, 20.0, 24.5, 25.0, 26.0, 80.0])
  idx = np.asarray(alength.round_up_to_preset(pred, presets))
  np.testing.assert_array_equal(np.asarray(presets)[idx], [5, 5, 10, 10, 15, 20, 25, 25, 25, 25])
  # unsorted presets are sorted first
  idx = np.asarray(alength.round_up_to_preset(jnp.asarray([6.0]), (10, 5)))
  assert idx[0] == 1


def test_length_estimator_learns_needed_length_and_rounds_up():
  lengths = (5, 10, 15)
  rng = np.random.default_rng(0)
  remaining = rng.integers(1, 20, 2048)
  cond = jnp.asarray(remaining[:, None] / 20.0, jnp.float32)  # state encodes the remaining steps
  est = alength.init_estimator(jax.random.key(0), 1, lengths, (64, 64), 3e-3)
  train = jax.jit(lambda s: jax.lax.scan(
      lambda c, _: alength.update(c, cond, jnp.asarray(remaining)), s, None, length=300))
  est, _ = train(est)
  needed = np.minimum(remaining + 1, 16)
  pred = np.asarray(alength.predict(est, cond))
  assert np.mean(np.abs(pred - needed)) < 1.0
  idx = np.asarray(alength.round_up_to_preset(jnp.asarray(pred), lengths))
  truth = np.asarray(alength.round_up_to_preset(jnp.asarray(needed, jnp.float32), lengths))
  assert np.mean(idx == truth) > 0.8


# ------------------------------------------------------------------------- modified buffer

def _buffer(n, obs_dim, marker, capacity=None):
  buf = replay.init_buffer(obs_dim, 1, capacity or n)
  t = Transitions(observations=jnp.zeros((n, obs_dim)), actions=jnp.zeros((n, 1)),
                  rewards=jnp.full((n,), marker, jnp.float32),
                  next_observations=jnp.zeros((n, obs_dim)), terminals=jnp.zeros((n,)),
                  timeouts=jnp.zeros((n,)))
  return replay.add(buf, t)


@pytest.mark.parametrize("rho", [0.25, 0.5, 0.8])
def test_sample_gives_synthetic_share_rho(rho):
  real, syn = _buffer(100, 2, 0.0), _buffer(50, 2, 1.0)
  batch, from_syn = jax.jit(lambda k: abuffer.sample(real, syn, k, 20_000, rho))(
      jax.random.key(3))
  share = float(np.mean(np.asarray(batch.rewards)))
  assert abs(share - rho) < 0.015
  np.testing.assert_array_equal(np.asarray(batch.rewards), np.asarray(from_syn, np.float32))


def test_sample_uses_real_rows_while_synthetic_is_empty():
  real = _buffer(10, 2, 0.0)
  syn = replay.init_buffer(2, 1, 10)
  batch, from_syn = jax.jit(lambda k: abuffer.sample(real, syn, k, 256, 0.9))(jax.random.key(0))
  assert not bool(np.any(np.asarray(from_syn)))


def test_add_masked_writes_only_valid_rows_in_order_and_wraps():
  buf = replay.init_buffer(1, 1, 5)
  n = 6
  vals = jnp.arange(n, dtype=jnp.float32)
  batch = Transitions(observations=vals[:, None], actions=jnp.zeros((n, 1)), rewards=vals,
                      next_observations=vals[:, None], terminals=jnp.zeros(n),
                      timeouts=jnp.zeros(n))
  mask = jnp.asarray([1, 0, 1, 1, 0, 0], bool)
  add = jax.jit(abuffer.add_masked)
  buf = add(buf, batch, mask)
  assert int(buf.size) == 3 and int(buf.ptr) == 3
  np.testing.assert_array_equal(np.asarray(buf.data.rewards)[:3], [0, 2, 3])
  buf = add(buf, batch, jnp.asarray([0, 1, 0, 0, 1, 1], bool))
  assert int(buf.size) == 5 and int(buf.ptr) == 1
  np.testing.assert_array_equal(np.asarray(buf.data.rewards), [5, 2, 3, 1, 4])


# ------------------------------------------------------------------------- importance buffers

_insert = jax.jit(aimp.insert)
_refresh = jax.jit(aimp.refresh)
_select_top = jax.jit(aimp.select_top, static_argnums=1)
_rotate = jax.jit(aimp.rotate, static_argnums=(3, 4))

def test_td_heap_keeps_most_important_and_refreshes():
  h = aimp.init_importance(4)
  h = _insert(h, jnp.asarray([10, 11, 12]), jnp.asarray([0.5, 3.0, 1.0]))
  h = _insert(h, jnp.asarray([13, 14, 15]), jnp.asarray([0.1, 2.0, 5.0]))
  assert sorted(np.asarray(h.index).tolist()) == [11, 12, 14, 15]  # 10 and 13 evicted
  rows, valid, _ = _select_top(h, 2)
  assert sorted(np.asarray(rows).tolist()) == [11, 15] and bool(np.all(valid))
  # priorities change with the critic: refresh re-ranks every entry
  new = jnp.where(h.index == 12, 9.0, 0.0)
  rows, _, _ = _select_top(_refresh(h, new), 1)
  assert int(rows[0]) == 12
  # a row overwritten in D_o replaces its stale entry (and priority)
  h = _insert(h, jnp.asarray([15]), jnp.asarray([0.01]))
  assert np.asarray(h.index).tolist().count(15) == 1
  assert float(h.priority[h.index == 15][0]) == pytest.approx(0.01)
  # a full heap rejects a sample less important than all it holds
  h = _insert(h, jnp.asarray([16]), jnp.asarray([0.5]))
  h = _insert(h, jnp.asarray([17]), jnp.asarray([0.001]))
  assert sorted(np.asarray(h.index).tolist()) == [11, 12, 14, 16]


def test_td_heap_select_top_k_of_many():
  h = aimp.init_importance(50)
  pri = jnp.asarray(np.random.default_rng(0).permutation(100), jnp.float32)
  h = _insert(h, jnp.arange(100), pri)
  assert int(aimp.size(h)) == 50
  rows, valid, _ = _select_top(h, 5)
  np.testing.assert_array_equal(np.sort(np.asarray(pri)[np.asarray(rows)]), [95, 96, 97, 98, 99])


def test_reward_buffer_rotation_and_random_dropping():
  r = aimp.init_importance(6)
  r = _insert(r, jnp.arange(6), jnp.asarray([1.0, 1, 1, 5, 5, 5]))  # two episodes
  rows, _, slots = _select_top(r, 3)
  assert sorted(np.asarray(rows).tolist()) == [3, 4, 5]
  r1 = _rotate(r, jax.random.key(0), slots, max_uses=2, drop_prob=0.0)
  assert int(aimp.size(r1)) == 6  # one use: kept
  r2 = _rotate(r1, jax.random.key(1), slots, max_uses=2, drop_prob=0.0)
  assert sorted(np.asarray(r2.index[r2.index >= 0]).tolist()) == [0, 1, 2]  # rotated out
  # random dropping hits used entries only, regardless of importance
  r3 = _rotate(r, jax.random.key(2), slots, max_uses=100, drop_prob=1.0)
  assert sorted(np.asarray(r3.index[r3.index >= 0]).tolist()) == [0, 1, 2]
  # freed slots take new samples
  r4 = _insert(r2, jnp.asarray([7]), jnp.asarray([0.5]))
  assert 7 in np.asarray(r4.index).tolist()


def test_td_error_indicator_of_sac_family_states():
  from jaxaug.agents import redq
  c = redq.get_config()
  c.hidden_dims = (16,)
  c.num_critics = 3
  spec = EnvSpec(4, 2, 1.0)
  state = jax.jit(lambda k: redq.init(k, spec, c))(jax.random.key(0))
  k = jax.random.split(jax.random.key(1), 3)
  n = 8
  batch = Transitions(observations=jax.random.normal(k[0], (n, 4)),
                      actions=jax.random.uniform(k[1], (n, 2), minval=-1, maxval=1),
                      rewards=jnp.arange(n, dtype=jnp.float32),
                      next_observations=jax.random.normal(k[2], (n, 4)),
                      terminals=jnp.asarray([1.0] * 4 + [0.0] * 4), timeouts=jnp.zeros(n))

  @jax.jit
  def check(state, batch):
    td = aimp.td_error(redq.td_error, state, batch, jax.random.key(2))
    q = state.critic.apply_fn(state.critic.params, batch.observations, batch.actions).mean(0)
    return td, q

  td, q = check(state, batch)
  td, q = np.asarray(td), np.asarray(q)
  assert np.all(td >= 0)
  # terminal rows: |r - mean_i Q_i(s, a)| (no bootstrap)
  np.testing.assert_allclose(td[:4], np.abs(np.arange(4) - q[:4]), rtol=1e-5, atol=1e-5)


def test_real_windows_from_ring_pad_after_episode_end_and_flag_incomplete():
  buf = replay.init_buffer(1, 1, 8)
  n = 6  # episode rows 0..2 (terminal at 2), 3..5 still running
  s = jnp.arange(n, dtype=jnp.float32)
  t = Transitions(observations=s[:, None], actions=jnp.ones((n, 1)), rewards=s + 100,
                  next_observations=(s + 0.5)[:, None],
                  terminals=jnp.asarray([0, 0, 1, 0, 0, 0.]), timeouts=jnp.zeros(n))
  buf = replay.add(buf, t)
  x, complete = jax.jit(real_windows, static_argnums=2)(buf, jnp.asarray([1, 3, 4]), 4)
  x = np.asarray(x)
  np.testing.assert_array_equal(x[0, :, 0], [1, 2, 2.5, 2.5])  # end at row 2, then s'
  np.testing.assert_array_equal(x[0, :, 2], [101, 102, 0, 0])
  np.testing.assert_array_equal(np.asarray(complete), [True, False, False])


def test_synthesize_counts_out_of_range_actions_and_clips_only_when_asked():
  from jaxaug.augment.atradiff import diffuser as adiff
  c = _config().atradiff
  ds = _toy_dataset(lengths=(12, 15, 9))
  d = adiff.train_diffuser(jax.random.key(0), ds, c, train=False)  # untrained: wide samples
  starts = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)), jnp.float32)
  valid = jnp.arange(8) < 6
  # without a bound nothing is counted or changed (the old call signature)
  plain, mask, info0 = jax.jit(adiff.synthesize)(d, jax.random.key(1), starts, valid)
  assert "out_of_range_rows" not in info0
  m = np.asarray(mask)
  bound = float(np.median(np.abs(np.asarray(plain.actions)[m])))  # half the entries outside
  run = jax.jit(adiff.synthesize, static_argnames=("max_action", "clip_actions"))
  raw, _, info = run(d, jax.random.key(1), starts, valid, max_action=bound, clip_actions=False)
  clipped, mask2, info2 = run(d, jax.random.key(1), starts, valid, max_action=bound)
  np.testing.assert_array_equal(m, np.asarray(mask2))
  np.testing.assert_array_equal(np.asarray(plain.actions), np.asarray(raw.actions))
  a_raw, a_clip = np.asarray(raw.actions)[m], np.asarray(clipped.actions)[m]
  outside = np.abs(a_raw) > bound
  assert outside.any() and not outside.all()
  assert int(info["out_of_range_entries"]) == int(info2["out_of_range_entries"]) == outside.sum()
  assert int(info["out_of_range_rows"]) == outside.any(axis=1).sum()
  np.testing.assert_allclose(a_clip, np.clip(a_raw, -bound, bound))


# ------------------------------------------------------------------------- diffuser reuse

def test_diffuser_dir_refuses_another_dataset_or_config(tmp_path):
  """Defect: a diffuser found in diffuser_dir was reused whatever it had been trained on."""
  from jaxaug.augment.atradiff import diffuser as adiff
  from jaxaug.augment.atradiff import store as astore
  c = _config().atradiff
  ds = _toy_dataset(lengths=(12, 15, 9))
  d = adiff.train_diffuser(jax.random.key(0), ds, c, train=False)
  fp = astore.fingerprint(ds, "toy:a", c)
  lfp = astore.length_fingerprint(c, "Hopper-v5")
  directory = str(tmp_path / "diffuser")
  astore.save(directory, d, fp, 3.5, lfp)
  # same data (under another spec) and config: reused, with its L
  got, meta = astore.restore(directory, jax.random.key(5), ds, c,
                             astore.fingerprint(ds, "toy:b", c))
  assert meta["expected_length"] == 3.5 and meta["length_fingerprint"] == lfp
  np.testing.assert_array_equal(np.asarray(got.stats.mean), np.asarray(d.stats.mean))
  # one reward changed: another dataset, refused with both names
  other = _toy_dataset(lengths=(12, 15, 9))
  other.rewards[3] += 1.0
  with pytest.raises(ValueError, match=r"trained on dataset 'toy:a'.*offline_dataset is 'toy:c'"):
    astore.restore(directory, jax.random.key(5), other, c, astore.fingerprint(other, "toy:c", c))
  # another generator width: refused, naming the field and both values
  c2 = _config().atradiff
  c2.denoiser_width = 48
  with pytest.raises(ValueError, match=r"denoiser_width: trained with 32, this run 48"):
    astore.restore(directory, jax.random.key(5), ds, c2, astore.fingerprint(ds, "toy:a", c2))
  # a diffuser saved without a fingerprint (before this check existed) is not trusted
  from jaxaug.train.checkpoint import Checkpointer
  old = str(tmp_path / "old")
  ck = Checkpointer(old, max_to_keep=1)
  ck.save(0, d, meta={"expected_length": 3.0})
  ck.wait()
  ck.close()
  with pytest.raises(ValueError, match="without a training fingerprint"):
    astore.restore(old, jax.random.key(5), ds, c, fp)
  # an empty directory: nothing to reuse
  assert astore.restore(str(tmp_path / "empty"), jax.random.key(5), ds, c, fp) == (None, None)


def test_sampler_settings_only_recompute_the_expected_length():
  from jaxaug.augment.atradiff import store as astore
  c = _config().atradiff
  c2 = _config().atradiff
  c2.num_sample_steps = 8
  assert astore.diffuser_fingerprint(c) == astore.diffuser_fingerprint(c2)
  assert astore.length_fingerprint(c, "Hopper-v5") != astore.length_fingerprint(c2, "Hopper-v5")


# ------------------------------------------------------------------------- presets

@pytest.mark.parametrize("agent", ["sac", "redq", "rlpd"])
@pytest.mark.parametrize("env", ["hopper", "halfcheetah", "walker2d"])
def test_paper_presets_read_d4rl_medium_replay_under_data_dir(agent, env):
  """Defect: {sac,redq,rlpd}-{halfcheetah,walker2d} pointed at embedded datasets that do not
  exist. Every paper preset reads D4RL's file under the config's data_dir, lazily."""
  c = _config(f"{agent}-{env}")
  expected = f"d4rl:{c.data_dir}/{env}-medium-replay-v2.hdf5"
  assert c.atradiff.offline_dataset == expected
  assert c.num_env_steps == 250_000  # Sec. 5.1 / Fig. 4
  c.data_dir, c.dataset_quality = "/data/d4rl", "medium-expert"
  assert c.atradiff.offline_dataset == f"d4rl:/data/d4rl/{env}-medium-expert-v2.hdf5"
  if agent == "rlpd":  # symmetric sampling reads the same dataset; online adaptation on
    assert c.offline_dataset == c.atradiff.offline_dataset
    assert c.atradiff.adapt and c.atradiff.importance == "td_error"
  else:  # Sec. 5.1 uses the fixed diffuser
    assert not c.atradiff.adapt
  c.atradiff.offline_dataset = "embedded:hopper-medium-replay"  # an explicit spec replaces it
  assert c.atradiff.offline_dataset == "embedded:hopper-medium-replay"
  # paper settings kept as the method's defaults
  a = c.atradiff
  assert a.expected_length == 0  # L from preliminary generation (Sec. 4.2)
  assert tuple(a.lengths) == (5, 10, 15, 20, 25)
  assert (a.td_heap_size, a.td_top_k, a.reward_buffer_size) == (50_000, 5_000, 5_000)  # App. A.1


def test_embedded_presets_name_datasets_the_package_has():
  from jaxaug.data.loaders import load_dataset
  for preset in ("tiny", "tiny-rlpd", "cpu-hopper", "cpu-redq-hopper"):
    c = _config(preset)
    assert c.atradiff.offline_dataset.startswith("embedded:")
    assert load_dataset(c.atradiff.offline_dataset).obs_dim == 11
  c = _config("cpu-halfcheetah")
  assert c.atradiff.offline_dataset == f"d4rl:{c.data_dir}/halfcheetah-medium-replay-v2.hdf5"


def _paper_prune_reference(states):
  """The pruner formula as printed in the paper, with explicit loops (1-based indices)."""
  k = states.shape[0]
  c = {j: float(np.exp(-np.linalg.norm(states[j] - states[j - 1]) / np.sqrt(states.shape[1])))
       for j in range(1, k)}  # c[j] = sim(s_j, s_{j+1}) with 1-based j
  best, end = -1.0, None
  for i in range(2, k):
    pre = np.mean([c[j] for j in range(1, i + 1)])
    suf = np.mean([c[j - 1] for j in range(i, k + 1)])  # sim(s_{j-1}, s_j), j = i..k
    if abs(pre - suf) > best:
      best, end = abs(pre - suf), i
  return end - 1


def test_paper_pruner_rule_matches_the_printed_formula_and_is_the_default():
  assert _config().atradiff.prune_rule == "paper"  # paper presets prune as printed
  assert _config("sac-hopper").atradiff.prune_rule == "paper"
  fixed = _config("sac-hopper+fixes")
  assert fixed.atradiff.prune_rule == "signed"
  # +fixes differs from the paper preset only in the switches of FIXES
  base = _config("sac-hopper").to_dict()
  base["atradiff"]["prune_rule"] = "signed"
  assert fixed.to_dict() == base
  states = [_crafted(10, e, seed=s) for e in (3, 6, 9) for s in range(2)]
  states += [_crafted(12, 12, seed=50 + s) for s in range(2)]  # no ending: cut anyway
  slow = _crafted(10, 10, seed=70)
  slow[:3] = slow[0]
  for x in states + [slow]:
    got = int(pruner.prune_lengths(jnp.asarray(x[None], jnp.float32), 0.1, rule="paper")[0])
    assert got == _paper_prune_reference(x)
  # the printed rule's weakness that the signed rule fixes: a slow start is taken as the end
  assert int(pruner.prune_lengths(jnp.asarray(slow[None], jnp.float32), rule="paper")[0]) < 3
  assert int(pruner.prune_lengths(jnp.asarray(slow[None], jnp.float32), rule="signed")[0]) == 9
  with pytest.raises(ValueError, match="prune_rule"):
    from jaxaug.augment.atradiff import diffuser as adiff
    bad = _config().atradiff
    bad.prune_rule = "nope"
    adiff.spec_from_config(bad, 11, 3)
