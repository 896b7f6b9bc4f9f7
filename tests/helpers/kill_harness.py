"""Kill-test harness: SIGKILL a long job, re-run the same command, compare with an uninterrupted run.

For a job (a command line and the directory it writes):
  1. `reference`: run it uninterrupted; its run directory is kept as REF.
  2. `kill_point`: run the same command afresh, SIGKILL it (at a named fault point through the
     JAXAUG_FAULT hook of jaxaug/faults.py, or after a delay drawn from a seeded RNG), re-run the
     same command (without the fault) until it exits 0, and compare every output file with REF
     bit for bit (`compare_trees`), then check that nothing partial looks complete
     (`check_partials`).

Every attempt runs in the same absolute directory (ROOT/<job>/run) and is moved aside when done,
so paths a job stores in its outputs (the builder's command line, policy directories) are the
same in both runs and are compared like any other value.

What is compared, and what is not (and why):
  * orbax checkpoint steps (a directory holding `_CHECKPOINT_METADATA`): the same set of steps;
    per step the restored array tree of every item (dtype, shape and bytes of each leaf) and the
    JSON items. Orbax's own bookkeeping files inside a step are not compared byte for byte:
    `_CHECKPOINT_METADATA` holds the save's init/commit wall-clock timestamps, and the OCDBT
    data files are content blobs with random names whose split depends on write scheduling; the
    restored contents are what a resumed run reads.
  * npz: every array (dtype, shape, bytes); a JSON string array ('metadata') as JSON.
  * hdf5 (D4RL and Minari layouts): every dataset and attribute; JSON strings as JSON.
  * *.json / *.jsonl: parsed, every key and value, except WALL_CLOCK_KEYS.
  * everything else: bytes, except EXCLUDED_DIRS / EXCLUDED_SUFFIXES.
  * WALL_CLOCK_KEYS (measured durations, rates and creation times, different in any two runs):
    wall_time_s, env_steps_per_s, train/env_steps_per_s (online summaries and metrics),
    seconds (the builder's <env>-build.json), wall_seconds (generation metadata), created
    (the builder's dataset metadata), atradiff/{pretrain,generation,adaptation}_s (ATraDiff
    timings), timings (the online loop's per-phase seconds in summary.json).
  * EXCLUDED_DIRS: tb/ (TensorBoard event files: the file name holds the host name and creation
    time, and every event its wall time). EXCLUDED_SUFFIXES: .log (console logs).

Leftovers: a killed write may leave its temporary file or directory behind: a hidden
`.NAME.XXXX.tmp*` file (jaxaug.data.fileio.atomic_path, jaxaug.utils.atomic_write_bytes) or an
`N.orbax-checkpoint-tmp*` directory. They are allowed only under those names, which no reader in
jaxaug treats as a result; any other file that REF lacks is a difference.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WALL_CLOCK_KEYS = frozenset({
    "wall_time_s", "env_steps_per_s", "train/env_steps_per_s", "seconds", "wall_seconds",
    "created", "atradiff/pretrain_s", "atradiff/generation_s", "atradiff/adaptation_s",
    "timings"})
EXCLUDED_DIRS = frozenset({"tb"})
EXCLUDED_SUFFIXES = (".log",)
# Names a killed write may leave behind (never read as results).
LEFTOVER_RE = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$|\.orbax-checkpoint-tmp")
ORBAX_STEP_MARKER = "_CHECKPOINT_METADATA"


# ----------------------------------------------------------------------------------- jobs

@dataclasses.dataclass(frozen=True)
class Job:
  """A resumable command. argv may use {run} (its run directory), {ref:JOB} (another job's
  reference directory, e.g. a trained generator) and {python}."""
  name: str
  argv: tuple[str, ...]
  faults: tuple[str, ...]  # named kill points ("NAME:N") the CI test uses
  more_faults: tuple[str, ...] = ()  # extra named points for experiments/kill_test.py
  requires: tuple[str, ...] = ()  # jobs whose reference run must exist first
  timeout_s: float = 900.0


def _offline(agent: str, extra: Sequence[str] = ()) -> Job:
  return Job(
      name=f"train_offline-{agent}",
      argv=("{python}", "experiments/train_offline.py", f"--config=configs/{agent}.py:tiny",
            "--workdir={run}", "--config.num_steps=400", "--config.updates_per_dispatch=100",
            "--config.checkpoint_every=200", "--config.log_every=100",
            "--config.eval_every=200", "--config.eval_episodes=1", *extra),
      # commit:1 = the first checkpoint's directory complete, not renamed; committed:2 = the
      # final checkpoint on disk, the summary not yet written.
      faults=("checkpoint.commit:1", "checkpoint.committed:2"),
      more_faults=("checkpoint.save:2",))


def _diffusion(method: str) -> Job:
  return Job(
      name=f"train_diffusion-{method}",
      argv=("{python}", "experiments/train_diffusion.py", f"--config=configs/{method}.py:tiny",
            "--workdir={run}", "--config.num_steps=200", "--config.updates_per_dispatch=50",
            "--config.checkpoint_every=100", "--config.log_every=50"),
      faults=("checkpoint.commit:2",),
      more_faults=("checkpoint.commit:1", "checkpoint.committed:2"))


def default_jobs() -> dict[str, Job]:
  jobs = [
      _offline("td3bc"), _offline("iql"), _offline("cql"), _offline("mcq"),
      # DTQL: 100 pre-training + 300 main steps (eval at the end only).
      Job(name="train_offline-dtql",
          argv=("{python}", "experiments/train_offline.py", "--config=configs/dtql.py:tiny",
                "--workdir={run}", "--config.checkpoint_every=100",
                "--config.eval_episodes=1"),
          faults=("checkpoint.commit:2", "checkpoint.committed:2"),
          more_faults=("checkpoint.save:1",)),
      _diffusion("gta"), _diffusion("synther"),
      Job(name="augment-gta",
          argv=("{python}", "experiments/augment.py", "--config=configs/gta.py:tiny",
                "--workdir={ref:train_diffusion-gta}", "--out={run}/gen.npz",
                "--config.num_transitions=1200", "--config.windows_per_chunk=50",
                "--config.sampler.num_steps=8"),
          # 3 chunks of 400 transitions; chunk 2 written under its temporary name.
          faults=("augment.chunk:2",),
          more_faults=("augment.chunk:1", "augment.chunk:3", "npz.write:1"),
          requires=("train_diffusion-gta",)),
      Job(name="train_online-sac",
          argv=("{python}", "experiments/train_online.py", "--config=configs/sac.py:tiny",
                "--workdir={run}", "--config.num_env_steps=400", "--config.start_steps=100",
                "--config.checkpoint_every=200", "--config.eval_every=200",
                "--config.eval_episodes=1", "--config.log_every=100"),
          faults=("online.checkpoint:1", "checkpoint.committed:2"),
          more_faults=("checkpoint.commit:1",)),
      # 4 envs per iteration, acting before the update (overlap): resume by replay of 4 episodes
      Job(name="train_online-sac-vec",
          argv=("{python}", "experiments/train_online.py", "--config=configs/sac.py:tiny",
                "--workdir={run}", "--config.num_env_steps=400", "--config.start_steps=100",
                "--config.checkpoint_every=200", "--config.eval_every=200",
                "--config.eval_episodes=1", "--config.log_every=100", "--config.num_envs=4",
                "--config.overlap=True"),
          faults=("online.checkpoint:1", "checkpoint.committed:2")),
      Job(name="train_online-atradiff",
          argv=("{python}", "experiments/train_online.py", "--config=configs/atradiff.py:tiny",
                "--workdir={run}", "--config.num_env_steps=500", "--config.start_steps=100",
                "--config.checkpoint_every=250", "--config.eval_every=250",
                "--config.eval_episodes=1", "--config.log_every=50"),
          faults=("online.checkpoint:1", "checkpoint.committed:2"),
          more_faults=("checkpoint.commit:2",)),
      Job(name="build_dataset",
          argv=("{python}", "experiments/build_dataset.py", "--env=hopper",
                "--kinds=random,medium,medium-replay", "--out={run}", "--size=300",
                "--sac_preset=tiny", "--sac_steps=300", "--eval_every=100",
                "--checkpoint_every=100", "--sac_set=eval_episodes=1",
                "--sac_set=start_steps=100", "--minari"),
          # dataset.write:1 = random's hdf5 in place, its Minari copy and the rest not written.
          faults=("dataset.write:1", "online.checkpoint:2"),
          more_faults=("hdf5.write:2", "dataset.write:2", "checkpoint.commit:3")),
  ]
  return {j.name: j for j in jobs}


# ------------------------------------------------------------------------------- running

@dataclasses.dataclass
class Attempt:
  argv: list[str]
  returncode: int
  seconds: float
  killed: bool  # we (or the fault hook) SIGKILLed it
  fault_fired: str | None
  output_tail: str


@dataclasses.dataclass
class KillResult:
  job: str
  point: str  # "fault NAME:N" or "delay 12.3s"
  killed: bool  # the first attempt was really killed (else the point is not counted)
  survived: bool
  attempts: list[Attempt]
  differences: list[str]
  leftovers: list[str]

  def to_json(self) -> dict:
    return {"job": self.job, "point": self.point, "killed": self.killed,
            "survived": self.survived, "differences": self.differences,
            "leftovers": self.leftovers,
            "attempts": [{"returncode": a.returncode, "seconds": round(a.seconds, 2),
                          "killed": a.killed, "fault_fired": a.fault_fired}
                         for a in self.attempts]}


def job_dir(root: str, job: Job) -> str:
  return os.path.join(root, job.name)


def _format_argv(job: Job, root: str) -> list[str]:
  run = os.path.join(job_dir(root, job), "run")
  out = []
  for a in job.argv:
    a = a.replace("{python}", sys.executable).replace("{run}", run)
    for m in re.findall(r"\{ref:([^}]+)\}", a):
      a = a.replace("{ref:%s}" % m, os.path.join(root, m, "ref"))
    out.append(a)
  return out


def _env(fault: str | None, mark: str | None) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in ("JAXAUG_FAULT", "JAXAUG_FAULT_MARK")}
  env.setdefault("JAX_PLATFORMS", "cpu")
  if fault:
    env["JAXAUG_FAULT"] = fault
    env["JAXAUG_FAULT_MARK"] = mark
  return env


def _run(argv: list[str], timeout_s: float, fault: str | None = None,
         delay_s: float | None = None, mark: str | None = None) -> Attempt:
  t0 = time.time()
  log_path = mark + ".out" if mark else None
  with open(log_path or os.devnull, "w") as log:
    proc = subprocess.Popen(argv, cwd=REPO, env=_env(fault, mark), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    killed = False
    try:
      proc.wait(timeout=delay_s if delay_s is not None else timeout_s)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      killed = delay_s is not None
      if not killed:
        raise RuntimeError(f"{' '.join(argv)}: no exit after {timeout_s:.0f} s (killed)")
  fired = None
  if mark and os.path.exists(mark):
    with open(mark) as f:
      fired = f.read().strip() or None
    os.remove(mark)
  tail = ""
  if log_path:
    with open(log_path, errors="replace") as f:
      tail = f.read()[-3000:]
    os.remove(log_path)
  killed = killed or proc.returncode == -signal.SIGKILL
  return Attempt(argv, proc.returncode, time.time() - t0, killed, fired, tail)


def _fresh_run_dir(root: str, job: Job) -> str:
  run = os.path.join(job_dir(root, job), "run")
  if os.path.exists(run):
    shutil.rmtree(run)
  os.makedirs(os.path.dirname(run), exist_ok=True)
  return run


def reference(root: str, job: Job, force: bool = False) -> tuple[str, float]:
  """The uninterrupted run (kept in ROOT/<job>/ref); returns (directory, seconds)."""
  ref = os.path.join(job_dir(root, job), "ref")
  stamp = os.path.join(job_dir(root, job), "ref.seconds")
  if os.path.isdir(ref) and os.path.exists(stamp) and not force:
    with open(stamp) as f:
      return ref, float(f.read())
  run = _fresh_run_dir(root, job)
  if os.path.exists(ref):
    shutil.rmtree(ref)
  attempt = _run(_format_argv(job, root), job.timeout_s, mark=os.path.join(
      job_dir(root, job), "ref.mark"))
  if attempt.returncode != 0:
    raise RuntimeError(f"{job.name}: the reference run failed (exit {attempt.returncode}):\n"
                       f"{attempt.output_tail}")
  os.rename(run, ref)
  with open(stamp, "w") as f:
    f.write(str(attempt.seconds))
  return ref, attempt.seconds


def kill_point(root: str, job: Job, ref: str, *, fault: str | None = None,
               delay_s: float | None = None, max_reruns: int = 3,
               keep: str | None = None) -> KillResult:
  """Run `job` afresh, kill it (fault NAME:N or after delay_s), re-run until done, compare."""
  if (fault is None) == (delay_s is None):
    raise ValueError("give exactly one of fault= and delay_s=")
  label = f"fault {fault}" if fault else f"delay {delay_s:.1f}s"
  run = _fresh_run_dir(root, job)
  argv = _format_argv(job, root)
  mark = os.path.join(job_dir(root, job), "kill.mark")
  first = _run(argv, job.timeout_s, fault=fault, delay_s=delay_s, mark=mark)
  attempts = [first]
  differences: list[str] = []
  if fault and first.returncode == 0:
    differences.append(f"fault point {fault} was never reached (the run finished)")
  elif fault and first.fault_fired != fault:
    differences.append(f"the first run exited {first.returncode} without firing {fault}:\n"
                       f"{first.output_tail}")
  elif not first.killed and first.returncode != 0:
    differences.append(f"the first run failed (exit {first.returncode}):\n{first.output_tail}")
  if not differences:
    for _ in range(max_reruns):
      if attempts[-1].returncode == 0:
        break
      attempts.append(_run(argv, job.timeout_s, mark=mark))
    if attempts[-1].returncode != 0:
      differences.append(f"the re-run failed (exit {attempts[-1].returncode}):\n"
                         f"{attempts[-1].output_tail}")
  leftovers: list[str] = []
  if not differences:
    differences += compare_trees(ref, run)
    problems, leftovers = check_partials(run)
    differences += problems
  if keep:
    dest = os.path.join(job_dir(root, job), keep)
    if os.path.exists(dest):
      shutil.rmtree(dest)
    os.rename(run, dest)
  else:
    shutil.rmtree(run, ignore_errors=True)
  return KillResult(job.name, label, first.killed, first.killed and not differences, attempts,
                    differences, leftovers)


def random_delays(seed: int, n: int, reference_s: float, lo: float = 0.25,
                  hi: float = 0.95) -> list[float]:
  """n kill delays uniform in [lo, hi] x the reference run's wall time (seeded)."""
  rng = random.Random(seed)
  return [rng.uniform(lo, hi) * reference_s for _ in range(n)]


