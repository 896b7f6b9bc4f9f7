"""Loaders and writers (D4RL hdf5, Minari, npz, embedded) and every validation error."""

import json
import os

import h5py
import numpy as np
import pytest

from jaxaug.data import (TRANSITION_FIELDS, OfflineDataset, available_embedded, load_dataset,
                         next_observation_breaks, save_d4rl_hdf5, save_minari, save_npz,
                         validate_dataset)
from jaxaug.types import EnvSpec

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "minari_hopper_tiny")


def episodic(lengths=(5, 7, 4), ends=("terminal", "timeout", "timeout"), obs_dim=3, act_dim=2,
             seed=0, infos=True):
  """Episodes with next_observations[i] == observations[i+1] inside each episode."""
  rng = np.random.default_rng(seed)
  cols = {k: [] for k in TRANSITION_FIELDS}
  qpos = []
  for t, end in zip(lengths, ends):
    states = rng.normal(size=(t + 1, obs_dim)).astype(np.float32)
    cols["observations"].append(states[:-1])
    cols["next_observations"].append(states[1:])
    cols["actions"].append(rng.uniform(-1, 1, (t, act_dim)).astype(np.float32))
    cols["rewards"].append(rng.normal(size=t).astype(np.float32))
    term, tout = np.zeros(t, np.float32), np.zeros(t, np.float32)
    (term if end == "terminal" else tout)[-1] = 1.0 if end != "none" else 0.0
    cols["terminals"].append(term)
    cols["timeouts"].append(tout)
    qpos.append(rng.normal(size=(t, 4)).astype(np.float32))
  arrays = {k: np.concatenate(v) for k, v in cols.items()}
  inf = {"qpos": np.concatenate(qpos), "qvel": np.concatenate(qpos) * 2} if infos else {}
  return OfflineDataset(**arrays, infos=inf,
                        metadata={"env_id": "Toy-v0", "note": "test", "nested": {"a": 1}})


def assert_same(a: OfflineDataset, b: OfflineDataset, metadata=True):
  for f in TRANSITION_FIELDS:
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
  assert sorted(a.infos) == sorted(b.infos)
  for k in a.infos:
    np.testing.assert_array_equal(a.infos[k], b.infos[k], err_msg=k)
  if metadata:
    assert a.metadata == b.metadata


def write_d4rl(path, arrays, infos=None, metadata=True, bool_flags=True):
  """A file in D4RL's own layout: bool flags, infos/*, metadata/* datasets incl. weights."""
  with h5py.File(path, "w") as f:
    for k, v in arrays.items():
      if k in ("terminals", "timeouts") and bool_flags:
        v = np.asarray(v) > 0
      f.create_dataset(k, data=v)
    for k, v in (infos or {}).items():
      f.create_dataset(f"infos/{k}", data=v)
    if metadata:
      f.create_dataset("metadata/algorithm", data=b"SAC")
      f.create_dataset("metadata/iteration", data=np.int64(1000))
      f.create_dataset("metadata/policy/fc0/weight", data=np.zeros((256, 11), np.float32))
      f["metadata"].attrs["creator"] = "d4rl-test"


def raw(ds, drop=()):
  out = {k: getattr(ds, k) for k in TRANSITION_FIELDS if k not in drop}
  return out


# ------------------------------------------------------------------------------------------
# Readers of the real layouts.


def test_d4rl_layout_with_next_observations(tmp_path):
  ds = episodic()
  path = str(tmp_path / "hopper.hdf5")
  write_d4rl(path, raw(ds), infos=ds.infos)
  got = load_dataset(f"d4rl:{path}")
  assert_same(ds, got, metadata=False)
  assert got.source == path
  assert got.metadata["algorithm"] == "SAC"
  assert got.metadata["iteration"] == 1000
  assert got.metadata["creator"] == "d4rl-test"
  assert got.metadata["skipped_metadata"] == ["policy/fc0/weight"]
  assert got.terminals.dtype == np.float32
  # Without a prefix, the extension selects the D4RL reader.
  assert_same(got, load_dataset(path))


