"""Orbax checkpointing with exact resume.

A checkpoint is one step directory holding two items: `state` (any pytree of arrays: agent
state, RNG key, sampler state, replay buffer...) and `meta` (JSON: normalisation statistics,
config, counters). Orbax writes each step to a temporary directory and renames it when
complete, so a run killed mid-save leaves the previous step as the latest one (checked by
killing runs with SIGKILL during sync and async saves: the half-written step stays a
`*.orbax-checkpoint-tmp` directory and `latest_step()` returns the previous, restorable step).

All processes call `save`/`restore` (orbax coordinates multi-host writes; only the primary
process writes metadata).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxaug import faults


def _to_numpy_target(tree):
  """A restore target that asks orbax for arrays shaped and typed like `tree`."""
  def leaf(x):
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x
  return jax.tree.map(leaf, tree)


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with a state pytree and a JSON meta item."""

  def __init__(self, directory: str, max_to_keep: int | None = 3, async_save: bool = False):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict | None = None, force: bool = True) -> None:
    # Key arrays (jax.random.key) cannot be serialised directly: store their raw data.
    state = jax.tree.map(_unwrap_key, state)
    faults.point("checkpoint.save")  # test-only kill point (jaxaug/faults.py)
    self._manager.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta or {})),
        force=force)

  def restore(self, step: int, target: Any) -> Any:
    """Restore the `state` item into the structure, shapes, dtypes and shardings of `target`."""
    target_raw = jax.tree.map(_unwrap_key, target)
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardRestore(_to_numpy_target(target_raw))))
    return jax.tree.map(_rewrap_key, target, restored.state)

  def restore_meta(self, step: int) -> dict:
    restored = self._manager.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored.meta)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _unwrap_key(x):
  return jax.random.key_data(x) if _is_key(x) else x


def _rewrap_key(template, restored):
  if _is_key(template):
    impl = jax.random.key_impl(template)
    return jax.random.wrap_key_data(np.asarray(restored) if not isinstance(restored, jax.Array)
                                    else restored, impl=impl)
  return restored


def check_resume_flag(workdir: str, resume: bool, flag: str = "--resume") -> None:
  """The mains' `--resume` contract: with resume=False an existing checkpoint is an error.

  Re-running with the same workdir resumes exactly by default; `--noresume` protects a finished
  or running experiment from being continued by mistake.
  """
  directory = os.path.join(workdir, "checkpoints")
  if not resume and os.path.isdir(directory) and any(
      not name.endswith(".orbax-checkpoint-tmp") for name in os.listdir(directory)):
    raise ValueError(f"--workdir={workdir} already holds checkpoints in {directory}; pass "
                     f"{flag} to continue that run or choose another --workdir")