# ---------------------------------------------------------------------------- comparison

def _walk(root: str) -> tuple[set[str], set[str], list[str]]:
  """(result files, orbax step dirs, leftovers), relative to root."""
  files, steps, leftovers = set(), set(), []
  for d, dirs, names in os.walk(root):
    rel_d = os.path.relpath(d, root)
    rel = (lambda n: n) if rel_d == "." else (lambda n, r=rel_d: os.path.join(r, n))
    keep_dirs = []
    for sub in sorted(dirs):
      if LEFTOVER_RE.search(sub):
        leftovers.append(rel(sub) + "/")
      elif sub in EXCLUDED_DIRS:
        continue
      elif os.path.exists(os.path.join(d, sub, ORBAX_STEP_MARKER)):
        steps.add(rel(sub))
      else:
        keep_dirs.append(sub)
    dirs[:] = keep_dirs
    for n in names:
      if LEFTOVER_RE.search(n):
        leftovers.append(rel(n))
      elif not n.endswith(EXCLUDED_SUFFIXES):
        files.add(rel(n))
  return files, steps, sorted(leftovers)


def compare_trees(ref: str, got: str) -> list[str]:
  """Differences between two run directories (empty = equal up to the documented exclusions)."""
  ref_files, ref_steps, _ = _walk(ref)
  got_files, got_steps, _ = _walk(got)
  diffs = []
  for name, a, b in (("files", ref_files, got_files), ("checkpoint steps", ref_steps, got_steps)):
    if a - b:
      diffs.append(f"{name} missing after resume: {sorted(a - b)}")
    if b - a:
      diffs.append(f"{name} not in the uninterrupted run: {sorted(b - a)}")
  for rel in sorted(ref_files & got_files):
    diffs += [f"{rel}: {d}" for d in compare_files(os.path.join(ref, rel), os.path.join(got, rel))]
  for rel in sorted(ref_steps & got_steps):
    diffs += [f"{rel}: {d}" for d in compare_orbax_step(os.path.join(ref, rel),
                                                       os.path.join(got, rel))]
  return diffs


