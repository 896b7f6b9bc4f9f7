"""Dataset builder on a tiny budget: files load and validate, medium-replay is exactly the SAC
run's transitions, random data matches a random policy, SIGKILL + re-run gives the same files."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxaug import envs
from jaxaug.data import builder, load_dataset, validate_dataset
from jaxaug.data.dataset import TRANSITION_FIELDS
from jaxaug.train import online

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 300
FLAGS = ["--env=hopper", f"--size={SIZE}", "--sac_preset=tiny", "--sac_steps=400",
         "--eval_every=100", "--checkpoint_every=100", "--seed=3",
         "--sac_set=start_steps=100", "--sac_set=eval_episodes=2"]


def _opts(out):
  return builder.BuildOptions(
      env_id="hopper", out=str(out), size=SIZE, seed=3, sac_preset="tiny", sac_steps=400,
      eval_every=100, checkpoint_every=100,
      sac_overrides=(("start_steps", 100), ("eval_episodes", 2)), command="test", minari=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  out = tmp_path_factory.mktemp("built")
  opts = _opts(out)
  return opts, builder.build(opts)


def test_files_load_validate_and_carry_metadata(built):
  opts, results = built
  assert set(results) == set(builder.KINDS)
  spec = envs.env_spec("hopper")
  for kind in builder.KINDS:
    ds = load_dataset(f"d4rl:{builder.dataset_path(opts, kind)}")
    validate_dataset(ds, spec)
    assert ds.infos["qpos"].shape == (len(ds), 6) and ds.infos["qvel"].shape == (len(ds), 6)
    meta = ds.metadata
    assert meta["env_id"] == "Hopper-v5" and meta["kind"] == kind and meta["seed"] == 3
    assert meta["jaxaug_version"] and meta["command"] == "test"
    assert results[kind]["transitions"] == len(ds)
    np.testing.assert_allclose(results[kind]["return_mean"], ds.episode_returns().mean())
  assert len(load_dataset(f"d4rl:{builder.dataset_path(opts, 'random')}")) == SIZE
  medium = load_dataset(f"d4rl:{builder.dataset_path(opts, 'medium')}")
  expert = load_dataset(f"d4rl:{builder.dataset_path(opts, 'expert')}")
  both = load_dataset(f"d4rl:{builder.dataset_path(opts, 'medium-expert')}")
  assert len(both) == 2 * SIZE
  np.testing.assert_array_equal(both.observations[:SIZE], medium.observations)
  np.testing.assert_array_equal(both.actions[SIZE:], expert.actions)
  chosen = builder.select_policies(opts)
  assert expert.metadata["policy_sac_steps"] == chosen["expert"]
  evals = builder.snapshot_evals(opts)  # expert = best eval return; medium reaches 1/3 of it
  assert sorted(evals) == [100, 200, 300, 400]
  assert evals[chosen["expert"]]["eval/return"] == max(e["eval/return"] for e in evals.values())
  assert medium.metadata["policy_sac_steps"] == chosen["medium"] <= chosen["expert"]
  # Policies are saved and reload.
  for name in ("medium", "expert"):
    state, meta = builder.load_policy(opts, name)
    assert meta["step"] == meta["sac_steps"] and "eval" in meta


def test_minari_export_matches_the_hdf5_files(built):
  """--minari writes, beside each hdf5 file, a Minari directory holding the same transitions."""
  opts, _ = built
  for kind in builder.KINDS:
    path = builder.dataset_path(opts, kind)
    mdir = path[:-len(".hdf5")] + ".minari"
    assert os.path.isfile(os.path.join(mdir, "data", "main_data.hdf5")), mdir
    assert os.path.isfile(os.path.join(mdir, "data", "metadata.json")), mdir
    d4rl = load_dataset(f"d4rl:{path}")
    mina = load_dataset(f"minari:{mdir}")
    validate_dataset(mina, envs.env_spec("hopper"))
    assert len(mina) == len(d4rl), kind
    for field in ("observations", "actions", "rewards", "next_observations", "terminals"):
      np.testing.assert_allclose(getattr(mina, field), getattr(d4rl, field), rtol=1e-6,
                                 err_msg=f"{kind}: {field}")
    # Minari marks every stored episode as ended: timeouts agree except at the dataset's last,
    # cut row, which Minari stores as truncated.
    np.testing.assert_array_equal(mina.timeouts[:-1], d4rl.timeouts[:-1])
    np.testing.assert_array_equal(mina.episode_starts, d4rl.episode_starts)
    np.testing.assert_allclose(mina.infos["qpos"], d4rl.infos["qpos"], rtol=1e-6)
    np.testing.assert_allclose(mina.infos["qvel"], d4rl.infos["qvel"], rtol=1e-6)


def test_medium_replay_is_exactly_the_training_transitions(built):
  opts, _ = built
  ds = load_dataset(f"d4rl:{builder.dataset_path(opts, 'medium-replay')}")
  n = ds.metadata["sac_steps"]
  assert len(ds) == n == builder.load_policy(opts, "medium")[1]["step"]
  # The same rows as the SAC run's replay buffer prefix ...
  run = online.load_run(os.path.join(opts.out, "hopper", "sac"), builder.sac_config(opts))
  for f in TRANSITION_FIELDS:
    np.testing.assert_array_equal(getattr(ds, f), np.asarray(getattr(run["buffer"].data, f))[:n])
  # ... and they are the environment's transitions: replaying each episode's actions from its
  # reset seed reproduces observations, rewards, terminals and the logged simulator state.
  env = envs.make_env("hopper")
  for e, (s, t) in enumerate(zip(ds.episode_starts, ds.episode_ends)):
    obs, _ = env.reset(seed=online.episode_seed(opts.seed, e))
    for i in range(s, t + 1):
      np.testing.assert_array_equal(ds.observations[i], np.float32(obs))
      np.testing.assert_array_equal(ds.infos["qpos"][i], env.unwrapped.data.qpos)
      np.testing.assert_array_equal(ds.infos["qvel"][i], env.unwrapped.data.qvel)
      obs, r, term, trunc, _ = env.step(ds.actions[i])
      assert ds.rewards[i] == np.float32(r) and ds.terminals[i] == float(term)
      np.testing.assert_array_equal(ds.next_observations[i], np.float32(obs))
    assert term or trunc or t == len(ds) - 1
  env.close()


def test_random_dataset_matches_random_policy(built):
  opts, _ = built
  ds = load_dataset(f"d4rl:{builder.dataset_path(opts, 'random')}")
  rets = ds.episode_returns()[:-1]  # the last episode is cut at SIZE
  assert np.abs(ds.actions).max() <= 1.0 and ds.actions.std() > 0.5  # uniform on [-1, 1]
  rng = np.random.default_rng(0)
  ref = envs.evaluate(lambda o: rng.uniform(-1, 1, (o.shape[0], 3)), "hopper", 30, seed=99)
  se = np.sqrt(rets.var() / len(rets) + ref["return_std"] ** 2 / 30)
  assert abs(rets.mean() - ref["return_mean"]) < 4 * se + 1.0, (rets.mean(), ref)


def test_resume_after_sigkill_gives_the_same_files(built, tmp_path):
  opts, _ = built
  out = tmp_path / "killed"
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "build_dataset.py"), f"--out={out}",
         "--kinds=medium-replay,expert"] + FLAGS
  ckpts = out / "hopper" / "sac" / "checkpoints"
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir()):
      break
    time.sleep(0.2)
  assert proc.poll() is None, "the build finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(builder.dataset_path(_opts(out), "expert"))
  subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  for kind in ("medium-replay", "expert"):
    a = load_dataset(f"d4rl:{builder.dataset_path(opts, kind)}")
    b = load_dataset(f"d4rl:{builder.dataset_path(_opts(out), kind)}")
    for f in TRANSITION_FIELDS:
      np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f"{kind}/{f}")
    for k in ("qpos", "qvel"):
      np.testing.assert_array_equal(a.infos[k], b.infos[k])


def test_embedded_datasets_are_builder_output():
  spec = envs.env_spec("hopper")
  for kind in ("medium-replay", "medium-expert"):
    ds = load_dataset(f"embedded:hopper-{kind}", spec)
    validate_dataset(ds, spec)
    assert ds.metadata["generator"] == "jaxaug.data.builder" and ds.metadata["kind"] == kind
    assert "placeholder" not in ds.metadata and 30_000 <= len(ds) <= 100_000
    np.testing.assert_allclose(ds.observations[:, :5], ds.infos["qpos"][:, 1:], atol=1e-6)
  replay = load_dataset("embedded:hopper-medium-replay", spec)
  assert len(replay) == replay.metadata["sac_steps"]  # every transition up to medium
