"""Test-only fault injection: SIGKILL this process at a named point of a long job.

Set the environment variable JAXAUG_FAULT to `NAME:N` (several separated by commas) and the
process kills itself with SIGKILL the N-th time it reaches `point(NAME)`, like a power cut or an
out-of-memory kill: no Python cleanup, no `finally`, no flush. The kill tests
(tests/test_kill.py, experiments/kill_test.py, docs/crash_safety.md) use it to stop a job at the
worst moments (a file written under its temporary name but not yet renamed, say) and check that
re-running the same command ends with the files of an uninterrupted run.

Points (the names are the contract the kill tests rely on):
  checkpoint.save       Checkpointer.save, before orbax writes anything of the step
  checkpoint.commit     orbax: the step's temporary directory is complete, not yet renamed
  checkpoint.committed  orbax: right after the rename (the step is on disk, nothing after it is)
  online.checkpoint     train_online, before each checkpoint (its own count, apart from the
                        dataset builder's policy snapshots)
  augment.chunk         a generation chunk is written under its temporary name, not renamed
  npz.write             save_npz: the npz is written under its temporary name, not renamed
  hdf5.write            save_d4rl_hdf5: the hdf5 is written under its temporary name, not renamed
  dataset.write         the dataset builder: a dataset's Minari copy is written, its hdf5 (the
                        mark that the kind is done) is not

When JAXAUG_FAULT is unset, `point` is one dictionary lookup and returns; nothing else changes.
It is not an API for users: never set JAXAUG_FAULT outside tests.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "JAXAUG_FAULT"
# Optional: a file the dying process appends "NAME:N" to right before the kill (so a harness can
# tell which point fired).
MARK_ENV_VAR = "JAXAUG_FAULT_MARK"
_ORBAX_POINTS = ("checkpoint.commit", "checkpoint.committed")

_counts: dict[str, int] = {}
_parsed: tuple[str, dict[str, int]] | None = None
_orbax_hooked = False


def parse(spec: str) -> dict[str, int]:
  """'a:2,b:1' -> {'a': 2, 'b': 1}; a clear error naming JAXAUG_FAULT otherwise."""
  targets = {}
  for item in filter(None, (s.strip() for s in spec.split(","))):
    name, sep, count = item.rpartition(":")
    if not sep or not name or not count.isdigit() or int(count) < 1:
      raise ValueError(f"{ENV_VAR}={spec!r}: expected NAME:N[,NAME:N...] with N >= 1 (kill at "
                       f"the N-th time point NAME is reached), got {item!r}")
    targets[name] = int(count)
  return targets


def _targets() -> dict[str, int]:
  global _parsed
  spec = os.environ.get(ENV_VAR, "")
  if _parsed is None or _parsed[0] != spec:
    _parsed = (spec, parse(spec))
    _counts.clear()
    if any(name in _parsed[1] for name in _ORBAX_POINTS):
      _hook_orbax()
  return _parsed[1]


def point(name: str) -> None:
  """A named fault point: SIGKILLs this process at the N-th hit when JAXAUG_FAULT says so."""
  if not os.environ.get(ENV_VAR):
    return
  _hit(name)


def _hit(name: str) -> None:
  targets = _targets()
  if name not in targets:
    return
  _counts[name] = _counts.get(name, 0) + 1
  if _counts[name] == targets[name]:
    mark = os.environ.get(MARK_ENV_VAR)
    if mark:
      with open(mark, "a") as f:
        f.write(f"{name}:{_counts[name]}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def _hook_orbax() -> None:
  """Wraps orbax's atomic-rename finalize with checkpoint.commit / checkpoint.committed.

  Orbax writes a step into a temporary directory and renames it in `finalize`; there is no
  callback between the two, so the test-only hook wraps that method (only when JAXAUG_FAULT
  names one of these points).
  """
  global _orbax_hooked
  if _orbax_hooked:
    return
  from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top

  cls = atomicity.AtomicRenameTemporaryPath
  original = cls.finalize

  async def finalize(self, *args, **kwargs):
    # Items (state, meta) are finalised inside the step's temporary directory first; only the
    # step's own rename commits it.
    step_level = "orbax-checkpoint-tmp" not in self.get_final().parent.name
    if step_level:
      _hit("checkpoint.commit")
    result = await original(self, *args, **kwargs)
    if step_level:
      _hit("checkpoint.committed")
    return result

  cls.finalize = finalize
  _orbax_hooked = True


if os.environ.get(ENV_VAR):  # arm the orbax hooks before the first checkpoint
  _targets()