def compare_files(a: str, b: str) -> list[str]:
  if a.endswith(".npz"):
    return _compare_mappings(_read_npz(a), _read_npz(b))
  if a.endswith((".hdf5", ".h5")):
    return _compare_mappings(_read_hdf5(a), _read_hdf5(b))
  if a.endswith(".jsonl"):
    la, lb = _read_jsonl(a), _read_jsonl(b)
    if len(la) != len(lb):
      return [f"{len(lb)} records, expected {len(la)} (steps {[r.get('step') for r in lb]} vs "
              f"{[r.get('step') for r in la]})"]
    return [f"record {i}: {d}" for i, (x, y) in enumerate(zip(la, lb))
            for d in _compare_values(x, y, "")]
  if a.endswith(".json"):
    with open(a) as fa, open(b) as fb:
      return _compare_values(_strip(json.load(fa)), _strip(json.load(fb)), "")
  with open(a, "rb") as fa, open(b, "rb") as fb:
    return [] if fa.read() == fb.read() else ["bytes differ"]


def _strip(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _strip(v) for k, v in value.items() if k not in WALL_CLOCK_KEYS}
  if isinstance(value, list):
    return [_strip(v) for v in value]
  return value


def _read_jsonl(path: str) -> list:
  with open(path) as f:
    return [_strip(json.loads(line)) for line in f if line.strip()]


