"""Golden test: the one mixed sampler and the one row writer draw and write exactly the rows
the three former copies did (RLPD's symmetric sampling, the online loop's offline mixer,
ATraDiff's modified buffer; replay.add, the loop's one-row write, ATraDiff's masked write). The
online loop's sampler is `OnlineFns.sample` (jaxaug.train.online_state).

GOLDEN holds the row ids each path produced with the pre-merge implementations (recorded on
jax 0.10.2 with the default threefry_partitionable key splitting, also checked on jax 0.12);
`python tests/test_replay_mixed.py` prints them again. Every row id is unique across sources
(offline 1000+, real buffer 2000+, synthetic buffer 3000+), and every field of a returned row
is checked against its id, so "same ids" means "same rows, whole".
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import types

from jaxaug.augment.atradiff import buffer as abuffer
from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.train.online_state import LoopData, LoopState, OnlineFns
from jaxaug.types import EnvSpec


def rows(start, n):
  ids = np.arange(start, start + n, dtype=np.float32)
  return Transitions(observations=np.stack([ids, ids + 0.25], 1), actions=-ids[:, None],
                     rewards=ids, next_observations=np.stack([ids + 0.5, ids + 0.75], 1),
                     terminals=(ids % 2).astype(np.float32),
                     timeouts=(ids % 3 == 0).astype(np.float32))


def ids_of(batch: Transitions) -> list[int]:
  """The row ids of a batch, after checking every field belongs to the same source row."""
  r = np.asarray(batch.rewards)
  written = r != 0  # unwritten buffer rows are all zeros
  np.testing.assert_array_equal(np.asarray(batch.observations)[written],
                                np.stack([r, r + 0.25], -1)[written])
  np.testing.assert_array_equal(np.asarray(batch.actions)[written, 0], -r[written])
  np.testing.assert_array_equal(np.asarray(batch.next_observations)[written],
                                np.stack([r + 0.5, r + 0.75], -1)[written])
  np.testing.assert_array_equal(np.asarray(batch.terminals)[written], (r % 2)[written])
  np.testing.assert_array_equal(np.asarray(batch.timeouts)[written], (r % 3 == 0)[written])
  return [int(x) for x in r.reshape(-1)]


OFFLINE = jax.tree.map(jnp.asarray, rows(1000, 40))
REAL = replay.add(replay.init_buffer(2, 1, 64), rows(2000, 30))
SYN = replay.add(replay.init_buffer(2, 1, 64), rows(3000, 20))
SYN_EMPTY = replay.init_buffer(2, 1, 64)
B, UTD = 8, 3


def online_sampler(offline_ratio: float, rho: float | None, offline=OFFLINE, syn=SYN):
  """The online loop's sampler (OnlineFns.sample) with RLPD's offline share and, unless rho is
  None, ATraDiff's synthetic buffer: kk -> B * UTD rows."""
  atd = None if rho is None else types.SimpleNamespace(synthetic_ratio=rho)
  fns = OnlineFns(agent=None, spec=EnvSpec(2, 1, 1.0, "test"), batch_size=B,
                  offline_ratio=offline_ratio, atradiff=atd)
  state = LoopState(agent=None, buffer=REAL, key=None, action=None,
                    aug=types.SimpleNamespace(synthetic=syn))
  data = LoopData(offline=offline)
  return lambda kk: fns.sample(state, data, kk, B * UTD)


