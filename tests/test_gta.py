"""GTA windows / terminal encoding / reweighting / chunked generation; SynthER rows; S4RL."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxaug.augment import chunks, gta, s4rl, synther
from jaxaug.data import windows
from jaxaug.data.dataset import OfflineDataset
from jaxaug.diffusion import train as dtrain

OBS, ACT = 3, 2


def make_dataset(lengths=(10, 5, 12), terminal=(True, False, True), seed=0):
  """Episodes of given lengths; rewards are multiples of 1/8 (exact in float32)."""
  rng = np.random.default_rng(seed)
  obs, act, rew, nxt, term, tout = [], [], [], [], [], []
  for n, t in zip(lengths, terminal):
    s = rng.normal(size=(n + 1, OBS)).astype(np.float32)
    obs.append(s[:-1])
    nxt.append(s[1:])
    act.append(rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32))
    rew.append(rng.integers(-8, 24, size=n) / 8.0)
    e = np.zeros(n, np.float32)
    e[-1] = 1.0
    term.append(e if t else np.zeros(n, np.float32))
    tout.append(np.zeros(n, np.float32) if t else e)
  cat = np.concatenate
  return OfflineDataset(cat(obs), cat(act), cat(rew), cat(nxt), cat(term), cat(tout),
                        source="<test>")


def test_windows_count_layout_and_condition():
  ds = make_dataset()
  h = 5  # 4 transitions per window
  data = windows.build_windows(ds, horizon=h, short_episodes="pad")
  # stride 1: 10 -> 7 windows, 12 -> 9 windows, the 4-transition-short... episode of 5 -> 2.
  assert data.num_windows == 7 + 2 + 9
  skip = windows.build_windows(ds, horizon=8, short_episodes="skip")
  assert skip.num_windows == (10 - 7 + 1) + (12 - 7 + 1)  # the 5-step episode is dropped
  assert windows.build_windows(ds, horizon=8).num_windows == skip.num_windows  # official default
  pad = windows.build_windows(ds, horizon=8, short_episodes="pad")
  assert pad.num_windows == skip.num_windows + 1
  assert sorted(np.asarray(pad.lengths).tolist())[0] == 5
  # Row layout of one window of the first episode, starting at transition 2.
  i = int(np.nonzero(np.asarray(data.starts) == 2)[0][0])
  x, lengths = windows.gather_raw(data, jnp.array([i]))
  x = np.asarray(x[0])
  np.testing.assert_array_equal(x[:4, :OBS], ds.observations[2:6])
  np.testing.assert_array_equal(x[:4, OBS:OBS + ACT], ds.actions[2:6])
  np.testing.assert_array_equal(x[:4, -1], ds.rewards[2:6])
  np.testing.assert_array_equal(x[4], np.concatenate([ds.next_observations[5], [0, 0, 0]]))
  # Condition: discounted return-to-go to the episode end, penalty included, times 0.01.
  r = ds.rewards[2:10].astype(np.float64).copy()
  r[-1] -= 100.0
  g = sum(0.99**k * v for k, v in enumerate(r))
  assert np.isclose(float(data.returns[i]), 0.01 * g, rtol=1e-5)
  # Loss mask: full rows for transitions, state entries only on the final row.
  m = np.asarray(windows.loss_mask(data.spec, lengths))[0]
  assert m[:4].all() and m[4, :OBS].all() and not m[4, OBS:].any()
  with pytest.raises(ValueError, match="short_episodes"):
    windows.build_windows(ds, horizon=5, short_episodes="drop")
  with pytest.raises(ValueError, match="no episode"):
    windows.build_windows(ds, horizon=20, short_episodes="skip")


def test_terminal_encoding_round_trip():
  ds = make_dataset()
  data = windows.build_windows(ds, horizon=8, short_episodes="pad")
  idx = jnp.arange(data.num_windows)
  b = windows.encode(data, idx)
  # The terminal penalty is in the (raw) encoded reward channel, not a binary channel.
  raw, _ = windows.gather_raw(data, idx)
  assert float(raw[..., -1].min()) < -90
  # Identity normaliser: exact round trip of everything but terminal rewards (r - 100 + 100 in
  # float32 rounds to within ulp(100) ~ 8e-6; with rewards in 1/8 steps even that is exact).
  ident = data.replace(mean=jnp.zeros_like(data.mean), std=jnp.ones_like(data.std))
  bi = windows.encode(ident, idx)
  for d, tol in ((windows.decode(ident, bi["x"], bi["lengths"]), 0.0),
                 (windows.decode(data, b["x"], b["lengths"]), 2e-5)):
    flat = windows.flatten_valid(d)
    starts, lengths = np.asarray(data.starts), np.asarray(data.lengths)
    src = np.concatenate([np.arange(s, s + l) for s, l in zip(starts, lengths)])
    assert len(flat["rewards"]) == lengths.sum()
    np.testing.assert_array_equal(flat["terminals"], ds.terminals[src])  # exact
    for k in ("observations", "actions", "next_observations", "rewards"):
      np.testing.assert_allclose(flat[k], getattr(ds, k)[src], atol=tol, rtol=0)
    # Each window is a pseudo-episode: it ends in a terminal or a timeout.
    ends = np.cumsum(lengths) - 1
    assert np.all((flat["terminals"][ends] + flat["timeouts"][ends]) == 1)
    assert flat["timeouts"].sum() + flat["terminals"].sum() == len(lengths)


def test_amplified_return():
  y = jnp.array([2.0, -2.0, 0.0])
  np.testing.assert_allclose(gta.amplify_returns(y, 1.3), [2.6, -1.4, 0.0], rtol=1e-6)


def test_reweighting_weights():
  rng = np.random.default_rng(0)
  y = rng.uniform(0, 10, size=5000)
  w = gta.reweight_probabilities(y, num_bins=10, smoothing=1e-3, temperature=5.0, clip=1e9)
  assert np.isclose(w.sum(), 1.0) and (w >= 0).all()
  counts, edges = np.histogram(y, bins=10)
  b = np.clip(np.digitize(y, edges[1:-1]), 0, 9)
  # Windows of one bin share one weight; bins receive mass propto softmax(upper edge / T) *
  # h / (h + smoothing).
  mass = np.array([w[b == k].sum() for k in range(10)])
  h = counts / counts.sum()
  p = np.exp(edges[1:] / 5.0) * h / (h + 1e-3)
  np.testing.assert_allclose(mass, p / p.sum(), rtol=1e-6)
  for k in range(10):
    assert np.ptp(w[b == k]) < 1e-12
  assert np.all(np.diff(mass) > 0)  # near-uniform frequencies: higher returns, more mass
  # Rare high-return bins are not over-sampled past the clip.
  y2 = np.concatenate([rng.uniform(0, 1, 5000), [10.0]])
  w2 = gta.reweight_probabilities(y2, num_bins=10, clip=5.0)
  raw = gta.reweight_probabilities(y2, num_bins=10, clip=1e9)
  assert w2.max() / w2.min() <= 5.0 / w2.min() / w2.sum() + 1e-9
  assert raw[-1] > w2[-1]
  with pytest.raises(ValueError, match="reweight_bins"):
    gta.reweight_probabilities(y, num_bins=50.5)


def _official_reweight(returns, bins):
  """The official sampler weights, transcribed step by step (numpy, float64)."""
  hist, edges = np.histogram(returns, bins=bins)
  hist = hist / np.sum(hist)
  soft = np.exp(edges[1:] / 5.0)
  soft = soft / np.sum(soft)
  dist = soft * (hist / (hist + 1e-3))
  dist = dist / (np.sum(dist) + 1e-7)
  idx = np.minimum(np.digitize(returns, edges[1:]), bins - 1)
  w = np.clip(dist[idx] / (hist[idx] + 1e-7), 0.0, 5.0)
  return w / w.sum()


def test_reweighting_matches_official_formula():
  rng = np.random.default_rng(1)
  # Window returns (x 0.01) of a hopper-like dataset: a bulk, a tail and some penalised windows.
  y = np.concatenate([rng.normal(2.0, 0.5, 3000), rng.uniform(3, 4, 40), rng.normal(-0.8, 0.1, 60)])
  for bins in (20, 50, 100):
    np.testing.assert_allclose(gta.reweight_probabilities(y, num_bins=bins),
                               _official_reweight(y, bins), rtol=1e-9, atol=0)
  # The official yaml's float bin count (50.0) is an integer value: accepted as 50 here (the
  # official np.histogram call rejects a float).
  np.testing.assert_allclose(gta.reweight_probabilities(y, num_bins=50.0),
                             _official_reweight(y, 50), rtol=1e-9)


def test_success_episode_weights_official_and_fixed():
  # 3 episodes: failed (return 0, 4 windows), successful (2 windows), successful (1 window).
  ep = np.array([0, 0, 0, 0, 1, 1, 2])
  ret = np.array([0.0, 0.7, 0.2])
  official = gta.success_episode_probabilities(ep, ret, 10.0, fixed=False)
  # The official assignment order gives every episode the same weight: episode-uniform.
  np.testing.assert_allclose(official, [1 / 12] * 4 + [1 / 6] * 2 + [1 / 3])
  fixed = gta.success_episode_probabilities(ep, ret, 10.0, fixed=True)
  per_episode = np.array([1.0, 10.0, 10.0]) / 21.0
  np.testing.assert_allclose(fixed, [per_episode[0] / 4] * 4 + [per_episode[1] / 2] * 2
                             + [per_episode[2]])
  with pytest.raises(ValueError, match="success_weight"):
    gta.success_episode_probabilities(ep, ret, 0.0)


def test_window_episodes_and_returns():
  ds = make_dataset(lengths=(10, 5, 12), terminal=(True, False, True))
  data = windows.build_windows(ds, horizon=8)  # skip: the 5-step episode is dropped
  assert np.asarray(data.window_episode).tolist() == [0] * 4 + [1] * 6
  r = ds.rewards.astype(np.float64).copy()
  r[9] -= 100.0
  r[-1] -= 100.0
  g0 = sum(0.99**k * v for k, v in enumerate(r[:10]))
  g1 = sum(0.99**k * v for k, v in enumerate(r[15:]))
  np.testing.assert_allclose(np.asarray(data.episode_returns), [0.01 * g0, 0.01 * g1],
                             rtol=1e-5)


def test_official_decoding_keeps_source_terminals_and_penalty():
  ds = make_dataset()
  data = windows.build_windows(ds, horizon=8, short_episodes="pad")
  idx = jnp.arange(data.num_windows)
  b = windows.encode(data, idx)
  src = windows.source_terminals(data, idx)
  off = windows.flatten_valid(windows.decode(data, b["x"], b["lengths"], src))
  dec = windows.flatten_valid(windows.decode(data, b["x"], b["lengths"]))
  starts, lengths = np.asarray(data.starts), np.asarray(data.lengths)
  pos = np.concatenate([np.arange(s, s + l) for s, l in zip(starts, lengths)])
  np.testing.assert_array_equal(off["terminals"], ds.terminals[pos])
  np.testing.assert_array_equal(dec["terminals"], ds.terminals[pos])
  # Official: the generated reward keeps the -100 of terminal transitions; decoded: true rewards.
  term = ds.terminals[pos] > 0
  np.testing.assert_allclose(off["rewards"][term], ds.rewards[pos][term] - 100.0, atol=1e-4)
  np.testing.assert_allclose(dec["rewards"], ds.rewards[pos], atol=1e-4)
  # A generated window whose reward code contradicts its source: official keeps the source flag.
  x = b["x"].at[:, :7, -1].set((-100.0 - data.mean[-1]) / data.std[-1])
  off2 = windows.flatten_valid(windows.decode(data, x, b["lengths"], src))
  dec2 = windows.flatten_valid(windows.decode(data, x, b["lengths"]))
  np.testing.assert_array_equal(off2["terminals"], ds.terminals[pos])
  assert dec2["terminals"].all()


def test_paper_presets_per_dataset():
  from configs import gta as gcfg
  bins = {"halfcheetah-medium-replay": 50, "halfcheetah-medium-expert": 20, "hopper-medium": 50,
          "hopper-medium-replay": 50, "hopper-medium-expert": 50, "walker2d-medium": 100,
          "walker2d-medium-replay": 50, "walker2d-medium-expert": 50}
  for name in gcfg.LOCOMOTION:
    c = gcfg.get_config(name)
    assert c.dataset.endswith(f"/{name}-v2.hdf5") and c.dataset.startswith("d4rl:")
    assert c.gta.terminal_penalty == -100.0 and c.gta.guidance_scale == 2.0
    if name in bins:  # Table 9: reweighting on 8 of 9 datasets
      assert c.gta.reweight == "return_bins" and c.gta.reweight_bins == bins[name]
      assert isinstance(c.gta.reweight_bins, int)
    else:
      assert name == "halfcheetah-medium" and c.gta.reweight == "none"
  for name in gcfg.MAZE2D + gcfg.ANTMAZE:
    c = gcfg.get_config(name)
    assert c.gta.terminal_penalty == 0.0, name  # terminals mean success on mazes
    assert c.gta.reweight == "success_episodes" and c.gta.success_weight == 10.0
    assert c.dataset.endswith("-v1.hdf5" if name.startswith("maze2d") else "-v2.hdf5")
  # Golden defaults: the official behaviour in every paper preset.
  for name in ("paper", "tiny") + gcfg.DATASETS:
    c = gcfg.get_config(name)
    assert c.gta.short_episodes == "skip" and not c.gta.decode_terminals
    assert not c.gta.fix_success_weighting and not c.sampler.guide_correction
    assert not c.sampler.no_sampling_dropout and c.diffusion.cond_dropout == 0.25
  assert gcfg.get_config("paper").gta.reweight == "return_bins"  # embedded hopper-medium-replay
  # data_dir is a lazy reference; +fixes = the paper preset with exactly the FIXES flipped.
  c = gcfg.get_config("hopper-medium-replay")
  c.data_dir = "/data/d4rl"
  assert c.dataset == "d4rl:/data/d4rl/hopper-medium-replay-v2.hdf5"
  paper = gcfg.get_config("antmaze-umaze").to_dict()
  fixed = gcfg.get_config("antmaze-umaze+fixes").to_dict()
  diff = {f"{g}.{k}" for g in paper if isinstance(paper[g], dict) for k in paper[g]
          if paper[g][k] != fixed[g][k]}
  assert diff == set(gcfg.FIXES)
  with pytest.raises(ValueError, match="unknown preset"):
    gcfg.get_config("hopper-random")


def micro_config():
  from configs import gta as gcfg
  c = gcfg.get_config("tiny")
  c.gta.horizon = 4
  c.diffusion.net_kwargs = ml_collections.ConfigDict(
      dict(dim=4, dim_mults=(1,), attention=False, cond_dim=1))
  c.sampler.num_steps = 4
  c.windows_per_chunk = 8
  c.gta.reweight = "return_bins"
  c.gta.reweight_bins = 5
  return c


def test_gta_generation_resumes_without_loss_or_duplicates(tmp_path):
  c, data, st = _micro_setup()
  key = jax.random.PRNGKey(3)
  full = gta.augment(st, data, c, key, 70, str(tmp_path / "a"), log=None)
  assert len(full) == 70
  assert full.metadata["method"] == "gta" and full.metadata["guidance_scale"] == 2.0
  assert np.all(np.isfinite(full.observations)) and full.infos["source_index"].shape == (70,)
  # Killed after 2 chunks, then resumed: identical to the uninterrupted run.
  part = gta.augment(st, data, c, key, 70, str(tmp_path / "b"), log=None, max_chunks=2)
  assert len(part) == 2 * 8 * 3
  resumed = gta.augment(st, data, c, key, 70, str(tmp_path / "b"), log=None)
  for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
    np.testing.assert_array_equal(getattr(resumed, k), getattr(full, k))
  # Different settings in the same chunk directory are refused.
  c.gta.noising_ratio = 0.25
  with pytest.raises(ValueError, match="different settings"):
    gta.augment(st, data, c, key, 70, str(tmp_path / "b"), log=None)


def test_synther_rows_round_trip_and_generation():
  from configs import synther as scfg
  c = scfg.get_config("tiny")
  c.sampler.num_steps = 4
  c.samples_per_chunk = 16
  ds = make_dataset()
  data = synther.prepare(ds, c)
  assert data.rows.shape == (len(ds), 2 * OBS + ACT + 2)
  np.testing.assert_array_equal(np.asarray(data.rows[:, -1]), ds.terminals)  # done raw
  dec = jax.device_get(synther.decode(data, data.rows))
  np.testing.assert_array_equal(dec["terminals"], ds.terminals)
  for k in ("observations", "actions", "rewards", "next_observations"):
    np.testing.assert_allclose(dec[k], getattr(ds, k), atol=1e-5)
  st = dtrain.init(jax.random.PRNGKey(0), synther.sample_batch(data, jax.random.PRNGKey(1), 4),
                   c.diffusion)
  out = synther.augment(st, data, c, jax.random.PRNGKey(2), 40, None, log=None)
  assert len(out) == 40 and out.observations.shape == (40, OBS)
  assert set(np.unique(out.terminals)) <= {0.0, 1.0}


def test_s4rl_noise():
  ds = make_dataset()
  out = s4rl.augment(ds, seed=0, std=3e-4, num_copies=2)
  assert len(out) == 2 * len(ds)
  diff = out.observations - np.concatenate([ds.observations] * 2)
  assert abs(diff.std() - 3e-4) < 3e-5 and abs(diff.mean()) < 3e-5
  np.testing.assert_array_equal(out.actions, np.concatenate([ds.actions] * 2))
  np.testing.assert_array_equal(out.terminals, np.concatenate([ds.terminals] * 2))
  # Episodes stay consistent: s'_t is s_{t+1} inside episodes, also after the noise.
  inside = np.nonzero((out.terminals[:-1] + out.timeouts[:-1]) == 0)[0]
  np.testing.assert_array_equal(out.next_observations[inside], out.observations[inside + 1])
  b = ds.transitions()
  nb = s4rl.augment_batch(b, jax.random.PRNGKey(0))
  assert 0 < float(jnp.abs(nb.observations - b.observations).max()) < 3e-3
  assert jnp.array_equal(nb.rewards, b.rewards)


def _micro_setup():
  c = micro_config()
  data = gta.prepare(make_dataset(lengths=(20, 6, 15)), c)
  st = dtrain.init(jax.random.PRNGKey(0), gta.sample_batch(data, jax.random.PRNGKey(1), 4),
                   c.diffusion)
  return c, data, st


def test_generation_is_identical_on_four_devices(tmp_path):
  """The sharded generation (4 fake CPU devices, 'data' mesh) equals the single-device one."""
  script = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {os.getcwd()!r})
    sys.path.insert(0, {os.path.dirname(__file__)!r})
    import jax, numpy as np
    from test_gta import _micro_setup
    from jaxaug.augment import gta
    from jaxaug.train import mesh as mesh_lib
    assert jax.device_count() == 4
    c, data, st = _micro_setup()
    mesh = mesh_lib.make_data_mesh()
    st, data = mesh_lib.replicate((st, data), mesh)
    out = gta.augment(st, data, c, jax.random.PRNGKey(3), 48, None, mesh=mesh, log=None)
    np.save(sys.argv[1], out.observations)
  """)
  path = tmp_path / "gen.py"
  path.write_text(script)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  f = tmp_path / "o4.npy"
  subprocess.run([sys.executable, str(path), str(f)], check=True, env=env, timeout=600)
  c, data, st = _micro_setup()
  one = gta.augment(st, data, c, jax.random.PRNGKey(3), 48, None, log=None)
  np.testing.assert_allclose(np.load(f), one.observations, atol=1e-5)