def qlearning_reference(obs, actions, rewards, terminals, timeouts):
  """A plain loop of the documented rule (D4RL qlearning_dataset plus episode bookkeeping)."""
  rows = []
  n = len(obs)
  for i in range(n):
    last = i == n - 1
    if last and terminals[i]:
      rows.append((i, obs[i], int(timeouts[i])))
      continue
    if last or (timeouts[i] and not terminals[i]):
      if rows and rows[-1][0] == i - 1 and not terminals[i - 1]:
        rows[-1] = (rows[-1][0], rows[-1][1], 1)
      continue
    rows.append((i, obs[i + 1], int(timeouts[i])))
  idx = np.array([r[0] for r in rows])
  return idx, np.stack([r[1] for r in rows]), np.array([r[2] for r in rows], np.float32)


def test_d4rl_without_next_observations_follows_qlearning_rule(tmp_path):
  ds = episodic(lengths=(5, 7, 4, 1, 6), ends=("terminal", "timeout", "timeout", "timeout",
                                                "none"))
  path = str(tmp_path / "old.hdf5")
  write_d4rl(path, raw(ds, drop=("next_observations",)), infos=ds.infos)
  got = load_dataset(f"d4rl:{path}")
  idx, next_obs, touts = qlearning_reference(ds.observations, ds.actions, ds.rewards,
                                             ds.terminals, ds.timeouts)
  # 3 timeout rows and the final (non-terminal) row are dropped.
  assert len(got) == len(ds) - 4
  np.testing.assert_array_equal(got.observations, ds.observations[idx])
  np.testing.assert_array_equal(got.actions, ds.actions[idx])
  np.testing.assert_array_equal(got.next_observations, next_obs)
  np.testing.assert_array_equal(got.timeouts, touts)
  np.testing.assert_array_equal(got.infos["qpos"], ds.infos["qpos"][idx])
  # Inside episodes the rebuilt next observations are the true ones.
  np.testing.assert_array_equal(got.next_observations[got.terminals == 0],
                                ds.next_observations[idx][got.terminals == 0])
  # Episodes stay separate: lengths 5, 6, 3, 5 (the 1-step timeout episode vanishes).
  np.testing.assert_array_equal(got.episode_lengths(), [5, 6, 3, 5])
  assert got.metadata["next_observations_rebuilt"] is True


def test_minari_fixture_written_by_real_minari():
  got = load_dataset(f"minari:{FIXTURE}")
  assert len(got) == 80
  np.testing.assert_array_equal(got.episode_lengths(), [30, 30, 20])
  assert got.terminals.sum() == 1 and got.terminals[-1] == 1
  assert got.timeouts.sum() == 2
  assert got.metadata["env_id"] == "Hopper-v5"
  assert got.metadata["dataset_id"] == "jaxaug/hopper-tiny-v0"
  assert got.source.endswith("main_data.hdf5")
  # infos are aligned with observations: Hopper's obs is [qpos[1:], clip(qvel, 10)].
  np.testing.assert_allclose(got.observations[:, :5], got.infos["qpos"][:, 1:], atol=1e-6)
  np.testing.assert_allclose(got.observations[:, 5:], np.clip(got.infos["qvel"], -10, 10),
                             atol=1e-6)
  assert len(next_observation_breaks(got)) == 0
  # The data/ folder itself and a bare directory path work too.
  assert len(load_dataset(f"minari:{FIXTURE}/data")) == 80
  assert len(load_dataset(FIXTURE)) == 80
  validate_dataset(got, EnvSpec(11, 3, 1.0, "Hopper-v5"))