def _sampler_cases():
  """name -> zero-argument function returning a batch (or (batch, mask)); all jitted. The
  names are those of the former copies whose rows GOLDEN holds."""
  k = jax.random.key
  return {
      "sample_mixed": lambda: jax.jit(lambda kk: replay.sample_mixed(
          [OFFLINE, REAL, SYN], (0.5, 0.3, 0.2), kk, 10))(k(1)),
      "sample_mixed_shuffle": lambda: jax.jit(lambda kk: replay.sample_mixed(
          [OFFLINE, REAL], (0.5, 0.5), kk, 10, shuffle=True))(k(2)),
      "rlpd_symmetric": lambda: jax.jit(lambda kk: replay.sample_mixed(
          [OFFLINE, REAL], (0.5, 0.5), kk, 9))(k(3)),
      "rlpd_symmetric_utd": lambda: jax.jit(lambda kk: replay.sample_mixed_utd(
          [OFFLINE, REAL], (0.5, 0.5), kk, B, UTD))(k(4)),
      "offline_mixer": lambda: jax.jit(online_sampler(0.5, None))(k(5)),
      "offline_mixer_quarter": lambda: jax.jit(online_sampler(0.25, None))(k(6)),
      "atradiff_sample": lambda: jax.jit(lambda kk: abuffer.sample(REAL, SYN, kk, 12, 0.5))(
          k(7)),
      "atradiff_sample_empty": lambda: jax.jit(lambda kk: abuffer.sample(
          REAL, SYN_EMPTY, kk, 6, 0.9))(k(8)),
      "atradiff_modified": lambda: jax.jit(online_sampler(0.5, 0.4))(k(9)),
      "atradiff_modified_no_offline": lambda: jax.jit(online_sampler(0.0, 0.6, offline=None))(
          k(10)),
  }


def _write_cases():
  """name -> final buffer after a sequence of writes through one writer."""
  def add_seq():
    buf = replay.init_buffer(2, 1, 10)
    add = jax.jit(replay.add)
    for start, n in ((1, 3), (4, 5), (9, 1), (10, 7), (17, 10)):
      buf = add(buf, rows(start, n))
    return buf

  def add_one_seq():
    buf = replay.init_buffer(2, 1, 5)
    add = jax.jit(replay.add, donate_argnums=0)  # the online loop's per-env-step write
    for i in range(1, 14):
      buf = add(buf, rows(i, 1))
    return buf

  def add_masked_seq():
    buf = replay.init_buffer(2, 1, 7)
    add = jax.jit(abuffer.add_masked)
    masks = ([1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 1, 0],
             [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1])
    start = 1
    for m in masks:
      buf = add(buf, rows(start, len(m)), jnp.asarray(m, bool))
      start += len(m)
    return buf

  return {"add": add_seq, "add_one": add_one_seq, "add_masked": add_masked_seq}


def golden_outputs() -> dict:
  out = {}
  for name, fn in _sampler_cases().items():
    res = fn()
    if isinstance(res, tuple):  # (batch, from_synthetic)
      batch, mask = res
      ids = ids_of(batch)
      np.testing.assert_array_equal(np.asarray(mask), np.asarray(batch.rewards) >= 3000)
    else:
      ids = ids_of(res)
    out[name] = ids
  for name, fn in _write_cases().items():
    buf = fn()
    out[name] = ids_of(buf.data) + [int(buf.size), int(buf.ptr)]
  return out


GOLDEN = {
    'sample_mixed': [1007, 1031, 1030, 1012, 1026, 2008, 2016, 2026, 3019, 3012],
    'sample_mixed_shuffle': [2009, 1028, 1027, 2026, 2028, 1039, 1033, 2012, 1026, 2017],
    'rlpd_symmetric': [1012, 1035, 1030, 1030, 1006, 2001, 2010, 2016, 2025],
    'rlpd_symmetric_utd': [1019, 1008, 1015, 1009, 2028, 2026, 2009, 2007, 1004, 1000, 1014,
        1009, 2001, 2027, 2014, 2002, 1004, 1026, 1000, 1020, 2019, 2013, 2006, 2023],
    'offline_mixer': [1012, 1036, 1013, 1032, 2007, 2018, 2003, 2016, 1007, 1036, 1004, 1034,
        2012, 2004, 2024, 2019, 1020, 1031, 1025, 1024, 2022, 2001, 2001, 2013],
    'offline_mixer_quarter': [1004, 1003, 2023, 2013, 2008, 2024, 2020, 2001, 1034, 1010, 2012,
        2023, 2005, 2008, 2028, 2007, 1008, 1009, 2014, 2025, 2028, 2015, 2009, 2029],
    'atradiff_sample': [2018, 2008, 3003, 3000, 2025, 3001, 3005, 3001, 2017, 3014, 3007, 2017],
    'atradiff_sample_empty': [2020, 2019, 2028, 2003, 2018, 2025],
    'atradiff_modified': [1000, 1005, 1020, 1037, 2025, 3014, 2022, 2017, 1027, 1039, 1011,
        1007, 2021, 2027, 3013, 2000, 1025, 1007, 1022, 1001, 2017, 2028, 2006, 2005],
    'atradiff_modified_no_offline': [3013, 3002, 2016, 3000, 3018, 3001, 3015, 2020, 2026, 2019,
        2027, 2026, 3007, 2004, 3006, 3019, 3011, 2025, 3008, 2029, 3012, 3018, 3011, 2026],
    'add': [21, 22, 23, 24, 25, 26, 17, 18, 19, 20, 10, 6],
    'add_one': [11, 12, 13, 9, 10, 5, 3],
    'add_masked': [34, 36, 29, 30, 31, 32, 33, 7, 2],
}