def test_pipeline_train_restore_generate_save(tmp_path):
  """train_diffusion / augment logic: the loop trains and checkpoints, generation restores the
  checkpoint and writes a loadable npz with metadata."""
  from configs import synther as scfg
  from jaxaug.augment import pipeline
  from jaxaug.data.loaders import load_dataset
  c = scfg.get_config("tiny")
  c.num_steps = 4
  c.updates_per_dispatch = 2
  c.log_every = 2
  c.checkpoint_every = 2
  c.sampler.num_steps = 4
  c.samples_per_chunk = 16
  c.num_transitions = 40
  ds = make_dataset()
  wd = str(tmp_path / "run")
  state, last = pipeline.train_generator(c, wd, dataset=ds)
  assert int(state.step) == 4 and np.isfinite(last["train/loss"])
  assert c.diffusion.num_steps == 4  # the schedule length follows num_steps
  out = str(tmp_path / "gen.npz")
  gen = pipeline.generate(c, wd, out, dataset=ds, log=None)
  assert len(gen) == 40
  back = load_dataset(f"npz:{out}")
  np.testing.assert_allclose(back.observations, gen.observations)
  assert back.metadata["method"] == "synther" and back.metadata["checkpoint_step"] == 4
  c.checkpoint_step = 3
  with pytest.raises(ValueError, match="checkpoint_step"):
    pipeline.generate(c, wd, None, dataset=ds, log=None)


def test_synther_batch_rule_is_official():
  from configs import synther as scfg
  c = scfg.get_config("paper")
  assert c.batch_size == 256 and c.synther.large_batch_size == 1024
  assert synther.training_batch_size(c, 799_999) == 256
  assert synther.training_batch_size(c, 800_000) == 1024  # e.g. every medium-expert dataset
  c.synther.large_batch_size = 0
  assert synther.training_batch_size(c, 2_000_000) == 256
  c.synther.large_batch_size = -1
  with pytest.raises(ValueError, match="large_batch_size"):
    synther.training_batch_size(c, 10)