def _maybe_json(value: Any) -> Any:
  if isinstance(value, bytes):
    value = value.decode("utf-8", errors="replace")
  if isinstance(value, np.ndarray) and value.dtype.kind in "US" and value.ndim == 0:
    value = str(value)
  if isinstance(value, str) and value[:1] in "{[":
    try:
      return _strip(json.loads(value))
    except ValueError:
      return value
  return value


def _read_npz(path: str) -> dict:
  with np.load(path, allow_pickle=False) as z:
    return {k: _maybe_json(z[k]) for k in z.files}


def _read_hdf5(path: str) -> dict:
  import h5py  # pylint: disable=g-import-not-at-top
  out = {}
  with h5py.File(path, "r") as f:
    def visit(name, obj):
      if os.path.basename(name) in WALL_CLOCK_KEYS:
        return
      if isinstance(obj, h5py.Dataset):
        out[name] = _maybe_json(obj[()])
      for k, v in obj.attrs.items():
        if k not in WALL_CLOCK_KEYS:
          out[f"{name}@{k}"] = _maybe_json(v)
    for k, v in f.attrs.items():
      if k not in WALL_CLOCK_KEYS:
        out[f"@{k}"] = _maybe_json(v)
    f.visititems(visit)
  return out


def _compare_mappings(a: dict, b: dict) -> list[str]:
  diffs = []
  if set(a) != set(b):
    diffs.append(f"keys differ: missing {sorted(set(a) - set(b))}, extra {sorted(set(b) - set(a))}")
  for k in sorted(set(a) & set(b)):
    diffs += _compare_values(a[k], b[k], k)
  return diffs