def write_minari(directory, episodes, dict_obs=False, meta=None):
  """A Minari directory written with h5py in Minari's layout."""
  os.makedirs(os.path.join(directory, "data"))
  with h5py.File(os.path.join(directory, "data", "main_data.hdf5"), "w") as f:
    for i, ep in enumerate(episodes):
      g = f.create_group(f"episode_{i}")
      for k, v in ep.items():
        if k == "observations" and dict_obs:
          g.create_dataset("observations/observation", data=v[:, 1:])
          g.create_dataset("observations/achieved_goal", data=v[:, :1])
        else:
          g.create_dataset(k, data=v)
  with open(os.path.join(directory, "data", "metadata.json"), "w") as f:
    json.dump(meta or {"total_episodes": len(episodes), "data_format": "hdf5"}, f)


def minari_episode(t, rng, terminated=True):
  return {"observations": rng.normal(size=(t + 1, 3)), "actions": rng.normal(size=(t, 2)),
          "rewards": rng.normal(size=t), "terminations": np.eye(t, dtype=bool)[-1] & terminated,
          "truncations": np.zeros(t, bool), "infos/qpos": rng.normal(size=(t + 1, 4))}


def test_minari_dict_observations_and_unflagged_end(tmp_path):
  rng = np.random.default_rng(0)
  eps = [minari_episode(4, rng), minari_episode(3, rng, terminated=False)]
  write_minari(str(tmp_path / "m"), eps, dict_obs=True)
  got = load_dataset(f"minari:{tmp_path / 'm'}")
  assert got.metadata["observation_keys"] == ["achieved_goal", "observation"]
  np.testing.assert_allclose(got.observations[:4], eps[0]["observations"][:-1], rtol=1e-6)
  np.testing.assert_allclose(got.next_observations[4:], eps[1]["observations"][1:], rtol=1e-6)
  # An episode stored with neither flag (collection stopped) still ends, as a truncation.
  np.testing.assert_array_equal(got.timeouts, [0, 0, 0, 0, 0, 0, 1])
  np.testing.assert_allclose(got.infos["qpos"][4:], eps[1]["infos/qpos"][:3], rtol=1e-6)


# ------------------------------------------------------------------------------------------
# Writers: round trips and atomicity.


@pytest.mark.parametrize("fmt", ["npz", "d4rl", "minari"])
def test_round_trip(tmp_path, fmt):
  ds = episodic(lengths=(6, 3, 5), ends=("timeout", "terminal", "terminal"))
  if fmt == "npz":
    path = str(tmp_path / "ds.npz")
    save_npz(ds, path)
  elif fmt == "d4rl":
    path = str(tmp_path / "ds.hdf5")
    save_d4rl_hdf5(ds, path)
    with h5py.File(path) as f:  # D4RL's own layout
      assert f["terminals"].dtype == bool and f["infos/qpos"].shape == (14, 4)
      assert f["metadata/note"][()] == b"test" and f["metadata/nested/a"][()] == 1
  else:
    path = str(tmp_path / "minari_ds")
    save_minari(ds, path, env_id="Toy-v0")
    with open(os.path.join(path, "data", "metadata.json")) as f:
      meta = json.load(f)
    assert meta["total_steps"] == 14 and meta["total_episodes"] == 3
    assert meta["minari_version"] == "0.5.4" and meta["data_format"] == "hdf5"
    with h5py.File(os.path.join(path, "data", "main_data.hdf5")) as f:
      assert f["episode_0/observations"].shape == (7, 3)
      assert f["episode_0/infos/qpos"].shape == (7, 4)
      assert np.isnan(f["episode_0/infos/qpos"][-1]).all()  # state after the last step unknown
      assert f["episode_1/terminations"][()].tolist() == [False, False, True]
  got = load_dataset(f"{fmt}:{path}")
  assert_same(ds, got)
  assert got.source.startswith(path)
  assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_save_minari_uses_next_infos_and_registered_env_spaces(tmp_path):
  ds = episodic(lengths=(3,), ends=("timeout",), obs_dim=11, act_dim=3)
  ds.infos["next_qpos"] = ds.infos["qpos"] + 100
  ds.metadata = {"env_id": "Hopper-v5"}
  save_minari(ds, str(tmp_path / "h"), env_id="Hopper-v5")
  with h5py.File(tmp_path / "h" / "data" / "main_data.hdf5") as f:
    np.testing.assert_array_equal(f["episode_0/infos/qpos"][-1], ds.infos["qpos"][-1] + 100)
    assert "next_qpos" not in f["episode_0/infos"]
  meta = json.loads((tmp_path / "h" / "data" / "metadata.json").read_text())
  assert json.loads(meta["env_spec"])["id"] == "Hopper-v5"
  assert json.loads(meta["action_space"])["shape"] == [3]
  with pytest.raises(FileExistsError):
    save_minari(ds, str(tmp_path / "h"), env_id="Hopper-v5")
  save_minari(ds.subset(np.arange(2)), str(tmp_path / "h"), env_id="Hopper-v5", overwrite=True)
  assert len(load_dataset(f"minari:{tmp_path / 'h'}")) == 2


