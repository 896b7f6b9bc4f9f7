"""ATraDiff's diffuser trained through run_training (jaxaug.augment.atradiff.training):
the stages' results against a hand-written reference of their random stream, initial parameters
as the earlier in-run trainer's, independence of steps_per_dispatch, in-process resume,
2 devices == 1 device, the train_diffusion CLI (metrics, restore, kill and resume), and an
online run restoring (or refusing) what it trained."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxaug.augment.atradiff import data as adata
from jaxaug.augment.atradiff import diffuser as adiff
from jaxaug.augment.atradiff import store as astore
from jaxaug.augment.atradiff import training
from jaxaug.configs_io import load_config_file
from jaxaug.diffusion import train as dtrain

from tests.helpers.atradiff_data import toy_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _toy_dataset(lengths=(12, 15, 9), **kwargs):
  return toy_dataset(lengths=lengths, **kwargs)


def _config(steps=6, per_dispatch=3, est_steps=4, batch=8):
  c = load_config_file("atradiff:tiny")
  a = c.atradiff
  a.generator_steps, a.steps_per_dispatch, a.estimator_steps = steps, per_dispatch, est_steps
  a.generator_batch_size = batch
  a.generator_log_every, a.generator_checkpoint_every = per_dispatch, per_dispatch
  return c


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_trees(a, b, **tol):
  la, lb = _leaves(a), _leaves(b)
  assert len(la) == len(lb) > 0
  for x, y in zip(la, lb):
    if tol:
      np.testing.assert_allclose(x, y, **tol)
    else:
      np.testing.assert_array_equal(x, y)


def _trained_leaves_differ(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b)))


# ------------------------------------------------------------------ numerics (in memory)

def test_stages_follow_the_documented_stream_and_the_old_initialisation():
  """Initial parameters are the earlier in-run trainer's for the same key; the trained
  generators and estimator equal a plain Python loop over run_training's key stream."""
  c = _config()
  a = c.atradiff
  ds = _toy_dataset()
  key = jax.random.key(7)
  trained = adiff.train_diffuser(key, ds, a)
  init = adiff.train_diffuser(key, ds, a, train=False)
  assert _trained_leaves_differ(trained.generators, init.generators)

  spec = adiff.spec_from_config(a, ds.obs_dim, ds.act_dim)
  stats = adata.fit_row_stats(ds)
  windows = adata.build_window_data(ds, stats, spec.max_length)
  dcfg = adiff.diffusion_config(a)
  b = int(a.generator_batch_size)
  keys = jax.random.split(key, len(spec.lengths) + 1)
  for j, (k_len, gkey) in enumerate(zip(spec.lengths, keys[:-1])):
    sample = lambda kk, k_len=k_len: adata.sample_window_batch(
        windows, kk, b, k_len, spec.obs_dim, spec.num_tasks)
    k_init, rng = jax.random.split(gkey)
    # the earlier trainer's initialisation: dtrain.init on a sampled batch of the same key
    state = dtrain.init(k_init, sample(k_init), dcfg)
    _assert_trees(state, init.generators[j])

    @jax.jit
    def step(st, r, sample=sample):  # run_training's stream: (rng, sample key, update key)
      r, k_sample, k_update = jax.random.split(r, 3)
      return dtrain.update(st, sample(k_sample), k_update)[0], r

    for _ in range(int(a.generator_steps)):
      state, rng = step(state, rng)
    _assert_trees(state.params, trained.generators[j].params, rtol=2e-5, atol=1e-6)
    _assert_trees(state.ema_params, trained.generators[j].ema_params, rtol=2e-5, atol=1e-6)

  from jaxaug.augment.atradiff import length as alength
  est = alength.init_estimator(keys[-1], spec.cond_dim, spec.lengths,
                               tuple(a.estimator_hidden_dims), float(a.estimator_lr))
  _assert_trees(est.params, init.estimator.params)
  rng = jax.random.fold_in(keys[-1], 1)
  for _ in range(int(a.estimator_steps)):
    rng, k_sample, _ = jax.random.split(rng, 3)
    index = jax.random.randint(k_sample, (b,), 0, windows.starts.shape[0])
    cond = windows.rows[windows.starts[index], :spec.obs_dim]
    est, _ = alength.update(est, cond, windows.remaining[index])
  _assert_trees(est.params, trained.estimator.params, rtol=2e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(trained.stats.mean), np.asarray(stats.mean))