def _compare_values(a: Any, b: Any, where: str) -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    diffs = []
    if set(a) != set(b):
      diffs.append(f"{where}: keys differ: missing {sorted(set(a) - set(b))}, "
                   f"extra {sorted(set(b) - set(a))}")
    for k in sorted(set(a) & set(b)):
      diffs += _compare_values(a[k], b[k], f"{where}.{k}" if where else str(k))
    return diffs
  if isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      return [f"{where}: length {len(b)}, expected {len(a)}"]
    return [d for i, (x, y) in enumerate(zip(a, b)) for d in _compare_values(x, y, f"{where}[{i}]")]
  if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
    x, y = np.asarray(a), np.asarray(b)
    if x.dtype != y.dtype or x.shape != y.shape:
      return [f"{where}: {y.dtype}{y.shape}, expected {x.dtype}{x.shape}"]
    if x.dtype.kind == "O":
      return [] if x.tolist() == y.tolist() else [f"{where}: values differ"]
    if np.ascontiguousarray(x).tobytes() != np.ascontiguousarray(y).tobytes():
      n = int(np.sum(x != y)) if x.dtype.kind in "biufc" else -1
      return [f"{where}: arrays differ ({n} of {x.size} elements)"]
    return []
  if type(a) is not type(b) or a != b:
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
      return []
    return [f"{where}: {b!r}, expected {a!r}"]
  return []


