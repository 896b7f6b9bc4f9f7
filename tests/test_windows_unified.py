"""One windows module for GTA and ATraDiff (jaxaug.data.windows): same arrays as before.

The expected fingerprints (sha256 of dtype, shape and bytes, first 16 hex digits) were recorded
on the embedded hopper-medium-replay dataset with the code before the merge (separate GTA and
ATraDiff window modules and normalisers; identical under jax 0.10.2 / Python 3.11 and jax 0.12 /
Python 3.12). Every key must still match bit for bit: GTA's windows, encodings, decodings and
conditions; ATraDiff's row statistics, gathered windows of every preset length and batches;
windows cut from the online ring (adaptation); SynthER's normalised rows.
"""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synther as scfg
from jaxaug.augment import gta, synther
from jaxaug.augment.atradiff import adapt
from jaxaug.augment.atradiff import data as adata
from jaxaug.data import replay, windows
from jaxaug.data.dataset import OfflineDataset, Transitions
from jaxaug.data.loaders import load_dataset
from jaxaug.data.normalize import NormStats

EXPECTED = {
    "atd/first_state": "d05431cf5207caff",
    "atd/gather/10": "e9ec894082836613",
    "atd/gather/15": "60b3646238d243c7",
    "atd/gather/20": "67f172c58ea7fbcf",
    "atd/gather/25": "87d3e46df3d4a0d3",
    "atd/gather/5": "cb91d34f935236c4",
    "atd/remaining": "4af45c3c44e77bf0",
    "atd/sample/10/0/cond": "7427a87924d01be5",
    "atd/sample/10/0/x": "7e40e5eca2a0b747",
    "atd/sample/10/3/cond": "165ffd478a9cb0b1",
    "atd/sample/10/3/x": "7e40e5eca2a0b747",
    "atd/sample/15/0/cond": "6733f1fade1132df",
    "atd/sample/15/0/x": "05193774beedcb2a",
    "atd/sample/15/3/cond": "10f69a18f1fe6c5d",
    "atd/sample/15/3/x": "05193774beedcb2a",
    "atd/sample/20/0/cond": "e49834de96b4bc80",
    "atd/sample/20/0/x": "c7911da55debca1c",
    "atd/sample/20/3/cond": "e31853478e1bb7d3",
    "atd/sample/20/3/x": "c7911da55debca1c",
    "atd/sample/25/0/cond": "1262a40fff339897",
    "atd/sample/25/0/x": "4182a416f43fd889",
    "atd/sample/25/3/cond": "79592cc9966f132d",
    "atd/sample/25/3/x": "4182a416f43fd889",
    "atd/sample/5/0/cond": "5aec82aee277f492",
    "atd/sample/5/0/x": "f875318aff25f369",
    "atd/sample/5/3/cond": "73096d17ba350a56",
    "atd/sample/5/3/x": "f875318aff25f369",
    "atd/stats/mean": "c26646dce42d6873",
    "atd/stats/std": "ccd900f1fcfdd2ba",
    "atd/task_ids": "989a479cf8c3a73f",
    "gta/pad/decode_decoded/actions": "b824b9e475f1c18f",
    "gta/pad/decode_decoded/next_observations": "26511a2499df0324",
    "gta/pad/decode_decoded/observations": "42155ffbe7183d25",
    "gta/pad/decode_decoded/rewards": "5849775bcc979c17",
    "gta/pad/decode_decoded/terminals": "b62b637094f85aa6",
    "gta/pad/decode_decoded/timeouts": "eb491321276ff17f",
    "gta/pad/decode_official/actions": "b824b9e475f1c18f",
    "gta/pad/decode_official/next_observations": "26511a2499df0324",
    "gta/pad/decode_official/observations": "42155ffbe7183d25",
    "gta/pad/decode_official/rewards": "1ff6f6f695db0e15",
    "gta/pad/decode_official/terminals": "b62b637094f85aa6",
    "gta/pad/decode_official/timeouts": "eb491321276ff17f",
    "gta/pad/encode/cond": "61b1d37c5f8424d8",
    "gta/pad/encode/lengths": "76f6e10251f6c040",
    "gta/pad/encode/mask": "36eccd9846ce88cf",
    "gta/pad/encode/x": "867de397f5c2e5ac",
    "gta/pad/episode_returns": "06395302ff4c9dec",
    "gta/pad/gather_raw": "81905bf18b3cd344",
    "gta/pad/lengths": "09ae29ebfc9ddb50",
    "gta/pad/mean": "29be2ee927520a5b",
    "gta/pad/returns": "4de444f26d8fc008",
    "gta/pad/sample/cond": "07ac7dde17c4a8b8",
    "gta/pad/sample/mask": "8566e1c2d0fd780b",
    "gta/pad/sample/x": "5f798d3704afe9ed",
    "gta/pad/src_term": "b5f9b0cb398fc3bf",
    "gta/pad/starts": "ecaddf5e8e90ed5b",
    "gta/pad/std": "1b78deb8e630322f",
    "gta/pad/window_episode": "7ae7f4d6f5dd7580",
    "gta/skip/decode_decoded/actions": "f801ca6b4fd7be02",
    "gta/skip/decode_decoded/next_observations": "f9bf07f37173405b",
    "gta/skip/decode_decoded/observations": "1e2249273eca4763",
    "gta/skip/decode_decoded/rewards": "c6e5eee097dccb6e",
    "gta/skip/decode_decoded/terminals": "923bc903d47ed0e5",
    "gta/skip/decode_decoded/timeouts": "882969e5575fb86d",
    "gta/skip/decode_official/actions": "f801ca6b4fd7be02",
    "gta/skip/decode_official/next_observations": "f9bf07f37173405b",
    "gta/skip/decode_official/observations": "1e2249273eca4763",
    "gta/skip/decode_official/rewards": "337d16aa153ae222",
    "gta/skip/decode_official/terminals": "923bc903d47ed0e5",
    "gta/skip/decode_official/timeouts": "882969e5575fb86d",
    "gta/skip/encode/cond": "64760c7adf634d54",
    "gta/skip/encode/lengths": "ef61ae965fd10bb2",
    "gta/skip/encode/mask": "6c0c87b8865fb9a6",
    "gta/skip/encode/x": "04979c7066a8259b",
    "gta/skip/episode_returns": "08c20ccb63f9a6e1",
    "gta/skip/gather_raw": "2c8dcfe730f55f6c",
    "gta/skip/lengths": "8c8d4ca375f37762",
    "gta/skip/mean": "29be2ee927520a5b",
    "gta/skip/returns": "8cbd813a03ff5030",
    "gta/skip/sample/cond": "f5c75610a4110633",
    "gta/skip/sample/mask": "8566e1c2d0fd780b",
    "gta/skip/sample/x": "a66a162441c0d51b",
    "gta/skip/src_term": "502e461441f11736",
    "gta/skip/starts": "1826e12e0a8a7e87",
    "gta/skip/std": "1b78deb8e630322f",
    "gta/skip/window_episode": "dd2a571e310076f0",
    "n": "1f678252da49efa2",
    "ring/batch_cond": "0ef89eddb363103f",
    "ring/batch_w": "fe6fec5d8e00ab18",
    "ring/batch_x": "75afe397eb212a10",
    "ring/complete": "62eb195817b36081",
    "ring/x": "4ab4f284e3cba7ef",
    "ring_partial/complete": "13174bbf92600153",
    "ring_partial/x": "ca7d5ea373319150",
    "synther/mean": "6e1e885d3648946d",
    "synther/rows": "e532a9cc442498a1",
    "synther/std": "1fb7480fd26349f8",
}


