"""The online loop's host callback interface (jaxaug.train.callbacks) and its checkpointing."""

from __future__ import annotations

import numpy as np
import pytest

from jaxaug.train import callbacks as callbacks_lib
from jaxaug.train import online
from configs import sac as sac_configs


class Counter(callbacks_lib.Callback):
  """Counts env steps and remembers evaluation steps and the first qpos entry of each step."""

  name = "counter"

  def __init__(self):
    self.steps = np.zeros((), np.int64)
    self.evals: list[int] = []
    self.qpos0 = np.zeros((400,), np.float64)

  def before_env_step(self, step, env):
    assert step == int(self.steps)  # called once per step, in order, also after a resume
    self.qpos0[step] = env.unwrapped.data.qpos[0]
    self.steps = self.steps + 1

  def after_eval(self, step, agent_state, metrics):
    assert "eval/return" in metrics and agent_state is not None
    self.evals.append(step)

  def state_dict(self):
    return {"steps": self.steps, "qpos0": self.qpos0}

  def load_state_dict(self, d):
    self.steps = np.asarray(d["steps"], np.int64)
    self.qpos0 = np.array(d["qpos0"], np.float64)


def _tiny(steps):
  c = sac_configs.get_config("tiny")
  c.num_env_steps, c.start_steps, c.eval_every, c.checkpoint_every = steps, 100, 200, 0
  c.log_every, c.replay_capacity, c.eval_episodes = 50, 500, 1
  return c


def test_callback_sees_every_step_and_eval_and_resumes_its_state(tmp_path):
  straight = Counter()
  online.train_online(_tiny(300), str(tmp_path / "a"), callbacks=[straight])
  assert int(straight.steps) == 300 and straight.evals == [200, 300]
  assert np.all(straight.qpos0[:300] != 0)  # Hopper's root x moves from its reset value

  first = Counter()
  online.train_online(_tiny(170), str(tmp_path / "b"), callbacks=[first])
  assert int(first.steps) == 170 and first.evals == [170]
  resumed = Counter()  # a fresh object: its state comes from the checkpoint
  online.train_online(_tiny(300), str(tmp_path / "b"), callbacks=[resumed])
  assert int(resumed.steps) == 300 and resumed.evals == [200, 300]
  # The simulator states seen after the resume (replayed episode) equal the straight run's.
  np.testing.assert_array_equal(resumed.qpos0[:300], straight.qpos0[:300])


def test_record_infos_is_a_callback_restored_by_load_run(tmp_path):
  c = _tiny(120)
  c.record_infos = True
  online.train_online(c, str(tmp_path / "r"))
  run = online.load_run(str(tmp_path / "r"), c)
  assert run["infos"]["qpos"].shape == (500, 6) and run["infos"]["qvel"].shape == (500, 6)
  assert np.any(run["infos"]["qpos"][:120] != 0) and np.all(run["infos"]["qpos"][120:] == 0)


def test_callback_names_must_be_unique(tmp_path):
  with pytest.raises(ValueError, match="unique names; repeated: \\['counter'\\]"):
    online.train_online(_tiny(10), str(tmp_path / "d"), callbacks=[Counter(), Counter()])
