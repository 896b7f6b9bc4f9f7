"""Online loop throughput, old loop vs new loop in one run: env steps/s and a per-step breakdown.

Each arm is a subprocess running `train_online` on Hopper with PYTHONPATH set to either the old
tree (--old_tree; made with `git archive --old_rev` when missing) or this checkout. Arms run
interleaved (old, new, old, new, ...) so that both see the same machine load; on a shared
machine only ratios within one run mean anything.

Arms: SAC (UTD 1), REDQ (UTD 20, 10 critics, 2x256) and SAC+ATraDiff (atradiff:cpu-hopper with
short generator training; the diffuser is trained once per tree and reused). The new tree also
runs the variants of --variants (num_envs 1 with overlap, num_envs 8 without and with it) after
its defaults; a variant whose config field the tree does not have is skipped with a message.

Per arm, measured after a warm-up of --warmup env steps (first updates compiled):
  steps/s   env steps per second from the end of the loop's log line at the warm-up step to
            the end of its last train log line (MetricLogger.log is wrapped; a log line fetches
            the last update's metrics, so both ends wait for the device; evaluation and the
            final checkpoint come after it)
  env       ms per env step in the environment (old: EnvRunner.step, resets included)
  dispatch  ms per env step to dispatch the jitted work (old: make_step_fn's step function)
  wait      ms per env step waiting for the device (old: block_until_ready on the action)
  host      ms per env step of host bookkeeping (old: ATraDiff's after_step minus its
            generation and adaptation rounds, which are `augment`)
  other     step time minus all of the above (packing, callbacks, logging, the loop itself)
The new tree's breakdown is its own cumulative `timings/*` (env_s, dispatch_s, wait_s, host_s),
which it logs with `config.log_timings`, read at the two log lines and differenced; dispatch then includes ATraDiff's rounds (dispatched with the update), host
the loop's logging. other = step time minus their sum.

  python experiments/bench_online.py                       # everything, ~15 min on 2 busy cores
  python experiments/bench_online.py --trees=old --out=/tmp/bench_online_old.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_TAG = "BENCH_ONLINE_RESULT "

# algo -> (preset, overrides, timed env steps flag). The common overrides below apply to all.
ALGOS = {
    "sac": ("sac:hopper", {}),
    "redq": ("redq:hopper", {}),
    "sac_atradiff": ("atradiff:cpu-hopper", {
        # the diffuser's size is cpu-hopper's (generation cost is what is measured); its
        # training is cut short: its quality does not change the loop's cost
        "atradiff.generator_steps": 200, "atradiff.steps_per_dispatch": 100,
        "atradiff.estimator_steps": 200}),
}
# New-tree variants besides its defaults (num_envs 1, overlap off: the references' order):
# name -> overrides of fields the old loop does not have.
VARIANTS = {
    "n1-overlap": {"num_envs": 1, "overlap": True},
    "n8": {"num_envs": 8, "overlap": False},
    "n8-overlap": {"num_envs": 8, "overlap": True},
}
BREAKDOWN = ("env", "dispatch", "wait", "host", "augment", "other")


def _flags():
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--old_tree", default="/work/old_tree", help="the old loop's source tree")
  p.add_argument("--old_rev", default="16ba351", help="git revision for a missing --old_tree")
  p.add_argument("--trees", default="old,new", help="old, new or both (comma-separated)")
  p.add_argument("--algos", default=",".join(ALGOS), help=f"subset of {','.join(ALGOS)}")
  p.add_argument("--variants", default=",".join(VARIANTS),
                 help=f"new-tree variants, subset of {','.join(VARIANTS)} ('' = defaults only)")
  p.add_argument("--warmup", type=int, default=200, help="env steps before timing (x8)")
  p.add_argument("--steps", type=int, default=400, help="timed env steps, SAC and ATraDiff")
  p.add_argument("--redq_steps", type=int, default=64, help="timed env steps, REDQ")
  p.add_argument("--updates_in_warmup", type=int, default=16,
                 help="env steps with updates inside the warm-up (compiles them); at least two "
                      "loop iterations of 8 envs (the new loop's timings are read one iteration "
                      "late, so the first update iteration, with its compilation, must be done)")
  p.add_argument("--repeats", type=int, default=1, help="rounds of all arms, interleaved")
  p.add_argument("--set", default="{}",
                 help='JSON config overrides for every arm (atradiff.* only for ATraDiff), '
                      'e.g. {"atradiff.synthetic_capacity": 10000}')
  p.add_argument("--arm_timeout", type=int, default=900, help="seconds per arm")
  p.add_argument("--out", default="", help="JSON output (default: runs/bench_online.json)")
  p.add_argument("--driver", default="", help=argparse.SUPPRESS)  # child mode: arm JSON
  return p.parse_args()


# --------------------------------------------------------------------------- child (one arm)

def _apply(config, overrides: dict, optional: dict) -> str:
  """Applies overrides (dotted names); '' or the name of a missing optional field."""
  for k, v in optional.items():
    if k not in config:
      return k
  for k, v in {**overrides, **optional}.items():
    *path, leaf = k.split(".")
    node = config
    for part in path:
      node = node[part]
    if leaf not in node:
      raise ValueError(f"bench_online: config field {k!r} does not exist")
    node[leaf] = v
  return ""


def _instrument_old_loop(acc: dict, warmup: int) -> bool:
  """Wraps the old loop's pieces (see module doc); False if this tree does not have them."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxaug.train import online  # pylint: disable=g-import-not-at-top
  if not (hasattr(online, "make_step_fn") and hasattr(online, "EnvRunner")):
    return False
  done = {"steps": 0}
  env_step = online.EnvRunner.step

  def timed_env_step(self, action):
    t = time.perf_counter()
    out = env_step(self, action)
    done["steps"] += 1
    if done["steps"] > warmup:
      acc["env"] += time.perf_counter() - t
    return out

  make_step_fn = online.make_step_fn

  def timed_make_step_fn(*args, **kwargs):
    step, first = make_step_fn(*args, **kwargs)

    def timed_step(*a, **k):
      t0 = time.perf_counter()
      out = step(*a, **k)
      t1 = time.perf_counter()
      jax.block_until_ready(out[3])  # the action: the loop's next np.asarray waits for it
      if done["steps"] > warmup:
        acc["dispatch"] += t1 - t0
        acc["wait"] += time.perf_counter() - t1
      return out

    return timed_step, first

  online.EnvRunner.step = timed_env_step
  online.make_step_fn = timed_make_step_fn
  try:
    from jaxaug.augment.atradiff import online as aonline  # pylint: disable=g-import-not-at-top
  except ImportError:
    return True
  after_step = aonline.ATraDiffAugmenter.after_step

  def timed_after_step(self, *a, **k):
    rounds = self.timings["generation_s"] + self.timings["adaptation_s"]
    t = time.perf_counter()
    out = after_step(self, *a, **k)
    if done["steps"] > warmup:
      dt = time.perf_counter() - t
      aug = self.timings["generation_s"] + self.timings["adaptation_s"] - rounds
      acc["augment"] += aug
      acc["host"] += dt - aug
    return out

  aonline.ATraDiffAugmenter.after_step = timed_after_step
  return True