def _h(x) -> str:
  x = np.ascontiguousarray(np.asarray(x))
  return hashlib.sha256(x.dtype.str.encode() + str(x.shape).encode() + x.tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def hopper():
  return load_dataset("embedded:hopper-medium-replay")


def _check(out: dict, prefix: str):
  expected = {k: v for k, v in EXPECTED.items() if k.startswith(prefix)}
  assert set(out) == set(expected)
  changed = sorted(k for k in out if out[k] != expected[k])
  assert not changed, f"arrays changed: {changed}"


def test_gta_windows_are_bitwise_unchanged(hopper):
  ds = hopper
  out = {"n": _h(np.array([len(ds)]))}
  for mode in ("skip", "pad"):
    d = windows.build_windows(ds, horizon=32, short_episodes=mode)
    w = d.num_windows
    idx = jnp.asarray(np.unique(np.concatenate([np.arange(0, w, 97), np.arange(w - 40, w)])),
                      jnp.int32)
    b = windows.encode(d, idx)
    src = windows.source_terminals(d, idx)
    for k in ("starts", "lengths", "returns", "window_episode", "episode_returns", "mean", "std"):
      out[f"gta/{mode}/{k}"] = _h(getattr(d, k))
    for k, v in b.items():
      out[f"gta/{mode}/encode/{k}"] = _h(v)
    out[f"gta/{mode}/src_term"] = _h(src)
    out[f"gta/{mode}/gather_raw"] = _h(windows.gather_raw(d, idx)[0])
    for label, st in (("official", src), ("decoded", None)):
      dec = windows.decode(d, b["x"], b["lengths"], st)
      for k, v in windows.flatten_valid(dec).items():
        out[f"gta/{mode}/decode_{label}/{k}"] = _h(v)
    for k, v in windows.sample_batch(d, jax.random.key(3), 64).items():
      out[f"gta/{mode}/sample/{k}"] = _h(v)
  _check({k: v for k, v in out.items() if k.startswith("gta/")}, "gta/")
  assert out["n"] == EXPECTED["n"]


def test_atradiff_windows_are_bitwise_unchanged(hopper):
  ds = hopper
  out = {}
  stats = adata.fit_row_stats(ds)
  out["atd/stats/mean"], out["atd/stats/std"] = _h(stats.mean), _h(stats.std)
  wd = adata.build_window_data(ds, stats, 25, task_ids=np.arange(len(ds)) % 3)
  out["atd/remaining"], out["atd/task_ids"] = _h(wd.remaining), _h(wd.task_ids)
  index = jnp.asarray(np.unique(np.concatenate([np.arange(0, len(ds), 101), ds.episode_ends,
                                                ds.episode_ends - 3])), jnp.int32)
  # the first-state lookup of the length estimator's training batches
  out["atd/first_state"] = _h(wd.rows[wd.starts[index], :ds.obs_dim])
  np.testing.assert_array_equal(windows.first_states(wd, index),
                                wd.rows[wd.starts[index], :ds.obs_dim])
  for k in (5, 10, 15, 20, 25):
    out[f"atd/gather/{k}"] = _h(adata.gather_windows(wd, index, k))
    for num_tasks in (0, 3):
      b = adata.sample_window_batch(wd, jax.random.key(k), 64, k, ds.obs_dim, num_tasks)
      out[f"atd/sample/{k}/{num_tasks}/x"] = _h(b["x"])
      out[f"atd/sample/{k}/{num_tasks}/cond"] = _h(b["cond"])
  _check(out, "atd/")


def _ring(ds, capacity, pieces):
  buf = replay.init_buffer(ds.obs_dim, ds.act_dim, capacity)
  for sl in pieces:
    buf = replay.add(buf, Transitions(
        observations=ds.observations[sl], actions=ds.actions[sl], rewards=ds.rewards[sl],
        next_observations=ds.next_observations[sl], terminals=ds.terminals[sl],
        timeouts=ds.timeouts[sl]))
  return buf


def test_online_ring_windows_are_bitwise_unchanged(hopper):
  ds = hopper
  out = {}
  stats = adata.fit_row_stats(ds)
  buf = _ring(ds, 3000, (slice(0, 2000), slice(2000, 4000)))  # wrapped
  rows = jnp.asarray(np.arange(0, 3000, 7), jnp.int32)
  x, comp = adapt.real_windows(buf, rows, 10)
  out["ring/x"], out["ring/complete"] = _h(x), _h(comp)
  xb, cond, wts = adapt.window_batch(buf, stats, rows, jnp.ones(rows.shape), 10, ds.obs_dim, 3, 1)
  out["ring/batch_x"], out["ring/batch_cond"], out["ring/batch_w"] = _h(xb), _h(cond), _h(wts)
  part = _ring(ds, 3000, (slice(100, 1600),))  # not full
  x, comp = adapt.real_windows(part, rows, 25)
  out["ring_partial/x"], out["ring_partial/complete"] = _h(x), _h(comp)
  _check(out, "ring")


def test_synther_rows_are_bitwise_unchanged(hopper):
  sd = synther.prepare(hopper, scfg.get_config("tiny"))
  out = {"synther/rows": _h(sd.rows), "synther/mean": _h(sd.mean), "synther/std": _h(sd.std)}
  _check(out, "synther/")


# ----------------------------------------------------------------------- one module, options

def _toy(lengths=(3, 5, 9), obs_dim=2, act_dim=1):
  rng = np.random.default_rng(0)
  n = sum(lengths)
  obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
  nxt = rng.normal(size=(n, obs_dim)).astype(np.float32)  # not obs[t + 1]: final rows must
  ends = np.cumsum(lengths) - 1                             # come from next_observations
  term = np.zeros(n, np.float32)
  tout = np.zeros(n, np.float32)
  term[ends[0]] = 1.0
  tout[ends[1:]] = 1.0
  return OfflineDataset(obs, rng.normal(size=(n, act_dim)).astype(np.float32),
                        rng.normal(size=n).astype(np.float32), nxt, term, tout)


def test_one_window_class_and_one_normaliser_for_both_methods():
  ds = _toy()
  g = windows.build_windows(ds, horizon=4, short_episodes="pad")
  a = adata.build_window_data(ds, adata.fit_row_stats(ds), 6)
  assert adata.WindowData is windows.WindowData
  assert type(g) is type(a) is windows.WindowData
  assert g.spec.condition == "return" and a.spec.condition == "first_state"
  assert g.returns is not None and g.task_ids is None
  assert a.task_ids is not None and a.returns is None
  # GTA's normaliser: one float64 fit over the rows, eps 1e-5.
  rows = windows.transition_rows(ds).astype(np.float64)
  np.testing.assert_array_equal(g.mean, rows.mean(0).astype(np.float32))
  np.testing.assert_array_equal(g.std, (rows.std(0) + 1e-5).astype(np.float32))
  # ATraDiff's: states include each episode's final next state, eps 1e-3 (its default).
  st = adata.fit_row_stats(ds)
  states = np.concatenate([ds.observations, ds.next_observations[ds.episode_ends]])
  np.testing.assert_allclose(st.mean[:2], states.mean(0), rtol=1e-6)
  np.testing.assert_allclose(st.std[:2], states.std(0) + 1e-3, rtol=1e-6)
  assert not np.allclose(st.mean[:2], ds.observations.mean(0), rtol=1e-6)
  np.testing.assert_allclose(adata.fit_row_stats(ds, eps=0.5).std - st.std, 0.5 - 1e-3,
                             rtol=1e-5)
  assert isinstance(windows.fit_row_stats(ds), NormStats)


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_atradiff_gathered_windows_equal_the_padded_episode_rows(k):
  """Every transition's window of every length equals the host padded layout (k copies of the
  last frame appended per episode), normalised."""
  ds = _toy()
  stats = adata.fit_row_stats(ds)
  wd = adata.build_window_data(ds, stats, 6)
  rows, starts, remaining = adata.padded_rows(ds, pad=6)
  ref = (rows - stats.mean) / stats.std
  got = np.asarray(adata.gather_windows(wd, jnp.arange(len(ds)), k))
  want = np.stack([ref[s:s + k] for s in starts])
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(wd.remaining, remaining)
  # a window reaching past its episode ends in copies of that episode's final next state
  e = int(ds.episode_ends[1])
  if k > 1:
    np.testing.assert_array_equal(got[e, 1:, :2], np.broadcast_to(
        (ds.next_observations[e] - stats.mean[:2]) / stats.std[:2], (k - 1, 2)))


def test_gta_windows_hold_transitions_then_the_final_state():
  ds = _toy()
  d = windows.build_windows(ds, horizon=5, short_episodes="pad")
  # windows inside episodes of >= 4 transitions, and one from the start of the 3-step episode
  assert d.num_windows == 1 + (5 - 4 + 1) + (9 - 4 + 1)
  x, lengths = windows.gather_raw(d, jnp.arange(d.num_windows))
  x, lengths = np.asarray(x), np.asarray(lengths)
  for i, (s, n) in enumerate(zip(np.asarray(d.starts), lengths)):
    np.testing.assert_array_equal(x[i, :n, :2], ds.observations[s:s + n])
    np.testing.assert_array_equal(x[i, n:, :2], np.broadcast_to(ds.next_observations[s + n - 1],
                                                                (5 - n, 2)))
    assert not x[i, n:, 2:].any()
  # terminal penalty on the true terminal only (the first episode's last transition)
  np.testing.assert_array_equal(x[0, 2, -1], ds.rewards[2] - 100.0)
  assert windows.build_windows(ds, horizon=5, short_episodes="pad",
                               terminal_penalty=0.0).rows[2, -1] == ds.rewards[2]


def test_window_options_are_checked():
  ds = _toy()
  with pytest.raises(ValueError, match="window condition"):
    windows.build_windows(ds, horizon=4, condition="rtg")
  with pytest.raises(ValueError, match="row stats"):
    windows.build_windows(ds, horizon=4, stats=NormStats.identity(3))
  with pytest.raises(ValueError, match="task_ids has 2 entries"):
    adata.build_window_data(ds, adata.fit_row_stats(ds), 4, task_ids=np.zeros(2))
  wd = adata.build_window_data(ds, adata.fit_row_stats(ds), 4)
  with pytest.raises(ValueError, match="needs GTA's windows"):
    windows.encode(wd, jnp.arange(2))
  with pytest.raises(ValueError, match="exceeds the padding 4"):
    adata.gather_windows(wd, jnp.arange(2), 5)
  with pytest.raises(ValueError, match="padding must be >= 1"):
    adata.build_window_data(ds, adata.fit_row_stats(ds), 0)


def test_gta_prepare_uses_the_shared_module(hopper):
  from configs import gta as gcfg
  c = gcfg.get_config("tiny")
  d = gta.prepare(hopper, c)
  assert isinstance(d, windows.WindowData) and d.spec.final_state_row and not d.spec.every_start