def test_save_minari_refuses_transition_only_data(tmp_path):
  ds = episodic()
  ds.next_observations = ds.next_observations + 1.0
  with pytest.raises(ValueError, match="next_observations"):
    save_minari(ds, str(tmp_path / "x"), env_id="Toy-v0")
  assert not os.path.exists(tmp_path / "x")


def test_writer_is_atomic(tmp_path, monkeypatch):
  path = tmp_path / "ds.npz"
  save_npz(episodic(), str(path))
  before = path.read_bytes()

  def boom(*args, **kwargs):
    raise RuntimeError("disk full")

  monkeypatch.setattr(np, "savez_compressed", boom)
  with pytest.raises(RuntimeError):
    save_npz(episodic(seed=1), str(path))
  assert path.read_bytes() == before
  assert os.listdir(tmp_path) == ["ds.npz"]


def test_embedded_datasets():
  names = available_embedded()
  assert {"hopper-medium-replay", "hopper-medium-expert"} <= set(names)
  for name, kind in (("hopper-medium-replay", "medium-replay"),
                     ("hopper-medium-expert", "medium-expert")):
    ds = load_dataset(f"embedded:{name}", EnvSpec(11, 3, 1.0, "Hopper-v5"))
    assert 30_000 <= len(ds) <= 100_000
    assert ds.metadata["env_id"] == "Hopper-v5" and ds.metadata["kind"] == kind
    assert "placeholder" not in ds.metadata
    assert ds.metadata["transitions"] == len(ds)
    assert ds.infos["qpos"].shape == (len(ds), 6) and ds.infos["qvel"].shape == (len(ds), 6)
    assert ds.source == f"embedded:{name}"
    # observations are the true state without root x (velocities clipped at +-10 in Hopper)
    np.testing.assert_allclose(ds.observations[:, :5], ds.infos["qpos"][:, 1:], atol=1e-6)
    np.testing.assert_allclose(ds.observations[:, 5:], np.clip(ds.infos["qvel"], -10, 10),
                               atol=1e-5)
    np.testing.assert_allclose(ds.episode_returns().mean(), ds.metadata["return_mean"], rtol=1e-4)
  with pytest.raises(ValueError, match="available: .*hopper-medium-replay"):
    load_dataset("embedded:walker-nope")


def test_unknown_spec_lists_formats():
  with pytest.raises(ValueError, match="d4rl:PATH, minari:PATH, npz:PATH, embedded:NAME"):
    load_dataset("csv:/tmp/x.csv")


# ------------------------------------------------------------------------------------------
# Validation errors, each from a crafted bad file; the message names the file and the field.


def save_raw_npz(path, arrays, metadata=None):
  arrays = dict(arrays)
  if metadata is not None:
    arrays["metadata"] = np.array(metadata)
  with open(path, "wb") as f:
    np.savez(f, **arrays)


def expect_error(spec, path, field, *more, env_spec=None):
  with pytest.raises(ValueError) as e:
    load_dataset(spec, env_spec)
  msg = str(e.value)
  assert str(path) in msg, msg
  if field is not None:
    assert f"'{field}'" in msg, msg
  for m in more:
    assert m in msg, msg
  return msg