def drive(arm: dict) -> dict:
  """Runs one arm in this process (PYTHONPATH picks the tree) and returns its figures."""
  import jaxaug  # pylint: disable=g-import-not-at-top
  tree = os.path.dirname(os.path.dirname(os.path.abspath(jaxaug.__file__)))
  if os.path.realpath(tree) != os.path.realpath(arm["tree_path"]):
    raise RuntimeError(f"bench_online: jaxaug imported from {tree}, expected {arm['tree_path']}")
  from jaxaug.configs_io import load_config_file  # pylint: disable=g-import-not-at-top
  from jaxaug.train import logging as jlog  # pylint: disable=g-import-not-at-top
  from jaxaug.train import online  # pylint: disable=g-import-not-at-top
  config = load_config_file(arm["preset"])
  missing = _apply(config, arm["overrides"], arm["optional"])
  if missing:
    return {"skipped": f"this tree's {arm['preset']} config has no field {missing!r}"}
  if "log_timings" in config:  # the new loop logs its cumulative per-phase seconds
    config.log_timings = True
  warmup = int(arm["warmup"])
  acc = {k: 0.0 for k in BREAKDOWN}
  old_loop = arm["tree"] == "old" and _instrument_old_loop(acc, warmup)
  logs = []  # (start, end, step, the loop's timings so far or None) of train log lines
  log = jlog.MetricLogger.log

  def timed_log(self, step, metrics, *a, **k):
    t = time.perf_counter()
    out = log(self, step, metrics, *a, **k)  # fetches the metrics: may wait for the device
    # the loop's train lines only (not evaluations, nor the logs of a diffuser being trained
    # through run_training before the loop starts)
    if "train/env_steps_per_s" in metrics:
      # the new loop's cumulative timings (config.log_timings), None in the old loop
      tm = {k[len("timings/"):]: float(v) for k, v in metrics.items()
            if str(k).startswith("timings/")} or None
      logs.append((t, time.perf_counter(), int(step), tm))
    return out

  jlog.MetricLogger.log = timed_log
  t0 = time.perf_counter()
  summary = online.train_online(config, arm["workdir"])
  total_s = time.perf_counter() - t0
  timed = [x for x in logs if x[2] >= warmup]
  if len(timed) < 2:
    raise RuntimeError(f"bench_online: train log lines at {[x[2] for x in logs]}; need one at "
                       f">= {warmup} and a later one (log_every = warm-up)")
  # the window: from the end of the first log line at/after the warm-up to the end of the last
  # (a log line fetches the metrics of the last update: both ends wait for the device)
  (log_a0, t_a, s_a, tm_a), (log_b0, t_b, s_b, tm_b) = timed[0], timed[-1]
  steps = s_b - s_a
  out = {"steps_timed": steps, "steps_per_s": steps / (t_b - t_a),
         "step_ms": (t_b - t_a) / steps * 1e3, "process_s": total_s,
         "summary_env_steps_per_s": summary.get("env_steps_per_s")}
  if old_loop:
    out["breakdown_ms"] = {k: v / steps * 1e3 for k, v in acc.items()}
    out["breakdown_source"] = "old loop, wrapped in the driver, steps after the warm-up"
  elif tm_a is not None and tm_b is not None:
    # the loop's own cumulative timings logged at the two log lines (config.log_timings): env,
    # wait and dispatch include the logging iteration, so their difference covers exactly the
    # window's iterations; host (logging, bookkeeping) is added after each log line, so the
    # difference holds the first log line (before the window: taken out) and lacks the last
    # (inside it: added)
    d = {k: tm_b.get(f"{k}_s", 0.0) - tm_a.get(f"{k}_s", 0.0)
         for k in ("env", "dispatch", "wait", "host")}
    d["host"] += -(t_a - log_a0) + (t_b - log_b0)
    out["breakdown_ms"] = {k: v / steps * 1e3 for k, v in d.items()}
    out["breakdown_source"] = "train_online's timings, difference between the two log lines"
  elif isinstance(summary.get("timings"), dict) and summary["timings"].get("steps"):
    tm = summary["timings"]
    n = float(tm["steps"])
    out["breakdown_ms"] = {k: float(tm.get(f"{k}_s", 0.0)) / n * 1e3
                           for k in ("env", "dispatch", "wait", "host")}
    out["breakdown_source"] = (f"summary['timings'] over all {int(n)} steps (compilation, "
                               "final evaluation and checkpoint included)")
  if "breakdown_ms" in out:
    b = out["breakdown_ms"]
    b["other"] = out["step_ms"] - sum(v for k, v in b.items() if k != "other")
  if "extras" in summary:
    out["atradiff"] = {k: v for k, v in summary["extras"].items()
                       if k.endswith(("_s", "rounds", "synthetic_size"))}
  return out