def test_result_does_not_depend_on_steps_per_dispatch():
  ds = _toy_dataset()
  key = jax.random.key(3)
  two = adiff.train_diffuser(key, ds, _config(per_dispatch=2).atradiff)
  three = adiff.train_diffuser(key, ds, _config(per_dispatch=3).atradiff)
  _assert_trees(two, three, rtol=1e-6, atol=1e-7)
  assert training.dispatch_size(6, 4) == 3 and training.dispatch_size(7, 200) == 7
  assert training.dispatch_size(20_000, 200) == 200 and training.dispatch_size(7, 3) == 1


def test_online_key_matches_the_online_runs():
  seed = 4
  want = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0xA7D), 3)[0]
  np.testing.assert_array_equal(jax.random.key_data(training.diffuser_key(seed)),
                                jax.random.key_data(want))


# ------------------------------------------------------------------ directories (in process)

def test_train_or_restore_resumes_stages_and_restores_without_training(tmp_path, monkeypatch):
  c = _config()
  ds = _toy_dataset()
  key = jax.random.key(11)
  full = str(tmp_path / "full")
  d_full, meta = training.train_or_restore(c, ds, full, key)
  assert meta["restored"] is False
  rows = [json.loads(l) for l in open(os.path.join(full, "metrics.jsonl"))]
  # 2 x 6 generator steps logged every 3; 4 estimator steps, 2 per dispatch, logged every 2
  assert [r["step"] for r in rows] == [3, 6, 9, 12, 14, 16]
  assert set(rows[0]) == {"step", "generator_k4/loss", "generator_k4/grad_norm"}
  assert "generator_k8/loss" in rows[2] and "estimator/loss" in rows[-1]
  assert json.load(open(os.path.join(full, "config.json")))["method"] == "atradiff"

  # An interrupted directory: the second generator's stage dies after its first dispatch.
  part = str(tmp_path / "part")
  real = training.run_training
  calls = []

  def dying(**kw):
    calls.append(kw["workdir"])
    if len(calls) == 2:
      cfg = kw["cfg"]
      import dataclasses
      real(**dict(kw, cfg=dataclasses.replace(cfg, num_steps=cfg.updates_per_dispatch)))
      raise KeyboardInterrupt("killed")
    return real(**kw)

  monkeypatch.setattr(training, "run_training", dying)
  with pytest.raises(KeyboardInterrupt):
    training.train_or_restore(c, ds, part, key)
  monkeypatch.setattr(training, "run_training", real)
  assert astore.restore(part, key, ds, c.atradiff,
                        astore.fingerprint(ds, c.atradiff.offline_dataset, c.atradiff)) == (
                            None, None)
  # another config may not continue it: the differing field is named
  other = _config(steps=8)
  with pytest.raises(ValueError, match=r"partly trained .*generator_steps: 6 in the workdir, 8"):
    training.train_or_restore(other, ds, part, key)
  d_part, meta = training.train_or_restore(c, ds, part, key)
  assert meta["restored"] is False
  _assert_trees(d_part, d_full)
  assert open(os.path.join(part, "metrics.jsonl")).read() == open(
      os.path.join(full, "metrics.jsonl")).read()

  # finished: restored, nothing trained
  monkeypatch.setattr(training, "run_training", lambda **kw: pytest.fail("retrained"))
  d_again, meta = training.train_or_restore(c, ds, full, key)
  assert meta["restored"] is True and meta["expected_length"] is None
  _assert_trees(d_again, d_full)
  # L stored next to it comes back with its fingerprint
  lfp = astore.length_fingerprint(c.atradiff, "Hopper-v5")
  astore.save_expected_length(full, 3.25, lfp)
  _, meta = training.train_or_restore(c, ds, full, key)
  assert meta["expected_length"] == 3.25 and meta["length_fingerprint"] == lfp
  # another dataset or diffuser config: refused, naming both sides
  with pytest.raises(ValueError, match=r"trained on dataset 'embedded:hopper-medium-replay'"):
    training.train_or_restore(c, _toy_dataset(reward_shift=1.0), full, key)
  with pytest.raises(ValueError, match=r"generator_steps: trained with 6, this run 8"):
    training.train_or_restore(other, ds, full, key)


