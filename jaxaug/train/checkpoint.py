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
    """Restore the `state` item into the structure, shapes, dtypes and shardings of `target`.

    A checkpoint that does not fit `target` (written with another config, network size, agent or
    method) is a ValueError naming the step directory and the first differing arrays; orbax
    alone would cast a different dtype silently.
    """
    target_raw = jax.tree.map(_unwrap_key, target)
    diffs = self._differences(step, target_raw)
    try:
      restored = self._manager.restore(
          int(step),
          args=ocp.args.Composite(state=ocp.args.StandardRestore(_to_numpy_target(target_raw))))
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(self._mismatch_message(step, diffs or [str(e).strip()])) from e
    dtype_diffs = [d for d in diffs if " dtype " in d]
    if dtype_diffs:
      raise ValueError(self._mismatch_message(step, dtype_diffs))
    return jax.tree.map(_rewrap_key, target, restored.state)

  def _differences(self, step: int, target_raw: Any) -> list[str]:
    """Arrays missing, extra or of another shape/dtype in the stored `state` vs `target_raw`."""
    try:  # the stored arrays' metadata, read without restoring anything
      stored = ocp.StandardCheckpointHandler().metadata(
          ocp.path.step.build_step_path(self._manager.directory, ocp.step.standard_name_format(),
                                        int(step)) / "state")
      stored = getattr(stored, "tree", stored)
    except Exception:  # pylint: disable=broad-except
      return []  # no metadata to compare (another orbax layout): orbax's own checks still apply
    if stored is None:
      return []
    have = _flat_arrays(stored)
    want = _flat_arrays(target_raw)
    out = [f"'{k}' is in the checkpoint but this config has no such array" for k in have
           if k not in want]
    out += [f"'{k}' is missing from the checkpoint" for k in want if k not in have]
    for k in want:
      if k in have:
        (ws, wd), (hs, hd) = want[k], have[k]
        if hs is not None and tuple(hs) != tuple(ws):
          out.append(f"'{k}' has shape {tuple(hs)} in the checkpoint, this config builds "
                     f"{tuple(ws)}")
        elif hd is not None and wd is not None and np.dtype(hd) != np.dtype(wd):
          out.append(f"'{k}' has dtype {np.dtype(hd)} in the checkpoint, this config builds "
                     f"dtype {np.dtype(wd)}")
    return out

  def _mismatch_message(self, step: int, diffs: list[str]) -> str:
    shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    workdir = os.path.dirname(self.directory)
    return (f"{os.path.join(self.directory, str(int(step)))}: checkpoint does not fit this "
            f"config (written by another config, network size, agent or method?): {shown}. "
            f"Resume with the config the run was made with ({workdir}/config.json) or choose "
            f"another --workdir")

  def restore_meta(self, step: int) -> dict:
    restored = self._manager.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored.meta)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _path_str(path) -> str:
  parts = []
  for p in path:
    for attr in ("key", "name", "idx"):
      if hasattr(p, attr):
        parts.append(str(getattr(p, attr)))
        break
    else:
      parts.append(str(p))
  return ".".join(parts)


def _flat_arrays(tree) -> dict[str, tuple[Any, Any]]:
  """{'a.b.c': (shape, dtype)} of a target pytree or of orbax's stored array metadata."""
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))[0]
  # Python scalars (a TrainState's step) carry no dtype to compare: None.
  return {_path_str(path): (getattr(x, "shape", np.shape(x)), getattr(x, "dtype", None))
          for path, x in leaves}


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


def check_resume_flag(workdir: str, resume: bool, flag: str = "--resume",
                      config: Any = None) -> None:
  """The mains' `--resume` contract: with resume=False an existing checkpoint is an error.

  Re-running with the same workdir resumes exactly by default; `--noresume` protects a finished
  or running experiment from being continued by mistake. With `config`, a workdir holding
  another job's run (train_offline into a train_diffusion workdir, another agent or method) is
  refused here, before any data is loaded; the field-by-field comparison follows when the job
  writes its config (jaxaug.train.config_io.save_config).
  """
  if config is not None:
    from jaxaug.train import config_io  # pylint: disable=g-import-not-at-top
    config_io.check_workdir_config(config, workdir, compare_fields=False)
  directory = os.path.join(workdir, "checkpoints")
  if not resume and os.path.isdir(directory) and any(
      not name.endswith(".orbax-checkpoint-tmp") for name in os.listdir(directory)):
    raise ValueError(f"--workdir={workdir} already holds checkpoints in {directory}; pass "
                     f"{flag} to continue that run or choose another --workdir")