@pytest.fixture(scope="module")
def outputs():
  return golden_outputs()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_same_rows_as_before_the_merge(outputs, name):
  assert outputs[name] == GOLDEN[name], name


def test_the_one_sampler_called_directly_gives_the_golden_rows():
  """The same cases through replay's API alone (what the former copies now call)."""
  k = jax.random.key
  utd = jax.jit(replay.sample_mixed_utd, static_argnums=(1, 3, 4))
  blend = replay.Blend(REAL, SYN, 0.4)
  cases = {
      "rlpd_symmetric_utd": utd([OFFLINE, REAL], (0.5, 0.5), k(4), B, UTD),
      "offline_mixer": utd([OFFLINE, REAL], (0.5, 0.5), k(5), B, UTD),
      "offline_mixer_quarter": utd([OFFLINE, REAL], (0.25, 0.75), k(6), B, UTD),
      "atradiff_modified": jax.jit(lambda kk: replay.sample_mixed_utd(
          [OFFLINE, blend], (0.5, 0.5), kk, B, UTD))(k(9)),
      # a zero share: no offline data at all, the key slot is still the second one
      "atradiff_modified_no_offline": jax.jit(lambda kk: replay.sample_mixed_n(
          [None, replay.Blend(REAL, SYN, 0.6)], (0.0, 1.0), kk, B * UTD, B))(k(10)),
      "atradiff_sample": jax.jit(lambda kk: replay.sample_blend(REAL, SYN, kk, 12, 0.5)[0])(
          k(7)),
  }
  for name, batch in cases.items():
    assert ids_of(batch) == GOLDEN[name], name
  buf = replay.init_buffer(2, 1, 7)
  add = jax.jit(replay.add_masked)
  start = 1
  for m in ([1, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]):
    buf = add(buf, rows(start, len(m)), jnp.asarray(m, bool))
    start += len(m)
  assert ids_of(buf.data) + [int(buf.size), int(buf.ptr)] == GOLDEN["add_masked"]


def test_one_row_write_is_an_in_place_slice_update():
  """The online loop's per-step write must stay O(1): no scatter over the ring."""
  buf = replay.init_buffer(2, 1, 1000)
  one = str(jax.make_jaxpr(replay.add)(buf, rows(1, 1)))
  assert "dynamic_update_slice" in one and "scatter" not in one
  assert "scatter" in str(jax.make_jaxpr(replay.add)(buf, rows(1, 2)))


def test_mixed_sampler_errors_name_the_problem():
  with pytest.raises(ValueError, match="non-zero share must be a ReplayBuffer"):
    replay.sample_mixed([None, REAL], (0.5, 0.5), jax.random.key(0), 4)
  with pytest.raises(ValueError, match="not a multiple of batch_size 8"):
    replay.sample_mixed_n([OFFLINE, REAL], (0.5, 0.5), jax.random.key(0), 20, 8)
  with pytest.raises(ValueError, match="utd_ratio must be >= 1"):
    replay.sample_mixed_utd([OFFLINE, REAL], (0.5, 0.5), jax.random.key(0), 8, 0)
  with pytest.raises(ValueError, match=r"mask has shape \(3,\), expected \(4,\)"):
    replay.add_masked(REAL, rows(1, 4), jnp.ones(3, bool))
  with pytest.raises(ValueError, match="offline_ratio > 0 needs LoopData.offline"):
    online_sampler(0.5, 0.5, offline=None)(jax.random.key(0))


if __name__ == "__main__":
  for name, ids in golden_outputs().items():
    print(f"    {name!r}: {ids},")