def compare_orbax_step(a: str, b: str) -> list[str]:
  """Restored contents of two orbax step directories (items: array trees or JSON)."""
  items_a = sorted(n for n in os.listdir(a) if os.path.isdir(os.path.join(a, n)))
  items_b = sorted(n for n in os.listdir(b) if os.path.isdir(os.path.join(b, n)))
  if items_a != items_b:
    return [f"items {items_b}, expected {items_a}"]
  diffs = []
  for item in items_a:
    ta, tb = _restore_item(os.path.join(a, item)), _restore_item(os.path.join(b, item))
    diffs += _compare_values(ta, tb, item)
  return diffs


def _restore_item(path: str) -> Any:
  json_file = os.path.join(path, "metadata")
  if not os.path.exists(os.path.join(path, "_METADATA")) and os.path.isfile(json_file):
    with open(json_file) as f:  # an ocp.args.JsonSave item
      return _strip(json.load(f))
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = ckptr.restore(path)
  return _to_plain(jax.tree.map(np.asarray, tree))


def _to_plain(tree: Any) -> Any:
  if isinstance(tree, dict):
    return {str(k): _to_plain(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_to_plain(v) for v in tree]
  return tree


# ------------------------------------------------------------------------------ partials

def check_partials(run: str) -> tuple[list[str], list[str]]:
  """(problems, leftovers): every npz/hdf5 result must open and validate; temporary leftovers
  must carry the temporary names no reader picks up."""
  problems = []
  files, steps, leftovers = _walk(run)
  for rel in sorted(files):
    path = os.path.join(run, rel)
    try:
      if rel.endswith(".npz"):
        _validate_npz(path, rel)
      elif rel.endswith((".hdf5", ".h5")):
        _validate_hdf5(path, rel)
      elif rel.endswith(".json"):
        with open(path) as f:
          json.load(f)
      elif rel.endswith(".jsonl"):
        _read_jsonl(path)
    except Exception as e:  # pylint: disable=broad-except
      problems.append(f"{rel}: does not open/validate: {e}")
  for rel in sorted(steps):
    if not os.path.exists(os.path.join(run, rel, "commit_success.txt")):
      problems.append(f"{rel}: a checkpoint step without commit_success.txt")
  return problems, leftovers


def _validate_npz(path: str, rel: str) -> None:
  from jaxaug.data import loaders  # pylint: disable=g-import-not-at-top
  if os.path.basename(os.path.dirname(path)).endswith(".chunks"):
    with np.load(path, allow_pickle=False) as z:
      n = {len(z[k]) for k in z.files}
    if len(n) != 1:
      raise ValueError(f"chunk arrays of different lengths {n}")
  else:
    loaders.load_dataset(f"npz:{path}")


def _validate_hdf5(path: str, rel: str) -> None:
  from jaxaug.data import loaders  # pylint: disable=g-import-not-at-top
  if "/data/" in path.replace(os.sep, "/") and rel.endswith("main_data.hdf5"):
    loaders.load_dataset(f"minari:{os.path.dirname(os.path.dirname(path))}")
  else:
    loaders.load_dataset(f"d4rl:{path}")


def summarize(results: Iterable[KillResult]) -> dict[str, dict]:
  table: dict[str, dict] = {}
  for r in results:
    row = table.setdefault(r.job, {"points": 0, "killed": 0, "survived": 0, "failed": []})
    row["points"] += 1
    row["killed"] += int(r.killed)
    row["survived"] += int(r.survived)
    if not r.survived and (r.killed or r.point == "reference run"):
      row["failed"].append(r.point)
  return table
