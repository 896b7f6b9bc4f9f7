"""ATraDiff in the online loop: device store decisions, routed generation rounds over the queue,
episodes read from the buffer's flags, and tiny end-to-end runs (jaxaug.augment.atradiff.online,
jaxaug.train.online_state)."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug.augment.atradiff import buffer as abuffer
from jaxaug.augment.atradiff import online as aonline
from jaxaug.configs_io import load_config_file
from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.data.loaders import load_dataset
from jaxaug.types import EnvSpec

SPEC = EnvSpec(11, 3, 1.0, "Hopper-v5")


def _config(preset="tiny"):
  return load_config_file(f"atradiff:{preset}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(config, workdir, ATraDiff settings, AugConst) of the tiny preset, trained once."""
  config = _config("tiny")
  workdir = str(tmp_path_factory.mktemp("atradiff"))
  atd, const = aonline.setup(config, SPEC, workdir)
  return config, workdir, atd, const


def _rows(next_obs, terminals=None):
  n = len(next_obs)
  z = np.zeros((n,), np.float32)
  return Transitions(observations=jnp.asarray(next_obs, jnp.float32),
                     actions=jnp.zeros((n, 3)), rewards=jnp.asarray(z),
                     next_observations=jnp.asarray(next_obs, jnp.float32),
                     terminals=jnp.asarray(z if terminals is None else terminals, jnp.float32),
                     timeouts=jnp.asarray(z))


# ------------------------------------------------------------------------- store decisions

@pytest.mark.parametrize("rho,length", [(0.5, 8.0), (0.25, 12.0), (0.75, 5.0)])
def test_device_store_draws_have_the_store_probability(tiny, rho, length):
  _, _, atd, const = tiny
  p = abuffer.store_probability(rho, length)
  np.testing.assert_allclose(p, rho / ((1 - rho) * length))
  steps = 4000
  atd = dataclasses.replace(atd, store_probability=p, queue_capacity=steps,
                            generation_start=0)
  aug = atd.init(const, jax.random.key(7))
  rows = _rows(np.zeros((steps, 11)))
  aug = jax.jit(atd.store)(aug, rows, jnp.int32(0))
  n = int(aug.queue_count)
  assert abs(n / steps - p) < 4 * np.sqrt(p * (1 - p) / steps)
  assert int(aug.counters["queued"]) == n
  with pytest.raises(ValueError, match="synthetic_ratio"):
    abuffer.store_probability(1.0, length)


def test_store_decisions_depend_only_on_key_and_env_step(tiny):
  """One row per call or 4 rows per call (num_envs = 4): the same states are queued, in the same
  order; never a state after a true terminal, nothing before generation_start."""
  _, _, atd, const = tiny
  atd = dataclasses.replace(atd, store_probability=0.5, queue_capacity=64, generation_start=8)
  rng = np.random.default_rng(0)
  nxt = rng.normal(size=(32, 11)).astype(np.float32)
  term = (rng.random(32) < 0.2).astype(np.float32)
  store = jax.jit(atd.store)
  a = atd.init(const, jax.random.key(3))
  for t in range(32):
    a = store(a, _rows(nxt[t:t + 1], term[t:t + 1]), jnp.int32(t))
  b = atd.init(const, jax.random.key(3))
  for t in range(0, 32, 4):
    b = store(b, _rows(nxt[t:t + 4], term[t:t + 4]), jnp.int32(t))
  n = int(a.queue_count)
  assert n == int(b.queue_count) and 0 < n < 24
  np.testing.assert_array_equal(np.asarray(a.queue), np.asarray(b.queue))
  queued = np.asarray(a.queue)[:n]
  ok = [t for t in range(8, 32) if term[t] == 0]
  idx = [int(np.flatnonzero((nxt == q).all(axis=1))[0]) for q in queued]
  assert all(i in ok for i in idx) and idx == sorted(idx)


# ------------------------------------------------------------------------- generation round