# --------------------------------------------------------------------------- parent

def _ensure_old_tree(path: str, rev: str) -> None:
  if os.path.isdir(os.path.join(path, "jaxaug")):
    return
  os.makedirs(path, exist_ok=True)
  print(f"creating {path} from git archive {rev}", flush=True)
  archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True)
  subprocess.run(["tar", "-x", "-C", path], input=archive.stdout, check=True)


def _arm(tree: str, tree_path: str, algo: str, variant: str, args, scratch: str) -> dict:
  preset, extra = ALGOS[algo]
  timed = args.redq_steps if algo == "redq" else args.steps
  overrides = {"num_env_steps": args.warmup + timed, "log_every": args.warmup,
               "start_steps": max(args.warmup - args.updates_in_warmup, 1), "eval_every": 0,
               "eval_episodes": 1, "checkpoint_every": 0, "replay_capacity": 100_000, **extra}
  for k, v in json.loads(args.set).items():
    if k.startswith("atradiff.") and algo != "sac_atradiff":
      continue
    overrides[k] = v
  if algo == "sac_atradiff":  # one trained diffuser per tree, reused by its later arms
    overrides["atradiff.diffuser_dir"] = os.path.join(scratch, f"diffuser_{tree}")
  return {"tree": tree, "tree_path": tree_path, "algo": algo, "variant": variant,
          "preset": preset, "overrides": overrides, "optional": VARIANTS.get(variant, {}),
          "warmup": args.warmup}