def test_missing_fields(tmp_path):
  ds = episodic()
  p = tmp_path / "a.npz"
  save_raw_npz(p, raw(ds, drop=("rewards",)))
  expect_error(f"npz:{p}", p, "rewards", "missing")
  p = tmp_path / "a.hdf5"
  write_d4rl(p, raw(ds, drop=("actions",)))
  expect_error(f"d4rl:{p}", p, "actions", "missing")
  rng = np.random.default_rng(0)
  ep = minari_episode(3, rng)
  del ep["truncations"]
  write_minari(str(tmp_path / "m"), [ep])
  expect_error(f"minari:{tmp_path / 'm'}", "main_data.hdf5:episode_0", "truncations", "missing")
  os.remove(tmp_path / "m" / "data" / "metadata.json")
  expect_error(f"minari:{tmp_path / 'm'}", "metadata.json", None, "missing")


def test_length_mismatch(tmp_path):
  ds = episodic()
  arrays = raw(ds)
  arrays["rewards"] = arrays["rewards"][:-2]
  p = tmp_path / "short.hdf5"
  write_d4rl(p, arrays)
  expect_error(f"d4rl:{p}", p, "rewards", "14 rows, expected 16")
  p = tmp_path / "short_infos.npz"
  save_raw_npz(p, {**raw(ds), "infos/qpos": ds.infos["qpos"][:3]})
  expect_error(f"npz:{p}", p, "infos/qpos", "3 rows")
  rng = np.random.default_rng(0)
  ep = minari_episode(3, rng)
  ep["observations"] = ep["observations"][:-1]
  write_minari(str(tmp_path / "m"), [ep])
  expect_error(f"minari:{tmp_path / 'm'}", "episode_0", "observations", "T+1")


@pytest.mark.parametrize("field,bad", [("observations", np.nan), ("rewards", np.inf),
                                       ("infos/qpos", -np.inf)])
def test_nonfinite(tmp_path, field, bad):
  ds = episodic()
  arrays = {**raw(ds), **{f"infos/{k}": v for k, v in ds.infos.items()}}
  arrays[field] = arrays[field].copy()
  arrays[field][7] = bad
  if field == "observations":  # keep the continuity rule out of the way
    arrays["next_observations"] = arrays["next_observations"].copy()
    arrays["next_observations"][6] = bad
  p = tmp_path / "bad.npz"
  save_raw_npz(p, arrays)
  expect_error(f"npz:{p}", p, field, "NaN or Inf", "first at index 7")


def test_dims_disagree_with_env_spec(tmp_path):
  p = tmp_path / "ds.npz"
  save_npz(episodic(obs_dim=3, act_dim=2), str(p))
  expect_error(f"npz:{p}", p, "observations", "obs_dim=4", env_spec=EnvSpec(4, 2))
  expect_error(f"npz:{p}", p, "actions", "act_dim=6", env_spec=EnvSpec(3, 6))
  assert len(load_dataset(f"npz:{p}", EnvSpec(3, 2))) == 16


def test_minari_metadata_space_disagrees(tmp_path):
  rng = np.random.default_rng(0)
  box = {"type": "Box", "dtype": "float32", "shape": [5], "low": [0] * 5, "high": [1] * 5}
  write_minari(str(tmp_path / "m"), [minari_episode(3, rng)],
               meta={"observation_space": json.dumps(box)})
  expect_error(f"minari:{tmp_path / 'm'}", "metadata.json", "observation_space", "dim 3")


def test_empty(tmp_path):
  ds = episodic()
  p = tmp_path / "empty.npz"
  save_raw_npz(p, {k: v[:0] for k, v in raw(ds).items()})
  expect_error(f"npz:{p}", p, "rewards", "empty")
  write_minari(str(tmp_path / "m"), [])
  expect_error(f"minari:{tmp_path / 'm'}", "main_data.hdf5", None, "empty")


