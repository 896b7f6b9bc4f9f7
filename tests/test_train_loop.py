"""The generic train loop: data parallel == single device, vmapped seeds == separate runs,
resume after SIGKILL == uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug import agents
from jaxaug.data.dataset import sample_transitions
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.train.loop import LoopConfig, run_training
from jaxaug.types import EnvSpec
from tests.helpers.dp_check import random_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env


def test_data_parallel_equals_single_device():
  out = subprocess.run(
      [sys.executable, "-m", "tests.helpers.dp_check", "td3bc", "iql"], cwd=ROOT,
      env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"),
      capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  for name in ("td3bc", "iql"):
    assert res[name]["params_changed"], name  # training did something
    assert res[name]["max_abs_diff"] < 1e-4 * max(1.0, res[name]["scale"]), res[name]


@pytest.mark.parametrize("name", ["td3bc", "iql"])
def test_vmapped_seeds_equal_separate_runs(name):
  agent = agents.get_agent(name)
  cfg = agent.get_config()
  spec = EnvSpec(11, 3)
  data = random_data()
  kw = dict(num_steps=20, batch_size=32, updates_per_dispatch=10, log_every=10)
  init = lambda k: agent.init(k, spec, cfg)
  both, _ = run_training(cfg=LoopConfig(num_seeds=2, seed=3, **kw), workdir=None, init_fn=init,
                         update_fn=agent.update, sample_fn=sample_transitions, data=data)
  for i, seed in enumerate((3, 4)):
    single, _ = run_training(cfg=LoopConfig(num_seeds=1, seed=seed, **kw), workdir=None,
                             init_fn=init, update_fn=agent.update, sample_fn=sample_transitions,
                             data=data)
    for a, b in zip(jax.tree.leaves(both), jax.tree.leaves(single)):
      np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b), rtol=1e-5, atol=1e-5)
  # the two seeds really differ (parameters do; step counters and hyperparameters do not)
  assert any(not np.allclose(np.asarray(w)[0], np.asarray(w)[1])
             for w in jax.tree.leaves(both) if np.asarray(w).ndim > 2)


def test_loop_config_validation_names_fields():
  with pytest.raises(ValueError, match="config.log_every"):
    LoopConfig(num_steps=90, batch_size=8, updates_per_dispatch=30, log_every=50).validate()
  with pytest.raises(ValueError, match="config.num_steps"):
    LoopConfig(num_steps=0, batch_size=8).validate()


def _train_cmd(workdir, steps):
  return [sys.executable, os.path.join(ROOT, "experiments", "train_offline.py"),
          f"--config={os.path.join(ROOT, 'configs', 'td3bc.py')}:tiny", f"--workdir={workdir}",
          f"--config.num_steps={steps}", "--config.checkpoint_every=100",
          "--config.updates_per_dispatch=50", "--config.log_every=100",
          "--config.eval_every=0", "--config.eval_episodes=0"]


def _final_state(workdir):
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
  step = ckpt.latest_step()
  path = os.path.join(ckpt.directory, str(step), "state")
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  restored = ocp.StandardCheckpointer().restore(path)
  ckpt.close()
  return step, restored


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
  steps = 3000
  full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
  r = subprocess.run(_train_cmd(full, steps), env=_env(), capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]

  proc = subprocess.Popen(_train_cmd(killed, steps), env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckdir = os.path.join(killed, "checkpoints")
  deadline = time.time() + 300
  while time.time() < deadline:
    done = [d for d in (os.listdir(ckdir) if os.path.isdir(ckdir) else []) if d.isdigit()]
    if done:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps_at_kill = sorted(int(d) for d in os.listdir(ckdir) if d.isdigit())
  assert steps_at_kill and max(steps_at_kill) < steps, steps_at_kill  # killed mid-run

  r = subprocess.run(_train_cmd(killed, steps), env=_env(), capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Resumed from" in r.stderr

  step_a, a = _final_state(full)
  step_b, b = _final_state(killed)
  assert step_a == step_b == steps
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # metrics of the resumed run line up with the uninterrupted one
  rows = lambda w: [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  ra, rb = rows(full), rows(killed)
  assert [x["step"] for x in ra] == [x["step"] for x in rb]
  np.testing.assert_allclose([x["train/critic_loss"] for x in ra],
                             [x["train/critic_loss"] for x in rb], rtol=1e-6)


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path):
  """A NaN loss stops the run naming the updates and the metric; nothing after the last good
  checkpoint is saved, and that checkpoint restores."""
  def init(key):
    return {"w": jnp.ones(()), "t": jnp.zeros((), jnp.int32)}

  def update(state, batch, key):
    t = state["t"] + 1
    w = jnp.where(t > 25, jnp.nan, state["w"] + 1.0)  # diverges at update 26
    return {"w": w, "t": t}, {"loss": w * 2.0}

  def sample(data, key, n):
    return data[:n]

  cfg = LoopConfig(num_steps=50, batch_size=2, updates_per_dispatch=10, log_every=10,
                   checkpoint_every=10)
  with pytest.raises(FloatingPointError, match=r"updates 21\.\.30: train/loss=nan.*step 20"):
    run_training(cfg=cfg, workdir=str(tmp_path), init_fn=init, update_fn=update,
                 sample_fn=sample, data=jnp.zeros((4,)))
  ckpt = Checkpointer(os.path.join(tmp_path, "checkpoints"))
  assert ckpt.latest_step() == 20
  restored = ckpt.restore(20, {"state": init(None), "rng": jax.random.key(0)})
  assert float(restored["state"]["w"]) == 21.0 and int(restored["state"]["t"]) == 20
  ckpt.close()


def test_nan_between_log_steps_is_caught_one_dispatch_late():
  """Without a log/eval/checkpoint step the check runs after the next dispatch is enqueued; it
  still names the dispatch that went bad."""
  def update(state, batch, key):
    t = state["t"] + 1
    return {"w": state["w"], "t": t}, {"loss": jnp.where(t == 25, jnp.inf, 1.0)}

  cfg = LoopConfig(num_steps=100, batch_size=2, updates_per_dispatch=10, log_every=0)
  with pytest.raises(FloatingPointError, match=r"updates 21\.\.30: train/loss=inf"):
    run_training(cfg=cfg, workdir=None,
                 init_fn=lambda k: {"w": jnp.ones(()), "t": jnp.zeros((), jnp.int32)},
                 update_fn=update, sample_fn=lambda d, k, n: d[:n], data=jnp.zeros((4,)))