def _run_arm(arm: dict, scratch: str, timeout: int) -> dict:
  arm = dict(arm, workdir=tempfile.mkdtemp(prefix="arm_", dir=scratch))
  env = dict(os.environ, PYTHONPATH=arm["tree_path"])
  cmd = [sys.executable, os.path.abspath(__file__), "--driver", json.dumps(arm)]
  t = time.time()
  try:
    proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True,
                          timeout=timeout)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout} s"}
  finally:
    shutil.rmtree(arm["workdir"], ignore_errors=True)
  for line in proc.stdout.splitlines()[::-1]:
    if line.startswith(RESULT_TAG):
      return dict(json.loads(line[len(RESULT_TAG):]), wall_s=time.time() - t)
  tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
  return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def _row(r: dict) -> str:
  name = f"{r['tree']:<5}{r['algo']:<13}{r['variant']:<11}"
  if "skipped" in r or "error" in r:
    return name + ("skipped: " + r["skipped"] if "skipped" in r else "ERROR " + r["error"])
  b = r.get("breakdown_ms", {})
  cells = "".join(f"{b[k]:>9.2f}" if k in b else f"{'-':>9}" for k in BREAKDOWN)
  return name + f"{r['steps_per_s']:>9.1f}{r['step_ms']:>9.2f}" + cells


def _medians(results: list[dict]) -> dict:
  """(tree, algo, variant) -> median env steps/s over the arms that ran."""
  groups: dict = {}
  for r in results:
    if "steps_per_s" in r:
      groups.setdefault((r["tree"], r["algo"], r["variant"]), []).append(r["steps_per_s"])
  out = {}
  for k, v in groups.items():
    v = sorted(v)
    out[k] = v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
  return out


def _loadavg() -> list[float]:
  try:
    return list(os.getloadavg())
  except OSError:
    return []


def main() -> None:
  args = _flags()
  if args.driver:
    print(RESULT_TAG + json.dumps(drive(json.loads(args.driver))), flush=True)
    return
  trees = [t for t in args.trees.split(",") if t]
  algos = [a for a in args.algos.split(",") if a]
  variants = [v for v in args.variants.split(",") if v]
  for name, got, known in (("--trees", trees, ("old", "new")), ("--algos", algos, ALGOS),
                           ("--variants", variants, VARIANTS)):
    bad = [x for x in got if x not in known]
    if bad:
      raise SystemExit(f"{name}: unknown {bad}; expected some of {tuple(known)}")
  if "old" in trees:
    _ensure_old_tree(args.old_tree, args.old_rev)
  if args.warmup % 8 or args.steps % 8 or args.redq_steps % 8 or args.updates_in_warmup % 8:
    raise SystemExit("--warmup, --steps, --redq_steps and --updates_in_warmup must be multiples "
                     "of 8 (num_envs 8)")
  if not 16 <= args.updates_in_warmup < args.warmup:
    raise SystemExit("--updates_in_warmup must be >= 16 and < --warmup")
  scratch = tempfile.mkdtemp(prefix="bench_online_")
  arms = []
  for _ in range(args.repeats):
    for algo in algos:  # interleaved: old, new, new variants, then the next algorithm
      if "old" in trees:
        arms.append(_arm("old", os.path.abspath(args.old_tree), algo, "default", args, scratch))
      if "new" in trees:
        for v in ["default"] + variants:
          arms.append(_arm("new", ROOT, algo, v, args, scratch))
  load0 = _loadavg()
  header = (f"{'tree':<5}{'algo':<13}{'variant':<11}{'steps/s':>9}{'step ms':>9}"
            + "".join(f"{k:>9}" for k in BREAKDOWN))
  print(f"{len(arms)} arms; load average {load0}; breakdown in ms per env step\n{header}",
        flush=True)
  results = []
  for arm in arms:
    r = dict(arm, **_run_arm(arm, scratch, args.arm_timeout))
    results.append(r)
    print(_row(r), flush=True)
  shutil.rmtree(scratch, ignore_errors=True)
  medians = _medians(results)
  print("\nmedian env steps/s over the repeats, and relative to the old loop:")
  for (tree, algo, variant), m in medians.items():
    old = medians.get(("old", algo, "default"))
    rel = f"  x{m / old:.2f}" if old and tree == "new" else ""
    print(f"{tree:<5}{algo:<13}{variant:<11}{m:>9.1f}{rel}")
  from jaxaug.bench import machine_info, write_json  # pylint: disable=g-import-not-at-top
  out = args.out or os.path.join(ROOT, "runs", "bench_online.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  write_json(out, {"argv": sys.argv, "machine": machine_info(), "load_average_start": load0,
                   "load_average_end": _loadavg(), "old_tree": os.path.abspath(args.old_tree),
                   "median_steps_per_s": {"/".join(k): v for k, v in medians.items()},
                   "results": results})
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
