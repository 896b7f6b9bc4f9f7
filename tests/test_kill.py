"""Crash safety: SIGKILL every kind of long job at a named fault point, re-run the same command,
and require the outputs of an uninterrupted run bit for bit (tests/helpers/kill_harness.py,
docs/crash_safety.md). One job per kind, the fault points of kill_harness.default_jobs:
  train_offline (TD3+BC)     checkpoint.commit:1, checkpoint.committed:2
  train_diffusion (GTA)      checkpoint.commit:2
  augment (GTA)              augment.chunk:2
  train_online (SAC)         online.checkpoint:1, checkpoint.committed:2
  train_online (SAC, 4 envs, overlap; ATraDiff with adaptation)   the same two points
  build_dataset              dataset.write:1, online.checkpoint:2
experiments/kill_test.py runs every job (IQL, CQL, MCQ, DTQL, SynthER, ATraDiff too) at more
points, random delays included.

Plus fast in-process checks of the two resume defects these kill tests found, and of the hook.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug import faults
from jaxaug.train import loop
from tests.helpers import kill_harness as kh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI_JOBS = ("train_offline-td3bc", "train_diffusion-gta", "augment-gta", "train_online-sac",
           "train_online-sac-vec", "train_online-atradiff", "build_dataset")


@pytest.fixture(scope="module")
def kill_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp("kill"))


def _points():
  jobs = kh.default_jobs()
  return [(name, f) for name in CI_JOBS for f in jobs[name].faults]


@pytest.mark.heavy
@pytest.mark.parametrize("name,fault", _points())
def test_kill_and_resume_matches_uninterrupted_run(kill_root, name, fault):
  jobs = kh.default_jobs()
  job = jobs[name]
  for req in job.requires:
    kh.reference(kill_root, jobs[req])
  ref, _ = kh.reference(kill_root, job)
  result = kh.kill_point(kill_root, job, ref, fault=fault)
  assert result.killed, result.differences
  assert result.attempts[0].fault_fired == fault
  assert result.differences == []
  assert result.survived
  # Leftovers are allowed only under the temporary names no reader treats as results.
  assert all(kh.LEFTOVER_RE.search(os.path.basename(p.rstrip("/"))) for p in result.leftovers)


# ------------------------------------------------------------------ the harness can fail


def test_compare_trees_sees_every_kind_of_difference(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  for d in (a, b):
    (d / "tb").mkdir(parents=True)
  (a / "metrics.jsonl").write_text('{"step": 1, "x": 0.5}\n')
  (b / "metrics.jsonl").write_text('{"step": 1, "x": 0.5}\n{"step": 1, "x": 0.5}\n')
  (a / "summary.json").write_text(json.dumps({"r": 1.0, "wall_time_s": 3.0}))
  (b / "summary.json").write_text(json.dumps({"r": 1.0, "wall_time_s": 9.0}))  # excluded key
  np.savez(a / "d.npz", x=np.float32([1, 2]))
  np.savez(b / "d.npz", x=np.float32([1, np.nextafter(2, 3, dtype=np.float32)]))
  (a / "tb" / "events").write_text("1")
  (b / "tb" / "events").write_text("2")  # excluded directory
  (b / "extra.txt").write_text("")
  (b / ".gen.npz.abc.tmp.npz").write_text("partial")  # a leftover, not a result
  diffs = kh.compare_trees(str(a), str(b))
  assert any("metrics.jsonl: 2 records, expected 1" in d for d in diffs), diffs
  assert any(d.startswith("d.npz: x: arrays differ (1 of 2") for d in diffs), diffs
  assert any("extra.txt" in d for d in diffs), diffs
  assert not any("summary.json" in d or "tb" in d or ".tmp" in d for d in diffs), diffs
  assert len(diffs) == 3
  _, leftovers = kh.check_partials(str(b))
  assert leftovers == [".gen.npz.abc.tmp.npz"]


def test_check_partials_rejects_a_truncated_result(tmp_path):
  from jaxaug.data.dataset import OfflineDataset
  from jaxaug.data.loaders import save_npz
  n = 4
  ds = OfflineDataset(observations=np.zeros((n, 3), np.float32), actions=np.zeros((n, 1), np.float32),
                      rewards=np.zeros(n, np.float32),
                      next_observations=np.zeros((n, 3), np.float32),
                      terminals=np.zeros(n, np.float32), timeouts=np.float32([0, 0, 0, 1]))
  save_npz(ds, str(tmp_path / "gen.npz"))
  assert kh.check_partials(str(tmp_path))[0] == []
  data = (tmp_path / "gen.npz").read_bytes()
  (tmp_path / "gen.npz").write_bytes(data[:len(data) // 2])
  problems, _ = kh.check_partials(str(tmp_path))
  assert len(problems) == 1 and problems[0].startswith("gen.npz: does not open"), problems


# ------------------------------------------------------------------------------ the hook


def test_fault_point_kills_at_the_nth_hit(tmp_path):
  mark = tmp_path / "mark"
  code = ("from jaxaug import faults\n"
          "for i in range(5):\n"
          "  print(i, flush=True)\n"
          "  faults.point('x.y')\n")
  env = {**os.environ, "JAXAUG_FAULT": "x.y:3", "JAXAUG_FAULT_MARK": str(mark)}
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == -9
  assert proc.stdout.split() == ["0", "1", "2"]
  assert mark.read_text() == "x.y:3\n"
  env.pop("JAXAUG_FAULT")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0 and proc.stdout.split() == ["0", "1", "2", "3", "4"]


def test_fault_spec_errors_name_the_variable():
  assert faults.parse("a.b:2, c:1") == {"a.b": 2, "c": 1}
  for bad in ("a.b", "a.b:0", ":3", "a:x"):
    with pytest.raises(ValueError, match="JAXAUG_FAULT"):
      faults.parse(bad)


# ------------------------------------------------- the resume defects, in process (fast)


def _tiny_training(workdir, num_steps):
  cfg = loop.LoopConfig(num_steps=num_steps, batch_size=2, updates_per_dispatch=2, log_every=2,
                        checkpoint_every=4, max_checkpoints=2)
  data = jnp.arange(8.0)

  def update(state, batch, key):
    w = state["w"] + jnp.mean(batch) + jax.random.normal(key)
    return {"w": w}, {"w": w}

  return loop.run_training(cfg=cfg, workdir=workdir, init_fn=lambda k: {"w": jnp.float32(0)},
                           update_fn=update,
                           sample_fn=lambda d, k, n: jax.random.choice(k, d, (n,)), data=data,
                           is_main=True)


def test_fresh_start_drops_records_of_a_killed_attempt(tmp_path):
  # Before the fix a run killed before its first checkpoint left its records in metrics.jsonl
  # and the re-run appended its own after them (steps 2, 2, 4, ...).
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write('{"step": 2, "train/w": 123.0}\n')
  _tiny_training(workdir, 8)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == [2, 4, 6, 8]


def test_rerun_of_a_finished_run_returns_its_final_record(tmp_path):
  # Before the fix a run killed after its final checkpoint (before summary.json) re-ran to an
  # empty record, so train_offline's summary lost the final metrics and evaluation.
  workdir = str(tmp_path / "run")
  _, last = _tiny_training(workdir, 8)
  _, again = _tiny_training(workdir, 8)
  assert set(last) == {"train/w"} and set(again) == set(last)
  np.testing.assert_array_equal(np.asarray(again["train/w"]), np.asarray(last["train/w"]))
  assert np.asarray(again["train/w"]).dtype == np.asarray(last["train/w"]).dtype