@pytest.mark.parametrize("field,value", [("terminals", 2.0), ("timeouts", 0.5)])
@pytest.mark.parametrize("old_layout", [False, True])
def test_flags_not_binary(tmp_path, field, value, old_layout):
  arrays = raw(episodic(), drop=("next_observations",) if old_layout else ())
  arrays[field] = arrays[field].copy()
  arrays[field][3] = value
  p = tmp_path / "flags.hdf5"
  write_d4rl(p, arrays, bool_flags=False)
  expect_error(f"d4rl:{p}", p, field, "0 or 1", "index 3")


def test_no_episode_boundaries(tmp_path):
  n = 10_001
  states = np.cumsum(np.ones((n + 1, 2), np.float32), axis=0)
  arrays = {"observations": states[:-1], "next_observations": states[1:],
            "actions": np.zeros((n, 1), np.float32), "rewards": np.zeros(n, np.float32),
            "terminals": np.zeros(n, np.float32), "timeouts": np.zeros(n, np.float32)}
  p = tmp_path / "stream.npz"
  save_raw_npz(p, arrays)
  expect_error(f"npz:{p}", p, "timeouts", "no episode boundaries", "10001")
  # A short single-episode file is fine.
  p = tmp_path / "short.npz"
  save_raw_npz(p, {k: v[:500] for k, v in arrays.items()})
  assert len(load_dataset(f"npz:{p}")) == 500
  # Missing 'timeouts' in an old file becomes zeros (so the same rule applies to long files).
  p = tmp_path / "old.hdf5"
  write_d4rl(p, {k: v for k, v in arrays.items() if k != "timeouts"})
  expect_error(f"d4rl:{p}", p, "timeouts", "no episode boundaries")


def test_next_observations_mismatch(tmp_path):
  ds = episodic(lengths=(400, 400), ends=("timeout", "timeout"))
  arrays = raw(ds)
  # Shape mismatch.
  p = tmp_path / "shape.npz"
  save_raw_npz(p, {**arrays, "next_observations": arrays["next_observations"][:, :2]})
  expect_error(f"npz:{p}", p, "next_observations", "shape")
  # Many in-episode breaks: an error, unless declared transition-only.
  shuffled = arrays["next_observations"][np.random.default_rng(0).permutation(800)]
  p = tmp_path / "breaks.npz"
  save_raw_npz(p, {**arrays, "next_observations": shuffled})
  expect_error(f"npz:{p}", p, "next_observations", "inside episodes", "episodic")
  save_raw_npz(p, {**arrays, "next_observations": shuffled}, json.dumps({"episodic": False}))
  assert len(load_dataset(f"npz:{p}")) == 800
  save_raw_npz(p, {**arrays, "next_observations": shuffled})
  got = load_dataset(f"npz:{p}", episodic=False)
  assert len(got) == 800 and got.metadata["episodic"] is False and got.timeouts.sum() == 2
  # A single break (a junction of two files) is tolerated and marked as an episode end.
  one = arrays["next_observations"].copy()
  one[100] += 1.0
  save_raw_npz(p, {**arrays, "next_observations": one})
  got = load_dataset(f"npz:{p}")
  assert got.timeouts[100] == 1 and got.metadata["marked_breaks"] == 1
  np.testing.assert_array_equal(got.episode_lengths(), [101, 299, 400])


def test_unreadable_files(tmp_path):
  p = tmp_path / "pickled.npz"
  with open(p, "wb") as f:
    np.savez(f, observations=np.array([{"a": 1}], dtype=object))
  expect_error(f"npz:{p}", p, "observations", "pickle")
  p = tmp_path / "meta.npz"
  save_raw_npz(p, raw(episodic()), metadata="{not json")
  expect_error(f"npz:{p}", p, "metadata", "JSON")
  p = tmp_path / "junk.hdf5"
  p.write_bytes(b"not hdf5")
  expect_error(f"d4rl:{p}", p, None, "hdf5")
  expect_error(f"d4rl:{tmp_path / 'missing.hdf5'}", tmp_path / "missing.hdf5", None, "no such")