def test_a_version_1_diffuser_is_refused_with_the_reason(tmp_path):
  c = _config()
  ds = _toy_dataset()
  d = adiff.train_diffuser(jax.random.key(0), ds, c.atradiff, train=False)
  fp = astore.fingerprint(ds, "toy", c.atradiff)
  astore.save(str(tmp_path / "old"), d, dict(fp, version=1), 3.0, None)
  with pytest.raises(ValueError, match="fingerprint version 1; this jaxaug trains and reads "
                     "version 2"):
    astore.restore(str(tmp_path / "old"), jax.random.key(0), ds, c.atradiff, fp)


_DP_CODE = """
import json, sys
import jax, numpy as np
from jaxaug.augment.atradiff import training
from jaxaug.train import mesh as mesh_lib
from tests.test_atradiff_training import _config, _toy_dataset
assert jax.device_count() == 2, jax.devices()
c, ds, key = _config(), _toy_dataset(), jax.random.key(5)
one, _ = training.train_stages(c.atradiff, ds, key, None,
                               mesh=mesh_lib.make_data_mesh(jax.devices()[:1]))
two, _ = training.train_stages(c.atradiff, ds, key, None, mesh=mesh_lib.make_data_mesh())
init = training.init_diffuser(key, ds, c.atradiff)
la, lb, li = (list(map(np.asarray, jax.tree.leaves(t))) for t in (one, two, init))
print(json.dumps({"max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(la, lb)),
                  "scale": max(float(np.max(np.abs(a))) for a in la),
                  "changed": any(not np.array_equal(a, i) for a, i in zip(la, li))}))
"""


def test_two_devices_equal_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, "-c", _DP_CODE], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res["changed"]
  assert res["max_abs_diff"] < 1e-4 * max(1.0, res["scale"]), res


# ------------------------------------------------------------------ the CLI and online runs

_CLI_FLAGS = ("--config.atradiff.generator_steps=20", "--config.atradiff.steps_per_dispatch=10",
              "--config.atradiff.estimator_steps=10",
              "--config.atradiff.generator_checkpoint_every=10",
              "--config.atradiff.generator_log_every=10")


def _cli(workdir, *extra):
  return [sys.executable, os.path.join(ROOT, "experiments", "train_diffusion.py"),
          "--config=configs/atradiff.py:tiny", f"--workdir={workdir}", *_CLI_FLAGS, *extra]


