"""Host callbacks of the online loop (jaxaug.train.online): one small interface.

A callback observes the run without changing what is learned:

    before_env_step(step, env)              before env step `step` (0-based) is taken
    after_eval(step, agent_state, metrics)  after each evaluation
    state_dict() -> dict of arrays          saved in every checkpoint of the run
    load_state_dict(d)                      given the restored arrays on resume
    checkpoint_template() -> dict           shapes/dtypes of state_dict() for restoring

Everything a callback keeps across steps must be in `state_dict()`, so a resumed run continues
exactly as the uninterrupted one. `train_online(config, workdir, callbacks=[...])` takes a list;
each callback's state is stored under its `name` (unique within a run).

`RecordInfos` ships here (MuJoCo qpos/qvel for every replay row, what the dataset builder's
medium-replay files carry; `config.record_infos=True` adds it); the dataset builder's policy
snapshots are another (jaxaug.data.builder.PolicySnapshots).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Callback:
  """No-op base: override what you need. `name` keys the callback's checkpointed state."""

  name: str = "callback"

  def before_env_step(self, step: int, env) -> None:
    del step, env

  def after_eval(self, step: int, agent_state: Any, metrics: dict) -> None:
    del step, agent_state, metrics

  def state_dict(self) -> dict:
    return {}

  def load_state_dict(self, d: dict) -> None:
    del d

  def checkpoint_template(self) -> dict:
    return self.state_dict()


class RecordInfos(Callback):
  """MuJoCo qpos/qvel of the state each replay row's action is taken in (row = step % capacity).

  float64, as MuJoCo keeps them, so a row's simulator state can be restored exactly.
  """

  name = "infos"

  def __init__(self, capacity: int, nq: int, nv: int):
    if capacity <= 0 or nq <= 0 or nv <= 0:
      raise ValueError(f"RecordInfos needs positive capacity, nq, nv; got {capacity}, {nq}, {nv}")
    self.capacity = int(capacity)
    self.qpos = np.zeros((capacity, nq), np.float64)
    self.qvel = np.zeros((capacity, nv), np.float64)

  @classmethod
  def for_env(cls, env, capacity: int) -> "RecordInfos":
    model = env.unwrapped.model
    return cls(capacity, int(model.nq), int(model.nv))

  def before_env_step(self, step: int, env) -> None:
    row = step % self.capacity
    self.qpos[row] = env.unwrapped.data.qpos
    self.qvel[row] = env.unwrapped.data.qvel

  def state_dict(self) -> dict:
    return {"qpos": self.qpos, "qvel": self.qvel}

  def load_state_dict(self, d: dict) -> None:
    self.qpos = np.array(d["qpos"], np.float64)
    self.qvel = np.array(d["qvel"], np.float64)


def check_names(callbacks) -> None:
  names = [c.name for c in callbacks]
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise ValueError(f"train_online callbacks need unique names; repeated: {dup}")
