"""Online sweeps (issue: sweeps of online agents): points that differ in seed and agent float
hyperparameters train as ONE program over the stacked loop state, one env per point
(jaxaug.train.online.train_online_points via experiments/sweep.py). Each point equals a separate
train_online run up to float rounding, 4 fake devices equal 1, and a SIGKILLed sweep resumes
exactly."""

import json
import os
import subprocess

import numpy as np
import pytest

from jaxaug.configs_io import load_config_file
from jaxaug.train import online
from jaxaug.train import sweep as sweep_lib
from tests.helpers import sweep_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = "agent.tau=[0.005,0.02] seed=range(2)"
SHORT = dict(num_env_steps=300, start_steps=100, eval_every=150, eval_episodes=1,
             checkpoint_every=150, log_every=50)


def _config(**over):
  c = load_config_file("sac:tiny")
  c.update(dict(SHORT, **over))
  return c


_env = sweep_cli.subprocess_env


def _cli(workdir, **over):
  return sweep_cli.sweep_cli("sac.py", SPEC, workdir, dict(SHORT, **over))


def _rows(path):
  with open(os.path.join(path, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if "per_s" not in k}
            for line in f if line.strip()]


def _names(workdir):
  with open(os.path.join(workdir, "sweep.json")) as f:
    return [p["name"] for p in json.load(f)["points"]]


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("online_sweep") / "run")
  results = sweep_lib.run_sweep(_config(), sweep_lib.parse_spec(SPEC), workdir)
  return workdir, results


def test_online_sweep_is_one_program_with_per_point_run_files(sweep_run):
  workdir, results = sweep_run
  with open(os.path.join(workdir, "sweep.json")) as f:
    manifest = json.load(f)
  assert len(manifest["points"]) == 4 and len(manifest["groups"]) == 1
  assert os.path.isdir(os.path.join(workdir, "groups", "0", "checkpoints"))
  for name, res in zip(_names(workdir), results):
    d = os.path.join(workdir, "points", name)
    assert {"config.json", "metrics.jsonl", "summary.json"} <= set(os.listdir(d))
    assert res["steps"] == 300 and np.isfinite(res["eval/return"])
    assert [r["step"] for r in _rows(d) if "train/critic_loss" in r] == [150, 200, 250, 300]
  # the points differ (seeds and tau are really per point)
  returns = {round(r["eval/return"], 6) for r in results}
  assert len(returns) == 4


@pytest.mark.parametrize("index", [0, 3])
def test_point_equals_a_separate_run(sweep_run, tmp_path, index):
  workdir, results = sweep_run
  point = sweep_lib.parse_spec(SPEC)[index]
  c = sweep_lib.apply_overrides(_config(), point)
  single = online.train_online(c, str(tmp_path / "single"))
  rows_sweep = _rows(os.path.join(workdir, "points", _names(workdir)[index]))
  rows_single = _rows(str(tmp_path / "single"))
  assert [r["step"] for r in rows_sweep] == [r["step"] for r in rows_single]
  for a, b in zip(rows_sweep, rows_single):
    assert a.keys() == b.keys()
    for k in a:
      # float rounding of the vmapped update only (measured: 1.5e-7 relative on eval returns)
      np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-4, err_msg=k)
  assert results[index]["episodes"] == single["episodes"]


def test_four_devices_equal_one(sweep_run, tmp_path):
  workdir1, _ = sweep_run
  workdir4 = str(tmp_path / "four")
  r = subprocess.run(_cli(workdir4), env=_env(
      XLA_FLAGS="--xla_force_host_platform_device_count=4"), capture_output=True, text=True,
                     timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(os.path.join(workdir4, "sweep.json")) as f:
    assert json.load(f)["num_devices"] == 4
  for n in _names(workdir1):
    ra, rb = _rows(os.path.join(workdir4, "points", n)), _rows(os.path.join(workdir1, "points",
                                                                               n))
    assert [x["step"] for x in ra] == [x["step"] for x in rb]
    for x, y in zip(ra, rb):
      for k in x:
        np.testing.assert_allclose(x[k], y[k], rtol=1e-3, atol=1e-4, err_msg=k)


def test_sigkilled_online_sweep_resumes_exactly(tmp_path):
  full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
  env = _env()
  r = subprocess.run(_cli(full), env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  done = sweep_cli.kill_after_first_checkpoint(
      _cli(killed), env, os.path.join(killed, "groups", "0", "checkpoints"))
  assert done and max(done) < 300, done  # killed mid-run
  r = subprocess.run(_cli(killed), env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Resumed from" in r.stderr
  for n in _names(full):
    assert _rows(os.path.join(full, "points", n)) == _rows(os.path.join(killed, "points", n))
    sa = json.load(open(os.path.join(full, "points", n, "summary.json")))
    sb = json.load(open(os.path.join(killed, "points", n, "summary.json")))
    assert sa["last_eval"] == sb["last_eval"] and sa["episodes"] == sb["episodes"]


def test_online_sweep_refuses_atradiff(tmp_path):
  c = load_config_file("atradiff:tiny")
  with pytest.raises(ValueError, match="online sweeps do not support ATraDiff"):
    online.train_online_points([c, c], [str(tmp_path / "a"), str(tmp_path / "b")],
                               str(tmp_path / "g"))