def _env():
  return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _snapshot(directory):
  out = {}
  for root, _, files in os.walk(directory):
    for f in files:
      p = os.path.join(root, f)
      out[os.path.relpath(p, directory)] = os.stat(p).st_mtime_ns
  return out


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("atd") / "run")
  r = subprocess.run(_cli(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir


def test_cli_writes_stage_metrics_summary_and_a_restorable_diffuser(cli_dir):
  rows = [json.loads(l) for l in open(os.path.join(cli_dir, "metrics.jsonl"))]
  assert [r["step"] for r in rows] == [10, 20, 30, 40, 50]
  for r, name in zip(rows, ["generator_k4"] * 2 + ["generator_k8"] * 2 + ["estimator"]):
    assert np.isfinite(r[f"{name}/loss"]), r
  stage_rows = [json.loads(l) for l in open(os.path.join(cli_dir, "generator_k8",
                                                         "metrics.jsonl"))]
  assert [r["step"] for r in stage_rows] == [10, 20]
  assert stage_rows[-1]["train/loss"] == rows[3]["generator_k8/loss"]
  summary = json.load(open(os.path.join(cli_dir, "summary.json")))
  assert summary["stages"]["generator_k4"]["loss"] == rows[1]["generator_k4/loss"]
  assert summary["fingerprint"]["dataset"]["spec"] == "embedded:hopper-medium-replay"
  assert json.load(open(os.path.join(cli_dir, "config.json")))["method"] == "atradiff"
  # The diffuser restores for a config with the CLI's settings, as an online run's would.
  c = load_config_file("atradiff:tiny")
  a = c.atradiff
  a.generator_steps, a.steps_per_dispatch, a.estimator_steps = 20, 10, 10
  from jaxaug.data.loaders import load_dataset
  ds = load_dataset(a.offline_dataset)
  d, meta = astore.restore(cli_dir, jax.random.key(0), ds, a,
                           astore.fingerprint(ds, a.offline_dataset, a))
  assert d is not None and meta["fingerprint"] == summary["fingerprint"]
  assert d.spec.lengths == (4, 8)
  # a re-run restores: nothing is trained or rewritten
  before = _snapshot(cli_dir)
  r = subprocess.run(_cli(cli_dir), cwd=ROOT, env=_env(), capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "restored, nothing trained" in r.stdout
  assert _snapshot(cli_dir) == before
  # --noresume refuses it
  r = subprocess.run(_cli(cli_dir, "--noresume"), cwd=ROOT, env=_env(), capture_output=True,
                     text=True, timeout=600)
  assert r.returncode != 0 and "already holds a (partly) trained ATraDiff" in r.stderr


def _online_config(diffuser_dir, **atradiff):
  c = load_config_file("atradiff:tiny")
  c.num_env_steps = 120
  c.eval_every = 0
  c.checkpoint_every = 0
  a = c.atradiff
  a.generator_steps, a.steps_per_dispatch, a.estimator_steps = 20, 10, 10
  a.diffuser_dir = diffuser_dir
  a.update(atradiff)
  return c


def test_online_run_restores_the_cli_diffuser_without_training(cli_dir, tmp_path, monkeypatch):
  from jaxaug.train.online import train_online
  fail = lambda *a, **k: pytest.fail("the online run trained a diffuser")
  monkeypatch.setattr(training, "train_stages", fail)
  monkeypatch.setattr(adiff, "train_diffuser", fail)
  before = _snapshot(cli_dir)
  summary = train_online(_online_config(cli_dir), str(tmp_path / "online"))
  assert summary["steps"] == 120
  assert not os.path.exists(tmp_path / "online" / "atradiff_diffuser")
  after = _snapshot(cli_dir)
  # only the stored L (expected_length.json) may be added next to the diffuser
  assert {k: v for k, v in after.items() if k != astore.LENGTH_FILE} == before


def test_online_run_refuses_a_diffuser_of_another_config_or_dataset(cli_dir, tmp_path):
  from jaxaug.data.loaders import load_dataset, save_npz
  from jaxaug.train.online import train_online
  with pytest.raises(ValueError, match=r"generator_steps: trained with 20, this run 30"):
    train_online(_online_config(cli_dir, generator_steps=30), str(tmp_path / "a"))
  ds = load_dataset("embedded:hopper-medium-replay")
  ds.rewards = ds.rewards + 1.0
  path = str(tmp_path / "shifted.npz")
  save_npz(ds, path)
  with pytest.raises(ValueError, match=r"trained on dataset 'embedded:hopper-medium-replay'.*"
                     r"offline_dataset is 'npz:"):
    train_online(_online_config(cli_dir, offline_dataset=f"npz:{path}"), str(tmp_path / "b"))


@pytest.mark.heavy
@pytest.mark.parametrize("fault", ["checkpoint.commit:3", "checkpoint.commit:6"])
def test_cli_kill_and_resume_matches_uninterrupted(tmp_path_factory, fault):
  """SIGKILL in the middle of the second generator's stage (its first checkpoint written, not
  renamed) and while the assembled diffuser is written; the re-run's files equal an
  uninterrupted run's (checkpoint commits: k4 at 10, 20; k8 at 10, 20; estimator; diffuser)."""
  from tests.helpers import kill_harness as kh
  root = str(tmp_path_factory.getbasetemp() / "atd_kill")
  job = kh.Job(name="train_diffusion-atradiff",
               argv=("{python}", "experiments/train_diffusion.py",
                     "--config=configs/atradiff.py:tiny", "--workdir={run}", *_CLI_FLAGS),
               faults=(fault,))
  ref, _ = kh.reference(root, job)
  result = kh.kill_point(root, job, ref, fault=fault)
  assert result.killed and result.attempts[0].fault_fired == fault, result.to_json()
  assert result.differences == [], result.differences
  assert result.survived
  assert all(kh.LEFTOVER_RE.search(os.path.basename(p.rstrip("/"))) for p in result.leftovers)
