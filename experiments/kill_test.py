r"""Kill test of every long job: SIGKILL at many points, re-run, compare with an uninterrupted run.

  python experiments/kill_test.py --root=/tmp/kill --delays=3 --json=/tmp/kill/results.json
  python experiments/kill_test.py --root=/tmp/kill --jobs=train_offline-td3bc,augment-gta \
      --named=all --delays=0

For each job (tests/helpers/kill_harness.py: default_jobs) it runs the tiny command once
uninterrupted, then for each kill point runs it afresh, kills it with SIGKILL (at a named fault
point of jaxaug/faults.py, or after a random delay drawn with --seed between 25% and 95% of the
uninterrupted run's wall time), re-runs the same command until it exits 0 and compares every
output with the uninterrupted run bit for bit. Prints a table of kill points survived per job and
writes every result to --json. See docs/crash_safety.md.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.helpers import kill_harness as kh  # pylint: disable=g-import-not-at-top,wrong-import-position

_ROOT = flags.DEFINE_string("root", "/tmp/jaxaug_kill", "Scratch directory (run dirs, refs).")
_JOBS = flags.DEFINE_list("jobs", list(kh.default_jobs()), "Jobs to test.")
_NAMED = flags.DEFINE_enum("named", "all", ["all", "ci", "none"],
                           "Named fault points: all (the CI ones and more), ci, or none.")
_DELAYS = flags.DEFINE_integer("delays", 2, "Random-delay kill points per job.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random delays.")
_JSON = flags.DEFINE_string("json", None, "Write all results here (default ROOT/results.json).")
_KEEP = flags.DEFINE_bool("keep", False, "Keep every resumed run directory (for inspection).")
_REUSE = flags.DEFINE_bool("reuse_refs", False, "Reuse the uninterrupted runs already in --root "
                           "(only while the code is unchanged).")
_BUDGET = flags.DEFINE_float("budget_s", 0.0, "Stop starting new kill points after this many "
                             "seconds (0 = no limit); the table says what ran.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore of the comparison
  jobs = kh.default_jobs()
  unknown = [j for j in _JOBS.value if j not in jobs]
  if unknown:
    raise app.UsageError(f"--jobs: unknown {unknown}; expected some of {sorted(jobs)}")
  root = os.path.abspath(_ROOT.value)
  os.makedirs(root, exist_ok=True)
  t_start = time.time()
  selected = list(_JOBS.value)
  for name in list(selected):  # prerequisites first (augment needs the trained generator)
    for req in jobs[name].requires:
      if req in selected and selected.index(req) > selected.index(name):
        selected.remove(req)  # listed, but after the job that needs it: move it before
      if req not in selected:
        selected.insert(selected.index(name), req)
  results: list[kh.KillResult] = []
  refs: dict[str, float] = {}
  out_path = _JSON.value or os.path.join(root, "results.json")

  def write():
    with open(out_path, "w") as f:
      json.dump({"command": " ".join(sys.argv), "root": root, "reference_seconds": refs,
                 "table": kh.summarize(results), "results": [r.to_json() for r in results]},
                f, indent=1)

  for job_index, name in enumerate(selected):
    job = jobs[name]
    try:
      ref, seconds = kh.reference(root, job, force=not _REUSE.value)
    except RuntimeError as e:  # the job itself fails: reported, the others go on
      print(f"{name}: {e}", flush=True)
      results.append(kh.KillResult(name, "reference run", False, False, [], [str(e)[-2000:]], []))
      write()
      continue
    refs[name] = seconds
    print(f"{name}: reference run {seconds:.1f} s", flush=True)
    if name not in _JOBS.value:
      continue
    points = []
    if _NAMED.value != "none":
      points += [("fault", f) for f in job.faults]
    if _NAMED.value == "all":
      points += [("fault", f) for f in job.more_faults]
    points += [("delay", d) for d in kh.random_delays(_SEED.value * 1000 + job_index,
                                                      _DELAYS.value, seconds)]
    for i, (kind, value) in enumerate(points):
      if _BUDGET.value and time.time() - t_start > _BUDGET.value:
        print(f"{name}: budget spent, skipping {kind} {value}", flush=True)
        continue
      r = kh.kill_point(root, job, ref, keep=f"kill{i}" if _KEEP.value else None,
                        **({"fault": value} if kind == "fault" else {"delay_s": value}))
      results.append(r)
      status = "survived" if r.survived else ("not killed" if not r.killed else "FAILED")
      print(f"  {r.point:<32} {status:<10} attempts={len(r.attempts)} "
            f"leftovers={len(r.leftovers)}", flush=True)
      for d in r.differences[:10]:
        print(f"      {d}", flush=True)
      write()
  write()
  table = kh.summarize(results)
  print(f"\n{'job':<26} {'points':>6} {'killed':>6} {'survived':>8}  failed")
  for name, row in table.items():
    print(f"{name:<26} {row['points']:>6} {row['killed']:>6} {row['survived']:>8}  "
          f"{', '.join(row['failed']) or '-'}")
  print(f"\nwall time {time.time() - t_start:.0f} s; results in {out_path}")
  if any(row["failed"] for row in table.values()):
    raise SystemExit(1)


if __name__ == "__main__":
  app.run(main)