def test_generation_round_synthesises_every_queued_state_from_it(tiny):
  config, _, atd, const = tiny
  ds = load_dataset(config.atradiff.offline_dataset)
  q = 13
  starts = ds.observations[np.random.default_rng(0).choice(len(ds), q, replace=False)]
  aug = atd.init(const, jax.random.key(1))
  aug = aug.replace(queue=aug.queue.at[:q].set(starts), queue_count=jnp.int32(q))
  out = jax.jit(atd.generation_round)(aug, const)
  n = int(out.synthetic.size)
  c = {k: int(v) for k, v in out.counters.items()}
  assert int(out.queue_count) == 0 and c["rounds"] == 1 and c["trajectories"] == q
  assert c["synthetic_transitions"] == n > 0
  # every generator call took bucket_size states; no more calls than the routing needs
  assert 1 <= c["generator_calls"] <= -(-q // atd.bucket_size) + len(atd.lengths) - 1
  data = jax.tree.map(np.asarray, out.synthetic.data)
  # each queued state starts exactly one trajectory (written generator by generator)
  firsts = data.observations[:n][np.r_[True, data.timeouts[:n - 1] + data.terminals[:n - 1] > 0]]
  assert len(firsts) == q
  order = lambda x: x[np.lexsort(x.T[::-1])]
  np.testing.assert_allclose(order(firsts), order(starts), atol=1e-6)
  # actions are clipped to the action range (counted before clipping)
  assert np.abs(data.actions[:n]).max() <= 1.0
  assert c["clipped_rows"] <= n and c["clipped_rows"] <= c["clipped_entries"] <= 3 * n
  m = atd.metrics(out, real_size=100)
  assert m["atradiff/trajectories"] == q and m["atradiff/realised_length"] == n / q


def test_a_round_never_drops_a_state(tiny):
  """Store probability 1 for a whole interval with 4 envs: the queue holds it all and one round
  generates all of it (the old host queue dropped states, later generated early)."""
  _, _, atd, const = tiny
  atd = dataclasses.replace(atd, store_probability=1.0, generation_start=0,
                            queue_capacity=atd.generation_interval + 4)
  aug = atd.init(const, jax.random.key(2))
  rng = np.random.default_rng(1)
  store = jax.jit(atd.store)
  steps = -(-atd.generation_interval // 4) * 4  # the iterations of one interval, 4 envs each
  for t in range(0, steps, 4):
    aug = store(aug, _rows(rng.normal(size=(4, 11)) * 0.1), jnp.int32(t))
  assert int(aug.queue_count) == int(aug.counters["queued"]) == steps
  aug = jax.jit(atd.generation_round)(aug, const)
  assert int(aug.counters["trajectories"]) == steps and int(aug.queue_count) == 0


def test_rounds_are_due_when_their_period_boundary_is_crossed(tiny):
  _, _, atd, _ = tiny
  atd = dataclasses.replace(atd, generation_interval=50, generation_start=0, adapt=True,
                            adapt_every=200, adapt_start=400)
  assert atd.rounds_due(50, 1) == (True, False) and atd.rounds_due(51, 1) == (False, False)
  assert atd.rounds_due(52, 4) == (True, False)  # 50 lies in (48, 52]
  assert atd.rounds_due(200, 1) == (True, False)  # before adapt_start
  assert atd.rounds_due(400, 1) == (True, True) and atd.rounds_due(600, 8) == (True, True)


# ------------------------------------------------------------------------- episodes from flags

def test_episodes_from_flags_match_host_bookkeeping():
  rng = np.random.default_rng(0)
  cap, steps, max_len, recent = 40, 97, 9, 20
  buf = replay.init_buffer(1, 1, cap)
  lengths, ret, episodes = [], 0.0, []  # (rows, return) of every finished episode
  rows_now, ends = [], []
  for t in range(steps):
    r = float(rng.normal())
    end = rng.random() < 0.2 or len(rows_now) + 1 == max_len
    term, tout = (1.0, 0.0) if end and rng.random() < 0.5 else (0.0, float(end))
    buf = replay.add(buf, Transitions(observations=np.zeros((1, 1)), actions=np.zeros((1, 1)),
                                      rewards=np.float32([r]), next_observations=np.zeros((1, 1)),
                                      terminals=np.float32([term]), timeouts=np.float32([tout])))
    rows_now.append(t)
    ret += r
    if end:
      episodes.append((list(rows_now), ret, t))
      rows_now, ret = [], 0.0
  rows, returns, valid = jax.jit(aonline.episodes_from_flags, static_argnums=(1, 2))(
      buf, recent, max_len)
  rows, returns, valid = map(np.asarray, (rows, returns, valid))
  want = {}
  for ep_rows, ep_ret, end_t in episodes:
    if end_t >= steps - recent:
      for t in ep_rows:
        want[t % cap] = ep_ret
  got = {int(r): float(x) for r, x, v in zip(rows, returns, valid) if v}
  assert got.keys() == want.keys() and len(want) > 0
  for k in want:
    assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-5)


# ------------------------------------------------------------------------- end to end

def test_tiny_end_to_end_online_run(tiny, tmp_path):
  config, workdir, _, _ = tiny
  from jaxaug.train.online import train_online
  config = _config("tiny")
  config.atradiff.diffuser_dir = os.path.join(workdir, "atradiff_diffuser")  # reuse, no retrain
  config.num_env_steps = 450
  config.eval_every = 0
  config.checkpoint_every = 0
  summary = train_online(config, str(tmp_path))
  ex = summary["extras"]
  assert summary["steps"] == 450
  assert ex["atradiff/rounds"] == 9 and ex["atradiff/synthetic_size"] > 0
  assert ex["atradiff/adapt_rounds"] == 1  # at 400 (adapt_start 400, every 200)
  # The realised |D_s| / |D_o| is logged next to its target rho / (1 - rho) = 1 and is close to it
  assert ex["atradiff/synthetic_to_real_target"] == pytest.approx(1.0)
  assert ex["atradiff/synthetic_to_real"] == pytest.approx(1.0, rel=0.2)
  assert ex["atradiff/trajectories"] == ex["atradiff/queued"]  # the last round was at 450
  assert np.isfinite(ex["adapt/real_loss_k4"]) and ex["adapt/selected"] > 0
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert any("atradiff/synthetic_to_real_target" in l for l in lines)
  assert set(summary["timings"]) >= {"env_s", "dispatch_s", "wait_s", "host_s", "steps"}


def test_resumed_atradiff_run_with_adaptation_and_vector_envs_is_exact(tiny, tmp_path):
  """A run stopped at 240 env steps and resumed equals the straight run: loop state (agent,
  D_o, D_s, queue, adapted generators, importance buffers, keys) and every logged metric."""
  _, workdir, _, _ = tiny
  from jaxaug.train import online
  from jaxaug.train.checkpoint import Checkpointer

  def cfg(steps):
    c = _config("tiny")
    c.atradiff.diffuser_dir = os.path.join(workdir, "atradiff_diffuser")
    c.num_envs = 2
    c.num_env_steps = steps
    c.eval_every = 0
    c.checkpoint_every = 0
    c.log_every = 40
    c.atradiff.adapt_start, c.atradiff.adapt_every = 200, 120
    c.atradiff.importance = "reward"
    return c

  a = online.train_online(cfg(440), str(tmp_path / "a"))
  online.train_online(cfg(240), str(tmp_path / "b"))
  b = online.train_online(cfg(440), str(tmp_path / "b"))
  assert a["extras"]["atradiff/adapt_rounds"] == b["extras"]["atradiff/adapt_rounds"] == 2
  assert a["extras"] == b["extras"] | {"atradiff/pretrain_s": a["extras"]["atradiff/pretrain_s"]}

  def final(d):
    ck = Checkpointer(str(d / "checkpoints"), max_to_keep=None)
    try:
      import orbax.checkpoint as ocp  # raw restore: the tree as saved
      return ck._manager.restore(440, args=ocp.args.Composite(
          state=ocp.args.StandardRestore())).state
    finally:
      ck.close()

  la, lb = jax.tree.leaves(final(tmp_path / "a")), jax.tree.leaves(final(tmp_path / "b"))
  assert len(la) == len(lb) > 20
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  strip = lambda path: [{k: v for k, v in json.loads(l).items() if "per_s" not in k
                         and "pretrain" not in k} for l in open(path)]
  ma = strip(tmp_path / "a" / "metrics.jsonl")
  # 240 is a periodic log step of both runs; the first call also evaluated at its end
  mb = [m for m in strip(tmp_path / "b" / "metrics.jsonl")
        if not (m["step"] == 240 and "eval/return" in m)]
  assert ma == mb
